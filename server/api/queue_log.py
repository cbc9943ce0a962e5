"""``POST /api/ingest/asterisk/queue-log``: Asterisk queue_log lines straight from the PBX.

The body is the text of a queue_log file (or a slice of one). Each line goes through
:func:`server.ingest.queue_log.parse_line` and each event it yields through
:func:`server.ingest.events.parse_event`, then the batch takes the same path as ``POST /api/events``
(:meth:`server.live.recorder.Ingestor.ingest`): same byte and event limits, same 200/207/422 reply,
same durability. Rejections name the 1-based line of the body they came from; a line that is
not queue_log at all is ``{"line": n, "error": …}``. A body has at most
``WALLBOARD_QUEUE_LOG_MAX_LINES`` lines (413 ``too_many_lines``), the reply lists the first 100
rejections and counts them all (``rejected_total``), and the lines are translated in slices of
``STEP_LINES`` with the event loop handed back between them: 5 MiB of garbage costs its own
reply, not a stall of every other socket.

Event ids derive from each line's content, so posting the same lines again gives duplicates,
not double counts. The trade-off: line numbers are relative to the body, so a client posting a
file in slices has to add its own offset to report file line numbers.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from server.api.context import principal, services
from server.api.events import read_body
from server.api.responses import failure, success
from server.core.auth import INGEST
from server.core.errors import PayloadTooLarge, UnsupportedMediaType
from server.ingest.events import Event, EventError, parse_event
from server.ingest.queue_log import QueueLogError, parse_line, too_few_fields

__all__ = ["Parsed", "parse_queue_log_body", "post_queue_log", "routes"]

log = logging.getLogger("wallboard.ingest")

TEXT_TYPES = ("text/plain", "application/octet-stream")
_CHARSETS = ("utf-8", "utf8", "us-ascii", "ascii")
MAX_REJECTIONS_SHOWN = 100  # a reply lists the first 100 rejections and counts them all (rejected_total)
# A visible ASCII character: the line is not blank (parse_line answers [] for a blank one).
_VISIBLE = re.compile(rb"[\x21-\x7e]")
STEP_LINES = 500  # lines translated between two returns to the event loop (about 5 ms of work)


def _check_media_type(content_type: str | None) -> None:
    accepted = " or ".join(TEXT_TYPES)
    if not content_type:
        raise UnsupportedMediaType(f"Content-Type is missing: expected {accepted} (queue_log lines)")
    media, _, params = content_type.partition(";")
    media = media.strip().lower()
    if media not in TEXT_TYPES:
        hint = "; JSON events go to POST /api/events" if "json" in media else ""
        raise UnsupportedMediaType(
            f"Content-Type {media!r} is not accepted: expected {accepted} with queue_log lines{hint}"
        )
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip().strip('"').lower() not in _CHARSETS:
            raise UnsupportedMediaType(f"charset {value.strip()!r} is not accepted: send UTF-8")


@dataclass
class Parsed:
    """A queue_log body translated and validated."""

    valid: list[tuple[int, Event]]  # (index, Event) in line order
    rejected: list[dict[str, Any]]  # the first MAX_REJECTIONS_SHOWN, in line order, each with its ``line``
    rejected_total: int
    lines: int


def parse_queue_log_body(body: bytes, *, max_events: int, max_lines: int = 50_000, window_days: int | None = None,
                         now_ms: int | None = None) -> Parsed:
    """Translate and validate a queue_log body (all at once; the endpoint runs the same steps in slices).

    ``lines`` counts the body's lines (a final newline does not start another). Raises 413
    ``too_many_lines`` past ``max_lines`` (before translating any) and ``too_many_events`` when the
    lines yield more than ``max_events`` events. Bytes that are not UTF-8 are replaced, so such a
    line is judged by its readable rest. ``window_days`` as in :func:`parse_event`.
    """
    steps = _steps(body, max_events, max_lines, window_days, now_ms)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]


async def parse_queue_log_body_async(body: bytes, *, max_events: int, max_lines: int, window_days: int) -> Parsed:
    """:func:`parse_queue_log_body`, handing the event loop back every ``STEP_LINES`` lines."""
    steps = _steps(body, max_events, max_lines, window_days, None)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        await asyncio.sleep(0)


def _steps(body: bytes, max_events: int, max_lines: int, window_days: int | None,
           now_ms: int | None) -> Generator[None, None, Parsed]:
    count = body.count(b"\n") + (0 if body.endswith(b"\n") or not body else 1)
    if count > max_lines:
        raise PayloadTooLarge(f"too many lines: at most {max_lines} per request, got {count}; split the file",
                              code="too_many_lines", details={"limit": max_lines, "count": count})
    lines = body.split(b"\n")  # decoded one by one, inside the slices
    if lines and lines[-1] == b"":
        lines.pop()
    produced: list[tuple[int, dict[str, Any]]] = []
    bad_lines: list[dict[str, Any]] = []
    bad_lines_total = 0
    for lineno, line in enumerate(lines, 1):
        if lineno % STEP_LINES == 0:
            yield
        pipes = line.count(b"|")
        if pipes < 4 and _VISIBLE.search(line):  # garbage, the commonest bad line: refused without decoding it
            bad_lines_total += 1
            if len(bad_lines) < MAX_REJECTIONS_SHOWN:
                bad_lines.append({"line": lineno, "error": too_few_fields(pipes + 1)})
            continue
        try:
            produced.extend((lineno, event) for event in parse_line(line.decode("utf-8", "replace"), lineno))
        except QueueLogError as exc:
            bad_lines_total += 1
            if len(bad_lines) < MAX_REJECTIONS_SHOWN:
                bad_lines.append({"line": lineno, "error": exc.reason})
    if len(produced) > max_events:
        raise PayloadTooLarge(
            f"too many events: at most {max_events} per request, the lines gave {len(produced)}; split the file",
            code="too_many_events", details={"limit": max_events, "count": len(produced)})
    now = int(time.time() * 1000) if now_ms is None else now_ms
    valid: list[tuple[int, Event]] = []
    bad_events: list[dict[str, Any]] = []
    bad_events_total = 0
    for index, (lineno, obj) in enumerate(produced):
        try:
            valid.append((index, parse_event(obj, now_ms=now, window_days=window_days)))
        except EventError as exc:
            bad_events_total += 1
            if len(bad_events) < MAX_REJECTIONS_SHOWN:
                bad_events.append({"line": lineno, "index": index, "event_id": obj.get("event_id"),
                                   "error": str(exc), "field": exc.field, "code": exc.code})
        if index % STEP_LINES == STEP_LINES - 1:
            yield
    # Each list is in line order: the first MAX_REJECTIONS_SHOWN of both are among the first of each.
    rejected = sorted(bad_lines + bad_events, key=lambda item: item["line"])[:MAX_REJECTIONS_SHOWN]
    return Parsed(valid, rejected, bad_lines_total + bad_events_total, len(lines))


async def post_queue_log(request: Request) -> Response:
    """``POST /api/ingest/asterisk/queue-log`` (roles ingest, admin): text/plain queue_log lines."""
    who = principal(request, INGEST)
    svc = services(request)
    started = time.perf_counter()
    _check_media_type(request.headers.get("content-type"))
    body = await read_body(request, svc.settings.max_body_bytes)
    window = (await svc.settings_store.get(who.tenant)).ingest_window_days
    parsed = await parse_queue_log_body_async(body, max_events=svc.settings.max_events,
                                              max_lines=svc.settings.queue_log_max_lines, window_days=window)
    outcome = await svc.ingestor.ingest(who.tenant, parsed.valid, parsed.rejected)
    svc.hub.renderings.changed(who.tenant)  # the poster's next read here sees its events
    log.info("ingest.queue_log", extra={"tenant": who.tenant, "lines": parsed.lines, "events": len(parsed.valid),
                                        "accepted": outcome.accepted, "duplicates": outcome.duplicates,
                                        "rejected": parsed.rejected_total,
                                        "ms": round((time.perf_counter() - started) * 1000, 1)})
    data = {**outcome.data(), "rejected_total": parsed.rejected_total, "lines": parsed.lines}
    if outcome.status == 422:  # the API.md error envelope, the counts kept in data (as POST /api/events does)
        return failure(422, "all_lines_rejected", f"no line made an accepted event: {len(outcome.rejected)} rejected",
                       details={"rejected": outcome.rejected}, data=data)
    return success(data, status=outcome.status)


routes: list[BaseRoute] = [Route("/api/ingest/asterisk/queue-log", post_queue_log, methods=["POST"])]

"""``POST /api/ingest/asterisk/queue-log``: Asterisk queue_log lines straight from the PBX.

The body is the text of a queue_log file (or a slice of one). Each line goes through
:func:`server.ingest.queue_log.parse_line` and each event it yields through
:func:`server.ingest.events.parse_event`, then the batch takes the same path as ``POST /api/events``
(:meth:`server.live.recorder.Ingestor.ingest`): same byte and event limits, same 200/207/422 reply,
same durability. Rejections name the 1-based line of the body they came from; a line that is
not queue_log at all is ``{"line": n, "error": …}``.

Event ids derive from each line's content, so posting the same lines again gives duplicates,
not double counts. The trade-off: line numbers are relative to the body, so a client posting a
file in slices has to add its own offset to report file line numbers.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from server.api.context import principal, services
from server.api.events import read_body
from server.api.responses import success
from server.core.auth import INGEST
from server.core.errors import PayloadTooLarge, UnsupportedMediaType
from server.ingest.events import Event, EventError, parse_event
from server.ingest.queue_log import QueueLogError, parse_line

__all__ = ["parse_queue_log_body", "post_queue_log", "routes"]

log = logging.getLogger("wallboard.ingest")

TEXT_TYPES = ("text/plain", "application/octet-stream")
_CHARSETS = ("utf-8", "utf8", "us-ascii", "ascii")


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


def parse_queue_log_body(
    body: bytes, *, max_events: int, now_ms: int | None = None
) -> tuple[list[tuple[int, Event]], list[dict[str, Any]], int]:
    """Translate and validate a queue_log body; return ``(valid, rejected, lines)``.

    ``valid`` is ``[(index, Event)]`` in line order; ``rejected`` is in line order, each with
    its ``line``; ``lines`` counts the body's lines (a final newline does not start another).
    Raises 413 ``too_many_events`` when the lines yield more than ``max_events`` events.
    Bytes that are not UTF-8 are replaced, so such a line is judged by its readable rest.
    """
    text = body.decode("utf-8", "replace")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    produced: list[tuple[int, dict[str, Any]]] = []
    rejected: list[dict[str, Any]] = []
    for lineno, line in enumerate(lines, 1):
        try:
            produced.extend((lineno, event) for event in parse_line(line, lineno))
        except QueueLogError as exc:
            rejected.append({"line": lineno, "error": exc.reason})
    if len(produced) > max_events:
        raise PayloadTooLarge(
            f"too many events: at most {max_events} per request, the lines gave {len(produced)}; "
            "split the file",
            code="too_many_events",
            details={"limit": max_events, "count": len(produced)},
        )
    now = int(time.time() * 1000) if now_ms is None else now_ms
    valid: list[tuple[int, Event]] = []
    for index, (lineno, obj) in enumerate(produced):
        try:
            valid.append((index, parse_event(obj, now_ms=now)))
        except EventError as exc:
            rejected.append({"line": lineno, "index": index, "event_id": obj.get("event_id"),
                             "error": str(exc), "field": exc.field})
    rejected.sort(key=lambda item: item["line"])
    return valid, rejected, len(lines)


async def post_queue_log(request: Request) -> Response:
    """``POST /api/ingest/asterisk/queue-log`` (roles ingest, admin): text/plain queue_log lines."""
    who = principal(request, INGEST)
    svc = services(request)
    started = time.perf_counter()
    _check_media_type(request.headers.get("content-type"))
    body = await read_body(request, svc.settings.max_body_bytes)
    valid, rejected, lines = parse_queue_log_body(body, max_events=svc.settings.max_events)
    outcome = await svc.ingestor.ingest(who.tenant, valid, rejected)
    svc.hub.renderings.changed(who.tenant)  # the poster's next read here sees its events
    log.info("ingest.queue_log", extra={"tenant": who.tenant, "lines": lines, "events": len(valid),
                                        "accepted": outcome.accepted, "duplicates": outcome.duplicates,
                                        "rejected": len(outcome.rejected),
                                        "ms": round((time.perf_counter() - started) * 1000, 1)})
    return success({**outcome.data(), "lines": lines}, status=outcome.status)


routes: list[BaseRoute] = [Route("/api/ingest/asterisk/queue-log", post_queue_log, methods=["POST"])]

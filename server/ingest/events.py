"""Event schema: parse an ingest body and validate each event, naming the bad field.

This is the ingest hot path, so validation is plain ``isinstance`` and dict checks driven
by a small per-type table (a few microseconds per event), and JSON is parsed with orjson.
The first problem of an event rejects it with ``"<field>: <reason>"``; the rest of the batch
is kept. Unknown extra fields are kept in ``Event.body``; ``client_id`` is dropped, because
the tenant comes from the token and never from the body.

Duplicate ``event_id``\\ s inside one batch are returned as valid: the database dedupes and
the caller counts them as duplicates.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, NoReturn

import orjson

from server.core.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType, WallboardError
from server.ingest.bounds import AHEAD_MS, EXTRA_TOO_BIG, OUT_OF_WINDOW, extras_problem, nul_problem, oldest_ms
from server.ingest.schema import AGENT_STATES, EVENT_TYPES, EVENTS, Field

__all__ = ["AGENT_STATES", "EVENT_TYPES", "Event", "EventError", "parse_body", "parse_event"]

JSON_TYPES = ("application/json",)
NDJSON_TYPES = ("application/x-ndjson", "application/jsonl")

_MIN_TS_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
_LAST_TS_MS = 253_402_300_799_000  # 9999-12-31T23:59:59Z
_DAY_MS = 86_400_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORDINAL = _EPOCH.toordinal()
_fromordinal = date.fromordinal
_D2 = tuple(f"{i:02d}" for i in range(60))
_MS_Z = tuple(f".{i:03d}Z" for i in range(1000))
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_MISSING: Any = object()


@dataclass(slots=True)
class Event:
    """One validated event; ``body`` is what is stored (``ts`` normalised, no ``client_id``)."""

    event_id: str
    type: str
    ts_ms: int  # epoch milliseconds (UTC)
    queue_id: str | None
    agent_id: str | None
    call_id: str | None
    body: dict[str, Any]


class EventError(WallboardError, ValueError):
    """One event is invalid; ``field`` names the culprit, ``reason`` says what was expected."""

    status = 422
    code = "invalid_event"

    def __init__(self, field: str, reason: str, code: str | None = None) -> None:
        super().__init__(f"{field}: {reason}", details={"field": field, "reason": reason}, code=code)
        self.field = field
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.field, self.reason, self.code))


def _show(value: object) -> str:
    """A short rendering of what came, for "expected …, got …" messages."""
    if isinstance(value, str) and len(value) > 40:
        value = value[:40] + "…"
    if value is None or isinstance(value, (str, bool)):
        return orjson.dumps(value).decode()
    if isinstance(value, (int, float)):
        return repr(value)
    return "an object" if isinstance(value, dict) else "a list" if isinstance(value, list) else type(value).__name__


# Checkers take (field, value) and return the value to store, or raise EventError.
_Check = Callable[[str, Any], Any]


def _text(limit: int, *, min_len: int = 0, controls: bool = True) -> _Check:
    def check(field: str, v: Any) -> Any:
        if type(v) is not str:
            raise EventError(field, f"expected a string, got {_show(v)}")
        n = len(v)
        if n < min_len:
            raise EventError(field, f"empty: expected {min_len} to {limit} characters")
        if n > limit:
            raise EventError(field, f"longer than {limit} characters")
        if not controls and not v.isprintable() and _CONTROL.search(v):
            raise EventError(field, "contains control characters")
        if "\x00" in v:
            raise EventError(field, "contains a NUL character, which cannot be stored")
        return v

    return check


_id = _text(128, min_len=1, controls=False)


def _number(low: float, high: float, *, high_open: bool = False, integer: bool = False) -> _Check:
    kind = "an integer" if integer else "a number"
    wanted = f"{kind} ≥ {low:g} and < {high:g}" if high_open else f"{kind} from {low:g} to {high:g}"

    def check(field: str, v: Any) -> Any:
        t = type(v)
        if t is float and integer and v.is_integer():
            v = int(v)
        elif t is not int and (t is not float or integer):
            raise EventError(field, f"expected {wanted}, got {_show(v)}")
        if not (low <= v < high if high_open else low <= v <= high):
            raise EventError(field, f"expected {wanted}, got {_show(v)}")
        return v

    return check


def _bool(field: str, v: Any) -> Any:
    if type(v) is not bool:
        raise EventError(field, f"expected true or false, got {_show(v)}")
    return v


def _choice(options: tuple[str, ...]) -> _Check:
    allowed = ", ".join(options)

    def check(field: str, v: Any) -> Any:
        if type(v) is not str or v not in options:
            raise EventError(field, f"expected one of {allowed}, got {_show(v)}")
        return v

    return check


def _queues(field: str, v: Any) -> Any:
    if type(v) is not list:
        raise EventError(field, f"expected a list of queue ids, got {_show(v)}")
    if len(v) > 100:
        raise EventError(field, f"expected at most 100 queue ids, got {len(v)}")
    for i, q in enumerate(v):
        if type(q) is not str or not 0 < len(q) <= 128 or not q.isprintable():
            _id(f"{field}[{i}]", q)  # the slow path names the element, or lets it pass
    return v


_score = _number(0, 5)


def _criteria(field: str, v: Any) -> Any:
    if type(v) is not dict:
        raise EventError(field, f"expected an object of name → score 0-5, got {_show(v)}")
    if len(v) > 50:
        raise EventError(field, f"expected at most 50 criteria, got {len(v)}")
    for name, score in v.items():
        if type(name) is not str or not 1 <= len(name) <= 64:
            raise EventError(field, f"criterion names are 1 to 64 characters, got {_show(name)}")
        _score(f"{field}.{name}", score)
    return v


_seconds = _number(0, 86400, high_open=True)
_amount = _number(0, 1_000_000_000)


def _time(field: str, v: Any) -> Any:
    """An instant (ISO-8601 with a zone, or epoch ms from 2000 on), kept as ISO-8601 UTC."""
    return _ts(v, _LAST_TS_MS - AHEAD_MS, _MIN_TS_MS, field)[1]
_IDS = ("agent_id", "queue_id", "call_id")
_check_type = _choice(EVENT_TYPES)

# The checks of schema.Field.check, by name.
_CHECKS: dict[str, Callable[[Field], _Check]] = {
    "id": lambda f: _id,
    "text": lambda f: _text(f.limit),
    "state": lambda f: _choice(AGENT_STATES),
    "queues": lambda f: _queues,
    "seconds": lambda f: _seconds,
    "score": lambda f: _score,
    "criteria": lambda f: _criteria,
    "bool": lambda f: _bool,
    "int": lambda f: _number(f.low, f.high, integer=True),
    "time": lambda f: _time,
    "amount": lambda f: _amount,
    "choice": lambda f: _choice(f.options),
}

# type → ((field, required, check), …): required fields first, then optional ones, then the ids
# (agent_id/queue_id/call_id) the kind does not declare, optional everywhere.
_SPECS: dict[str, tuple[tuple[str, bool, _Check], ...]] = {}
_ONE_OF: dict[str, tuple[tuple[str, ...], str]] = {}
for _kind in EVENTS:
    _declared = {f.name for f in _kind.fields}
    _SPECS[_kind.type] = (
        tuple((f.name, True, _CHECKS[f.check](f)) for f in _kind.fields if f.required)
        + tuple((f.name, False, _CHECKS[f.check](f)) for f in _kind.fields if not f.required)
        + tuple((name, False, _id) for name in _IDS if name not in _declared)
    )
    if _kind.one_of:
        _ONE_OF[_kind.type] = (_kind.one_of, f"{' or '.join(_kind.one_of)} is required ({_kind.one_of_hint})")

# The fields each type knows; any other is an unknown extra field, kept while small (server/ingest/bounds.py).
_KNOWN = {t: frozenset(("event_id", "type", "ts", *(name for name, _, _ in spec))) for t, spec in _SPECS.items()}


def _ts(v: Any, now_ms: int, first_ms: int, field: str = "ts") -> tuple[int, str]:
    """``ts`` as (epoch ms, ISO-8601 UTC with milliseconds and ``Z``), from ``first_ms`` to 5 minutes after now."""
    t = type(v)
    if t is str:
        try:
            dt = datetime.fromisoformat(v)
        except ValueError:
            raise EventError(field, f"expected ISO-8601 or epoch milliseconds, got {_show(v)}") from None
        if dt.tzinfo is None:
            raise EventError(field, "expected ISO-8601 with a time zone, e.g. 2026-11-25T10:00:00Z")
        d = dt - _EPOCH
        ms = d.days * _DAY_MS + d.seconds * 1000 + d.microseconds // 1000
        # Already "YYYY-MM-DDTHH:MM:SS.mmmZ" (the usual case): keep it, formatting costs more than parsing.
        canonical = len(v) == 24 and v[23] == "Z" and v[19] == "." and v[10] == "T" and v[7] == "-"
    elif t is int or (t is float and v.is_integer()):
        ms = int(v)
        canonical = False
    else:
        raise EventError(field, f"expected ISO-8601 or epoch milliseconds as an integer, got {_show(v)}")
    if ms < _MIN_TS_MS:
        hint = " (epoch seconds? send milliseconds)" if t is not str and ms > _MIN_TS_MS // 1000 else ""
        raise EventError(field, f"before 2000-01-01, got {_show(v)}{hint}")
    if ms < first_ms:
        raise EventError(field, f"outside the ingest window: before {_iso(first_ms)}, the tenant's oldest accepted "
                               f"(setting ingest_window_days), got {_show(v)}", OUT_OF_WINDOW)
    if ms > now_ms + AHEAD_MS:
        raise EventError(field, f"outside the ingest window: more than 5 minutes in the future, got {_show(v)}",
                         OUT_OF_WINDOW)
    return ms, v if canonical else _iso(ms)


def _iso(ms: int) -> str:
    # Arithmetic and table look-ups: about 3x faster than datetime.isoformat(timespec=…).
    days, rest = divmod(ms, _DAY_MS)
    s, rest = divmod(rest, 1000)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return f"{_fromordinal(_EPOCH_ORDINAL + days).isoformat()}T{_D2[h]}:{_D2[m]}:{_D2[s]}{_MS_Z[rest]}"


def parse_event(obj: object, *, now_ms: int | None = None, window_days: int | None = None) -> Event:
    """Validate one decoded event and build its :class:`Event`; raise :class:`EventError`.

    ``ts`` may be at most 5 minutes after ``now_ms`` (default: the clock; pass it to check a batch
    against one instant) and, with ``window_days`` (the tenant's ``ingest_window_days``: every
    server path passes it), no older than that many days; without it, not before 2000-01-01.
    ``null`` for an optional field counts as absent.
    """
    if type(obj) is not dict:
        raise EventError("event", f"expected a JSON object, got {_show(obj)}")
    now = int(time.time() * 1000) if now_ms is None else now_ms
    return _build(dict(obj), now, _MIN_TS_MS if window_days is None else oldest_ms(now, window_days))


def _build(body: dict[str, Any], now_ms: int, first_ms: int) -> Event:
    """parse_event on a dict this module owns: it is normalised in place and becomes the body."""
    body.pop("client_id", None)
    get = body.get
    event_id = get("event_id", _MISSING)
    etype = get("type", _MISSING)
    ts = get("ts", _MISSING)
    if event_id is _MISSING or etype is _MISSING or ts is _MISSING:
        _required("event_id" if event_id is _MISSING else "type" if etype is _MISSING else "ts")
    _id("event_id", event_id)
    spec = _SPECS.get(etype) if type(etype) is str else None
    if spec is None:
        _check_type("type", etype)
    ts_ms, body["ts"] = _ts(ts, now_ms, first_ms)
    for name, required, check in spec:  # type: ignore[union-attr]
        v = get(name, _MISSING)
        if v is _MISSING or v is None:
            if required:
                if v is None:
                    check(name, v)  # says "expected …, got null"
                _required(name)
        elif check is _id:
            # Inline fast path for the commonest check; the call only runs to name the problem.
            if type(v) is not str or not 0 < len(v) <= 128 or not v.isprintable():
                _id(name, v)
        else:
            out = check(name, v)
            if out is not v:
                body[name] = out
    if _ONE_OF and etype in _ONE_OF:
        fields, reason = _ONE_OF[etype]
        if all(body.get(name) is None for name in fields):
            raise EventError(fields[0], reason)
    known = _KNOWN[etype]
    if len(body) > len(known) or not known.issuperset(body):
        problem = extras_problem(body, [name for name in body if name not in known])
        if problem is not None:
            raise EventError(*problem, EXTRA_TOO_BIG)
    return Event(event_id, etype, ts_ms, get("queue_id"), get("agent_id"), get("call_id"), body)


def _required(field: str) -> NoReturn:
    raise EventError(field, "required")


def _media_type(content_type: str | None) -> str:
    accepted = ", ".join(JSON_TYPES + NDJSON_TYPES)
    if not content_type:
        raise UnsupportedMediaType(f"Content-Type is missing: expected one of {accepted}")
    media, _, params = content_type.partition(";")
    media = media.strip().lower()
    if media not in JSON_TYPES and media not in NDJSON_TYPES:
        raise UnsupportedMediaType(f"Content-Type {media!r} is not accepted: expected one of {accepted}")
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise UnsupportedMediaType(f"charset {value.strip()!r} is not accepted: send UTF-8")
    return media


def parse_body(
    body: bytes, content_type: str | None, *, max_events: int, window_days: int | None = None
) -> tuple[list[tuple[int, Event]], list[dict[str, Any]]]:
    """Decode an ingest body and validate every event.

    Returns ``(valid, rejected)``: ``valid`` is ``[(index, Event)]``; ``rejected`` is
    ``[{"index", "event_id", "error", "field", "code"}]`` in index order; ``window_days`` as in
    :func:`parse_event`. A malformed body as a whole
    raises (415 wrong Content-Type, 400 ``invalid_json``/``expected_array``, 413
    ``too_many_events``); a bad NDJSON line only rejects that event. Body byte size is the
    caller's to check.
    """
    media = _media_type(content_type)
    items: list[Any]
    bad_lines: dict[int, EventError] = {}
    if media in JSON_TYPES:
        try:
            decoded = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise BadRequest(
                f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
                code="invalid_json",
                details={"line": exc.lineno, "column": exc.colno, "position": exc.pos},
            ) from None
        if type(decoded) is not list:
            raise BadRequest(
                f"expected a JSON array of events, got {_show(decoded)}: send a JSON array of "
                "events, or NDJSON (Content-Type: application/x-ndjson)",
                code="expected_array",
            )
        items = decoded
        _check_count(len(items), max_events)
    else:
        lines = [(n, line) for n, line in enumerate(body.split(b"\n"), 1) if line.strip()]
        _check_count(len(lines), max_events)
        items = []
        for i, (lineno, line) in enumerate(lines):
            try:
                items.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                items.append(None)
                reason = f"invalid JSON on line {lineno} column {exc.colno}: {exc.msg}"
                bad_lines[i] = EventError("event", reason)
    now_ms = int(time.time() * 1000)
    first_ms = _MIN_TS_MS if window_days is None else oldest_ms(now_ms, window_days)
    # PostgreSQL cannot store NUL in text; only when one is in the body, look for it everywhere.
    nul_check = b"\\u0000" in body
    valid: list[tuple[int, Event]] = []
    rejected: list[dict[str, Any]] = []
    for i, obj in enumerate(items):
        try:
            if bad_lines and i in bad_lines:
                raise bad_lines[i]
            if type(obj) is not dict:
                raise EventError("event", f"expected a JSON object, got {_show(obj)}")
            if nul_check and (nul := nul_problem("event", obj)) is not None:
                raise EventError(*nul)
            valid.append((i, _build(obj, now_ms, first_ms)))  # obj is ours, fresh from orjson: no copy
        except EventError as exc:
            eid = obj.get("event_id") if type(obj) is dict else None
            eid = eid if type(eid) is str else None
            rejected.append({"index": i, "event_id": eid, "error": str(exc), "field": exc.field, "code": exc.code})
    return valid, rejected


def _check_count(count: int, max_events: int) -> None:
    if count > max_events:
        raise PayloadTooLarge(
            f"too many events: at most {max_events} per request, got {count}; split the batch",
            code="too_many_events",
            details={"limit": max_events, "count": count},
        )

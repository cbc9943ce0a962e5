"""Asterisk ``queue_log`` → wallboard events.

A queue_log line is ``epoch|callid|queuename|agent|event|data1|data2|…``. Asterisk has
written several layouts over the years (one joined ``data`` field, the long "realtime"
forms with extra fields); this module reads only the fields whose position never moved,
so short and long forms both work. Each line yields at most one event.

The translation is stateless and per line: the same line always gives the same event with
the same ``event_id`` (``ql-`` + sha1 of the normalised line), so re-feeding a file is
harmless — the server answers duplicates. The trade-off: two byte-identical lines in one
file count once, and anything needing memory across lines (an agent removed from one of
several queues, say) is left to the server.

The file follower and its command live in :mod:`server.tools.queue_log_follow`; the HTTP
endpoint in :mod:`server.api.queue_log`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from server.core.errors import WallboardError

__all__ = ["QueueLogError", "normalise_agent", "parse_line", "parse_lines", "too_few_fields"]

Event = dict[str, Any]


class QueueLogError(WallboardError, ValueError):
    """A queue_log line that cannot be translated; ``lineno`` says which one."""

    status = 422
    code = "queue_log_error"

    def __init__(self, lineno: int, reason: str) -> None:
        super().__init__(f"line {lineno}: {reason}", details={"lineno": lineno, "reason": reason})
        self.lineno = lineno
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.lineno, self.reason))


_EPOCH = re.compile(r"\d{1,11}(?:\.\d+)?")
_TECH_PREFIXES = ("local/", "sip/", "pjsip/", "iax2/", "agent/")
_MIN_FIELDS = 5  # epoch|callid|queuename|agent|event

# Verbs Asterisk (or common dialplans) write that carry nothing for a wallboard.
IGNORED_VERBS = frozenset(
    {
        "QUEUESTART", "CONFIGRELOAD", "INFO", "SYSCOMPAT", "DID",
        "RINGCANCELED", "AGENTDUMP", "PENALTY",
    }
)
_ABANDON_REASONS = {
    "ABANDON": "abandon",
    "EXITWITHTIMEOUT": "timeout",
    "EXITEMPTY": "empty",
    "EXITWITHKEY": "key",
}
_TRANSFERS = frozenset({"TRANSFER", "BLINDTRANSFER", "ATTENDEDTRANSFER"})


def normalise_agent(raw: str) -> str:
    """The wallboard ``agent_id`` for a queue_log agent field.

    ``Local/1001@from-queue/n``, ``SIP/1001``, ``PJSIP/1001`` and ``Agent/1001`` all become
    ``1001``. A value without a channel-technology prefix (a member name such as
    ``Alice`` or ``alice@example.com``) is kept as it is, so an ``@`` in a name survives.
    """
    value = raw.strip()
    lowered = value.lower()
    for prefix in _TECH_PREFIXES:
        if lowered.startswith(prefix):
            value = value[len(prefix):]
            value = value.split("@", 1)[0]
            if value.endswith("/n"):
                value = value[:-2]
            break
    return value


def parse_line(line: str, lineno: int) -> list[Event]:
    """Translate one queue_log line into zero or one wallboard event (as API.md JSON).

    Blank lines and verbs in :data:`IGNORED_VERBS` give ``[]``. Raises
    :class:`QueueLogError` for too few fields, a non-numeric epoch, an unknown verb, or a
    field the event needs that is missing or malformed.
    """
    text = line.rstrip("\r\n")
    if not text.strip():
        return []
    fields = [field.strip() for field in text.split("|")]
    while len(fields) > _MIN_FIELDS and fields[-1] == "":
        fields.pop()
    if len(fields) < _MIN_FIELDS:
        raise QueueLogError(lineno, too_few_fields(len(fields)))
    epoch, callid, queue, agent, verb = fields[:_MIN_FIELDS]
    if not _EPOCH.fullmatch(epoch):
        raise QueueLogError(lineno, f"expected a Unix epoch in seconds as first field, got {epoch!r}")
    verb = verb.upper()
    if verb in IGNORED_VERBS:
        return []
    handler = _HANDLERS.get(verb)
    if handler is None:
        raise QueueLogError(lineno, f"unknown event {verb!r}; expected an Asterisk queue_log verb")
    rec = _Line(lineno, verb, callid, queue, agent, fields[_MIN_FIELDS:])
    body = handler(rec)
    digest = hashlib.sha1("|".join(fields).encode("utf-8")).hexdigest()
    return [{"event_id": f"ql-{digest}", "ts": _iso_ms(epoch), **body}]


def too_few_fields(count: int) -> str:
    """The reason a line of ``count`` fields (fewer than 5) is refused."""
    return f"expected at least {_MIN_FIELDS} '|'-separated fields (epoch|callid|queuename|agent|event), got {count}"


def parse_lines(
    lines: Iterable[str], start_lineno: int = 1
) -> tuple[list[Event], list[QueueLogError]]:
    """Translate many lines, collecting bad ones instead of stopping at the first.

    Line numbers count from ``start_lineno``; every line (blank or ignored ones too) counts.
    """
    events: list[Event] = []
    errors: list[QueueLogError] = []
    for lineno, line in enumerate(lines, start_lineno):
        try:
            events.extend(parse_line(line, lineno))
        except QueueLogError as exc:
            errors.append(exc)
    return events, errors


def _iso_ms(epoch: str) -> str:
    ms = int((Decimal(epoch) * 1000).to_integral_value(rounding=ROUND_FLOOR))
    seconds, millis = divmod(ms, 1000)
    moment = datetime.fromtimestamp(seconds, tz=UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{millis:03d}Z"


class _Line:
    """The fields of one line a handler may need, with checked accessors."""

    __slots__ = ("lineno", "verb", "callid", "queue", "agent", "data")

    def __init__(
        self, lineno: int, verb: str, callid: str, queue: str, agent: str, data: list[str]
    ) -> None:
        self.lineno, self.verb, self.callid = lineno, verb, callid
        self.queue, self.agent, self.data = queue, agent, data

    def fail(self, reason: str) -> QueueLogError:
        return QueueLogError(self.lineno, f"{self.verb}: {reason}")

    def call(self) -> Event:
        if not self.callid or self.callid.upper() == "NONE":
            raise self.fail("expected a call id in field 2, got none")
        if not self.queue or self.queue.upper() == "NONE":
            raise self.fail("expected a queue name in field 3, got none")
        return {"call_id": self.callid, "queue_id": self.queue}

    def agent_id(self) -> str:
        agent = normalise_agent(self.agent)
        if not agent or agent.upper() == "NONE":
            raise self.fail(f"expected an agent in field 4, got {self.agent!r}")
        return agent

    def seconds(self, index: int, name: str, *, required: bool = True) -> float:
        """Data field ``index`` (0-based) as non-negative seconds; 0.0 when optional and absent."""
        raw = self.data[index] if index < len(self.data) else ""
        if raw == "" and not required:
            return 0.0
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if not value >= 0 or value == float("inf"):
            raise self.fail(f"expected {name} in seconds as data field {index + 1}, got {raw!r}")
        return value


def _queued(rec: _Line) -> Event:
    return {"type": "call.queued", **rec.call()}


def _answered(rec: _Line) -> Event:
    return {"type": "call.answered", **rec.call(), "agent_id": rec.agent_id()}


def _completed(rec: _Line) -> Event:
    transferred = rec.verb in _TRANSFERS
    # COMPLETE*: holdtime|calltime|…; every transfer form: x|y|holdtime|calltime|…
    # (Asterisk 1.2 wrote only extension|context for TRANSFER, hence optional there).
    talk = rec.seconds(3, "calltime", required=False) if transferred else rec.seconds(1, "calltime")
    return {
        "type": "call.completed",
        **rec.call(),
        "agent_id": rec.agent_id(),
        "talk_s": talk,
        "hold_s": 0.0,
        "wrap_s": 0.0,
        "transferred": transferred,
    }


def _offered(rec: _Line) -> Event:
    return {"type": "call.offered", **rec.call(), "agent_id": rec.agent_id()}


def _missed(rec: _Line) -> Event:
    """RINGNOANSWER|ringtime: the member let it ring out (ring time in milliseconds, as app_queue logs it)."""
    event: Event = {"type": "call.missed", **rec.call(), "agent_id": rec.agent_id()}
    if rec.data and rec.data[0] != "":
        ring_s = rec.seconds(0, "ringtime (ms)") / 1000
        if ring_s >= 86400:
            raise rec.fail(f"expected ringtime in milliseconds below one day, got {rec.data[0]!r}")
        event["ring_s"] = ring_s
    return event


def _held(rec: _Line) -> Event:
    """HOLD / UNHOLD (and QueueMetrics' CALLERONHOLD / CALLEROFFHOLD), which dialplans log for a call in queue."""
    if not rec.callid or rec.callid.upper() == "NONE":
        raise rec.fail("expected a call id in field 2, got none")
    kind = "call.hold" if rec.verb in ("HOLD", "CALLERONHOLD") else "call.unhold"
    event: Event = {"type": kind, "call_id": rec.callid, "agent_id": rec.agent_id()}
    if rec.queue and rec.queue.upper() != "NONE":
        event["queue_id"] = rec.queue
    return event


def _abandoned(rec: _Line) -> Event:
    return {"type": "call.abandoned", **rec.call(), "reason": _ABANDON_REASONS[rec.verb]}


def _logged_in(rec: _Line) -> Event:
    event: Event = {"type": "agent.state", "agent_id": rec.agent_id(), "state": "available"}
    if rec.queue and rec.queue.upper() != "NONE":
        event["queues"] = [rec.queue]
    return event


def _logged_out(rec: _Line) -> Event:
    return {"type": "agent.state", "agent_id": rec.agent_id(), "state": "logged_out"}


def _paused(rec: _Line) -> Event:
    reason = rec.data[0] if rec.data and rec.data[0] else "paused"
    return {"type": "agent.state", "agent_id": rec.agent_id(), "state": "break", "reason": reason}


def _unpaused(rec: _Line) -> Event:
    return {"type": "agent.state", "agent_id": rec.agent_id(), "state": "available"}


_HANDLERS: dict[str, Callable[[_Line], Event]] = {
    "ENTERQUEUE": _queued,
    "CONNECT": _answered,
    "AGENTCALLED": _offered,
    "RINGNOANSWER": _missed,
    **dict.fromkeys(("HOLD", "UNHOLD", "CALLERONHOLD", "CALLEROFFHOLD"), _held),
    "COMPLETEAGENT": _completed,
    "COMPLETECALLER": _completed,
    **dict.fromkeys(_TRANSFERS, _completed),
    **dict.fromkeys(_ABANDON_REASONS, _abandoned),
    **dict.fromkeys(("AGENTLOGIN", "AGENTCALLBACKLOGIN", "ADDMEMBER"), _logged_in),
    **dict.fromkeys(("AGENTLOGOFF", "AGENTCALLBACKLOGOFF", "REMOVEMEMBER"), _logged_out),
    **dict.fromkeys(("PAUSE", "PAUSEALL"), _paused),
    **dict.fromkeys(("UNPAUSE", "UNPAUSEALL"), _unpaused),
}

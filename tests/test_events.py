"""Ingest body parsing and per-event validation (pure, no server needed)."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from server.core.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from server.ingest.events import Event, EventError, parse_body, parse_event

ISO = "2024-11-25T10:00:00.000Z"
MS = 1732528800000
JSON = "application/json"
NDJSON = "application/x-ndjson"


def ev(type_: str = "call.queued", **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"event_id": "e1", "type": type_, "ts": ISO, "call_id": "c1", "queue_id": "sales"}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not ...}


def error(obj: object) -> str:
    with pytest.raises(EventError) as info:
        parse_event(obj)
    return str(info.value)


def completed(**fields: Any) -> dict[str, Any]:
    return ev("call.completed", **{"agent_id": "a1", "talk_s": 120, "hold_s": 0, "wrap_s": 15.5, **fields})


def test_valid_events_of_every_type() -> None:
    """One valid event of each type parses, and its ids land on the Event."""
    events = [
        ev("agent.state", agent_id="a1", state="break", reason=None, queues=["sales"], call_id=..., queue_id=...),
        ev("call.queued"),
        ev("call.answered", agent_id="a1"),
        ev("call.abandoned", reason="hangup"),
        completed(resolved=True, transferred=False, disposition="sale"),
        ev("quality.scored", agent_id="a1", score=4.5, criteria={"greeting": 5}, queue_id=...),
        ev("csat.response", csat=5, queue_id=..., comment="great"),
    ]
    for obj in events:
        event = parse_event(obj)
        assert isinstance(event, Event) and event.type == obj["type"] and event.ts_ms == MS
        ids = (event.agent_id, event.queue_id, event.call_id)
        assert ids == (obj.get("agent_id"), obj.get("queue_id"), obj.get("call_id"))


def test_missing_field_is_required() -> None:
    """A missing required field is named with "required", whatever the type."""
    assert error(ev("call.answered")) == "agent_id: required"
    assert error(ev(event_id=...)) == "event_id: required"
    assert error(ev(ts=...)) == "ts: required"
    assert error(completed(wrap_s=...)) == "wrap_s: required"
    assert error(ev("call.queued", queue_id=None)) == "queue_id: expected a string, got null"


def test_wrong_type_says_expected_and_got() -> None:
    """A value of the wrong type names the field, what was expected and what came."""
    assert error(completed(talk_s="12s")) == 'talk_s: expected a number ≥ 0 and < 86400, got "12s"'
    assert error(completed(hold_s=True)).startswith("hold_s: expected a number")
    assert error(completed(wrap_s=86400)).startswith("wrap_s: expected a number")
    assert error(completed(resolved="yes")) == 'resolved: expected true or false, got "yes"'
    assert error(ev(call_id=5)) == "call_id: expected a string, got 5"
    assert error(ev("quality.scored", agent_id="a1", score=6)) == "score: expected a number from 0 to 5, got 6"
    assert error(ev("quality.scored", agent_id="a1", score=3, criteria={"tone": 9})).startswith("criteria.tone:")
    assert error(ev("agent.state", agent_id="a1", state="available", queues=["q", ""])).startswith("queues[1]: empty")
    assert error(["not", "an", "object"]) == "event: expected a JSON object, got a list"


def test_unknown_type_lists_the_allowed_types() -> None:
    """An unknown event type is rejected on `type`, naming every allowed type."""
    message = error(ev("call.ringing"))
    assert message.startswith("type: expected one of agent.state, call.queued,") and 'got "call.ringing"' in message


def test_unknown_state_lists_the_allowed_states() -> None:
    """An unknown agent state is rejected on `state`, naming every allowed state."""
    message = error(ev("agent.state", agent_id="a1", state="lunch"))
    assert message == 'state: expected one of logged_out, available, on_call, wrap_up, break, other, got "lunch"'


@pytest.mark.parametrize(
    ("ts", "reason"),
    [
        ("2024-11-25T10:00:00", "expected ISO-8601 with a time zone, e.g. 2026-11-25T10:00:00Z"),
        ("yesterday", 'expected ISO-8601 or epoch milliseconds, got "yesterday"'),
        (True, "expected ISO-8601 or epoch milliseconds as an integer, got true"),
        (1.5e12 + 0.5, "expected ISO-8601 or epoch milliseconds as an integer, got 1500000000000.5"),
        (1732528800, "before 2000-01-01, got 1732528800 (epoch seconds? send milliseconds)"),
        ("1999-12-31T23:59:59Z", 'before 2000-01-01, got "1999-12-31T23:59:59Z"'),
        ("six minutes ahead", "outside the ingest window: more than 5 minutes in the future"),
    ],
)
def test_bad_ts(ts: object, reason: str) -> None:
    """A naive, unparsable, boolean, fractional, too old or over 5 minutes ahead ts is rejected on `ts`."""
    if ts == "six minutes ahead":  # from the clock when the test runs, not when it was collected
        ts = int(time.time() * 1000) + 6 * 60 * 1000
    assert error(ev(ts=ts)).startswith(f"ts: {reason}")


def test_ts_normalisation() -> None:
    """Epoch ms, an int-valued float and an offset time give the same ts_ms and ISO Z string."""
    forms = [MS + 123, float(MS + 123), "2024-11-25T11:30:00.123+01:30", "2024-11-25T10:00:00.123456Z"]
    for ts in forms:
        event = parse_event(ev(ts=ts))
        assert (event.ts_ms, event.body["ts"]) == (MS + 123, "2024-11-25T10:00:00.123Z")


def test_over_long_and_control_char_ids() -> None:
    """Ids and event_id are 1..128 characters without control characters."""
    assert error(ev(event_id="x" * 129)) == "event_id: longer than 128 characters"
    assert error(ev(agent_id="x" * 129)) == "agent_id: longer than 128 characters"
    assert error(ev(queue_id="")) == "queue_id: empty: expected 1 to 128 characters"
    assert error(ev(call_id="c\n1")) == "call_id: contains control characters"
    assert parse_event(ev(event_id="x" * 128, call_id="appel-é-😀")).event_id == "x" * 128


def test_client_id_dropped_and_extras_kept() -> None:
    """client_id is never trusted nor an error: it is dropped; other extra fields are kept."""
    event = parse_event(ev(client_id="other-tenant", extra={"k": 1}, ts=MS))
    assert "client_id" not in event.body and event.body["extra"] == {"k": 1} and event.body["ts"] == ISO


def test_csat_or_nps_rule() -> None:
    """csat.response needs csat (1-5) and/or nps (0-10), integers."""
    base: dict[str, Any] = {"type_": "csat.response", "queue_id": ...}
    assert error(ev(**base)) == "csat: csat or nps is required (csat 1-5, nps 0-10)"
    assert error(ev(**base, csat=None, nps=None)).startswith("csat: csat or nps is required")
    assert parse_event(ev(**base, nps=0)).body["nps"] == 0
    assert parse_event(ev(**base, csat=4.0)).body["csat"] == 4
    assert error(ev(**base, csat=0)) == "csat: expected an integer from 1 to 5, got 0"
    assert error(ev(**base, nps=9.5)) == "nps: expected an integer from 0 to 10, got 9.5"
    assert error(ev(**base, csat=True)) == "csat: expected an integer from 1 to 5, got true"


def test_invalid_json_body() -> None:
    """A JSON body that does not decode is a 400 invalid_json with the position."""
    with pytest.raises(BadRequest) as info:
        parse_body(b'[{"event_id": "e1",\n oops}]', JSON, max_events=10)
    assert info.value.code == "invalid_json" and info.value.status == 400
    assert "line 2" in info.value.message and info.value.details["line"] == 2


def test_json_body_not_an_array() -> None:
    """A single object instead of an array is a 400 expected_array that names both accepted forms."""
    with pytest.raises(BadRequest) as info:
        parse_body(orjson.dumps(ev()), "application/json; charset=utf-8", max_events=10)
    assert info.value.code == "expected_array"
    assert "send a JSON array of events, or NDJSON" in info.value.message


@pytest.mark.parametrize("content_type", [None, "", "text/plain", "text/json", "application/json; charset=latin1"])
def test_wrong_content_type_is_415(content_type: str | None) -> None:
    """Anything but JSON or NDJSON in UTF-8 is a 415 naming the accepted types or charset."""
    with pytest.raises(UnsupportedMediaType) as info:
        parse_body(b"[]", content_type, max_events=10)
    assert info.value.status == 415
    assert "application/x-ndjson" in info.value.message or "UTF-8" in info.value.message


def test_ndjson_bad_line_keeps_the_rest() -> None:
    """In NDJSON a bad line rejects only its event; blank lines are skipped; indexes count events."""
    lines = [orjson.dumps(ev(event_id="e0")), b"", b"{not json", b"  ", orjson.dumps(ev(event_id="e2", call_id=7)),
             orjson.dumps(ev(event_id="e3"))]  # fmt: skip
    for content_type in (NDJSON, "application/jsonl"):
        valid, rejected = parse_body(b"\r\n".join(lines) + b"\n", content_type, max_events=10)
        assert [(i, e.event_id) for i, e in valid] == [(0, "e0"), (3, "e3")]
        assert [(r["index"], r["event_id"], r["field"]) for r in rejected] == [(1, None, "event"), (2, "e2", "call_id")]
        assert rejected[0]["error"].startswith("event: invalid JSON on line 3")
        assert rejected[1]["error"] == "call_id: expected a string, got 7"


def test_json_batch_mixed_results_and_duplicates() -> None:
    """A JSON batch returns valid and rejected events by index; a repeated event_id stays valid."""
    body = orjson.dumps([ev(), ev(type="nope", event_id="e2"), ev(), 42])
    valid, rejected = parse_body(body, JSON, max_events=10)
    assert [i for i, _ in valid] == [0, 2]
    assert [(r["index"], r["event_id"], r["field"]) for r in rejected] == [(1, "e2", "type"), (3, None, "event")]


def test_too_many_events_is_413() -> None:
    """10,001 events against a limit of 10,000 is a 413 too_many_events saying limit and count."""
    for content_type, body in (
        (JSON, orjson.dumps([ev()] * 10_001)),
        (NDJSON, b"\n".join([orjson.dumps(ev())] * 10_001)),
    ):
        with pytest.raises(PayloadTooLarge) as info:
            parse_body(body, content_type, max_events=10_000)
        assert info.value.code == "too_many_events" and info.value.status == 413
        assert "10000" in info.value.message and "10001" in info.value.message


def test_ten_thousand_valid_events() -> None:
    """A full batch of 10,000 valid events of mixed types all parse, in order."""
    batch = []
    for i in range(10_000):
        batch.append(completed(event_id=f"e{i}", ts=MS + i, client_id="x") if i % 2 else ev(event_id=f"e{i}"))
    valid, rejected = parse_body(orjson.dumps(batch), JSON, max_events=10_000)
    assert rejected == [] and len(valid) == 10_000
    assert [i for i, _ in valid] == list(range(10_000)) and valid[-1][1].body["ts"] == "2024-11-25T10:00:09.999Z"

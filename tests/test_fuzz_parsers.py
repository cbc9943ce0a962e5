"""Property-based tests of the parsers that read what clients send: events, queue_log, tenant settings.

Whatever comes, each either answers or raises one of the project's 4xx errors, and what it
accepts can be written back as JSON (the recorder stores it; a failure there would be a 500).
Examples are bounded so the module runs in seconds.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from server.api.queue_log import parse_queue_log_body
from server.core.errors import WallboardError
from server.core.tenant_settings import SETTING_KEYS, TenantSettings, validate
from server.ingest.events import EVENT_TYPES, Event, parse_body, parse_event
from server.ingest.queue_log import IGNORED_VERBS, QueueLogError, parse_line

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NOW = int(time.time() * 1000)

scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False,
                                                                                    allow_infinity=False) | st.text(max_size=40)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                                  max_size=4),
                           max_leaves=8)
FIELDS = ("call_id", "queue_id", "agent_id", "state", "talk_s", "hold_s", "wrap_s", "score",
          "criteria", "csat", "nps", "queues", "reason", "resolved", "client_id", "extra")
timestamps = st.one_of(st.integers(NOW - 50 * 86_400_000, NOW + 86_400_000), st.text(max_size=30),
                       st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()), json_values)
events = st.fixed_dictionaries(
    {"event_id": st.text(max_size=130) | json_values, "type": st.sampled_from(EVENT_TYPES) | json_values,
     "ts": timestamps},
    optional={name: json_values | st.text(max_size=10) for name in FIELDS},
)


def written_back(event: Event) -> None:
    """What the recorder does with an accepted event: encode its body for PostgreSQL."""
    orjson.dumps(event.body)
    assert "\x00" not in event.event_id


def is_client_error(exc: WallboardError) -> bool:
    return 400 <= exc.status < 500


@FAST
@given(events | json_values)
def test_any_decoded_event_is_parsed_or_rejected_by_name(obj: Any) -> None:
    """Any JSON value as an event: an Event whose body writes back as JSON, or a 4xx EventError naming a field."""
    try:
        event = parse_event(obj, now_ms=NOW, window_days=35)
    except WallboardError as exc:
        assert is_client_error(exc) and exc.message.split(":")[0]
        return
    written_back(event)
    assert NOW - 35 * 86_400_000 <= event.ts_ms <= NOW + 300_000


@FAST
@given(st.binary(max_size=300) | st.lists(events, max_size=3).map(orjson.dumps),
       st.sampled_from(["application/json", "application/x-ndjson", "text/plain", "", "application/json; charset=latin-1"]))
@example(b'[{"event_id":"e","type":"call.queued","ts":1,"x":' + b"[" * 300 + b"]" * 300 + b"}]", "application/json")
@example(b"[" * 2000 + b"]" * 2000, "application/json")
@example(b'{"a":"\\u0000"}\n' + b"[" * 1000 + b"]" * 1000, "application/x-ndjson")
def test_any_ingest_body_answers_with_4xx_at_worst(body: bytes, content_type: str) -> None:
    """Any bytes with any Content-Type: valid and rejected events (in index order), or a 4xx error for the body."""
    try:
        valid, rejected = parse_body(body, content_type or None, max_events=100, window_days=35)
    except WallboardError as exc:
        assert is_client_error(exc)
        return
    for _, event in valid:
        written_back(event)
    indexes = sorted([i for i, _ in valid] + [r["index"] for r in rejected])
    assert indexes == list(range(len(indexes)))
    orjson.dumps(rejected)


def test_an_extra_field_nested_300_deep_rejects_its_event_only() -> None:
    """One event with an extra field nested 300 levels deep is rejected on that field; its neighbour is valid."""
    deep = b'{"a":' * 300 + b"1" + b"}" * 300  # orjson writes at most 255 levels: the body is built by hand
    good = {"event_id": "ok", "type": "call.queued", "ts": NOW, "call_id": "c", "queue_id": "q"}
    bad = orjson.dumps({**good, "event_id": "deep"})[:-1] + b',"meta":' + deep + b"}"
    valid, rejected = parse_body(b"[" + bad + b"," + orjson.dumps(good) + b"]", "application/json",
                                 max_events=10, window_days=35)
    assert [event.event_id for _, event in valid] == ["ok"]
    assert rejected[0]["field"] == "meta" and rejected[0]["code"] == "extra_field_too_large"
    small = parse_event({**good, "meta": {"source": "pbx", "tags": ["a", "b"]}}, now_ms=NOW, window_days=35)
    assert small.body["meta"] == {"source": "pbx", "tags": ["a", "b"]}


queue_log_lines = st.lists(
    st.one_of(st.text(max_size=60),
              st.tuples(st.integers(0, 10**11).map(str) | st.text(max_size=12), st.text(max_size=8), st.text(max_size=8),
                        st.sampled_from(["SIP/1001", "Local/2@x/n", "NONE", ""]) | st.text(max_size=8),
                        st.sampled_from(["ENTERQUEUE", "CONNECT", "COMPLETEAGENT", "TRANSFER", "ABANDON", "PAUSE",
                                         "ADDMEMBER", "BOGUS", *IGNORED_VERBS]),
                        st.lists(st.text(max_size=6) | st.floats().map(str), max_size=5))
              .map(lambda t: "|".join([*t[:5], *t[5]]))),
    max_size=30)


@FAST
@given(st.text(max_size=200))
def test_any_queue_log_line_translates_or_names_its_problem(line: str) -> None:
    """Any text as one queue_log line: zero or one event, or a 4xx QueueLogError with its line number."""
    try:
        out = parse_line(line, 7)
    except QueueLogError as exc:
        assert exc.lineno == 7 and is_client_error(exc)
        return
    assert len(out) <= 1
    orjson.dumps(out)


@FAST
@given(queue_log_lines.map(lambda lines: "\n".join(lines).encode()) | st.binary(max_size=400))
def test_any_queue_log_body_answers_with_4xx_at_worst(body: bytes) -> None:
    """Any queue_log body: events, at most 100 rejections listed with their total, or a 4xx error."""
    try:
        parsed = parse_queue_log_body(body, max_events=20, max_lines=25, window_days=35, now_ms=NOW)
    except WallboardError as exc:
        assert is_client_error(exc)
        return
    for _, event in parsed.valid:
        written_back(event)
    assert len(parsed.rejected) <= 100 and parsed.rejected_total >= len(parsed.rejected)
    assert [r["line"] for r in parsed.rejected] == sorted(r["line"] for r in parsed.rejected)


def test_queue_log_rejections_are_capped_at_100_with_a_total() -> None:
    """20,000 lines of garbage: 100 rejections listed, 20,000 counted; past the line cap, 413 too_many_lines."""
    parsed = parse_queue_log_body(b"x\n" * 20_000, max_events=10, max_lines=20_000)
    assert len(parsed.rejected) == 100 and parsed.rejected_total == 20_000 and parsed.lines == 20_000
    with pytest.raises(WallboardError) as info:
        parse_queue_log_body(b"x\n" * 20_001, max_events=10, max_lines=20_000)
    assert info.value.status == 413 and info.value.code == "too_many_lines"


settings_patches = st.dictionaries(st.sampled_from(SETTING_KEYS) | st.text(max_size=10), json_values, max_size=4)
plausible = st.fixed_dictionaries({}, optional={
    "timezone": st.sampled_from(["UTC", "Europe/Berlin", "Mars/Base", ""]) | json_values,
    "day_starts_at": st.sampled_from(["00:00", "06:30", "24:00"]) | json_values,
    "ingest_window_days": st.integers(-5, 500) | json_values,
    "queues": st.dictionaries(st.text(max_size=5), st.dictionaries(st.sampled_from(["sl_threshold_s", "sl_formula", "x"]),
                                                                   json_values, max_size=2), max_size=3),
    "alerts": st.dictionaries(st.sampled_from(["waiting", "service_level", "nope"]),
                              st.dictionaries(st.sampled_from(["amber", "red"]), json_values, max_size=2), max_size=2),
    "costs": st.dictionaries(st.sampled_from(["currency", "queues", "agent_cost_per_hour"]), json_values, max_size=2),
})


@FAST
@given(settings_patches | plausible | json_values)
@example({"queues": {"q": {"sl_threshold_s": {"a": [[[[[[1]]]]]]}}}})
@example({"timezone": orjson.loads(b"[" * 900 + b"]" * 900)})
def test_any_settings_patch_validates_or_names_the_field(patch: Any) -> None:
    """Any JSON as a settings patch: settings that store and read back the same, or a 4xx naming the field."""
    try:
        result = validate(patch, TenantSettings())
    except WallboardError as exc:
        assert is_client_error(exc)
        return
    stored = orjson.loads(orjson.dumps(result.to_json()))
    assert TenantSettings.from_json(stored) == result

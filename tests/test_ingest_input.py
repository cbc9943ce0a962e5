"""Bad input on ``POST /api/events``: the documented status, the error named, and the good events kept."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest

from .conftest import RunningServer

NDJSON = {"Content-Type": "application/x-ndjson"}


def new_tenant(label: str) -> str:
    return f"{label}-{secrets.token_hex(4)}"


def now_ms() -> int:
    return int(time.time() * 1000)


def queued(event_id: str, call_id: str | None = None, queue_id: str = "sales", **fields: Any) -> dict[str, Any]:
    """A valid call.queued of now (today in the default UTC day)."""
    return {"event_id": event_id, "type": "call.queued", "ts": now_ms() - 10, "call_id": call_id or f"c-{event_id}",
            "queue_id": queue_id, **fields}


async def post(server: RunningServer, tenant: str, body: Any = None, *, role: str = "ingest", **kw: Any
               ) -> httpx.Response:
    async with server.client(server.token(tenant, role)) as client:
        if body is not None:
            kw["json"] = body
        return await client.post("/api/events", **kw)


async def offered(server: RunningServer, tenant: str) -> int:
    """The tenant's offered calls today, per /api/metrics/live (0 when it has none)."""
    async with server.client(server.token(tenant, "supervisor")) as client:
        response = await client.get("/api/metrics/live")
    assert response.status_code == 200, response.text
    count = response.json()["data"]["today"].get("offered", 0)
    assert isinstance(count, int)
    return count


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The API.md error envelope with this status and code; returns ``error``."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False, body
    error = body["error"]
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"].strip(), error
    assert "Traceback" not in response.text
    return error  # type: ignore[no-any-return]


def assert_batch(response: httpx.Response, status: int, *, accepted: int, duplicates: int = 0) -> list[dict[str, Any]]:
    """A batch reply with these counts; returns ``data.rejected``."""
    assert response.status_code == status, response.text
    body = response.json()
    data = body["data"]
    assert (data["accepted"], data["duplicates"]) == (accepted, duplicates), data
    return data["rejected"]  # type: ignore[no-any-return]


def long_id(n: int = 129) -> str:
    return "x" * n


def iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# (bad event, the field named, a fragment of the error after "<field>: ")
BAD_EVENTS: dict[str, tuple[dict[str, Any], str, str]] = {
    "missing_queue_id": ({"event_id": "bad", "type": "call.queued", "ts": "@now", "call_id": "c9"},
                         "queue_id", "required"),
    "talk_s_as_string": ({"event_id": "bad", "type": "call.completed", "ts": "@now", "call_id": "c9",
                          "queue_id": "sales", "agent_id": "ann", "talk_s": "120", "hold_s": 0, "wrap_s": 5},
                         "talk_s", "expected a number"),
    "unknown_type": ({"event_id": "bad", "type": "call.teleported", "ts": "@now", "call_id": "c9",
                      "queue_id": "sales"}, "type", "expected one of"),
    "unknown_state": ({"event_id": "bad", "type": "agent.state", "ts": "@now", "agent_id": "ann",
                       "state": "sleeping"}, "state", "expected one of"),
    "ts_without_time_zone": ({"event_id": "bad", "type": "call.queued", "ts": "2026-01-01T10:00:00",
                              "call_id": "c9", "queue_id": "sales"}, "ts", "time zone"),
    "ts_garbage": ({"event_id": "bad", "type": "call.queued", "ts": "yesterday-ish", "call_id": "c9",
                    "queue_id": "sales"}, "ts", "expected ISO-8601"),
    "ts_far_future": ({"event_id": "bad", "type": "call.queued", "ts": "@future", "call_id": "c9",
                       "queue_id": "sales"}, "ts", "future"),
    "ts_far_future_epoch_ms": ({"event_id": "bad", "type": "call.queued", "ts": "@future_ms", "call_id": "c9",
                                "queue_id": "sales"}, "ts", "future"),
    "event_id_129_chars": ({"event_id": long_id(), "type": "call.queued", "ts": "@now", "call_id": "c9",
                            "queue_id": "sales"}, "event_id", "longer than 128"),
    "agent_id_129_chars": ({"event_id": "bad", "type": "agent.state", "ts": "@now", "agent_id": long_id(),
                            "state": "available"}, "agent_id", "longer than 128"),
}


def materialise(event: dict[str, Any]) -> dict[str, Any]:
    """Replace the ``@now``/``@future`` placeholders of a ts with real times."""
    ts = event["ts"]
    future = datetime.now(UTC) + timedelta(days=3)
    values = {"@now": now_ms() - 10, "@future": iso(future), "@future_ms": int(future.timestamp() * 1000)}
    return {**event, "ts": values.get(ts, ts)} if isinstance(ts, str) else dict(event)


@pytest.mark.parametrize("case", list(BAD_EVENTS))
async def test_bad_event_is_rejected_by_name_and_the_rest_kept(server: RunningServer, case: str) -> None:
    """One bad event between two good ones: 207, its index and field named, the two good ones counted live."""
    bad, field, fragment = BAD_EVENTS[case]
    bad = materialise(bad)
    tenant = new_tenant("bad")
    response = await post(server, tenant, [queued("g1"), bad, queued("g2")])
    rejected = assert_batch(response, 207, accepted=2)
    assert response.json()["success"] is True
    assert len(rejected) == 1, rejected
    row = rejected[0]
    assert row["index"] == 1
    assert row["field"] == field
    assert row["error"].startswith(f"{field}: ") and fragment in row["error"], row["error"]
    assert row["event_id"] == bad["event_id"]
    assert await offered(server, tenant) == 2


async def test_client_id_in_body_is_ignored(server: RunningServer) -> None:
    """A body naming another tenant's client_id lands in the token's tenant; the named tenant is untouched."""
    tenant_a, tenant_b = new_tenant("a"), new_tenant("b")
    assert (await post(server, tenant_b, [queued("b1")])).status_code == 200
    async with server.client(server.token(tenant_b, "supervisor")) as client:
        before = await client.get("/api/metrics/live")
    response = await post(server, tenant_a, [queued("x1", client_id=tenant_b), queued("x2", client_id=tenant_b)])
    assert_batch(response, 200, accepted=2)
    async with server.client(server.token(tenant_b, "supervisor")) as client:
        after = await client.get("/api/metrics/live")
    # The ETag ignores only the fields that move with the clock: equal tags mean B's state did not change.
    assert after.headers["ETag"] == before.headers["ETag"]
    assert after.json()["data"]["today"]["offered"] == 1
    assert await offered(server, tenant_a) == 2
    # Not stored under B either: the same ids are new there.
    assert_batch(await post(server, tenant_b, [queued("x1"), queued("x2")]), 200, accepted=2)


@pytest.mark.parametrize("body, code", [
    (b'[{"event_id": "e1", "type": ', "invalid_json"),
    (b"not json at all", "invalid_json"),
    (b'{"event_id": "e1", "type": "call.queued"}', "expected_array"),
], ids=["truncated", "garbage", "object_not_array"])
async def test_malformed_json_body_is_400(server: RunningServer, body: bytes, code: str) -> None:
    """A JSON body that does not decode to an array is 400 with its code, and nothing is stored."""
    tenant = new_tenant("json")
    response = await post(server, tenant, content=body, headers={"Content-Type": "application/json"})
    assert_error(response, 400, code)
    assert await offered(server, tenant) == 0


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "application/x-www-form-urlencoded",
                                          None, "application/json; charset=latin-1"])
async def test_wrong_content_type_is_415(server: RunningServer, content_type: str | None) -> None:
    """A body of valid events under a Content-Type other than JSON/NDJSON (or none) is 415, nothing stored."""
    tenant = new_tenant("ctype")
    headers = {"Content-Type": content_type} if content_type else {}
    response = await post(server, tenant, content=orjson.dumps([queued("e1")]), headers=headers)
    assert_error(response, 415, "unsupported_media_type")
    assert await offered(server, tenant) == 0


async def test_more_than_10000_events_is_413_and_nothing_stored(server: RunningServer) -> None:
    """10,001 events are refused whole with 413 too_many_events; none of them was stored."""
    tenant = new_tenant("many")
    events = [queued(f"e{i}") for i in range(10_001)]
    response = await post(server, tenant, events)
    error = assert_error(response, 413, "too_many_events")
    assert error["details"] == {"limit": 10_000, "count": 10_001}
    assert await offered(server, tenant) == 0
    assert_batch(await post(server, tenant, events[:3]), 200, accepted=3)


async def test_exactly_10000_events_are_taken(server: RunningServer) -> None:
    """The limit is inclusive: 10,000 events in one request are all accepted."""
    tenant = new_tenant("limit")
    response = await post(server, tenant, [queued(f"e{i}") for i in range(10_000)])
    assert_batch(response, 200, accepted=10_000)
    assert await offered(server, tenant) == 10_000


async def chunks(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


def six_mib_body() -> bytes:
    """A valid JSON array of events just over 6 MiB (few enough events to pass the count limit)."""
    padding = "p" * 1900
    events = [queued(f"e{i}", comment=padding) for i in range(3400)]
    body = orjson.dumps(events)
    assert 6 * 1024 * 1024 <= len(body) < 7 * 1024 * 1024, len(body)
    return body


@pytest.mark.parametrize("chunked", [False, True], ids=["content_length", "chunked"])
async def test_six_mib_body_is_413_and_nothing_stored(server: RunningServer, chunked: bool) -> None:
    """A 6 MiB body is refused with 413 body_too_large, declared by Content-Length or streamed chunked."""
    tenant = new_tenant("big")
    body = six_mib_body()
    content: Any = chunks(body) if chunked else body
    try:
        response = await post(server, tenant, content=content, headers={"Content-Type": "application/json"})
    except httpx.WriteError:  # pragma: no cover - the server may close before the client is done writing
        pytest.fail("the server reset the connection instead of answering 413")
    assert_error(response, 413, "body_too_large")
    assert await offered(server, tenant) == 0


async def test_all_events_invalid_is_422_with_each_named(server: RunningServer) -> None:
    """A batch of only bad events is 422; every event is listed by index with its field; nothing stored."""
    tenant = new_tenant("none")
    events = [{"event_id": "b0", "type": "call.queued", "ts": now_ms(), "call_id": "c0"},
              {"event_id": "b1", "type": "nope", "ts": now_ms(), "call_id": "c1", "queue_id": "sales"},
              {"event_id": "b2", "type": "call.queued", "ts": "soon", "call_id": "c2", "queue_id": "sales"},
              "not an object"]
    response = await post(server, tenant, events)
    rejected = assert_batch(response, 422, accepted=0)
    assert [(r["index"], r["event_id"], r["field"]) for r in rejected] == [
        (0, "b0", "queue_id"), (1, "b1", "type"), (2, "b2", "ts"), (3, None, "event")]
    assert await offered(server, tenant) == 0


async def test_all_events_invalid_carries_the_error_envelope(server: RunningServer) -> None:
    """The 422 of an all-rejected batch is an error: success false with error.code and error.message."""
    tenant = new_tenant("none")
    response = await post(server, tenant, [{"event_id": "b0", "type": "call.queued", "ts": now_ms()}])
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["success"] is False, body
    assert re.fullmatch(r"[a-z]+(_[a-z]+)*", body["error"]["code"]), body
    assert body["error"]["message"].strip(), body
    rejected = (body.get("data") or {}).get("rejected") or (body["error"].get("details") or {}).get("rejected")
    assert rejected == [{"index": 0, "event_id": "b0", "error": "call_id: required", "field": "call_id",
                         "code": "invalid_event"}], body


async def test_ndjson_bad_line_rejected_others_kept(server: RunningServer) -> None:
    """NDJSON with one undecodable line and one invalid event: 207, both indexes right, the rest counted."""
    tenant = new_tenant("ndjson")
    lines = [orjson.dumps(queued("n0")), orjson.dumps(queued("n1")), b'{"event_id": "n2", "type": ',
             orjson.dumps(queued("n3")), orjson.dumps({**queued("n4"), "queue_id": 7}), orjson.dumps(queued("n5"))]
    response = await post(server, tenant, content=b"\n".join(lines) + b"\n", headers=NDJSON)
    rejected = assert_batch(response, 207, accepted=4)
    assert [(r["index"], r["field"], r["event_id"]) for r in rejected] == [(2, "event", None), (4, "queue_id", "n4")]
    assert "line 3" in rejected[0]["error"]
    assert await offered(server, tenant) == 4


async def test_duplicates_in_one_batch_counted_once(server: RunningServer) -> None:
    """The same event_id twice in one batch: one accepted, one duplicate, live counted once."""
    tenant = new_tenant("dup1")
    event = queued("d1")
    response = await post(server, tenant, [event, queued("d2"), event])
    assert_batch(response, 200, accepted=2, duplicates=1)
    assert await offered(server, tenant) == 2


async def test_duplicates_across_batches_counted_once(server: RunningServer) -> None:
    """Resending event_ids in a later batch (even with other content) counts them as duplicates, not twice live."""
    tenant = new_tenant("dup2")
    first = [queued("d1"), queued("d2")]
    assert_batch(await post(server, tenant, first), 200, accepted=2)
    again = [queued("d2", call_id="other"), queued("d3")]
    assert_batch(await post(server, tenant, again), 200, accepted=1, duplicates=1)
    assert_batch(await post(server, tenant, first + again), 200, accepted=0, duplicates=4)
    assert await offered(server, tenant) == 3


async def test_empty_array_is_200_with_zeros(server: RunningServer) -> None:
    """An empty array is a success with nothing accepted, duplicated or rejected."""
    tenant = new_tenant("empty")
    response = await post(server, tenant, [])
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True, "data": {"accepted": 0, "duplicates": 0, "rejected": []}}


async def test_no_token_is_401(server: RunningServer) -> None:
    """Posting events without a token is 401 with a Bearer challenge, and nothing is stored."""
    tenant = new_tenant("anon")
    async with server.client() as client:
        response = await client.post("/api/events", json=[queued("e1", client_id=tenant)])
    assert_error(response, 401, "token_missing")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert await offered(server, tenant) == 0


@pytest.mark.parametrize("role", ["supervisor", "agent"])
async def test_reader_roles_may_not_post(server: RunningServer, role: str) -> None:
    """A supervisor or agent token posting events is 403, and nothing is stored."""
    tenant = new_tenant("ro")
    async with server.client(server.token(tenant, role, sub="ann")) as client:
        response = await client.post("/api/events", json=[queued("e1")])
    assert_error(response, 403, "role_forbidden")
    assert await offered(server, tenant) == 0


async def test_ingest_token_may_not_read_live(server: RunningServer) -> None:
    """An ingest token reading /api/metrics/live is 403: ingest may read nothing."""
    tenant = new_tenant("ingread")
    assert (await post(server, tenant, [queued("e1")])).status_code == 200
    async with server.client(server.token(tenant, "ingest")) as client:
        response = await client.get("/api/metrics/live")
    assert_error(response, 403, "role_forbidden")
    assert "data" not in response.json()


NUL_EVENTS: dict[str, tuple[dict[str, Any], str]] = {
    "csat_comment": ({"type": "csat.response", "call_id": "c9", "csat": 4, "comment": "great\u0000call"}, "comment"),
    "agent_reason": ({"type": "agent.state", "agent_id": "ann", "state": "break", "reason": "lu\u0000nch"}, "reason"),
    "agent_name": ({"type": "agent.state", "agent_id": "ann", "state": "available", "name": "A\u0000nn"}, "name"),
    "criteria_name": ({"type": "quality.scored", "call_id": "c9", "agent_id": "ann", "score": 4,
                       "criteria": {"gr\u0000eet": 5}}, "criteria"),
    "extra_field": ({"type": "call.queued", "call_id": "c9", "queue_id": "sales", "note": "x\u0000y"}, "note"),
}


@pytest.mark.parametrize("case", list(NUL_EVENTS))
async def test_nul_character_in_text_is_rejected_not_500(server: RunningServer, case: str) -> None:
    """A NUL character inside a text field rejects that event by name (or is cleaned); never a 500 for the batch."""
    fields, field = NUL_EVENTS[case]
    tenant = new_tenant("nul")
    bad = {"event_id": "bad", "ts": now_ms() - 10, **fields}
    response = await post(server, tenant, [queued("g1"), bad, queued("g2")])
    assert response.status_code in (200, 207), response.text
    if response.status_code == 207:
        [row] = response.json()["data"]["rejected"]
        assert (row["index"], row["field"]) == (1, field) or row["field"].startswith(field), row
    assert await offered(server, tenant) == 2


async def test_batch_spanning_years_is_not_500(server: RunningServer) -> None:
    """Valid late events years apart in one batch are taken (or rejected by ts), never a 500 for the batch."""
    tenant = new_tenant("span")
    old = [{"event_id": f"old{i}", "type": "call.queued", "ts": ts, "call_id": f"o{i}", "queue_id": "sales"}
           for i, ts in enumerate(["2003-03-03T10:00:00Z", "2006-06-06T10:00:00Z"])]
    response = await post(server, tenant, [*old, queued("g1")])
    assert response.status_code in (200, 207), response.text
    data = response.json()["data"]
    assert data["accepted"] + len(data["rejected"]) == 3
    assert all(row["field"] == "ts" for row in data["rejected"]), data
    assert await offered(server, tenant) == 1

"""Redis key names never collide: ids with ``:`` in them keep two calls of two queues apart."""

from __future__ import annotations

import time

import redis.asyncio as aioredis

from server.live.keys import Keys

from .conftest import RunningServer
from .test_live_exact import new_tenant


def test_a_call_leg_name_is_unambiguous() -> None:
    """Queue "a:b" with call "c" and queue "a" with call "b:c" get two names; multibyte ids are counted in bytes."""
    keys = Keys("wb")
    assert keys.call_leg("t", "a:b", "c") != keys.call_leg("t", "a", "b:c")
    assert keys.call_leg("t", "é:", "x") != keys.call_leg("t", "é", ":x")
    assert keys.call_leg("t", "é", "x").endswith(":call:2:é:x")


async def test_colliding_ids_count_as_two_calls(server: RunningServer) -> None:
    """Two calls whose queue:call ids concatenate alike are two offered calls, each in its own queue, with its own outcome."""
    tenant = new_tenant("keys")
    now = int(time.time() * 1000) - 60_000
    events = [
        {"event_id": "q1", "type": "call.queued", "ts": now, "call_id": "c", "queue_id": "a:b"},
        {"event_id": "q2", "type": "call.queued", "ts": now + 1000, "call_id": "b:c", "queue_id": "a"},
        {"event_id": "a1", "type": "call.answered", "ts": now + 4000, "call_id": "c", "queue_id": "a:b", "agent_id": "ann"},
        {"event_id": "x2", "type": "call.abandoned", "ts": now + 9000, "call_id": "b:c", "queue_id": "a"},
    ]
    async with server.client(server.token(tenant, "ingest")) as client:
        assert (await client.post("/api/events", json=events)).status_code == 200
    async with server.client(server.token(tenant, "supervisor")) as client:
        overview = (await client.get("/api/metrics/live")).json()["data"]
    today = {q["queue_id"]: q["today"] for q in overview["queues"]}
    assert (today["a:b"]["offered"], today["a:b"]["answered"], today["a:b"]["abandoned"]) == (1, 1, 0)
    assert (today["a"]["offered"], today["a"]["answered"], today["a"]["abandoned"]) == (1, 0, 1)
    keys = Keys(server.settings.key_prefix)
    client = aioredis.Redis.from_url(server.settings.redis_url)
    try:
        first = await client.hgetall(keys.call_leg(tenant, "a:b", "c"))
        second = await client.hgetall(keys.call_leg(tenant, "a", "b:c"))
    finally:
        await client.aclose()
    assert first and second and first != second

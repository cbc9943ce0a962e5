"""Pending callbacks per queue come from a counter apply.lua keeps: exact in any order, after a rebuild, never decoded by a read."""

from __future__ import annotations

import asyncio
import random
import secrets
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis

from server.app import close_services, open_services
from server.core.config import Settings
from server.live.keys import Keys
from server.live.state import CALLBACK_DAYS
from server.live.view import iso_ms

from .conftest import ROOT, TEST_SECRET, RunningServer
from .test_live_exact import post_all

Factory = Callable[[Settings], Awaitable[RunningServer]]


def callback_events(now: int) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """5,000 callbacks requested on `cb-big` and 300 on `cb-small`; 1,200 and 100 of them completed; the pending per queue."""
    events: list[dict[str, Any]] = []
    pending: dict[str, int] = {}
    for queue, requested, completed in (("cb-big", 5000, 1200), ("cb-small", 300, 100)):
        for i in range(requested):
            cb = f"{queue}-{i}"
            ts = now - 3_600_000 + i * 10
            events.append({"event_id": f"r-{cb}", "type": "callback.requested", "ts": ts, "callback_id": cb,
                           "queue_id": queue, "due_ts": iso_ms(now + 3_600_000 + i)})
            if i < completed:
                events.append({"event_id": f"x-{cb}", "type": "callback.completed", "ts": ts + 60_000,
                               "callback_id": cb, "queue_id": queue, "outcome": ("reached", "no_answer")[i % 2]})
        pending[queue] = requested - completed
    return events, pending


def shuffled(events: list[dict[str, Any]], rng: random.Random) -> list[list[dict[str, Any]]]:
    """All events in random order (completions often before their requests), 5% sent twice, in batches of 1 to 500."""
    stream = events + rng.sample(events, len(events) // 20)
    rng.shuffle(stream)
    batches = []
    while stream:
        size = rng.choice([1, 13, 100, 500])
        batches.append(stream[:size])
        stream = stream[size:]
    return batches


async def pending_now(server: RunningServer, tenant: str) -> tuple[dict[str, int], int, int]:
    """(callbacks_pending per queue, the overview's total, the callbacks the calls view lists)."""
    async with server.client(server.token(tenant, "supervisor")) as client:
        overview = await client.get("/api/metrics/live")
        calls = await client.get("/api/metrics/calls/waiting")
    assert overview.status_code == 200, overview.text
    assert calls.status_code == 200, calls.text
    data = overview.json()["data"]
    return ({q["queue_id"]: q["callbacks_pending"] for q in data["queues"]}, data["today"]["callbacks_pending"],
            len(calls.json()["data"]["callbacks"]))


async def test_pending_callbacks_exact_after_disorder_duplicates_and_rebuild(server_factory: Factory,
                                                                              settings: Settings) -> None:
    """5,300 callbacks, completions before requests and 5% sent twice: callbacks_pending per queue is exact, stays exact
    through `wallboard rebuild-live` and the reconciliation, and the overview never reads the callback records."""
    server = await server_factory(settings.replace(key_prefix=f"wbc{secrets.token_hex(3)}", live_reconcile_s=0))
    tenant = f"cbp-{secrets.token_hex(3)}"
    events, pending = callback_events(int(time.time() * 1000))
    async with server.client(server.token(tenant, "ingest")) as client:
        totals = await post_all(client, shuffled(events, random.Random(17)))
    assert totals["accepted"] == len(events)
    expected = (pending, sum(pending.values()), sum(pending.values()))
    assert await pending_now(server, tenant) == expected
    # Pending callbacks outlive days without callback activity (the day's keys expire after 3 days): as long as
    # a rebuild would bring them back from PostgreSQL.
    client = aioredis.Redis.from_url(server.settings.redis_url)
    try:
        keys = Keys(server.settings.key_prefix).of(tenant)
        for key in (keys.callbacks, keys.callbacks_pending):
            assert await client.ttl(key) > (CALLBACK_DAYS + 2) * 86_400, key
    finally:
        await client.aclose()

    env = {"DATABASE_URL": str(settings.database_url), "REDIS_URL": str(settings.redis_url),
           "WALLBOARD_JWT_SECRET": TEST_SECRET, "WALLBOARD_KEY_PREFIX": server.settings.key_prefix,
           "WALLBOARD_LOG_LEVEL": "WARNING", "PATH": "/usr/bin:/bin"}
    done = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "server", "rebuild-live", "--tenant", tenant],
                                   env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert await pending_now(server, tenant) == expected

    svc = await open_services(server.settings, background=False)
    try:
        check = await svc.healer.reconcile(tenant, repair=False)
        assert (check.ready, check.differences) == ("1", {}), check.line()
        assert check.redis["callbacks_pending"] == check.redis["callback_records"] == sum(pending.values())
    finally:
        await close_services(svc)

    # Every record made unreadable (one of them not even UTF-8): the overview still counts them all (it reads the counter only),
    # while the calls view, which reads the records, lists none of them.
    client = aioredis.Redis.from_url(server.settings.redis_url)
    try:
        key = Keys(server.settings.key_prefix).callbacks(tenant)
        ids = await client.hkeys(key)
        assert len(ids) == sum(pending.values())
        damaged = dict.fromkeys(ids, b"not json {")
        damaged[ids[0]] = b'{"callback_id": "\xff\xfe"}'  # not UTF-8: the calls view still answers 200
        await client.hset(key, mapping=damaged)
    finally:
        await client.aclose()
    await asyncio.sleep(server.settings.ws_tick_ms / 1000 + 0.1)  # past the cached rendering
    # The one that is JSON with a callback_id still lists, its damaged bytes as U+FFFD; none is a 500.
    assert (await pending_now(server, tenant)) == (pending, sum(pending.values()), 1)

"""Agent-state history when a connector's batches overtake each other: a batch older than an agent's head
re-splits the spans it lands in (agent_states_store.sql); seconds, logins and logouts still equal a recount
and a rebuild from the events."""

from __future__ import annotations

import random
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from server.core.db import query

from .conftest import RunningServer
from .test_agent_states import bucket_bounds, compare, fetch_states, recount, script
from .test_live_exact import new_tenant, post_all, put_settings


async def test_overtaken_batches_equal_a_recount_and_a_rebuild(server: RunningServer) -> None:
    """Consecutive chunks of a feed sent in runs of three, newest first, then in swapped pairs (the later chunk
    first); with login/logout changes in the split spans, every bucket equals a recount, and a rebuild of
    the range from the events finds the rollup, the marks and the heads as ingest kept them."""
    tenant, events, chunks = await feed_in_chunks(server, "late", 21)
    batches = []
    third = len(chunks) // 3 * 3
    for i in range(0, third, 3):  # three chunks, newest first
        batches += list(reversed(chunks[i:i + 3]))
    for i in range(third, len(chunks) - 1, 2):  # the later chunk first
        batches += [chunks[i + 1], chunks[i]]
    if (len(chunks) - third) % 2:
        batches.append(chunks[-1])
    assert sorted(e["event_id"] for b in batches for e in b) == sorted(e["event_id"] for e in events)
    async with server.client(server.token(tenant, "ingest")) as client:
        for batch in batches:
            assert (await post_all(client, [batch], workers=1))["accepted"] == len(batch)
    await assert_exact(server, tenant, events)


async def test_batches_from_concurrent_connections_equal_a_recount_and_a_rebuild(server: RunningServer) -> None:
    """A connector posting its feed in order from four connections at once: its batches commit in any order, a
    batch splitting spans that a later one, committed while it waited, opened or closed; buckets, logins and
    logouts still equal a recount and a rebuild."""
    for seed in (31, 41):  # over a tenth of WALLBOARD_INGEST_GROUP_MAX_EVENTS, a batch commits alone (no group commit)
        tenant, events, chunks = await feed_in_chunks(server, f"conc{seed}", seed, agents=40, sizes=(110, 150, 190))
        async with server.client(server.token(tenant, "ingest")) as client:
            assert (await post_all(client, chunks, workers=4))["accepted"] == len(events)
        await assert_exact(server, tenant, events)


async def feed_in_chunks(server: RunningServer, name: str, seed: int, *, agents: int = 6,
                         sizes: tuple[int, ...] = (4, 9, 15)) -> tuple[str, list[dict[str, Any]], list[list[dict[str, Any]]]]:
    """A new tenant (UTC) and a random agent.state feed of ``agents`` agents over a day and a half, every agent logged
    out at the end (nothing open), cut in consecutive chunks of one of ``sizes`` events."""
    tenant = new_tenant(name)
    await put_settings(server, tenant, timezone="UTC", day_starts_at="00:00", ingest_window_days=400)
    start = int(datetime(2026, 11, 3, 0, 0, tzinfo=UTC).timestamp() * 1000)
    end = int(datetime(2026, 11, 4, 12, 0, tzinfo=UTC).timestamp() * 1000)
    events = script(tenant, agents, start, end, random.Random(seed))
    for a in range(agents):
        events.append({"event_id": f"{tenant}-a{a}-end", "type": "agent.state", "ts": end + 3_600_000,
                       "agent_id": f"ag{a}", "state": "logged_out", "team": "blue" if a % 2 else "red"})
    feed = sorted(events, key=lambda e: (e["ts"], e["event_id"]))
    rng = random.Random(seed + 1)
    chunks = []
    while feed:
        size = rng.choice(sizes)
        chunks.append(feed[:size])
        feed = feed[size:]
    return tenant, events, chunks


async def assert_exact(server: RunningServer, tenant: str, events: list[dict[str, Any]]) -> None:
    """Every 15-minute and day bucket equals a recount of the events, and a rebuild of the range from the events
    finds the rollup, the marks and the heads as ingest kept them."""
    zone = ZoneInfo("UTC")
    first, last = date(2026, 11, 3), date(2026, 11, 5)
    for granularity in ("15m", "day"):
        bounds = bucket_bounds(granularity, zone, "00:00", first, last)
        rows = await fetch_states(server, tenant, **{"from": first.isoformat(), "to": last.isoformat(),
                                                     "granularity": granularity})
        compare(rows, recount(events, bounds, int(time.time() * 1000)), bounds)

    conn = await asyncpg.connect(server.settings.database_url)
    try:
        async with conn.transaction():
            await conn.execute("SELECT set_config('wallboard.tenant', $1, true)", tenant)
            read = ("SELECT agent_id, interval_start, state, reason, ms FROM agent_state_time WHERE client_id = $1 "
                    "AND ms <> 0 ORDER BY 1, 2, 3, 4")
            marks = "SELECT agent_id, event_id, at, kind FROM agent_state_marks WHERE client_id = $1 ORDER BY 1, 2"
            heads = ("SELECT agent_id, state_ms, state_event_id, state, state_reason FROM agents WHERE client_id = $1 "
                     "ORDER BY agent_id")
            kept = [tuple(r) for r in await conn.fetch(read, tenant)]
            kept_marks = [tuple(r) for r in await conn.fetch(marks, tenant)]
            kept_heads = [tuple(r) for r in await conn.fetch(heads, tenant)]
            assert len(kept) > 50 and kept_marks and len(kept_heads) == len({e["agent_id"] for e in events})
            assert await conn.fetchval("SELECT count(*) FROM agent_state_time WHERE client_id = $1 AND ms < 0",
                                       tenant) == 0
            lo = datetime(2026, 11, 2, tzinfo=UTC)
            for day in range(4):
                await conn.execute(query("agent_states_rebuild"), tenant, lo + timedelta(days=day),
                                   lo + timedelta(days=day + 1), "UTC", 0)
            assert [tuple(r) for r in await conn.fetch(read, tenant)] == kept
            assert [tuple(r) for r in await conn.fetch(marks, tenant)] == kept_marks
            assert [tuple(r) for r in await conn.fetch(heads, tenant)] == kept_heads
    finally:
        await conn.close()



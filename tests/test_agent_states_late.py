"""Agent-state history when a connector's batches overtake each other: a batch older than an agent's head
re-splits the spans it lands in (agent_states_store.sql); seconds, logins and logouts still equal a recount
and a rebuild from the events."""

from __future__ import annotations

import random
import time
from datetime import UTC, date, datetime, timedelta
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
    tenant = new_tenant("late")
    zone = ZoneInfo("UTC")
    await put_settings(server, tenant, timezone="UTC", day_starts_at="00:00", ingest_window_days=400)
    start = int(datetime(2026, 11, 3, 0, 0, tzinfo=UTC).timestamp() * 1000)
    end = int(datetime(2026, 11, 4, 12, 0, tzinfo=UTC).timestamp() * 1000)
    events = script(tenant, 6, start, end, random.Random(21))
    for a in range(6):  # every agent ends logged out, so nothing is open
        events.append({"event_id": f"{tenant}-a{a}-end", "type": "agent.state", "ts": end + 3_600_000,
                       "agent_id": f"ag{a}", "state": "logged_out", "team": "blue" if a % 2 else "red"})
    feed = sorted(events, key=lambda e: (e["ts"], e["event_id"]))
    rng = random.Random(22)
    chunks = []
    while feed:
        size = rng.choice([4, 9, 15])
        chunks.append(feed[:size])
        feed = feed[size:]
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
            assert len(kept) > 50 and kept_marks and len(kept_heads) == 6
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



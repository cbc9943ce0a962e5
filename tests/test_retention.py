"""Retention drops whole old partitions and trims each tenant past its own retention; settings bound it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time, timedelta

import asyncpg

from server.core.config import Settings
from server.core.db import Database
from server.history.retention import Retention

from .conftest import RunningServer
from .test_live_exact import new_tenant


async def partitions(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid")
    return {r[0] for r in rows}


async def add_rows(conn: asyncpg.Connection, tenant: str, day: date, tag: str) -> None:
    at = datetime.combine(day, time(12), UTC)
    await conn.execute("INSERT INTO event_ids VALUES ($1, $2)", tenant, f"{tag}-e")
    await conn.execute("INSERT INTO events (client_id, event_id, type, ts, body) VALUES ($1, $2, 'call.queued', $3, '{}')",
                       tenant, f"{tag}-e", at)
    await conn.execute("INSERT INTO agent_metrics (client_id, call_id, queue_id, agent_id, completed_at, talk_s, hold_s, "
                       "wrap_s, handle_s) VALUES ($1, $2, 'q', 'a', $3, 1, 0, 0, 1)", tenant, f"{tag}-c", at)
    await conn.execute("INSERT INTO performance_daily (client_id, dimension, key, day, offered) VALUES ($1, 'queue', 'q', $2, 1)",
                       tenant, day)
    # a leg that only hold events made (no other ts): it goes with its first hold's ts
    await conn.execute("INSERT INTO call_legs (client_id, call_id, queue_id, sl_ms, short_abandon_ms, holds) "
                       "VALUES ($1, $2, 'q', 20000, 5000, $3::jsonb)", tenant, f"{tag}-h",
                       f'[[{int(at.timestamp() * 1000)}, 1, "a", "{tag}-hold"]]')


async def test_sweep_drops_old_partitions_and_trims_each_tenant(
        database_factory: Callable[..., Awaitable[str]], server_factory: Callable[[Settings], Awaitable[RunningServer]],
        settings: Settings) -> None:
    """The server's own sweep drops day and month partitions older than every tenant's retention (gone from
    pg_inherits) and deletes a tenant's rows past its shorter retention, while a longer-keeping tenant's stay."""
    dsn = await database_factory()
    today = datetime.now(UTC).date()
    ancient, old, recent = today - timedelta(days=500), today - timedelta(days=100), today - timedelta(days=2)
    keeper, trimmed = new_tenant("keep"), new_tenant("trim")
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT ensure_partitions($1::date[])", [ancient, old, recent])
        for tenant in (keeper, trimmed):
            for day, tag in ((ancient, "ancient"), (old, "old"), (recent, "recent")):
                await add_rows(conn, tenant, day, tag)
        await conn.execute("INSERT INTO tenants (client_id, settings) VALUES ($1, $2)", keeper,
                           '{"raw_event_retention_days": 200, "history_retention_days": 450}')
        await conn.execute("INSERT INTO tenants (client_id) VALUES ($1)", trimmed)
        before = await partitions(conn)
        ancient_events, ancient_month = f"events_{ancient:%Y%m%d}", f"agent_metrics_{ancient:%Y%m}"
        assert {ancient_events, ancient_month, f"events_{old:%Y%m%d}"} <= before

        # A key prefix of its own: the run's other servers (hourly sweeps) hold the shared retention claim for an hour.
        await server_factory(settings.replace(database_url=dsn, retention_every_s=1,
                                              key_prefix=settings.key_prefix + "ret"))
        for _ in range(100):
            if ancient_events not in await partitions(conn):
                break
            await asyncio.sleep(0.1)
        audit = None
        for _ in range(50):
            audit = await conn.fetchrow("SELECT sub, role, action, parameters FROM analytics_audit_log "
                                        "WHERE client_id = $1 AND action = 'retention.delete'", trimmed)
            if audit is not None:
                break
            await asyncio.sleep(0.1)
        after = await partitions(conn)
        assert ancient_events not in after and ancient_month not in after
        assert f"events_{old:%Y%m%d}" in after and f"events_{recent:%Y%m%d}" in after

        async def kept(table: str, tenant: str, column: str = "event_id") -> list[str]:
            return sorted(r[0] for r in await conn.fetch(f"SELECT {column} FROM {table} WHERE client_id = $1", tenant))

        assert await kept("events", keeper) == ["old-e", "recent-e"]
        assert await kept("event_ids", keeper) == ["old-e", "recent-e"]  # the ancient ids went with their partition
        assert await kept("events", trimmed) == ["recent-e"]
        assert await kept("event_ids", trimmed) == ["recent-e"]
        for tenant in (keeper, trimmed):  # 500 days is past both history retentions (450, 400)
            assert await kept("performance_daily", tenant, "day::text") == sorted(d.isoformat() for d in (old, recent))
            assert await kept("agent_metrics", tenant, "call_id") == ["old-c", "recent-c"]
        assert await kept("call_legs", keeper, "call_id") == ["old-h", "recent-h"]  # legs go with the events (200 days)
        assert await kept("call_legs", trimmed, "call_id") == ["recent-h"]
        assert audit is not None and (audit["sub"], audit["role"]) == ("retention", "system"), audit
        assert '"rows": 4' in audit["parameters"], audit  # the old event, the ancient daily row, two hold-only legs
    finally:
        await conn.close()


async def test_one_sweep_at_a_time_across_processes(database_factory: Callable[..., Awaitable[str]]) -> None:
    """While one process holds the sweep, another's sweep steps aside instead of running it twice."""
    dsn = await database_factory()
    one, two = await Database.connect(dsn, min_size=1, max_size=2), await Database.connect(dsn, min_size=1, max_size=2)
    try:
        async with one.pool.acquire() as holder:
            await holder.execute("SELECT pg_advisory_lock(hashtext('wallboard.retention_pass'))")
            assert (await Retention(two, every_s=3600).sweep()).ran is False
            await holder.execute("SELECT pg_advisory_unlock(hashtext('wallboard.retention_pass'))")
        assert (await Retention(two, every_s=3600).sweep()).ran is True
    finally:
        await one.close()
        await two.close()


async def test_retention_settings_are_validated(server: RunningServer) -> None:
    """Retention settings default to 35 and 400 days, and a value below the floor is a 400 naming the field."""
    async with server.client(server.token(new_tenant("retset"), "admin")) as client:
        shown = (await client.get("/api/settings")).json()["data"]
        refused = await client.put("/api/settings", json={"history_retention_days": 3})
        changed = await client.put("/api/settings", json={"raw_event_retention_days": 90})
    assert (shown["raw_event_retention_days"], shown["history_retention_days"]) == (35, 400)
    assert refused.status_code == 400 and refused.json()["error"]["details"]["field"] == "history_retention_days"
    assert changed.status_code == 200 and changed.json()["data"]["raw_event_retention_days"] == 90

"""Seeded history and the rollup rebuild: their rollups equal a recount of the stored facts and what ingest keeps."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from server.core.db import query
from server.core.tenant_settings import TenantSettings
from server.ingest.schema import ROLLUP_COUNTERS
from server.tools.seed_history import SeedConfig, seed_history
from server.tools.simulate import SimulationConfig, arrival_rate, generate

from .conftest import RunningServer
from .test_cli import assert_one_line_error, run
from .test_live_exact import new_tenant, put_settings

ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)
COUNTERS = ROLLUP_COUNTERS
Rollup = dict[tuple[str, str, Any], dict[str, int]]


def ms_between(start: datetime, end: datetime) -> int:
    return max(0, round((end - start) / timedelta(milliseconds=1)))


async def tenant_conn(dsn: str, tenant: str) -> asyncpg.Connection:
    """An owner connection in a transaction with the tenant set (row-level security is forced on the owner too)."""
    conn = await asyncpg.connect(dsn)
    await conn.execute("BEGIN")
    await conn.execute("SELECT set_config('wallboard.tenant', $1, true)", tenant)
    return conn


async def rollups(conn: asyncpg.Connection, tenant: str) -> tuple[Rollup, Rollup, Rollup]:
    """The tenant's performance_trends, _daily and _monthly rows, keyed by (dimension, key, interval, day or month)."""
    out: list[Rollup] = []
    for table, column in (("performance_trends", "interval_start"), ("performance_daily", "day"),
                          ("performance_monthly", "month")):
        rows = await conn.fetch(f"SELECT * FROM {table} WHERE client_id = $1", tenant)
        out.append({(r["dimension"], r["key"], r[column]): {c: r[c] for c in COUNTERS} for r in rows})
    return out[0], out[1], out[2]


def by_month(daily: Rollup) -> Rollup:
    """Daily rows summed per tenant month (keyed by its first day)."""
    out: Rollup = defaultdict(lambda: dict.fromkeys(COUNTERS, 0))
    for (dimension, key, day), row in daily.items():
        month = out[(dimension, key, day.replace(day=1))]
        for name, value in row.items():
            month[name] += value
    return dict(out)


def recount(legs: Iterable[Any], responses: Iterable[Any], scores: Iterable[Any], zone: str,
            day_start_min: int) -> tuple[Rollup, Rollup]:
    """METRICS.md's counters from the stored facts, each on the 15-minute interval and tenant day of its own ts."""
    trends: Rollup = defaultdict(lambda: dict.fromkeys(COUNTERS, 0))
    daily: Rollup = defaultdict(lambda: dict.fromkeys(COUNTERS, 0))
    tz = ZoneInfo(zone)

    def add(dimension: str, key: str | None, at: datetime, **counts: int) -> None:
        if key is None:
            return
        interval = ORIGIN + (at - ORIGIN) // timedelta(minutes=15) * timedelta(minutes=15)
        day = (at.astimezone(tz).replace(tzinfo=None) - timedelta(minutes=day_start_min)).date()
        for rollup, when in ((trends, interval), (daily, day)):
            row = rollup[(dimension, key, when)]
            for name, value in counts.items():
                row[name] += value

    for leg in legs:
        queued, answered, abandoned, done = leg["queued_at"], leg["answered_at"], leg["abandoned_at"], leg["completed_at"]
        if queued:
            add("queue", leg["queue_id"], queued, offered=1)
        if answered:
            wait = ms_between(queued, answered) if queued else None
            for dimension, key in (("queue", leg["queue_id"]), ("agent", leg["answered_by"])):
                add(dimension, key, answered, answered=1, wait_answered_ms=wait or 0,
                    answered_within_sl=int(wait is not None and wait <= leg["sl_ms"]))
        if abandoned:
            wait = ms_between(queued, abandoned) if queued else None
            add("queue", leg["queue_id"], abandoned, abandoned=1, wait_abandoned_ms=wait or 0,
                short_abandoned=int(wait is not None and wait < leg["short_abandon_ms"]),
                abandoned_within_sl=int(wait is not None and wait <= leg["sl_ms"]))
        if done:
            talk, hold, wrap = leg["talk_ms"], leg["hold_ms"], leg["wrap_ms"]
            for dimension, key in (("queue", leg["queue_id"]), ("agent", leg["completed_by"])):
                add(dimension, key, done, handled=1, handle_ms=talk + hold + wrap, talk_ms=talk, hold_ms=hold,
                    wrap_ms=wrap, resolved=int(leg["resolved"] is True), resolved_given=int(leg["resolved"] is not None),
                    transferred=int(bool(leg["transferred"])), revenue_cents=leg["revenue_cents"] or 0,
                    converted=int((leg["revenue_cents"] or 0) > 0))
    for r in responses:
        csat, nps = r["csat"], r["nps"]
        for dimension, key in (("tenant", ""), ("agent", r["agent_id"])):
            add(dimension, key, r["responded_at"], csat_n=int(csat is not None), csat_sum=csat or 0,
                csat_satisfied=int(csat is not None and csat >= 4), nps_n=int(nps is not None),
                nps_promoters=int(nps is not None and nps >= 9), nps_detractors=int(nps is not None and nps <= 6))
    for s in scores:
        for dimension, key in (("tenant", ""), ("agent", s["agent_id"])):
            add(dimension, key, s["scored_at"], quality_n=1, quality_milli=int(s["score"] * 1000))
    return dict(trends), dict(daily)


@pytest.mark.parametrize(("zone", "day_starts_at"), [("America/New_York", "06:10"), ("Asia/Kolkata", "00:00")])
async def test_seeded_rollups_equal_a_recount_of_the_seeded_rows(server: RunningServer, zone: str, day_starts_at: str) -> None:
    """Ten seeded days across a month end (and a DST change in New York): every rollup row, day and month equals a recount."""
    tenant = new_tenant("seed")
    await put_settings(server, tenant, timezone=zone, day_starts_at=day_starts_at, sl_threshold_s=30)
    dsn = server.settings.database_url
    assert dsn is not None
    config = SeedConfig(tenant=tenant, days=10, agents=20, calls=2000, queues=3, seed=7, end=date(2026, 3, 9))
    report = await seed_history(dsn, config, show_progress=False)
    assert report.calls == 2000
    conn = await tenant_conn(dsn, tenant)
    try:
        legs = await conn.fetch("SELECT * FROM call_legs WHERE client_id = $1", tenant)
        responses = await conn.fetch("SELECT * FROM customer_satisfaction WHERE client_id = $1", tenant)
        scores = await conn.fetch("SELECT * FROM call_quality_scores WHERE client_id = $1", tenant)
        handled = await conn.fetchval("SELECT count(*) FROM agent_metrics WHERE client_id = $1", tenant)
        agents = await conn.fetch("SELECT * FROM agents WHERE client_id = $1", tenant)
        trends, daily, monthly = await rollups(conn, tenant)
    finally:
        await conn.close()
    assert len(legs) == report.rows["call_legs"] >= 2000
    assert {leg["sl_ms"] for leg in legs} == {30_000} and {leg["short_abandon_ms"] for leg in legs} == {5_000}
    assert handled == sum(1 for leg in legs if leg["completed_at"]) > 1500
    assert 0 < sum(1 for leg in legs if leg["abandoned_at"]) < 400
    assert responses and scores and len(agents) == 20 and all(a["team"] for a in agents)
    hours, minutes = day_starts_at.split(":")
    expected_trends, expected_daily = recount(legs, responses, scores, zone, int(hours) * 60 + int(minutes))
    assert {dimension for dimension, _, _ in trends} == {"queue", "agent", "tenant"}
    assert trends == expected_trends
    assert daily == expected_daily
    assert monthly == by_month(expected_daily)
    assert {month for _, _, month in monthly} == {date(2026, 2, 1), date(2026, 3, 1)}
    assert sum(row["offered"] for row in daily.values()) == len(legs)
    assert {day for _, _, day in daily} >= {date(2026, 2, 28) + timedelta(days=d) for d in range(10)}


async def test_the_same_seed_gives_the_same_rows(server: RunningServer) -> None:
    """Seeding two tenants with the same arguments writes the same calls, to the millisecond."""
    dsn = server.settings.database_url
    assert dsn is not None
    tenants = [new_tenant("same"), new_tenant("same")]
    found = []
    for tenant in tenants:
        await seed_history(dsn, SeedConfig(tenant=tenant, days=2, agents=8, calls=300, queues=2, seed=3,
                                           end=date(2026, 5, 2)), show_progress=False)
        conn = await tenant_conn(dsn, tenant)
        try:
            found.append([tuple(r) for r in await conn.fetch(
                "SELECT call_id, queue_id, queued_at, answered_at, answered_by, abandoned_at, completed_at, talk_ms "
                "FROM call_legs WHERE client_id = $1 ORDER BY call_id, queue_id", tenant)])
        finally:
            await conn.close()
    assert found[0] == found[1] and len(found[0]) >= 300


def edge_events(tenant: str, base: int) -> list[dict[str, Any]]:
    """Waits exactly at the default thresholds (20 s, 5 s), and an answer whose queued event never comes."""
    out: list[dict[str, Any]] = []

    def event(kind: str, call: str, at: int, **fields: Any) -> None:
        out.append({"event_id": f"{tenant}-{call}-{kind}", "type": f"call.{kind}", "ts": at, "call_id": call,
                    "queue_id": "edge", **fields})

    event("queued", "x1", base)
    event("answered", "x1", base + 20_000, agent_id="ann")
    event("completed", "x1", base + 80_000, agent_id="ann", talk_s=50.5, hold_s=0, wrap_s=9.5, resolved=True)
    event("queued", "x2", base)
    event("abandoned", "x2", base + 5_000)
    event("queued", "x3", base)
    event("abandoned", "x3", base + 20_000)
    event("answered", "x4", base + 1_000, agent_id="ann")
    return out


async def test_rebuild_equals_what_ingest_kept(server: RunningServer) -> None:
    """Rollups kept by ingest (events out of order, across a tenant day start off the 15-minute grid) equal a rebuild."""
    tenant = new_tenant("rebuild")
    zone = ZoneInfo("Europe/Berlin")
    now = datetime.now(UTC).replace(microsecond=0)
    local_start = (now - timedelta(minutes=50)).astimezone(zone)
    day_starts_at = f"{local_start.hour:02d}:{local_start.minute // 15 * 15 + 7:02d}"  # a day starts during the run
    await put_settings(server, tenant, timezone="Europe/Berlin", day_starts_at=day_starts_at)
    # About 100 calls an hour whatever the hour: the intraday curve is divided out.
    share = arrival_rate(SimulationConfig(calls_per_hour=1.0, timezone="Europe/Berlin"), now - timedelta(minutes=45))
    config = SimulationConfig(agents=12, queues=2, calls_per_hour=100 / share, seed=11, timezone="Europe/Berlin",
                              id_prefix=tenant)
    events = generate(config, now - timedelta(minutes=90), timedelta(minutes=85))
    assert 300 <= len(events) <= 3000, len(events)
    events += edge_events(tenant, int((now - timedelta(minutes=40)).timestamp() * 1000))
    random.Random(5).shuffle(events)  # late queued events: waits counted when their second end comes
    async with server.client(server.token(tenant, "ingest")) as client:
        for start in range(0, len(events), 97):
            response = await client.post("/api/events", json=events[start:start + 97])
            assert response.status_code == 200, response.text
    dsn = server.settings.database_url
    assert dsn is not None
    settings = TenantSettings(timezone="Europe/Berlin", day_starts_at=day_starts_at)
    first_day = date.fromisoformat(settings.local_day(int((now - timedelta(hours=2)).timestamp() * 1000)))
    lo = settings.day_bounds(first_day.isoformat())[0] // 900_000 * 900_000
    hi = settings.day_bounds((first_day + timedelta(days=3)).isoformat())[0]
    conn = await tenant_conn(dsn, tenant)
    try:
        kept_trends, kept_daily, kept_monthly = await rollups(conn, tenant)
        assert len({day for _, _, day in kept_daily}) == 2
        assert {dimension for dimension, _, _ in kept_trends} == {"queue", "agent", "tenant"}
        assert sum(row["offered"] for (dimension, _, _), row in kept_trends.items() if dimension == "queue") > 50
        # Damage the rollups: a counter off, a row no fact supports, a row gone.
        await conn.execute("UPDATE performance_trends SET offered = offered + 100 WHERE client_id = $1", tenant)
        await conn.execute("INSERT INTO performance_trends (client_id, dimension, key, interval_start, offered) "
                           "VALUES ($1, 'queue', 'ghost', $2, 5)", tenant, now - timedelta(minutes=30))
        await conn.execute("DELETE FROM performance_daily WHERE client_id = $1 AND dimension = 'agent'", tenant)
        await conn.execute("UPDATE performance_monthly SET handled = handled + 7 WHERE client_id = $1", tenant)
        await conn.execute("INSERT INTO performance_monthly (client_id, dimension, key, month, offered) "
                           "VALUES ($1, 'queue', 'ghost', date_trunc('month', now())::date, 5)", tenant)
        await conn.execute(query("history_rebuild"), tenant, datetime.fromtimestamp(lo / 1000, UTC),
                           datetime.fromtimestamp(hi / 1000, UTC), "Europe/Berlin", settings.day_start_minutes)
        rebuilt_trends, rebuilt_daily, rebuilt_monthly = await rollups(conn, tenant)
    finally:
        await conn.close()
    assert rebuilt_trends == kept_trends
    assert rebuilt_daily == kept_daily
    assert rebuilt_monthly == kept_monthly == by_month(kept_daily)


def test_bad_arguments_end_with_one_line() -> None:
    """`wallboard seed-history` with a bad argument exits 2 with one line naming it, before any server starts."""
    for args, names in ((["--days", "0"], "--days"), (["--calls", "-5"], "--calls"), (["--end", "tomorrow"], "--end"),
                        (["--queues", "0"], "--queues")):
        result = run(["seed-history", "--tenant", "x", *args], {})
        assert result.returncode == 2, result.stderr
        assert_one_line_error(result, names)
    result = run(["seed-history", "--tenant", "bad tenant!"], {})
    assert result.returncode == 2
    assert_one_line_error(result, "--tenant")


def test_the_command_seeds_and_refuses_a_seeded_tenant(database: str) -> None:
    """The command prints what it wrote with rows/s; seeding the same tenant again needs --replace."""
    tenant = new_tenant("cli")
    args = ["seed-history", "--tenant", tenant, "--days", "2", "--calls", "500", "--agents", "10", "--end", "2026-06-30"]
    result = run(args, {"DATABASE_URL": database}, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "500 calls" in result.stdout and "rows/s" in result.stdout
    again = run(args, {"DATABASE_URL": database}, timeout=120)
    assert again.returncode == 2
    assert_one_line_error(again, "--replace")
    replaced = run([*args, "--replace"], {"DATABASE_URL": database}, timeout=120)
    assert replaced.returncode == 0, replaced.stderr

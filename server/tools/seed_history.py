"""``wallboard seed-history``: a reproducible year of contact-center history, written straight to PostgreSQL.

The seed is for history benchmarks (history endpoints, reports, rollups at scale). It COPYs rows into
call_legs, agent_metrics, customer_satisfaction, call_quality_scores and agents, then recomputes the
rollups (performance_trends, performance_daily, performance_monthly) with ``history_rebuild.sql`` month by
month. It does not write the raw ``events`` table: the live state and ``wallboard rebuild-live`` never see seeded calls.

The model (:mod:`server.tools.seed_model`) is statistical, not the discrete-event simulator of
:mod:`server.tools.simulate_model` (hours for ten million calls).

Everything comes from one ``random.Random(seed)``: the same arguments and tenant settings give the same
rows. A thread generates the next chunk while the last one is copied, so Python and PostgreSQL overlap.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import time
from datetime import date, timedelta
from typing import Any

import orjson

from server.core.config import Settings
from server.core.db import connect_once, query
from server.core.errors import ConfigError
from server.core.tenant_settings import TenantSettings
from server.tools.bench import Progress
from server.tools.seed_model import HISTORY_TABLES, TABLES, HistoryModel, SeedConfig, SeedReport, _us

log = logging.getLogger("wallboard.seed")


def rebuild_ranges(settings: TenantSettings, first: date, stop: date) -> list[tuple[int, int]]:
    """The days [first, stop) cut at month starts, in epoch ms: each range begins at a tenant day start (the
    first one floored to the 15-minute grid), so the rebuilds cover every interval and day exactly once."""
    starts, month = [first], (first.replace(day=1) + timedelta(days=32)).replace(day=1)
    while month < stop:
        starts.append(month)
        month = (month + timedelta(days=32)).replace(day=1)
    bounds = [settings.day_bounds(day.isoformat())[0] for day in [*starts, stop]]
    bounds[0] -= bounds[0] % 900_000
    return list(itertools.pairwise(bounds))


async def seed_history(dsn: str, config: SeedConfig, *, replace: bool = False, show_progress: bool = True) -> SeedReport:
    """Write the seeded history of ``config.tenant`` and its rollups, in one transaction.

    Runs as DATABASE_URL's user (the tables' owner: COPY, ANALYZE and the rebuild's DELETE need it),
    with ``wallboard.tenant`` set, since row-level security is forced on the owner too. A tenant that
    already has history is refused unless ``replace``, which deletes it first.
    """
    started = time.perf_counter()
    report = SeedReport()
    conn = await connect_once(dsn)
    try:
        # Timestamps go as microseconds since 2000-01-01: no datetime object per value.
        await conn.set_type_codec("timestamptz", schema="pg_catalog", encoder=lambda us: (us,),
                                  decoder=lambda value: value[0], format="tuple")
        async with conn.transaction():
            await conn.execute("SELECT set_config('wallboard.tenant', $1, true)", config.tenant)
            raw = await conn.fetchval(query("tenant_settings_get"), config.tenant)
            settings = TenantSettings() if raw is None else TenantSettings.from_json(orjson.loads(raw))
            if await conn.fetchval("SELECT EXISTS (SELECT FROM call_legs WHERE client_id = $1)", config.tenant):
                if not replace:
                    raise ConfigError(f"--tenant: {config.tenant!r} already has history: seed another tenant, "
                                      "or pass --replace to delete its history first")
                for table in HISTORY_TABLES:
                    await conn.execute(f"DELETE FROM {table} WHERE client_id = $1", config.tenant)
            model = HistoryModel(config, settings)
            await conn.execute("SELECT ensure_partitions($1)", model.partition_days())
            mark = time.perf_counter()
            await _copy(conn, model, report, Progress(f"seeding {config.tenant}", config.calls, "calls") if show_progress else None)
            report.phases["copy"], mark = time.perf_counter() - mark, time.perf_counter()
            await conn.execute("ANALYZE call_legs, customer_satisfaction, call_quality_scores")
            # A month of rollups is a few hundred thousand groups: aggregate them in memory, not in batches on
            # disk; and skip JIT, whose compile (over a second) costs more than it saves on these statements.
            await conn.execute("SELECT set_config('work_mem', '256MB', true), set_config('jit', 'off', true)")
            progress = Progress("rollups", config.days + 1, "days") if show_progress else None
            done = 0
            for lo, hi in rebuild_ranges(settings, config.first, config.end + timedelta(days=2)):
                await conn.execute(query("history_rebuild"), config.tenant, _us(lo), _us(hi), settings.timezone,
                                   settings.day_start_minutes)
                # Agent-state history comes from agent.state events, which seeding does not write: this clears
                # the range (its rows could only be left from earlier events) and keeps the two rebuilt together.
                await conn.execute(query("agent_states_rebuild"), config.tenant, _us(lo), _us(hi), settings.timezone,
                                   settings.day_start_minutes)
                done += round((hi - lo) / 86_400_000)
                if progress:
                    progress.update(min(done, config.days + 1), force=True)
            if progress:
                progress.finish(config.days + 1)
            for table in ("performance_trends", "performance_daily", "performance_monthly"):
                report.rows[table] = await conn.fetchval(f"SELECT count(*) FROM {table} WHERE client_id = $1", config.tenant)
            report.phases["rollups"] = time.perf_counter() - mark
    finally:
        await conn.close()
    report.seconds = time.perf_counter() - started
    log.info("seed.done", extra={"tenant": config.tenant, "calls": report.calls, "rows": report.total_rows,
                                 "seconds": round(report.seconds, 1), **{f"{k}_s": round(v, 1) for k, v in report.phases.items()}})
    return report


async def _copy(conn: Any, model: HistoryModel, report: SeedReport, progress: Progress | None) -> None:
    """COPY each chunk while a thread generates the next, then the agents."""
    chunks = model.chunks()
    pending = asyncio.ensure_future(asyncio.to_thread(next, chunks, None))
    try:
        while (chunk := await pending) is not None:
            pending = asyncio.ensure_future(asyncio.to_thread(next, chunks, None))
            for name, columns in TABLES:
                if chunk.rows[name]:
                    await conn.copy_records_to_table(name, records=chunk.rows[name], columns=columns)
                report.rows[name] += len(chunk.rows[name])
            report.calls += chunk.calls
            if progress:
                progress.update(report.calls)
    finally:  # a thread cannot be cancelled: let the chunk in the making finish before leaving
        await asyncio.gather(pending, return_exceptions=True)
    if progress:
        progress.finish(report.calls)
    agents = model.agent_rows()
    await conn.copy_records_to_table("agents", records=agents, columns=("client_id", "agent_id", "name", "team", "seen_at"))
    report.rows["agents"] = len(agents)


def cmd_seed_history(args: argparse.Namespace) -> int:
    """``wallboard seed-history``: bad arguments end with one line (exit 2) before any server starts."""
    from server.core.migrations import migrate
    from server.runtime import with_runtime
    from server.tools.bench import run_async

    try:
        end = {"end": date.fromisoformat(args.end)} if args.end else {}
    except ValueError:
        raise ConfigError(f"--end: expected a day as YYYY-MM-DD, got {args.end!r}") from None
    config = SeedConfig(tenant=args.tenant, days=args.days, agents=args.agents, calls=args.calls, queues=args.queues,
                        seed=args.seed, **end)
    settings, embedded = with_runtime(Settings.from_env(), valkey=False)
    try:
        dsn = settings.migrate_database_url or settings.database_url  # the owner: COPY, ANALYZE, DELETE
        assert dsn is not None

        async def run() -> SeedReport:
            await migrate(dsn, app_role=settings.app_role)
            return await seed_history(dsn, config, replace=args.replace)

        report = run_async(run())
    finally:
        if embedded is not None:
            embedded.stop()
    rows, phases = report.rows, ", ".join(f"{name} {seconds:.1f}s" for name, seconds in report.phases.items())
    print(f"seeded {config.tenant!r} {config.first}..{config.end}: {report.calls:,} calls ({rows['call_legs']:,} legs, "
          f"{rows['agent_metrics']:,} handled, {rows['customer_satisfaction']:,} CSAT/NPS responses, "
          f"{rows['call_quality_scores']:,} quality scores, {rows['agents']:,} agents), {rows['performance_trends']:,} "
          f"performance_trends, {rows['performance_daily']:,} performance_daily and {rows['performance_monthly']:,} "
          f"performance_monthly rows: {report.total_rows:,} rows in "
          f"{report.seconds:.1f}s ({report.total_rows / max(report.seconds, 1e-9):,.0f} rows/s; {phases})")
    return 0

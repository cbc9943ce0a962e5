"""The ingest routine: a group of small requests stored in one round trip stores exactly what a transaction stores."""

from __future__ import annotations

import logging
import random
import secrets
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from server.api.context import Services
from server.app import close_services, open_services
from server.core import routines as routines_module
from server.core.config import Settings
from server.core.errors import ConfigError
from server.core.routines import routine, routines
from server.ingest.events import Event, parse_body
from server.ingest.schema import EVENT_TYPES
from server.live.recorder import STEPS
from server.live.state import Calendar
from server.tools.bench_ingest import simulate

# What ingest writes, per tenant (client_id left out of the comparison; the columns PostgreSQL stamps at insert too).
TABLES = ("events", "event_ids", "call_legs", "performance_trends", "performance_daily", "performance_monthly",
          "agent_metrics", "customer_satisfaction", "call_quality_scores", "agents", "agent_state_time",
          "agent_state_marks")
STAMPED = {"client_id", "received_at"}


def groups_of(events: Sequence[dict[str, Any]], size: int, seed: int) -> list[list[Event]]:
    """The events shuffled, 5 % sent twice, in groups of ``size`` (each sorted by id, as group commit stores them)."""
    rng = random.Random(seed)
    sent = list(events) + rng.sample(list(events), len(events) // 20)
    rng.shuffle(sent)
    valid, rejected = parse_body(orjson.dumps(sent), "application/json", max_events=len(sent))
    assert not rejected
    parsed = [event for _, event in valid]
    out = []
    for i in range(0, len(parsed), size):
        unique = {e.event_id: e for e in parsed[i:i + size]}
        out.append(sorted(unique.values(), key=lambda e: e.event_id))
    return out


def with_rare_kinds(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events, and for each of their first three completed calls a CSAT response, a quality score and a
    callback requested and completed (kinds a short simulation may lack)."""
    extra: list[dict[str, Any]] = []
    for n, done in enumerate([e for e in events if e["type"] == "call.completed"][:3]):
        about = {"ts": done["ts"], "call_id": done["call_id"], "agent_id": done["agent_id"]}
        extra.append({"event_id": f"csat-{n}", "type": "csat.response", **about, "csat": 4, "nps": 9})
        extra.append({"event_id": f"qa-{n}", "type": "quality.scored", **about, "score": 4.5, "criteria": {"tone": 5}})
        callback = {"ts": done["ts"], "callback_id": f"cb-{n}", "queue_id": done["queue_id"]}
        extra.append({"event_id": f"cb-asked-{n}", "type": "callback.requested", **callback})
        extra.append({"event_id": f"cb-done-{n}", "type": "callback.completed", **callback, "outcome": "reached"})
    return [*events, *extra]


async def rows_of(dsn: str, tenant: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row ingest wrote for ``tenant``, per table, without its tenant and insert stamps, sorted."""
    conn = await asyncpg.connect(dsn)
    try:
        out = {}
        for table in TABLES:
            rows = await conn.fetch(f"SELECT * FROM {table} WHERE client_id = $1", tenant)
            out[table] = sorted(tuple(str(v) for k, v in r.items() if k not in STAMPED) for r in rows)
        return out
    finally:
        await conn.close()


class Counted:
    """``Database.routine`` of ``svc``, counting the calls and those that left the batch to a transaction."""

    def __init__(self, svc: Services) -> None:
        self.calls = self.steps = 0
        self._routine = svc.db.routine
        svc.db.routine = self  # type: ignore[method-assign]

    async def __call__(self, *args: Any) -> list[asyncpg.Record]:
        self.calls += 1
        try:
            return await self._routine(*args)
        except asyncpg.PostgresError as exc:
            self.steps += exc.sqlstate == STEPS
            raise


@pytest.fixture
async def services(settings: Settings) -> Any:
    svc = await open_services(settings, background=False)
    try:
        yield svc
    finally:
        await close_services(svc)


@pytest.mark.parametrize(("size", "count"), [(8, 2000), (1, 700)])
async def test_groups_stored_by_the_routine_equal_the_same_groups_stored_in_transactions(
        services: Services, settings: Settings, size: int, count: int) -> None:
    """Simulated events of every kind (CSAT, quality scores and callbacks added), shuffled with 5 % duplicates, in
    groups of 8 (then one by one, as a quiet tenant sends them): stored once through the routine (falling back to a
    transaction where a group needs statements of its own: an agent's first or late state, a late hold) and once in
    transactions only, under two tenants. Every row of every history table is the same, and the routine stored most
    groups itself. One by one, every declared event kind is stored alone, through the version of the statement the
    routine chooses for it (it leaves out the families of CTEs a group has no events of)."""
    # Yesterday's afternoon, whatever the time now: the share of groups needing statements of their own (an agent's
    # first or late state) depends on the hour of the simulated day (at night most events are agents' states).
    afternoon = datetime.combine(datetime.now(UTC).date() - timedelta(days=1), time(14), UTC)
    events = with_rare_kinds(simulate(count, end=afternoon))
    groups = groups_of(events, size, seed=7)
    routed, plain = f"routine-{secrets.token_hex(3)}", f"plain-{secrets.token_hex(3)}"
    counted = Counted(services)
    fresh: dict[str, int] = {}
    for tenant, small in ((routed, True), (plain, False)):
        cal = Calendar(await services.settings_store.get(tenant))
        fresh[tenant] = 0
        for group in groups:
            fresh[tenant] += len(await services.ingestor.store_events(tenant, group, cal, small=small))
    assert fresh[routed] == fresh[plain] == len({e["event_id"] for e in events})
    # The routine took every group but those with a day new to the process (its partitions come first).
    assert counted.calls >= len(groups) - 2, (counted.calls, len(groups))
    assert 0 < counted.steps < counted.calls / 2, (counted.steps, counted.calls)
    got, expected = await rows_of(settings.database_url, routed), await rows_of(settings.database_url, plain)
    for table in TABLES:
        assert got[table] == expected[table], table
    kinds = {frozenset(e.type for e in group) for group in groups}
    # One by one, every declared kind was stored alone: a new kind whose CTEs sit in a family the routine leaves
    # out for it fails the comparison above.
    assert size > 1 or {frozenset({kind}) for kind in EVENT_TYPES} <= kinds, set(EVENT_TYPES) - set().union(*kinds)


async def test_a_database_without_the_routine_gets_transactions(
        services: Services, settings: Settings, database_factory: Callable[..., Awaitable[str]],
        caplog: pytest.LogCaptureFixture) -> None:
    """A database migrated by another release lacks this one's routine: small groups are stored in transactions,
    with one warning, and nothing is lost."""
    dsn = await database_factory()
    svc = await open_services(settings.replace(database_url=dsn), background=False)
    owner = await asyncpg.connect(dsn)
    try:
        await owner.execute(f"DROP FUNCTION {routine('ingest').name}")
        tenant = f"old-{secrets.token_hex(3)}"
        cal = Calendar(await svc.settings_store.get(tenant))
        with caplog.at_level(logging.WARNING, logger="wallboard.ingest"):
            stored = [len(await svc.ingestor.store_events(tenant, group, cal, small=True))
                      for group in groups_of(simulate(100), 10, seed=3)]
        count = await owner.fetchval("SELECT count(*) FROM events WHERE client_id = $1", tenant)
    finally:
        await owner.close()
        await close_services(svc)
    assert sum(stored) == count == 100
    assert [r.getMessage() for r in caplog.records].count("ingest.routine_missing") == 1


def test_each_version_of_the_statement_leaves_out_its_families_and_a_bad_template_stops_the_build(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The routine's four versions of events_store.sql leave out exactly their families' tables; a template that
    leaves out a family its query lacks, or a query whose family is never closed, stops the build (and so
    `wallboard migrate`) with a message naming the family, rather than a function running more or less than meant."""
    body = routine("ingest").sql
    versions = body.split("FOR out_row IN")[1:]
    assert len(versions) == 4
    tables = ("call_legs", "performance_daily", "customer_satisfaction", "call_quality_scores", "agent_state_time",
              "agents AS a", "events (client_id")
    held = [{t for t in tables if f"INSERT INTO {t}" in version} for version in versions]
    assert held == [{"agent_state_time", "agents AS a", "events (client_id"},  # agent.state alone
                    {"call_legs", "performance_daily", "events (client_id"},  # no agent states, no feedback
                    set(tables) - {"customer_satisfaction", "call_quality_scores"},  # no feedback
                    set(tables)]
    (tmp_path / "queries").mkdir()
    (tmp_path / "routines").mkdir()
    monkeypatch.setattr(routines_module, "sql_dir", lambda: tmp_path)
    routines.cache_clear()
    try:
        (tmp_path / "queries" / "q.sql").write_text("SELECT 1\n-- family: extra\nUNION ALL SELECT 2\n-- end family\n")
        (tmp_path / "routines" / "r.sql").write_text("-- include: queries/q.sql without extra\n")
        assert routines()[0].sql == "SELECT 1\n"
        for template, query, named in (("-- include: queries/q.sql without other\n", None, "other"),
                                       ("-- include: queries/q.sql\n", "SELECT 1\n-- family: extra\n", "extra")):
            (tmp_path / "routines" / "r.sql").write_text(template)
            if query is not None:
                (tmp_path / "queries" / "q.sql").write_text(query)
            routines.cache_clear()
            with pytest.raises(ConfigError, match=f"sql/queries/q.sql: families \\['{named}'\\]"):
                routines()
    finally:
        routines.cache_clear()


async def test_the_routine_plans_for_its_own_transaction_only(settings: Settings) -> None:
    """The routine plans its statement generically and without JIT from a connection's first call on, for its own
    transaction only: the next statement on the same pooled connection (a report that needs custom plans, say) finds
    the settings as they were, and the group is stored."""
    svc = await open_services(settings.replace(db_pool_min=1, db_pool_max=1, db_tenant_max=1), background=False)
    try:
        async with svc.db.pool.acquire() as conn:
            before = await conn.fetchrow("SELECT current_setting('plan_cache_mode') AS plans, current_setting('jit') AS jit")
        tenant = f"plans-{secrets.token_hex(3)}"
        cal = Calendar(await svc.settings_store.get(tenant))
        stored = sum([len(await svc.ingestor.store_events(tenant, group, cal, small=True))
                      for group in groups_of(simulate(40), 1, seed=5)])
        async with svc.db.pool.acquire() as conn:
            after = await conn.fetchrow("SELECT current_setting('plan_cache_mode') AS plans, current_setting('jit') AS jit")
            count = await conn.fetchval("SELECT count(*) FROM events WHERE client_id = $1", tenant)
    finally:
        await close_services(svc)
    assert stored == count == 40
    assert dict(after) == dict(before) and before["plans"] == "auto", (dict(before), dict(after))

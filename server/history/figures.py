"""History endpoints of API.md: performance, calls, satisfaction and quality over a period.

Every figure is a sum of rollup rows kept at ingest put through the METRICS.md functions of
:mod:`server.history.formulas`, the ones the live view uses: a report and the wallboard never disagree. A
range of whole tenant days reads ``performance_daily``; whole tenant months inside it (that no bucket cuts)
read ``performance_monthly`` instead, one row per key and month, the days at its edges still
``performance_daily`` (``WALLBOARD_HISTORY_MONTHLY=0``: days only). A month's row is the sum of its days' rows
(both are written by the same statements), so the answers are the same; other ranges read the 15-minute
``performance_trends``. Raw rows are read only for lists of individual records (quality reviews). Queries run
in a tenant transaction (row-level security applies); ``agent`` tokens see only their own agent.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from functools import cache
from operator import itemgetter
from typing import Any

import asyncpg

from server.core.auth import Principal, Role
from server.core.db import Database, query
from server.core.errors import Forbidden
from server.core.tenant_settings import TenantSettings
from server.history import formulas as metrics
from server.history.period import Period, bad, iso, limit
from server.ingest.schema import ROLLUP_COUNTERS


class Scope:
    """One history request: who asks, its period, filters and the tenant's settings."""

    def __init__(self, db: Database, params: Mapping[str, str], who: Principal, settings: TenantSettings,
                 period: Period, *, monthly: bool = True) -> None:
        self.db, self.params, self.who, self.settings, self.period = db, params, who, settings, period
        self.monthly = monthly
        self.queue_id = _text(params, "queue_id")
        self.team = _text(params, "team")
        self.agent_id = _text(params, "agent_id")
        if who.role == Role.AGENT:
            if self.agent_id not in (None, who.sub) or self.team is not None:
                raise Forbidden("an agent token sees only its own figures: leave out agent_id and team, or use "
                                "your own agent_id", code="agent_scope")
            self.agent_id = who.sub
        self.limit = limit(params)

    def rollup(self, name: str) -> str:
        """A rollup query's text for this period: over whole tenant days, its per-day form."""
        return daily_query(name) if self.period.days is not None else query(name)

    def month_span(self, sql: str) -> tuple[date, date] | None:
        """The whole months a rollup query may read from ``performance_monthly``, if any."""
        if not self.monthly or sql not in MONTHLY_QUERIES:
            return None
        return self.period.month_span(ends_only=MONTHLY_QUERIES[sql])

    async def rows(self, sql: str, dimension: str, keys: list[str] | None) -> list[asyncpg.Record]:
        span = self.month_span(sql)
        async with self.db.tenant(self.who.tenant) as conn:
            if span is not None:
                return await conn.fetch(monthly_query(sql), self.who.tenant, dimension, keys, self.period.params,
                                        *span)
            return await conn.fetch(self.rollup(sql), self.who.tenant, dimension, keys, self.period.params)

    async def agent_keys(self) -> list[str] | None:
        """The agents the filters name: one agent, a team's members, or None for every agent."""
        if self.agent_id is not None:
            return [self.agent_id]
        if self.team is None:
            return None
        async with self.db.tenant(self.who.tenant) as conn:
            rows = await conn.fetch("SELECT agent_id FROM agents WHERE client_id = $1 AND team = $2",
                                    self.who.tenant, self.team)
        return [r["agent_id"] for r in rows]

    @property
    def by_agent(self) -> bool:
        return self.agent_id is not None or self.team is not None


@cache
def daily_query(name: str) -> str:
    """The same rollup query over ``performance_daily``: tenant days instead of 15-minute instants."""
    return (query(name).replace("performance_trends", "performance_daily").replace("interval_start", "day")
            .replace("timestamptz[]", "date[]"))


# The rollup queries that may read whole months → whether they sum the whole period (only its ends matter).
MONTHLY_QUERIES = {"history_by_key": True, "history_by_bucket": False, "history_by_bucket_key": False}


@cache
def monthly_query(name: str) -> str:
    """The per-day form of a rollup query reading whole months [$5, $6) from ``performance_monthly``."""
    rows = "\n".join(line for line in query("rollup_days_months").splitlines() if not line.lstrip().startswith("--"))
    return daily_query(name).replace("FROM performance_daily", f"FROM ({rows}) AS performance_daily")


def _text(params: Any, name: str) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if len(value) > 128 or any(ord(c) < 32 for c in value):
        raise bad(name, "expected an id of at most 128 printable characters")
    return str(value)


COUNTERS = frozenset(ROLLUP_COUNTERS)


_PICK = itemgetter(*ROLLUP_COUNTERS)


def counters(row: asyncpg.Record | None) -> dict[str, int]:
    """The rollup counters of a row (other columns, such as its key or bucket, left out).

    Per-agent endpoints call this for hundreds of rows a request: every counter picked by name at once."""
    if row is None:
        return {}
    try:
        return dict(zip(ROLLUP_COUNTERS, map(int, _PICK(row)), strict=True))
    except KeyError:  # a row with some of the counters only
        return {k: int(v) for k, v in row.items() if k in COUNTERS}


def agent_figures(c: metrics.Counters) -> dict[str, Any]:
    """What an agent (or a team) did: calls, handle times, resolution, feedback."""
    handled = c.get("handled", 0)
    return {
        **{k: c.get(k, 0) for k in ("answered", "handled")},
        "aht_s": metrics.aht_s(c),
        "talk_avg_s": metrics.ratio(c.get("talk_ms", 0) / 1000, handled),
        "hold_avg_s": metrics.ratio(c.get("hold_ms", 0) / 1000, handled),
        "wrap_avg_s": metrics.ratio(c.get("wrap_ms", 0) / 1000, handled),
        "fcr": metrics.fcr(c),
        "transfer_rate": metrics.transfer_rate(c),
        **metrics.activity_figures(c),
        **metrics.feedback_figures(c),
    }


async def figures(scope: Scope, sql: str) -> tuple[str, list[asyncpg.Record], list[asyncpg.Record]]:
    """(dimension, call rows, tenant feedback rows) for the scope's filters."""
    if scope.by_agent:
        return "agent", await scope.rows(sql, "agent", await scope.agent_keys()), []
    keys = [scope.queue_id] if scope.queue_id else None
    feedback = [] if scope.queue_id else await scope.rows(sql, "tenant", None)
    return "queue", await scope.rows(sql, "queue", keys), feedback


def describe(scope: Scope, dimension: str, c: metrics.Counters) -> dict[str, Any]:
    if dimension == "agent":
        return agent_figures(c)
    formula = scope.settings.for_queue(scope.queue_id).sl_formula if scope.queue_id else scope.settings.sl_formula
    return {**metrics.queue_figures(c, formula), **metrics.activity_figures(c), **metrics.feedback_figures(c)}


RANKABLE = {"handled": True, "answered": True, "aht_s": False, "fcr": True, "transfer_rate": False, "csat": True,
            "nps": True, "quality_score": True}  # metric → higher is better


def timeline_figures(c: metrics.Counters, formula: str) -> dict[str, Any]:
    return {**{k: c.get(k, 0) for k in ("offered", "answered", "abandoned", "handled")},
            "service_level": metrics.service_level(c, formula), "asa_s": metrics.asa_s(c),
            "abandon_rate": metrics.abandon_rate(c)}


def iso_at(value: Any) -> str:
    return iso(int(value.timestamp() * 1000))


def completion_figures(c: metrics.Counters) -> dict[str, Any]:
    offered, answered = c.get("offered", 0), c.get("answered", 0)
    return {
        **{k: c.get(k, 0) for k in ("offered", "answered", "abandoned", "short_abandoned", "handled")},
        "answer_rate": metrics.ratio(answered, offered),
        "abandon_rate": metrics.abandon_rate(c),
        "asa_s": metrics.asa_s(c),
        "avg_abandon_wait_s": metrics.ratio(c.get("wait_abandoned_ms", 0) / 1000, c.get("abandoned", 0)),
    }


async def agent_directory(scope: Scope) -> dict[str, dict[str, Any]]:
    async with scope.db.tenant(scope.who.tenant) as conn:
        rows = await conn.fetch("SELECT agent_id, name, team FROM agents WHERE client_id = $1", scope.who.tenant)
    return {r["agent_id"]: {"name": r["name"], "team": r["team"]} for r in rows}


def filters_of(scope: Scope) -> dict[str, Any]:
    return {k: v for k, v in (("queue_id", scope.queue_id), ("team", scope.team), ("agent_id", scope.agent_id)) if v}

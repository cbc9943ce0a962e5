"""The services a running server owns, built once from Settings by the app's lifespan.

Route handlers reach them as ``services(request)`` and their caller as
``principal(request, roles)``; nothing is module-level.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import redis.asyncio as aioredis
from starlette.requests import HTTPConnection, Request

from server.core.auth import Principal, Role, bearer
from server.core.config import Settings
from server.history.figures import Scope
from server.history.period import parse

if TYPE_CHECKING:  # the types only: app.py builds the services, route modules import this one
    from server.analytics.service import Analytics
    from server.api.budget import Budgets
    from server.core.auth import TokenVerifier
    from server.core.db import Database
    from server.core.metrics import Metrics
    from server.core.settings_store import SettingsStore
    from server.history.reports import ExportSlots
    from server.history.retention import Retention
    from server.history.scorecards import ScorecardRefresher
    from server.live.heal import Healer
    from server.live.hub import Hub
    from server.live.keys import Keys
    from server.live.recorder import Ingestor
    from server.live.state import LiveState


@dataclass
class Services:
    """What the lifespan builds from Settings and hands to every request as ``request.state.services``."""

    settings: Settings
    db: Database
    redis: aioredis.Redis
    verifier: TokenVerifier
    keys: Keys
    settings_store: SettingsStore
    live: LiveState
    ingestor: Ingestor
    hub: Hub
    scorecards: ScorecardRefresher
    analytics: Analytics | None = None  # forecasts, anomalies, threshold alerts (server/analytics/service.py)
    healer: Healer | None = None  # pending batches, Redis restarts, reconciliation (server/live/heal.py)
    budgets: Budgets | None = None  # request budgets (server/api/budget.py); None: not enforced
    exports: ExportSlots | None = None  # CSV exports running now (server/history/reports.py)
    retention: Retention | None = None  # the retention sweep (server/history/retention.py)
    metrics: Metrics | None = None  # this process's Prometheus metrics (server/core/metrics.py)


async def scope_of(request: Request, allowed: frozenset[Role], *, granularity: str | None = None) -> Scope:
    """The history scope of a request: the verified caller, its tenant's settings and the period asked for."""
    who = principal(request, allowed)
    svc = services(request)
    settings = await svc.settings_store.get(who.tenant)
    period = parse(request.query_params, settings, int(time.time() * 1000), granularity=granularity)
    return Scope(svc.db.reader, request.query_params, who, settings, period, monthly=svc.settings.history_monthly)


def services(conn: HTTPConnection) -> Services:
    return conn.state.services  # type: ignore[no-any-return]


def principal(conn: HTTPConnection, allowed: frozenset[Role]) -> Principal:
    """The verified caller of this request, checked against the roles the route allows."""
    token = bearer(conn.headers.get("authorization"))
    return services(conn).verifier.verify(token).require(allowed)

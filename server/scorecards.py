"""Agent scorecards of the last 30 whole days: a materialized view and the task that refreshes it.

``agent_scorecards`` (sql/004_scorecards.sql) sums ``performance_daily`` per agent; the
:class:`ScorecardRefresher` owned by the app's lifespan refreshes it concurrently every
``WALLBOARD_SCORECARD_REFRESH_S`` seconds (readers never wait on a refresh), and only one
process of many does it at a time (an advisory lock inside ``refresh_scorecards()``).
``GET /api/analytics/performance/scorecards`` reads the tenant's rows through a view that
filters to the transaction's tenant.
"""

from __future__ import annotations

import asyncio
import logging
import time

import asyncpg
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import background
from .auth import READ_LIVE, Role
from .db import UNAVAILABLE, Database
from .history import agent_figures, counters
from .period import iso
from .responses import success
from .services import principal, services

log = logging.getLogger("wallboard.scorecards")


class ScorecardRefresher:
    """Refreshes the scorecards now, then every ``every_s`` seconds, until closed."""

    def __init__(self, db: Database, every_s: float) -> None:
        self.db, self.every_s = db, every_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="scorecards.refresh")

    async def close(self) -> None:
        await background.stop([self._task])
        self._task = None

    async def refresh(self) -> bool:
        """One refresh; False when another process was refreshing."""
        async with self.db.pool.acquire(timeout=10) as conn:
            return bool(await conn.fetchval("SELECT refresh_scorecards()", timeout=300))

    async def _run(self) -> None:
        while True:
            began = time.perf_counter()
            try:
                done = await self.refresh()
                log.info("scorecards.refreshed" if done else "scorecards.skipped",
                         extra={"seconds": round(time.perf_counter() - began, 3)})
            except (*UNAVAILABLE, TimeoutError, asyncpg.PostgresError) as exc:
                log.warning("scorecards.refresh_failed", extra={"error": f"{type(exc).__name__}: {exc}"})
            await asyncio.sleep(self.every_s)


async def scorecards(request: Request) -> Response:
    """The tenant's agents over the last 30 whole days, best handled first; an agent sees only itself."""
    who = principal(request, READ_LIVE)
    async with services(request).db.tenant(who.tenant) as conn:
        rows = await conn.fetch("SELECT * FROM agent_scorecards_mine ORDER BY handled DESC, agent_id")
        names = {r["agent_id"]: (r["name"], r["team"]) for r in
                 await conn.fetch("SELECT agent_id, name, team FROM agents WHERE client_id = $1", who.tenant)}
    if who.role == Role.AGENT:
        rows = [r for r in rows if r["agent_id"] == who.sub]
    data = [{"agent_id": r["agent_id"], "name": names.get(r["agent_id"], (None, None))[0],
             "team": names.get(r["agent_id"], (None, None))[1], "days": r["days"],
             **agent_figures(counters(r))} for r in rows]
    refreshed = max((r["refreshed_at"] for r in rows), default=None)
    return success(data, statistics={"window_days": 30,
                                     "refreshed_at": iso(int(refreshed.timestamp() * 1000)) if refreshed else None})


routes = [Route("/api/analytics/performance/scorecards", scorecards, methods=["GET"])]

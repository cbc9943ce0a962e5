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

from server.core import background
from server.core.db import UNAVAILABLE, Database

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

"""Retention: raw events and history older than each tenant's retention are removed by a server-owned task.

Whole partitions go first (``expired_partitions()`` and ``drop_expired_partition()``,
sql/010_retention.sql): a day of ``events`` or a month of ``agent_metrics`` /
``customer_satisfaction`` / ``call_quality_scores`` is shared by every tenant, so it is dropped
once it is older than the LONGEST retention any tenant keeps. A drop locks the parent table, so
each runs in a transaction of its own with a short lock timeout (a busy partition waits for the
next sweep); a day of events first loses its ids from ``event_ids``, a few pages per transaction. What remains of a tenant past its own
(shorter) retention is deleted in batches of ``batch_rows`` rows, one short tenant transaction
per batch (the tenant's statement timeout applies), with a pause between batches so the sweep
never holds a connection or a lock that other tenants wait for.

Once per ``every_s`` across all processes: each process asks every ``min(every_s, 60)`` seconds,
and only the one that wins ``claim`` (a Redis ``SET NX EX every_s`` marker, as the forecasts use)
sweeps; a session advisory lock (``wallboard.retention_pass``) held on one pooled connection for
the pass keeps two sweeps from ever overlapping, the same coordination as the scorecard refresh.
So a fleet of many processes, or one restarted often, still sweeps about once per ``every_s``.
Each tenant that lost rows gets an audit entry (``retention.delete``); dropped partitions are
logged (they hold every tenant's rows, so no one tenant's audit log is theirs).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg
from redis.exceptions import RedisError

from server.core import background
from server.core.audit import record_system
from server.core.db import UNAVAILABLE, Database
from server.core.errors import ServiceUnavailable
from server.core.tenant_settings import TenantSettings

log = logging.getLogger("wallboard.retention")

PASS_LOCK = "wallboard.retention_pass"


@dataclass
class Sweep:
    """What one pass did: partitions dropped, rows deleted per tenant, how long it took."""

    ran: bool = True
    dropped: list[str] = field(default_factory=list)
    deleted: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


class Retention:
    """Applies retention once per ``every_s`` seconds across the processes that ``claim`` is shared by, until closed."""

    def __init__(self, db: Database, *, every_s: float, batch_rows: int = 5000, pause_s: float = 0.05,
                 claim: Callable[[], Awaitable[bool]] | None = None) -> None:
        self.db, self.every_s, self.batch_rows, self.pause_s = db, every_s, batch_rows, pause_s
        self.claim = claim  # None: every check of this process sweeps
        defaults = TenantSettings()
        self.defaults = (defaults.raw_event_retention_days, defaults.history_retention_days)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="retention.sweep")

    async def close(self) -> None:
        await background.stop([self._task])
        self._task = None

    async def sweep(self) -> Sweep:
        """One pass over every tenant; ``ran`` is False when another process holds the pass."""
        began = time.perf_counter()
        async with self.db.pool.acquire(timeout=10) as lock:
            if not await lock.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", PASS_LOCK):
                return Sweep(ran=False)
            try:
                result = Sweep(dropped=await self.drop_partitions(lock))
                if result.dropped:
                    log.info("retention.dropped", extra={"partitions": result.dropped})
                tenants = [r[0] for r in await lock.fetch("SELECT retention_tenants()")]
                for tenant in tenants:
                    gone = await self.trim(tenant)
                    if gone:
                        result.deleted[tenant] = gone
            finally:
                await lock.execute("SELECT pg_advisory_unlock(hashtext($1))", PASS_LOCK)
        result.seconds = round(time.perf_counter() - began, 3)
        log.info("retention.swept", extra={"partitions": len(result.dropped), "tenants": len(result.deleted),
                                           "rows": sum(result.deleted.values()), "seconds": result.seconds})
        return result

    async def drop_partitions(self, conn: asyncpg.Connection) -> list[str]:
        """Drop every expired partition, one short transaction each; a day of events loses its ids first,
        a few pages at a time."""
        dropped = []
        blocks = max(1, self.batch_rows // 50)  # ~50 events fit in a page
        for part in await conn.fetch("SELECT name, parent FROM expired_partitions($1, $2)", *self.defaults):
            if part["parent"] == "events":
                page = 0
                while page >= 0:
                    page = await conn.fetchval("SELECT forget_partition_ids($1, $2, $3, $4, $5)", part["name"],
                                               *self.defaults, page, blocks, timeout=60)
                    await asyncio.sleep(self.pause_s)
            if await conn.fetchval("SELECT drop_expired_partition($1, $2, $3)", part["name"], *self.defaults, timeout=60):
                dropped.append(part["name"])
        return dropped

    async def trim(self, tenant: str) -> int:
        """Delete the tenant's rows past its retention in bounded batches; audited when any went."""
        total = 0
        while True:
            async with self.db.tenant(tenant) as conn:
                gone = await conn.fetchval("SELECT retention_delete_batch($1, $2, $3)", *self.defaults, self.batch_rows)
            total += gone
            if gone == 0:
                break
            await asyncio.sleep(self.pause_s)  # let the other tenants' transactions in
        if total:
            await record_system(self.db, tenant, "retention", "retention.delete", {"rows": total})
        return total

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(min(self.every_s, 60))  # not at start-up: serving comes first
            try:
                if self.claim is None or await self.claim():
                    await self.sweep()
            except (*UNAVAILABLE, TimeoutError, ServiceUnavailable, asyncpg.PostgresError, RedisError) as exc:
                log.warning("retention.failed", extra={"error": f"{type(exc).__name__}: {exc}"})

"""Tenant activity: which tenants changed lately, for the analytics that run without a request.

Forecasts, anomaly checks and threshold alerts run on a schedule, for tenants nobody
names: these are the tenants whose live state changed. PostgreSQL cannot list them
(row-level security shows a process no tenant outside a tenant transaction), so the
ingest of each process notes here, in memory, when it took new events of a tenant;
every few seconds the notes go into one Redis sorted set (tenant → last change, ms),
shared by every process and outliving restarts. No extra subscription: the hub's is
the process's only one.
"""

from __future__ import annotations

import asyncio
import logging
import time

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from server.core import background
from server.live.keys import Keys

log = logging.getLogger("wallboard.activity")

FLUSH_S = 5.0
KEEP_S = 60 * 86_400  # tenants silent this long leave the registry


class TenantActivity:
    """Tenants seen changing: in this process (``changed``) and in the shared registry (:meth:`known`)."""

    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self.changed: dict[str, float] = {}  # tenant → time.time() of the last change seen here
        self._unsaved: dict[str, float] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._flush_loop(), name="activity-flush")]

    async def close(self) -> None:
        await background.stop(self._tasks)

    def touch(self, tenant: str, at: float | None = None) -> None:
        """Note a change of the tenant (new events ingested, or a request that concerns it)."""
        when = time.time() if at is None else at
        self.changed[tenant] = when
        self._unsaved[tenant] = when

    def forget(self, tenant: str) -> None:
        """Drop the tenant from this process's list (it is being erased): no job of here runs for it again."""
        self.changed.pop(tenant, None)
        self._unsaved.pop(tenant, None)

    def recent(self, within_s: float) -> list[str]:
        """Tenants this process saw change in the last ``within_s`` seconds."""
        since = time.time() - within_s
        return [t for t, at in self.changed.items() if at >= since]

    async def known(self, within_s: float) -> list[str]:
        """Tenants any process saw change in the last ``within_s`` seconds (the registry and this process)."""
        since = time.time() - within_s
        found = set(self.recent(within_s))
        raw = await self.redis.zrangebyscore(self.keys.active_tenants, int(since * 1000), "+inf")
        found.update(t.decode() if isinstance(t, bytes) else t for t in raw)
        return sorted(found)

    async def flush(self) -> None:
        """Record the tenants seen since the last flush in the registry; forget long-silent ones."""
        if self._unsaved:
            batch, self._unsaved = self._unsaved, {}
            try:
                await self.redis.zadd(self.keys.active_tenants, {t: int(at * 1000) for t, at in batch.items()}, gt=True)
            except BaseException:
                for tenant, at in batch.items():
                    self._unsaved.setdefault(tenant, at)
                raise
        await self.redis.zremrangebyscore(self.keys.active_tenants, "-inf", int((time.time() - KEEP_S) * 1000))
        horizon = time.time() - 2 * 86_400
        self.changed = {t: at for t, at in self.changed.items() if at >= horizon}

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_S)
            try:
                await self.flush()
            except (RedisError, OSError) as exc:
                log.debug("activity.flush_failed", extra={"error": f"{type(exc).__name__}: {exc}"})

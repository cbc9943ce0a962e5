"""The tenant settings store: ``tenants.settings`` read and written through tenant transactions, cached per process."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson

from server.core.db import Database, query
from server.core.tenant_settings import TenantSettings, validate


class SettingsStore:
    """Reads and writes ``tenants.settings`` through tenant-scoped (RLS) transactions, with a cache.

    The cache is per process and kept until it is told otherwise: a put announces the change on
    the tenant's changes channel and every process calls :meth:`invalidate` for it (the hub also
    drops every entry whenever it subscribes afresh, so nothing read before a Redis outage
    survives it). ``ttl_s`` only bounds how long an announcement that never arrived can leave
    another process serving old settings; in exchange, a busy tenant costs one settings query
    per ``ttl_s`` instead of one every few seconds (each a tenant transaction of several round trips).
    A read that an invalidation overtook serves its answer but does not cache it.

    One read per tenant at a time: when an entry expires under load, every request of the tenant
    misses it at once; they wait for the one read in flight instead of each opening a transaction
    (which took as many transactions as the ingest commits, and the tenant's database share with them).
    """

    def __init__(self, db: Database, *, ttl_s: float = 300.0, max_entries: int = 10_000) -> None:
        self.db = db
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._cache: dict[str, tuple[float, TenantSettings]] = {}
        self._generation: dict[str, int] = {}
        self._epoch = 0  # bumped when every tenant's entry is dropped at once
        self._reading: dict[str, asyncio.Future[None]] = {}  # tenant → its read in flight, done when it ended

    async def get(self, tenant: str) -> TenantSettings:
        """The tenant's settings; defaults when it never stored any."""
        while True:
            hit = self._cache.get(tenant)
            if hit is not None and hit[0] > time.monotonic():
                return hit[1]
            reading = self._reading.get(tenant)
            if reading is None:
                return await self._read(tenant)
            await asyncio.wait((reading,))
            if not reading.cancelled() and (failed := reading.exception()) is not None:
                raise failed  # the database is away: the callers waiting for this read are told so at once
            # Read (the cache has it, unless a put or an invalidation overtook the read) or cancelled: once more.

    async def _read(self, tenant: str) -> TenantSettings:
        reading = self._reading[tenant] = asyncio.get_running_loop().create_future()
        seen = (self._epoch, self._generation.get(tenant, 0))
        try:
            async with self.db.tenant(tenant) as conn:
                raw = await conn.fetchval(query("tenant_settings_get"), tenant)
            result = TenantSettings() if raw is None else TenantSettings.from_json(orjson.loads(raw))
            if (self._epoch, self._generation.get(tenant, 0)) == seen:  # no put or invalidation overtook the read
                self._remember(tenant, result)
        except asyncio.CancelledError:
            reading.cancel()
            raise
        except BaseException as exc:
            reading.set_exception(exc)
            reading.exception()  # retrieved: nobody may be waiting
            raise
        finally:
            if self._reading.get(tenant) is reading:
                del self._reading[tenant]
        reading.set_result(None)
        return result

    async def put(self, tenant: str, patch: dict[str, Any]) -> TenantSettings:
        """Merge and validate ``patch`` against the stored settings under a row lock, store, return the result."""
        async with self.db.tenant(tenant) as conn:
            raw = await conn.fetchval(query("tenant_settings_lock"), tenant)
            result = validate(patch, TenantSettings.from_json(orjson.loads(raw)))
            await conn.execute(query("tenant_settings_put"), tenant, orjson.dumps(result.to_json()).decode())
        self._bump(tenant)
        self._remember(tenant, result)
        return result

    def invalidate(self, tenant: str | None = None) -> None:
        """Forget the cached settings of one tenant, or of all; a read in flight began before the change:
        nobody waits for it any more, and it does not cache what it read."""
        if tenant is None:
            self._cache.clear()
            self._reading.clear()
            self._generation.clear()
            self._epoch += 1
        else:
            self._cache.pop(tenant, None)
            self._reading.pop(tenant, None)
            self._bump(tenant)

    def _bump(self, tenant: str) -> None:
        if tenant not in self._generation and len(self._generation) >= 2 * self.max_entries:
            self._generation.clear()  # bounded; safe, because clearing also moves the epoch on
            self._epoch += 1
        self._generation[tenant] = self._generation.get(tenant, 0) + 1

    def _remember(self, tenant: str, value: TenantSettings) -> None:
        if len(self._cache) >= self.max_entries:
            now = time.monotonic()
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
            if len(self._cache) >= self.max_entries:
                self._cache.clear()
        self._cache[tenant] = (time.monotonic() + self.ttl_s, value)

"""Erasing a tenant: every row in PostgreSQL and every key in Redis (``DELETE /api/tenant``).

Rows go through ``erase_tenant_batch()`` (sql/010_retention.sql), which finds every table with a
``client_id`` column in the catalog at run time and deletes the bound tenant's rows in batches of
``batch_rows``, one short tenant transaction each, so a large tenant never holds locks or a
connection that other tenants wait for. The scorecards view is refreshed after, so no row of the
tenant stays in it either.

Keys go by ``SCAN`` with the tenant's hash-tag pattern (``*{tenant}*``: tenant ids have no braces,
so no other tenant's key matches), deleted in chunks, plus its entry in the analytics registry
and its request-budget counters (not hash-tagged; they expire within the budget window anyway).
SCAN walks the whole keyspace, so this runs only here, never on a hot path.

A process notes the tenants it applied batches for and writes those markers (``live_active``,
``live_pending``) a moment later, so the API runs a second pass ``WALLBOARD_LIVE_SWEEP_S`` after the
first (this process's healer forgets the tenant at once). What it does not stop: a connector still
posting events for the tenant writes new rows after the erasure; revoke its tokens first.

The audit entry of an erasure cannot live in the tenant's own audit log (that is erased too): it
is a ``tenant.erased`` line of the server log (``wallboard.audit``) with who asked and how much went.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import redis.asyncio as aioredis

from server.core.auth import Principal
from server.core.db import Database
from server.live.keys import Keys

log = logging.getLogger("wallboard.audit")

SCAN_COUNT = 1000


@dataclass(frozen=True)
class Erased:
    rows: int
    keys: int
    seconds: float


async def erase_tenant(db: Database, redis: aioredis.Redis, keys: Keys, who: Principal, *,
                       batch_rows: int = 5000, pause_s: float = 0.01, settle_s: float = 0.0) -> Erased:
    """Erase every row and key of ``who.tenant``; log the audit line; return what went.

    With ``settle_s`` a second pass follows that long after the first: the live-repair markers a
    process flushes a moment after it applied the tenant's last batch (every process does so every
    ``WALLBOARD_LIVE_SWEEP_S``) are erased too.
    """
    began = time.perf_counter()
    rows, erased_keys = await _erase(db, redis, keys, who.tenant, batch_rows, pause_s)
    if settle_s:
        await asyncio.sleep(settle_s)
        more_rows, more_keys = await _erase(db, redis, keys, who.tenant, batch_rows, pause_s)
        rows, erased_keys = rows + more_rows, erased_keys + more_keys
    result = Erased(rows=rows, keys=erased_keys, seconds=round(time.perf_counter() - began, 3))
    log.warning("tenant.erased", extra={"tenant": who.tenant, "sub": who.sub or "", "role": who.role.value,
                                        "rows": result.rows, "keys": result.keys, "seconds": result.seconds})
    return result


async def _erase(db: Database, redis: aioredis.Redis, keys: Keys, tenant: str, batch_rows: int,
                 pause_s: float) -> tuple[int, int]:
    rows = 0
    while True:
        async with db.tenant(tenant) as conn:
            gone = await conn.fetchval("SELECT erase_tenant_batch($1)", batch_rows)
        rows += gone
        if gone == 0:
            break
        await asyncio.sleep(pause_s)
    async with db.pool.acquire(timeout=10) as conn:
        await conn.fetchval("SELECT refresh_scorecards()", timeout=300)
    erased_keys = 0
    for pattern in (f"{keys.prefix}:*\\{{{tenant}\\}}*", f"{keys.rate_prefix}*/{tenant}/*"):
        batch: list[bytes] = []
        async for key in redis.scan_iter(match=pattern, count=SCAN_COUNT):
            batch.append(key)
            if len(batch) >= 500:
                erased_keys += await redis.unlink(*batch)
                batch = []
        if batch:
            erased_keys += await redis.unlink(*batch)
    await redis.zrem(keys.active_tenants, tenant)
    return rows, erased_keys

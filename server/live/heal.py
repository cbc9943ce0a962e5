"""Self-healing of the live state: what a dead process, a lost Redis or any drift left wrong is found and rebuilt.

Three independent checks, each an owned background task, each rebuilding a tenant from
PostgreSQL (the system of record) through :meth:`LiveState.rebuild`, whose boards meanwhile
say ``stale`` and then get a fresh snapshot (the hub listens to the rebuild):

- **Pending batches.** Ingest writes a ``live_pending`` row in the batch's own PostgreSQL
  transaction and this module deletes it (in bulk, every second) once the batch was applied
  to Redis. The marker is in PostgreSQL, not Redis, because Redis is what it guards: a marker
  in Redis would vanish with the very data it should have repaired (a restart, a restore
  from an older snapshot, a flush), and writing it before the commit would leave markers
  for batches that never committed. In PostgreSQL it commits if and only if the events do.
  A marker older than ``live_pending_age_s`` is a batch whose process died, or lost Redis,
  between the commit and the apply: any process sweeps it and rebuilds that tenant.
- **Redis generations.** Redis's ``run_id`` changes on every start (on a cluster: any primary's,
  a failover's promoted replica included, which may have missed the last writes). The live state was last
  verified for the run_id kept in ``{p}:generation``; when the key holds another run_id this
  Redis restarted from a snapshot of some minutes ago whose ``ready`` keys say "complete"
  over old counters. One process (a lock) then rebuilds every recently active tenant that
  has live state (tenants without any are rebuilt on first touch) and records the new
  run_id. No key at all is a first start or a Redis that lost everything, ``ready`` keys
  included: nothing claims old counters, so the run_id is simply recorded.
- **Reconciliation.** Every ``live_reconcile_s``, once per tenant across processes (a lock with
  expiry), today's counters summed in Redis are compared with the PostgreSQL rollups. Ingest
  commits before it applies, so PostgreSQL may lead Redis by the batches in flight: Redis
  read *before* PostgreSQL must never exceed it (else something counted twice), and Redis
  read after it must catch up within a settling delay (else something is missing). Either
  mismatch resets and rebuilds the tenant.

Structured logs carry the figures: ``live.rebuilt`` (reason, tenant, events, seconds),
``live.mismatch`` (tenant, field differences), ``live.repaired`` (reason, tenant, seconds
from detection to a complete state), ``live.redis_restarted``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date

import asyncpg

from server.core import background
from server.core.config import Settings
from server.core.db import UNAVAILABLE, query
from server.core.errors import ServiceUnavailable
from server.core.redis_client import run_id as redis_run_id
from server.live.state import REDIS_DOWN, LiveState, load_script

log = logging.getLogger("wallboard.heal")

FLUSH_S = 1.0
SETTLE_S = 2.0  # how long Redis may lag the committed rollups (batches in flight)
FIELDS = ("offered", "answered", "abandoned", "short_abandoned", "answered_within_sl", "abandoned_within_sl",
          "handled", "handle_ms", "wait_answered_ms", "wait_abandoned_ms", "rings", "missed", "holds",
          "callbacks_requested", "callbacks_completed", "revenue_cents", "csat_n", "quality_n")
# The pending callbacks, counted per queue by apply.lua, and their records: equal in Redis at every
# instant (one script changes both), so compared with each other, not with PostgreSQL (a completion
# committed and not yet applied would make a gauge read before PostgreSQL exceed it).
PENDING = ("callbacks_pending", "callback_records")
TROUBLE = (*REDIS_DOWN, *UNAVAILABLE, ServiceUnavailable, asyncpg.PostgresError)


@dataclass
class Check:
    """The comparison of a tenant's counters of ``day`` in Redis and in PostgreSQL."""

    tenant: str
    day: str
    ready: str | None
    redis: dict[str, int]
    postgres: dict[str, int]
    differences: dict[str, int] = field(default_factory=dict)  # field → Redis minus PostgreSQL

    @property
    def equal(self) -> bool:
        """No difference (a tenant without complete live state has none: it is rebuilt when first read)."""
        return not self.differences

    def line(self) -> str:
        if self.ready != "1":
            return f"{self.tenant}: no complete live state in Redis ({self.ready or 'missing'}; rebuilt when first read)"
        if not self.differences:
            return f"{self.tenant}: equal for {self.day} (offered {self.postgres['offered']}, handled {self.postgres['handled']})"
        shown = ", ".join(f"{k} {self.redis[k]} vs {self.postgres[k]}" if k in self.postgres
                          else f"{k} {self.redis[k]} vs {self.redis[PENDING[1]]} records" for k in self.differences)
        return f"{self.tenant}: MISMATCH for {self.day} (Redis vs PostgreSQL): {shown}"


class Healer:
    """Owns the pending-marker flush, the sweep, the generation check and the reconciliation."""

    def __init__(self, live: LiveState, settings: Settings) -> None:
        self.live = live
        self.db = live.db
        self.redis = live.redis
        self.keys = live.keys
        self.settings = settings
        self._checksum = load_script(self.redis, "checksum")
        self._done: list[tuple[str, int]] = []
        self._failed: dict[str, list[tuple[float, int]]] = defaultdict(list)
        self._active: set[str] = set()
        self._started: dict[str, float] = {}
        self._verified: str | None = None
        self.stats: Counter[str] = Counter()
        self._tasks: list[asyncio.Task[None]] = []
        live.hooks.append(self._rebuild_event)

    def start(self) -> None:
        s = self.settings
        loops: list[tuple[str, float, Callable[[], Awaitable[None]]]] = [
            ("heal-flush", FLUSH_S, self.flush), ("heal-sweep", s.live_sweep_s, self.sweep),
            ("heal-generation", s.live_check_s, self.check_generation)]
        if s.live_reconcile_s:
            loops.append(("heal-reconcile", s.live_reconcile_s, self.reconcile_all))
        self._tasks = [asyncio.create_task(self._every(period, job), name=name) for name, period, job in loops]

    async def close(self) -> None:
        await background.stop(self._tasks)
        try:
            await asyncio.wait_for(self.flush(), 2)
        except (*TROUBLE, TimeoutError):
            pass  # the markers left are swept by the next process: a rebuild, never a loss

    async def _every(self, period: float, job: Callable[[], Awaitable[None]]) -> None:
        first = True
        while True:
            if not first or job != self.check_generation:  # the generation is checked at once on start
                await asyncio.sleep(period)
            first = False
            try:
                await job()
            except TROUBLE:
                pass  # Redis or PostgreSQL away: the next round tries again
            except Exception:  # noqa: BLE001 - a background check must outlive one failure
                log.exception("heal.failed", extra={"job": getattr(job, "__name__", "?")})

    # -- pending markers -------------------------------------------------------------

    @staticmethod
    def new_batch() -> int:
        return secrets.randbits(63)

    def applied(self, tenant: str, batch: int) -> None:
        """The batch is in the live state: its marker goes with the next flush."""
        self._done.append((tenant, batch))
        self._active.add(tenant)

    def failed(self, tenant: str, batch: int) -> None:
        """The batch's apply failed: its marker stays until a rebuild of the tenant that began later."""
        self._failed[tenant].append((time.monotonic(), batch))
        self._active.add(tenant)

    def forget(self, tenant: str) -> None:
        """The tenant is being erased: write no marker of it any more (its rows go with the erasure)."""
        self._active.discard(tenant)
        self._done = [(t, batch) for t, batch in self._done if t != tenant]
        self._failed.pop(tenant, None)

    def _rebuild_event(self, tenant: str, done: bool) -> None:
        if not done:
            self._started[tenant] = time.monotonic()
            return
        began = self._started.pop(tenant, time.monotonic())
        left = self._failed.pop(tenant, [])
        self._done += [(tenant, batch) for at, batch in left if at < began]
        kept = [(at, batch) for at, batch in left if at >= began]
        if kept:
            self._failed[tenant] = kept

    async def flush(self) -> None:
        """Delete the markers of applied batches and note the active tenants, in two statements."""
        done, active = self._done, self._active
        if not done and not active:
            return
        self._done, self._active = [], set()
        try:
            async with self.db.pool.acquire(timeout=5) as conn:
                if done:
                    await conn.execute(query("live_pending_clear"), [t for t, _ in done], [b for _, b in done])
                if active:
                    await conn.execute(query("live_active_touch"), sorted(active))
        except BaseException:
            self._done = done + self._done
            self._active |= active
            raise

    async def sweep(self) -> None:
        """Rebuild the tenants with markers older than ``live_pending_age_s``: batches a dead process left."""
        async with self.db.pool.acquire(timeout=5) as conn:
            rows = await conn.fetch(query("live_pending_old"), float(self.settings.live_pending_age_s))
        stuck: dict[str, list[int]] = defaultdict(list)
        oldest: dict[str, float] = {}
        for row in rows:
            stuck[row["client_id"]].append(row["batch"])
            oldest.setdefault(row["client_id"], row["created_at"].timestamp())
        for tenant, batches in stuck.items():
            if not await self.redis.set(self.keys.heal_lock(tenant, "sweep"), "1", nx=True, ex=30):
                continue  # another process sweeps it
            self.stats["pending_found"] += len(batches)
            log.warning("live.pending_found", extra={"tenant": tenant, "batches": len(batches),
                                                     "age_s": round(time.time() - oldest[tenant], 1)})
            count = await self.live.rebuild(tenant, reason="pending")
            if count < 0:
                continue  # joined a rebuild begun elsewhere, maybe before these batches: next sweep
            self._done += [(tenant, b) for b in batches]
            await self.flush()
            self._repaired(tenant, "pending", oldest[tenant])

    # -- Redis generations -----------------------------------------------------------

    async def check_generation(self) -> bool:
        """True when this Redis is the one the live state was verified for; else rebuild (one process)."""
        run_id = await redis_run_id(self.redis)
        # Read every time (not remembered): a FLUSHALL or a lost key keeps the run_id but not the key.
        known = await self.redis.get(self.keys.generation)
        if known == run_id.encode():
            self._verified = run_id
            return True
        if known is None and await self.redis.set(self.keys.generation, run_id, nx=True):
            # A first start (or a Redis that lost everything): no ready key claims old counters, every
            # tenant's state is rebuilt when first touched. Only a restore brings back an older run_id.
            self._verified = run_id
            return True
        token = secrets.token_hex(8)
        if not await self.redis.set(self.keys.generation_lock, token, nx=True, ex=120):
            return False
        detected = time.time()
        try:
            tenants = await self.active_tenants()
            restored = [t for t in tenants if await self.redis.exists(self.keys.ready(t))]
            log.warning("live.redis_restarted", extra={"run_id": run_id, "active": len(tenants), "restored": len(restored)})
            self.stats["redis_restarts"] += 1
            for tenant in restored:  # a snapshot brought back old counters marked complete: replay
                await self.live.rebuild(tenant, reason="redis_restarted")
                self._repaired(tenant, "redis_restarted", detected)
            await self.redis.set(self.keys.generation, run_id)
            self._verified = run_id
        finally:
            if await self.redis.get(self.keys.generation_lock) == token.encode():
                await self.redis.delete(self.keys.generation_lock)
        return True

    async def active_tenants(self) -> list[str]:
        """Tenants with a batch in the last ``live_active_s`` or a pending marker (from PostgreSQL: it outlives Redis)."""
        async with self.db.pool.acquire(timeout=5) as conn:
            rows = await conn.fetch(query("live_active_list"), float(self.settings.live_active_s))
        return sorted({r["client_id"] for r in rows} | self._active)

    # -- reconciliation --------------------------------------------------------------

    async def reconcile_all(self) -> None:
        for tenant in await self.active_tenants():
            if await self.redis.set(self.keys.heal_lock(tenant, "reconcile"), "1", nx=True,
                                    ex=max(1, self.settings.live_reconcile_s - 1)):
                await self.reconcile(tenant)

    async def reconcile(self, tenant: str, *, repair: bool = True) -> Check:
        """Compare today's counters of the tenant; on a mismatch (and with ``repair``) reset and rebuild it."""
        detected = time.time()
        check = await self.compare(tenant)
        self.stats["reconciled"] += 1
        if check.ready == "1" and check.differences:
            self.stats["mismatches"] += 1
            log.warning("live.mismatch", extra={"tenant": tenant, "day": check.day, "differences": check.differences})
            if repair:
                await self.live.rebuild(tenant, reset=True, reason="mismatch")
                self._repaired(tenant, "mismatch", detected)
        return check

    async def compare(self, tenant: str, settle_s: float = SETTLE_S) -> Check:
        """Redis before PostgreSQL must not exceed it; Redis after it must reach it within ``settle_s``."""
        settings = await self.live.store.get(tenant)
        day = settings.local_day(int(time.time() * 1000))
        ready, before = await self._redis_sums(tenant, day)
        async with self.db.tenant(tenant) as conn:
            row = await conn.fetchrow(query("live_checksum"), tenant, _date(day))
        pg = {f: int(row[f]) for f in FIELDS}
        check = Check(tenant, day, ready, before, pg)
        if ready != "1":
            return check
        excess = {f: before[f] - pg[f] for f in FIELDS if before[f] > pg[f]}
        if before[PENDING[0]] != before[PENDING[1]]:
            excess[PENDING[0]] = before[PENDING[0]] - before[PENDING[1]]
        if excess:
            check.differences = excess
            return check
        deadline = time.monotonic() + settle_s
        while True:
            ready, after = await self._redis_sums(tenant, day)
            check.ready, check.redis = ready, after
            lacking = {f: after[f] - pg[f] for f in FIELDS if after[f] < pg[f]}
            if ready != "1" or not lacking or time.monotonic() >= deadline:
                check.differences = lacking if ready == "1" else {}
                return check
            await asyncio.sleep(0.25)

    async def _redis_sums(self, tenant: str, day: str) -> tuple[str | None, dict[str, int]]:
        """The day's sums, and ``callbacks_pending`` (counted per queue) with ``callback_records``."""
        t = self.keys.of(tenant)
        raw = await self.live.declared(tenant, lambda m: (m.checksum_keys(t, day), list(m.queues)), self._checksum,
                                       agents=False)
        ready = raw[0].decode() if raw[0] else None
        return ready, {f: int(v) for f, v in zip((*FIELDS, *PENDING), raw[1:], strict=True)}

    def _repaired(self, tenant: str, reason: str, since: float) -> None:
        self.stats[f"repaired_{reason}"] += 1
        log.info("live.repaired", extra={"tenant": tenant, "reason": reason, "seconds": round(time.time() - since, 3)})


def _date(day: str) -> date:
    return date.fromisoformat(day)

"""Apply events to the live state in Redis, read it back, rebuild it from PostgreSQL.

Trade-offs, stated plainly:

- PostgreSQL is the system of record. Live state is derived: an event is
  applied only after it is committed, so a Redis failure never loses one.
  When Redis is unreachable the tenant is marked for rebuild and ingest goes
  on; the repair loop rebuilds it once Redis answers again.
- The apply script is idempotent and order-free (see ``apply.lua``), so a
  rebuild can run while ingest goes on: it marks the state ready first, then
  replays PostgreSQL; anything applied twice counts once.
- A tenant whose ``ready`` key is gone (Redis restarted without persistence,
  flushed, a new Redis) is rebuilt on first touch, by one process at a time
  (a Redis lock), and by one task per process.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from server.core import background
from server.core.db import Database, TenantSlots, query
from server.core.errors import ServiceUnavailable
from server.core.settings_store import SettingsStore
from server.core.tenant_settings import TenantSettings
from server.ingest.events import Event
from server.live.channels import Channels
from server.live.keys import Keys
from server.live.members import CHANGED, Members, MembersCache
from server.live.shortform import Calendar, Declared, compact

log = logging.getLogger("wallboard.live")

SCRIPTS = Path(__file__).resolve().parent / "scripts"
KEY_TTL_S = 3 * 86400
# A callback stays pending until its completion comes: a rebuild brings back those requested up to
# CALLBACK_DAYS before its replay window, and the pending records outlive their last change in Redis
# for longer than that, so a tenant with no callback activity for days still shows them (not only after a rebuild).
CALLBACK_DAYS = 30
CALLBACK_TTL_S = (CALLBACK_DAYS + 3) * 86400
REPLAY_PAGE = 5000
WAITING_LISTED = 1000  # the most waiting calls of a queue that a read lists (the `calls` view), oldest first
REDIS_DOWN = (RedisError, OSError, TimeoutError)
SETTLE_WAIT_S = 1.0  # longest a live read waits for the tenant's applies in flight here (settled())


def load_script(redis: Any, name: str) -> Any:
    """The Lua script ``scripts/<name>.lua`` registered on the client (run by EVALSHA, loaded on first use)."""
    return redis.register_script((SCRIPTS / f"{name}.lua").read_text())


class LiveState:
    """The live state of every tenant in one Redis; owns the repair loop."""

    def __init__(self, redis: aioredis.Redis, db: Database, keys: Keys, store: SettingsStore, *, tenant_max: int = 16) -> None:
        self.redis = redis
        # One tenant's live reads hold at most its share of the Redis pool (WALLBOARD_REDIS_TENANT_MAX).
        self.slots = TenantSlots(tenant_max, 5.0, what="Redis connections", code="live_busy")
        self.db = db
        self.keys = keys
        self.store = store
        self._apply = load_script(redis, "apply")
        self._read = load_script(redis, "read")
        self.read_sha: str = self._read.sha  # for the hub's pipelined reads (server/live/reads.py)
        self.channels = Channels(redis, keys)
        self.members = MembersCache()  # each tenant's queues and agents, whose keys a read declares
        self.needs_rebuild: set[str] = set()
        self._failed_at: dict[str, float] = {}  # tenant → when an apply of it last failed (monotonic)
        self._applying: dict[str, set[asyncio.Future[None]]] = {}  # tenant → its applies in flight (settled())
        self.redis_ok = True
        self._rebuilds: dict[str, asyncio.Task[int]] = {}
        self._repair: asyncio.Task[None] | None = None
        # Told (tenant, done) when this process starts (False) and ends (True) a rebuild: the hub
        # tells the tenant's boards `stale`, then sends a snapshot; the healer clears its markers.
        self.listeners: list[Callable[[str, bool], None]] = []
        self.hooks: list[Callable[[str, bool], None]] = []  # told of every rebuild, a first touch's too
        # Awaited after a rebuild's replay, before the state is declared complete: they write again what the
        # events do not carry (the forecast staffing), so no board sees the state without it.
        self.restorers: list[Callable[[str], Awaitable[None]]] = []

    # -- lifecycle -------------------------------------------------------

    def start(self) -> None:
        """Start the repair loop (rebuilds tenants whose apply failed, once Redis answers)."""
        self._repair = asyncio.create_task(self._repair_loop(), name="live-repair")

    async def close(self) -> None:
        await background.stop([self._repair, *self._rebuilds.values()])

    @property
    def stale(self) -> bool:
        """True while Redis is unreachable or some tenant waits for a rebuild."""
        return not self.redis_ok or bool(self.needs_rebuild)

    # -- apply -----------------------------------------------------------

    async def apply(self, tenant: str, events: Sequence[Event], settings: TenantSettings,
                    cal: Calendar | None = None) -> bool:
        """Apply committed events; never raises for Redis trouble (the tenant is rebuilt later).

        ``cal``: the batch's calendar when the caller has one already (ingest resolved the
        same days and thresholds for history). Returns True when the events are in the live state now.
        """
        if not events:
            return True
        # Registered before the first await: a read that follows the request's answer waits for it (settled()).
        done = asyncio.get_running_loop().create_future()
        applying = self._applying.setdefault(tenant, set())
        applying.add(done)
        try:
            cal = cal or Calendar(settings)
            declared = Declared(self.keys.of(tenant))
            payload = orjson.dumps([declared.add(compact(e, cal)) for e in events])
            result = await self._run_apply(tenant, payload, declared, force=False)
        except REDIS_DOWN as exc:
            self._redis_failed(tenant, exc)
            return False
        finally:
            done.set_result(None)
            applying.discard(done)
            if not applying and self._applying.get(tenant) is applying:
                del self._applying[tenant]
        self.redis_ok = True
        if result[0] == -1:
            self.schedule_rebuild(tenant, reason="missing")
            return False
        return True

    async def settled(self, tenant: str, patience_s: float = SETTLE_WAIT_S) -> None:
        """Wait until the tenant's applies begun in this process before now have ended (at most ``patience_s``):
        ingest answers once events are committed, and the poster's next read must still see them."""
        applying = self._applying.get(tenant)
        if applying:
            await asyncio.wait(list(applying), timeout=patience_s)

    async def _run_apply(self, tenant: str, payload: bytes, declared: Declared, *, force: bool) -> list[int]:
        """apply.lua over the batch with every key it touches declared (see Declared).

        A queued event that came after its answer or abandon counts the wait in that end's day and
        interval hashes, a hold or unhold after the leg's completion corrects its hold time in the completion's
        day, interval and agent day, which only the stored leg knows: the script then names them and changes
        nothing, and the call is repeated with them declared (each round declares more; it ends).
        """
        while True:
            result: list[Any] = await self._apply(
                keys=declared.names,
                args=[payload, KEY_TTL_S, self.channels.in_script, tenant, "force" if force else "", declared.maps(),
                      CALLBACK_TTL_S],
            )
            if result[0] != -2:
                break
            wanted = [_text(v) for v in result[2:]]
            for day, interval, queue, agent in zip(wanted[::4], wanted[1::4], wanted[2::4], wanted[3::4], strict=True):
                declared.queue(day, interval, queue)
                if agent:
                    declared.agent_day(day, agent)
        if self.channels.sharded and result[0] > 0:
            await self.channels.changed(tenant)  # a cluster's sharded channel: after the script, not in it
        return result

    def _redis_failed(self, tenant: str | None, exc: BaseException) -> None:
        if self.redis_ok:
            log.warning("live.redis_down", extra={"error": f"{type(exc).__name__}: {exc}"})
        self.redis_ok = False
        if tenant is not None:
            self.needs_rebuild.add(tenant)
            self._failed_at[tenant] = time.monotonic()

    # -- rebuild ---------------------------------------------------------

    def schedule_rebuild(self, tenant: str, *, reset: bool = False, reason: str = "missing") -> asyncio.Task[int]:
        """Start (or join) this process's rebuild of the tenant; ``reset`` starts from empty."""
        task = self._rebuilds.get(tenant)
        if task is None or task.done():
            task = asyncio.create_task(self.rebuild(tenant, reset=reset, reason=reason), name=f"rebuild-{tenant}")
            task.add_done_callback(self._rebuild_done)
            self._rebuilds[tenant] = task
        return task

    def _rebuild_done(self, task: asyncio.Task[int]) -> None:
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.warning("live.rebuild_failed", extra={"task": task.get_name(), "error": f"{type(exc).__name__}: {exc}"})

    async def rebuild(self, tenant: str, *, reset: bool = False, reason: str = "requested") -> int:
        """Replay the tenant's events of yesterday and today from PostgreSQL; return how many
        (-1 when another process's rebuild, which held the lock, completed the state instead).

        With ``reset`` the tenant's live keys are deleted first (after a change of
        thresholds, or on demand). Another process's rebuild in progress makes
        this one wait for it instead.
        """
        lock = self.keys.rebuild_lock(tenant)
        token = secrets.token_hex(8)
        for _ in range(600):
            if await self.redis.set(lock, token, nx=True, ex=120):
                break
            await asyncio.sleep(0.1)
            if not reset and await self.redis.get(self.keys.ready(tenant)) == b"1":
                return -1  # another process's rebuild completed it
        else:
            raise ServiceUnavailable(f"the live state of {tenant!r} is being rebuilt elsewhere; retry shortly")
        started = time.monotonic()
        # A first touch ("missing": a new tenant, or a Redis that came back empty, which the hub
        # reports itself) is no news to the boards; a repair of a state they showed is.
        told = reason != "missing"
        self._tell(tenant, False, told)
        try:
            if reset:
                await self._delete_tenant_keys(tenant)
            # Applies go on while the replay runs ("rebuilding" lets them in); reads wait for "1".
            await self.redis.set(self.keys.ready(tenant), "rebuilding")
            settings = await self.store.get(tenant)
            count = await self._replay(tenant, settings)
            for restore in self.restorers:
                await restore(tenant)
            await self.redis.set(self.keys.ready(tenant), "1")
            # An apply that failed after this replay began may hold events the replay did not see.
            if self._failed_at.get(tenant, 0.0) < started:
                self.needs_rebuild.discard(tenant)
        except BaseException:
            self.needs_rebuild.add(tenant)  # the repair loop tries again
            raise
        finally:
            if await self.redis.get(lock) == token.encode():
                await self.redis.delete(lock)
        self._tell(tenant, True, told)
        await self.channels.changed(tenant)
        log.info("live.rebuilt", extra={"tenant": tenant, "events": count, "reason": reason, "reset": reset,
                                        "seconds": round(time.monotonic() - started, 3)})
        return count

    def _tell(self, tenant: str, done: bool, boards: bool) -> None:
        for listener in (*self.hooks, *(self.listeners if boards else ())):
            listener(tenant, done)

    async def _replay(self, tenant: str, settings: TenantSettings) -> int:
        now = int(time.time() * 1000)
        window_start = settings.day_bounds(settings.local_day(now - 86_400_000))[0]
        since = _dt(window_start)
        count = 0
        async with self.db.tenant(tenant) as conn:
            # Called after the state was marked "rebuilding": every event received from now on is
            # applied by its own request, so the replay stops at this instant.
            until = await conn.fetchval("SELECT clock_timestamp()")
            oldest = _dt(window_start - CALLBACK_DAYS * 86_400_000)
            rows = await conn.fetch(query("agents_last_state"), tenant, since, oldest)
            rows += await conn.fetch(query("callbacks_open"), tenant, since, oldest)
        await self._apply_rows(tenant, rows, settings)
        last_ts, last_id = _dt(0), ""
        while True:
            async with self.db.tenant(tenant) as conn:
                rows = await conn.fetch(query("events_replay"), tenant, since, last_ts, last_id, REPLAY_PAGE, until)
            if not rows:
                return count
            await self._apply_rows(tenant, rows, settings)
            count += len(rows)
            last_ts, last_id = rows[-1]["ts"], rows[-1]["event_id"]

    async def _apply_rows(self, tenant: str, rows: Iterable[Any], settings: TenantSettings) -> None:
        events = [_event_from_row(row) for row in rows]
        if events:
            cal = Calendar(settings)
            declared = Declared(self.keys.of(tenant))
            payload = orjson.dumps([declared.add(compact(e, cal)) for e in events])
            await self._run_apply(tenant, payload, declared, force=True)

    async def _delete_tenant_keys(self, tenant: str) -> None:
        await self.redis.delete(self.keys.ready(tenant))
        batch = []
        # On a cluster only the node serving the tenant's slot is scanned (all its keys share it).
        node = self.redis.get_node_from_key(self.keys.ready(tenant)) if self.channels.sharded else None  # type: ignore[attr-defined]
        where = {"target_nodes": node} if node is not None else {}
        async for key in self.redis.scan_iter(match=self.keys.tenant_pattern(tenant), count=1000, **where):
            if key.decode() != self.keys.rebuild_lock(tenant):
                batch.append(key)
            if len(batch) >= 500:
                await self.redis.delete(*batch)
                batch = []
        if batch:
            await self.redis.delete(*batch)

    async def _repair_loop(self) -> None:
        """Every second: when Redis answers again, rebuild the tenants whose events it missed."""
        while True:
            await asyncio.sleep(1)
            if not self.stale:
                continue
            try:
                await self.redis.ping()
            except REDIS_DOWN:
                continue
            if not self.redis_ok:
                log.info("live.redis_back", extra={"tenants": len(self.needs_rebuild)})
            self.redis_ok = True
            for tenant in list(self.needs_rebuild):
                try:
                    await self.schedule_rebuild(tenant, reason="apply_failed")
                except REDIS_DOWN as exc:
                    self._redis_failed(tenant, exc)
                    break
                except Exception:  # noqa: BLE001 - one tenant's failure must not stop the loop
                    log.exception("live.rebuild_failed", extra={"tenant": tenant})

    # -- read ------------------------------------------------------------

    async def read(self, tenant: str, settings: TenantSettings, now_ms: int, *, agent_changes: bool) -> list[Any]:
        """The raw state of the tenant's current day (see read.lua); rebuilds it first when missing.

        ``agent_changes`` asks for the full read the ``agents`` and ``calls`` views need: each agent's
        state changes of the day, each queue's waiting calls and the pending callbacks.
        """
        call = self.read_call(tenant, settings, now_ms, agent_changes)
        for attempt in range(2):
            try:
                raw = await self.declared(tenant, call, self._read, gated=True)
            except REDIS_DOWN as exc:
                self._redis_failed(None, exc)
                raise ServiceUnavailable("the live state is unavailable: Redis is unreachable; retry shortly",
                                         code="live_unavailable") from None
            self.redis_ok = True
            if raw[0] == b"1":
                return raw  # type: ignore[no-any-return]
            if attempt == 1:
                raise ServiceUnavailable("the live state is being rebuilt; retry shortly", code="live_rebuilding")
            try:
                await asyncio.wait_for(asyncio.shield(self.schedule_rebuild(tenant)), 10)
            except TimeoutError:
                raise ServiceUnavailable("the live state is being rebuilt; retry shortly",
                                         code="live_rebuilding") from None
        raise AssertionError("unreachable")

    def read_call(self, tenant: str, settings: TenantSettings, now_ms: int,
                  agent_changes: bool) -> Callable[[Members], tuple[list[str], list[Any]]]:
        """KEYS and ARGV of read.lua for the tenant's members, as ``call(members)`` (see :meth:`declared`)."""
        day = settings.local_day(now_ms)
        interval = settings.interval_start(now_ms)
        args = [settings.day_bounds(day)[0], "1" if agent_changes else "0", now_ms - 86_400_000,
                WAITING_LISTED if agent_changes else 0]

        def call(members: Members) -> tuple[list[str], list[Any]]:
            keys, named = members.read_call(self.keys.of(tenant), day, interval, agent_changes)
            return keys, [*args, *named]

        return call

    async def declared(self, tenant: str, call: Callable[[Members], tuple[list[str], list[Any]]], script: Any,
                       *, gated: bool = False, agents: bool = True) -> list[Any]:
        """A script that reads per-queue or per-agent keys, run with the keys of the members last seen.

        ``call(members)`` gives its KEYS and ARGV. When the members sets differ from those declared,
        the script answers ``{ready, "members", queues[, agents]}`` instead (server/live/members.py):
        they are learnt and the script runs again, at most twice more (a tenant whose queues or agents
        keep appearing faster than that is told to retry). ``gated``: within the tenant's share of Redis.
        """
        members = self.members.get(tenant)
        for _ in range(3):
            keys, argv = call(members)
            if gated:
                await self.slots.take(tenant)
            try:
                raw: list[Any] = await script(keys=keys, args=argv)
            finally:
                if gated:
                    self.slots.give(tenant)
            if len(raw) < 2 or raw[1] != CHANGED:
                return raw
            members = self.members.learn(tenant, raw, agents_too=agents)
        raise ServiceUnavailable("the live state's queues and agents keep changing; retry shortly", code="live_busy")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _event_from_row(row: Any) -> Event:
    """An Event from an `events` row (whose body leaves out what the columns hold)."""
    body = orjson.loads(row["body"])
    return Event(event_id=row["event_id"], type=row["type"], ts_ms=round(row["ts"].timestamp() * 1000),
                 queue_id=row["queue_id"], agent_id=row["agent_id"], call_id=row["call_id"], body=body)

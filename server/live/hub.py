"""Fan-out: one Redis subscription per process, per-tenant coalescing, bounded client outboxes.

How an event reaches a wallboard: the apply script publishes the tenant id on one channel; every server process
holds ONE subscription to it and marks the tenant dirty. A tick (250 ms by default) reads each dirty tenant's live
state once (the reads due together in one Redis pipeline: :mod:`server.live.reads`), renders each distinct stream
(tenant × view × queue filter × agent) once, serialises it once with orjson, frames it once, and offers the same
bytes to every subscriber. The tick is per tenant: a change of a tenant last sent more than a tick ago is sent at
once (leading edge); changes within the tick after a send are coalesced into one send at its end (trailing edge). So
a quiet board sees an event in milliseconds and each stream carries at most one update per tick. A tenant whose
render takes more than ``ws_render_share`` of its tick has its tick stretched to match (big tenants update less
often rather than holding up everyone's event loop). Every read is also kept for REST polls.

Trade-offs, stated plainly:

- The hub never awaits a socket. A client whose socket takes data without
  waiting (the usual case) gets the frame written at once, from the tick: no
  task, no copy. Only a client whose socket is blocked (its transport paused
  writing) gets a writer task, and an outbox holding at most the newest message
  per stream (an unsent update is replaced by a newer one: latest wins, nothing
  piles up) plus a short queue of control messages.
- A sweep, once a second, closes with 1013 a client blocked longer than
  ``ws_send_timeout_s`` and with 4401 one whose token expired (plus the grace):
  one pass over the clients instead of a timer per connection or per send.
- ``seq`` belongs to the stream, so all subscribers of a stream share bytes.
  A client whose outbox dropped an update sees a gap and asks for ``resync``.
- Updates carry the whole view (not a diff): a wallboard that missed one is
  right again with the next. A stream is re-sent at least every
  ``ws_refresh_s`` even when nothing changed: the heartbeat that tells a quiet
  tenant from a dead connection, and fresh time-derived fields.
- When Redis is away every client is told ``status: stale``; once subscribed
  again, every stream is sent again as a ``snapshot`` (the live state rebuilt
  first if Redis lost it), then ``ok``.
- Alerts (:meth:`Hub.publish_alert`) ride the same subscription on a second
  channel and are delivered as soon as they arrive, never coalesced: each is a
  control message, in order. Pub/sub is at most once: a process cut off from
  Redis at that moment misses the alert (its clients are told ``stale``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Iterable
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from server.core import background
from server.core.config import Settings
from server.core.errors import ServiceUnavailable
from server.core.settings_store import SettingsStore
from server.live import alert_feed
from server.live.admission import Admission
from server.live.channels import SETTINGS_MARK
from server.live.keys import Keys
from server.live.outbox import FULL_VIEWS, FanoutCounts, Outbox, Stream, StreamKey, render, status_message, stream_message, sweep_clients
from server.live.reads import ReadBatch
from server.live.renderings import Rendering, Renderings
from server.live.state import LiveState
from server.live.view import Snapshot, state_digest

log = logging.getLogger("wallboard.hub")

SWEEP_S = 1.0  # how often blocked and expired clients are looked for


class Hub:
    """The process's fan-out; owns the Redis listener and the tick."""

    def __init__(self, redis: aioredis.Redis, live: LiveState, store: SettingsStore, keys: Keys,
                 settings: Settings) -> None:
        self.redis = redis
        self.live = live
        self.store = store
        self.keys = keys
        self.channels = live.channels
        self.tick_s = settings.ws_tick_ms / 1000
        self.refresh_s = settings.ws_refresh_s
        self.send_timeout_s = settings.ws_send_timeout_s
        self.max_per_tenant = settings.ws_max_connections_per_tenant
        self.max_streams = settings.ws_max_streams_per_tenant
        self.admission = Admission(settings.ws_max_connections, settings.ws_max_per_address)
        self.streams: dict[StreamKey, Stream] = {}
        self.counts = FanoutCounts()  # deliveries, bytes, coalesced, dropped, closes, tick lags (for the metrics)
        self.by_tenant: dict[str, set[StreamKey]] = {}
        self.clients: dict[str, set[Outbox]] = {}
        self.dirty: set[str] = set()
        self.live_ok = True
        self._listening = False  # the subscription is up: changes of other processes reach this one
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._inflight: dict[str, asyncio.Task[None]] = {}
        # Tenants whose live state is being rebuilt (here or elsewhere) → a count of the rebuilds
        # seen: their clients were told `stale` and get a snapshot, then `ok`, once it is readable.
        self.rebuilding: dict[str, int] = {}
        live.listeners.append(self._rebuild_event)
        self._sent: dict[str, float] = {}  # tenant → when its last tick's publish began (monotonic)
        # tenant → its tick, stretched (up to ws_refresh_s) while its renders take more than ws_render_share of it
        self._period: dict[str, float] = {}
        self.render_share = settings.ws_render_share
        self._timers: dict[str, asyncio.TimerHandle] = {}  # tenant → its trailing-edge publish
        self.renderings = Renderings(live, store, self.tick_s, settings.live_cache_tenants)
        self.reads = ReadBatch(live)
        # Reads in flight at once: never more than half the Redis pool, so ingest always finds a connection.
        self._reading = asyncio.Semaphore(max(1, settings.redis_pool_max // 2))

    # -- lifecycle -------------------------------------------------------

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._listen(), name="hub-listen"),
                       asyncio.create_task(self._tick(), name="hub-tick")]

    async def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        await background.stop([*self._tasks, *self._inflight.values()])
        await self.renderings.close()

    # -- clients ---------------------------------------------------------

    def admit(self, box: Outbox) -> bool:
        """Register a client; False when its tenant already has the most connections allowed."""
        tenant_clients = self.clients.setdefault(box.tenant, set())
        if len(tenant_clients) >= self.max_per_tenant:
            return False
        tenant_clients.add(box)
        return True

    def remove(self, box: Outbox) -> None:
        self.unsubscribe(box)
        tenant_clients = self.clients.get(box.tenant)
        if tenant_clients is not None:
            tenant_clients.discard(box)
            if not tenant_clients:
                del self.clients[box.tenant]

    def unsubscribe(self, box: Outbox) -> None:
        for key in box.streams:
            stream = self.streams.get(key)
            if stream is None:
                continue
            stream.subscribers.discard(box)
            if not stream.subscribers:
                del self.streams[key]
                keys = self.by_tenant.get(key.tenant)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del self.by_tenant[key.tenant]
        box.streams = ()

    async def subscribe(self, box: Outbox, keys: Iterable[StreamKey]) -> bool:
        """Replace the client's subscriptions and queue a snapshot of each new stream.

        False (nothing changed) when the tenant would follow more than ``max_streams`` distinct streams.
        """
        wanted = tuple(dict.fromkeys(keys))
        kept = {k for k in self.by_tenant.get(box.tenant, ()) if self.streams[k].subscribers - {box}}
        if len(kept.union(wanted)) > self.max_streams:
            return False
        self.unsubscribe(box)
        box.streams = wanted
        for key in box.streams:
            stream = self.streams.get(key)
            if stream is None:
                stream = self.streams[key] = Stream(key)
                self.by_tenant.setdefault(key.tenant, set()).add(key)
            stream.subscribers.add(box)
        await self.resync(box)
        return True

    async def resync(self, box: Outbox) -> None:
        """Queue a fresh snapshot of every stream the client follows."""
        keys = list(box.streams)
        # Until its snapshot is queued, the client takes no update of these streams: the
        # snapshot (built after any publish in flight) already holds the newest document.
        box.joining = set(keys)
        try:
            if any(self.streams[k].body is None for k in keys):
                await self.publish(box.tenant)
            for key in keys:
                stream = self.streams.get(key)
                if stream is None or stream.body is None:
                    continue
                if stream.snapshot is None:
                    stream.snapshot = stream_message("snapshot", key.view, stream.seq, stream.body)
                box.joining.discard(key)
                box.offer(key, stream.snapshot)
        finally:
            box.joining = None

    # -- rendering -------------------------------------------------------

    async def publish(self, tenant: str, *, kind: str = "update", force: bool = False) -> None:
        """Read the tenant once and send every stream whose document changed (or is due for refresh)."""
        lock = self._locks.setdefault(tenant, asyncio.Lock())
        async with lock:
            keys = list(self.by_tenant.get(tenant, ()))
            if not keys:
                self._locks.pop(tenant, None)
                return
            began = time.monotonic()
            settings = await self.store.get(tenant)
            now_ms = int(time.time() * 1000)
            need_agents = any(k.view in FULL_VIEWS for k in keys)
            async with self._reading:
                raw = await self.reads.read(tenant, settings, now_ms, agent_changes=need_agents)
            rendering = time.monotonic()
            snap = Snapshot(raw, settings, now_ms)
            self.renderings.put(tenant, Rendering(snap, began, need_agents))
            agents = snap.agents_list() if need_agents else []
            now = time.monotonic()
            for key in keys:
                stream = self.streams.get(key)
                if stream is None:
                    continue
                body = orjson.dumps(render(key, snap, agents))
                tag = state_digest(body)
                if not force and tag == stream.tag and now - stream.sent_at < self.refresh_s:
                    continue
                stream.seq += 1
                stream.body, stream.tag, stream.sent_at = body, tag, now
                stream.snapshot = None
                data = stream_message(kind, key.view, stream.seq, body)
                if kind == "snapshot":
                    stream.snapshot = data
                dropped = 0
                for box in stream.subscribers:  # Outbox.offer, its common case inline: one call less per delivery
                    if box.task is not None or box.joining is not None or not box.wire.write(data):
                        dropped += box.offer(key, data)
                counts, n = self.counts, len(stream.subscribers)
                counts.deliveries += n
                counts.bytes += n * len(data)
                counts.dropped += dropped
            cost = time.monotonic() - rendering  # the event loop's time on this tenant: no await since
            self._period[tenant] = min(self.refresh_s, max(self.tick_s, cost / self.render_share))

    def changed(self, tenant: str) -> None:
        """The tenant changed: publish now if its last publish began a tick ago or more, else at that tick's end."""
        if tenant.startswith(SETTINGS_MARK):  # its settings changed in some process: read them again here
            tenant = tenant[len(SETTINGS_MARK):]
            self.store.invalidate(tenant)
        if tenant not in self.by_tenant:
            return
        self.dirty.add(tenant)
        if not self.live_ok or tenant in self._inflight or tenant in self._timers:
            self.counts.coalesced += 1
            return  # the publish in flight or the timer set takes this change too
        wait = self._sent.get(tenant, -self.tick_s) + self._period.get(tenant, self.tick_s) - time.monotonic()
        if wait > 0:
            self._timers[tenant] = asyncio.get_running_loop().call_later(wait, self._trailing, tenant)
            return
        self.dirty.discard(tenant)
        self._sent[tenant] = time.monotonic()
        task = asyncio.create_task(self._refresh(tenant), name=f"publish-{tenant}")
        self._inflight[tenant] = task
        task.add_done_callback(self._published)

    def _trailing(self, tenant: str) -> None:
        del self._timers[tenant]
        if tenant in self.dirty:
            self.changed(tenant)

    async def _tick(self) -> None:
        """Every tick: publish the quiet tenants due for a refresh (and any change left waiting); sweep each second."""
        swept = time.monotonic()
        while True:
            woke = time.monotonic() + self.tick_s
            await asyncio.sleep(self.tick_s)
            now = time.monotonic()
            if len(self.counts.tick_lags) < 1000:  # drained by the metrics sampler; bounded if none runs
                self.counts.tick_lags.append(now - woke)
            if now - swept >= SWEEP_S:
                swept = now
                self.sweep(now)
            if not self.live_ok:
                if self._listening:  # `ok` only once other processes' changes reach this one again
                    with contextlib.suppress(RedisError, OSError, ServiceUnavailable):
                        await self._recover()
                continue
            self.dirty.update(k.tenant for k, s in self.streams.items() if now - s.sent_at >= self.refresh_s)
            self.dirty &= self.by_tenant.keys()
            for tenant in list(self.dirty):
                self.changed(tenant)

    def sweep(self, now: float) -> None:
        """Evict the clients blocked on a send for longer than the send timeout (1013) or past their token (4401).

        Evicted clients (these, and those that let their control queue fill up) are dropped from the hub here.

        One pass over every client a second (about a millisecond for 10,000)
        costs less than a timer per connection or a timeout per send.
        """
        self.renderings.prune(now)
        for tenant in [t for t in self._sent if t not in self.by_tenant]:
            del self._sent[tenant]
            self._period.pop(tenant, None)
        for box in sweep_clients(self.clients, now, self.send_timeout_s, self.counts):
            self.remove(box)  # stop feeding them: a stuck client holds no more than what is in flight

    def _published(self, task: asyncio.Task[None]) -> None:
        """A tenant's publish ended; a slow tenant never holds up the others' ticks."""
        tenant = task.get_name().removeprefix("publish-")
        self._inflight.pop(tenant, None)
        if task.cancelled():
            return
        if (exc := task.exception()) is not None:
            self.dirty.add(tenant)
            if isinstance(exc, (RedisError, OSError)) or (isinstance(exc, ServiceUnavailable)
                                                          and exc.code == "live_unavailable"):
                self._set_live(False)
            elif isinstance(exc, ServiceUnavailable) and exc.code == "live_rebuilding":
                self._rebuild_event(tenant, False)  # rebuilt by another process: this one's clients wait too
            elif not isinstance(exc, ServiceUnavailable):  # "being rebuilt": simply try again next tick
                log.error("hub.publish_failed", exc_info=exc, extra={"tenant": tenant})
        if tenant in self.dirty:  # changed while it rendered: at the end of this tick
            self.changed(tenant)

    # -- Redis -----------------------------------------------------------

    async def _listen(self) -> None:
        """Hold the one subscription; on failure tell clients `stale` and resubscribe with jittered back-off."""
        self._attempt = 0
        while True:
            try:
                await self.channels.listen(self.changed, self.deliver_alert, self._subscribed)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, ServiceUnavailable) as exc:
                self._listening = False
                if self.live_ok:
                    log.warning("hub.redis_lost", extra={"error": f"{type(exc).__name__}: {exc}"})
                self._set_live(False)
                await self.channels.refresh()
            self._attempt += 1
            await asyncio.sleep(random.uniform(0, min(5.0, 0.1 * 2 ** self._attempt)))

    def _subscribed(self) -> None:
        """Subscribed (again): settings changes announced while unsubscribed were missed, so drop every cached one."""
        self._attempt, self._listening = 0, True
        self.store.invalidate()

    async def _recover(self) -> None:
        """Redis is back: a fresh snapshot of every stream, then `status: ok`."""
        for tenant in list(self.by_tenant):
            await self.publish(tenant, kind="snapshot", force=True)
        self._set_live(True)
        log.info("hub.redis_back", extra={"tenants": len(self.by_tenant)})

    def _rebuild_event(self, tenant: str, done: bool) -> None:
        """A rebuild of the tenant began (tell its clients `stale`) or ended (a snapshot at the next tick)."""
        if done:
            self.dirty.add(tenant)
            return
        seen = self.rebuilding.get(tenant)
        self.rebuilding[tenant] = (seen or 0) + 1
        if seen is None:
            message = status_message(False)
            for box in list(self.clients.get(tenant, ())):
                box.say(message)

    async def _refresh(self, tenant: str) -> None:
        """The tick's publish: an update, or after a rebuild a snapshot of every stream, then `ok`."""
        seen = self.rebuilding.get(tenant)
        if seen is None:
            await self.publish(tenant)
            return
        await self.publish(tenant, kind="snapshot", force=True)
        if self.rebuilding.get(tenant) == seen:  # no rebuild began meanwhile
            del self.rebuilding[tenant]
            message = status_message(True)
            for box in list(self.clients.get(tenant, ())):
                box.say(message)

    def _set_live(self, ok: bool) -> None:
        if ok == self.live_ok:
            return
        self.live_ok = ok
        message = status_message(ok)
        for boxes in list(self.clients.values()):
            for box in list(boxes):
                box.say(message)

    # -- alerts ----------------------------------------------------------

    async def publish_alert(self, tenant: str, alert: dict[str, Any]) -> None:
        """Send ``{"type": "alert", **alert}`` to every client of ``tenant``, at every process (see alert_feed)."""
        await self.channels.alert(tenant, alert_feed.encode(tenant, alert))

    def deliver_alert(self, payload: bytes) -> None:
        """Queue one alert from the alerts channel for this process's clients of its tenant."""
        alert_feed.deliver(self.clients, payload)

    def tenant_connections(self, tenant: str) -> int:
        return len(self.clients.get(tenant, ()))

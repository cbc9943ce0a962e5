"""The process's latest rendering of each tenant, for REST polls of the live views.

A wallboard that polls ``/api/metrics/live`` with ``If-None-Match`` mostly gets a 304. That
answer is served from here: the newest :class:`Rendering` of the tenant (one read of its live
state, turned into documents lazily and each document's ETag computed once), so a 304 costs no
Redis round trip and no render.

Freshness: a rendering is served for at most one tick (``ws_tick_ms``) after its read began,
so an answer never reflects a state older than one tick; and a write through this process
(an ingest, a settings change: :meth:`Renderings.changed`) is seen by the next read of the
tenant here, so a client that posts then reads gets what it posted (ingest answers once the events are
committed: the read first waits for the tenant's applies in flight here, :meth:`LiveState.settled`).
The hub stores every read it makes for its WebSocket subscribers (:meth:`Renderings.put`); when it
has none for the tenant, or its rendering is older than a tick, the first poller starts one read and
every concurrent poller of the tenant awaits that same read (single flight).

Bounds: at most ``max_tenants`` renderings of each kind (the full read, with the agents' state
changes and the waiting calls that only the agents and calls views need, and the lighter one)
are kept, the oldest evicted first; an expired one is never served, and :meth:`Renderings.prune` (from the hub's sweep) drops idle tenants'.
Each rendering keeps at most ``DOCS_KEPT`` documents (views × filters); past that a document is
rendered per request and not kept.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import orjson

from server.core import background
from server.core.settings_store import SettingsStore
from server.live.state import LiveState
from server.live.view import Snapshot, etag

DOCS_KEPT = 64  # documents (views × filters) kept per rendering


class Doc:
    """One document of a rendering with its ETag, and its response body once a 200 asked for it."""

    __slots__ = ("data", "tag", "_body")

    def __init__(self, data: Any) -> None:
        self.data = data
        self.tag = etag(data)
        self._body: bytes | None = None

    def body(self) -> bytes:
        """The API.md success envelope of the document, encoded once."""
        if self._body is None:
            envelope: dict[str, Any] = {"success": True, "data": self.data}
            if isinstance(self.data, list):
                envelope["count"] = len(self.data)
            self._body = orjson.dumps(envelope, option=orjson.OPT_NON_STR_KEYS)
        return self._body


def overview_queues(rendering: Rendering) -> list[dict[str, Any]]:
    """The ``queues`` document: the overview's queues."""
    queues: list[dict[str, Any]] = rendering.snap.overview()["queues"]
    return queues


class Rendering:
    """One read of a tenant's live state (``at``: when the read began, monotonic) and the documents made from it."""

    __slots__ = ("snap", "at", "agents", "docs", "_agents_list")

    def __init__(self, snap: Snapshot, at: float, agents: bool) -> None:
        self.snap, self.at, self.agents = snap, at, agents
        self.docs: dict[Hashable, Doc] = {}
        self._agents_list: list[dict[str, Any]] | None = None

    def doc(self, name: Hashable, make: Callable[[Rendering], Any]) -> Doc:
        """The document called ``name``, made by ``make(self)`` the first time it is asked for."""
        found = self.docs.get(name)
        if found is None:
            found = Doc(make(self))
            if len(self.docs) < DOCS_KEPT:
                self.docs[name] = found
        return found

    def queues(self) -> Doc:
        """The overview's queues (REST ``/api/metrics/queue/status``, and what the alert evaluator checks)."""
        return self.doc("queues", overview_queues)

    def agents_list(self) -> list[dict[str, Any]]:
        """Every agent (needs a read with the agents' state changes)."""
        if self._agents_list is None:
            self._agents_list = self.snap.agents_list()
        return self._agents_list


class Renderings:
    """Latest rendering per tenant, served for at most ``tick_s``; one read in flight per tenant and kind."""

    def __init__(self, live: LiveState, store: SettingsStore, tick_s: float, max_tenants: int) -> None:
        self.live, self.store, self.tick_s, self.max_tenants = live, store, tick_s, max_tenants
        self._kept: dict[bool, OrderedDict[str, Rendering]] = {False: OrderedDict(), True: OrderedDict()}
        self._flights: dict[tuple[str, bool], tuple[float, asyncio.Task[Rendering]]] = {}  # (began, read)
        self._changed: dict[str, float] = {}  # tenant → when this process last changed it (monotonic)
        self.reads = 0  # reads started here (not the hub's), for tests and benches

    async def get(self, tenant: str, *, agents: bool) -> Rendering:
        """A rendering of ``tenant`` whose read began less than a tick ago (with the agents' changes if ``agents``)."""
        now = time.monotonic()
        since = max(now - self.tick_s, self._changed.get(tenant, 0.0))  # a read that began before is too old
        for kind in ((True,) if agents else (False, True)):
            found = self._kept[kind].get(tenant)
            if found is not None and found.at > since:
                return found
        key = (tenant, agents)
        flight = self._flights.get(key)
        if flight is None or flight[0] <= since:
            task = asyncio.create_task(self._read(tenant, agents), name=f"render-{tenant}")
            flight = self._flights[key] = (now, task)
            task.add_done_callback(lambda done: self._landed(key, done))
        return await asyncio.shield(flight[1])  # a poller that goes away does not cancel the others' read

    def changed(self, tenant: str) -> None:
        """This process has just changed the tenant's live state or settings: serve no rendering read before now."""
        self._changed[tenant] = time.monotonic()

    def _landed(self, key: tuple[str, bool], task: asyncio.Task[Rendering]) -> None:
        if (flight := self._flights.get(key)) is not None and flight[1] is task:
            del self._flights[key]
        if not task.cancelled():
            task.exception()  # retrieved: every poller awaiting it got it already

    async def _read(self, tenant: str, agents: bool) -> Rendering:
        self.reads += 1
        at = time.monotonic()
        await self.live.settled(tenant)  # the events this process answered for are in the state read
        settings = await self.store.get(tenant)
        now_ms = int(time.time() * 1000)
        raw = await self.live.read(tenant, settings, now_ms, agent_changes=agents)
        rendering = Rendering(Snapshot(raw, settings, now_ms), at, agents)
        self.put(tenant, rendering)
        return rendering

    def put(self, tenant: str, rendering: Rendering) -> None:
        """Keep ``rendering`` as the tenant's latest of its kind (unless a newer one is kept); evict the oldest."""
        kept = self._kept[rendering.agents]
        old = kept.pop(tenant, None)
        kept[tenant] = rendering if old is None or rendering.at >= old.at else old
        while len(kept) > self.max_tenants:
            kept.popitem(last=False)

    def prune(self, now: float) -> None:
        """Drop the renderings no request may be served from any more (older than a tick), and old change marks."""
        for tenant in [t for t, at in self._changed.items() if now - at >= self.tick_s]:
            del self._changed[tenant]
        for kept in self._kept.values():
            while kept:
                tenant, oldest = next(iter(kept.items()))
                if now - oldest.at < self.tick_s:
                    break
                del kept[tenant]

    def __len__(self) -> int:
        return sum(len(kept) for kept in self._kept.values())

    async def close(self) -> None:
        await background.stop([task for _, task in self._flights.values()])

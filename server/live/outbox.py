"""What a WebSocket client is owed: the streams it follows, frames encoded once, its outbox.

A :class:`StreamKey` names one distinct rendering (tenant, view, queue filter or agent);
the hub keeps one :class:`Stream` per key with its ``seq`` and last document. Messages are
encoded once as complete WebSocket text frames (:func:`encode`) and offered to every
subscriber's :class:`Outbox`, which writes through the :class:`Writer` it is given and keeps only the newest message per stream and a short
queue of control messages, so a slow client never piles up memory.
"""

from __future__ import annotations

import asyncio
import struct
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from server.live.calls import calls_document
from server.live.view import Snapshot, iso_ms

VIEWS = ("overview", "agents", "calls")
FULL_VIEWS = ("agents", "calls")  # views rendered from a full read (LiveState.read's ``agent_changes``)
CONTROL_QUEUE = 64

Frame = bytes  # one complete, unmasked WebSocket text frame (RFC 6455 §5.2)


def frame(payload: bytes) -> Frame:
    """``payload`` (UTF-8 JSON) as a final text frame, built once and written as-is to every recipient."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 1 << 16:
        return struct.pack("!BBH", 0x81, 126, n) + payload
    return struct.pack("!BBQ", 0x81, 127, n) + payload


def encode(body: Any) -> Frame:
    """A server → client message: orjson, then one text frame."""
    return frame(orjson.dumps(body))


def stream_message(kind: str, view: str, seq: int, data: bytes) -> Frame:
    """``{"type": kind, "view": view, "seq": seq, "data": …}`` framed, around a document already serialised.

    The same bytes as :func:`encode` of that dict (orjson writes no spaces), without serialising the document again.
    """
    return frame(b'{"type":%b,"view":%b,"seq":%d,"data":%b}' % (orjson.dumps(kind), orjson.dumps(view), seq, data))


@dataclass(frozen=True, slots=True)
class StreamKey:
    """One distinct rendering: a tenant's view, filtered to some queues, or to one agent."""

    tenant: str
    view: str
    queues: tuple[str, ...] = ()
    agent: str | None = None


@dataclass(eq=False)
class Stream:
    key: StreamKey
    subscribers: set[Outbox] = field(default_factory=set)
    seq: int = 0
    tag: bytes | None = None  # view.state_digest of ``body``
    body: bytes | None = None  # the last document sent, as JSON
    sent_at: float = 0.0
    snapshot: Frame | None = None  # the encoded snapshot of ``seq``


class Writer(Protocol):
    """How an outbox reaches its socket; server/api/wire.py has the two kinds (direct and ASGI ``send``)."""

    def write(self, data: Frame) -> bool:
        """Write ``data`` now if the socket takes it without waiting; False: nothing was written."""

    async def send(self, data: Frame) -> None:
        """Write ``data``, waiting while the socket is blocked; ConnectionError when the client is gone."""

    async def close(self, code: int, reason: str) -> None:
        """Close the connection with ``code`` (a bounded wait; never raises)."""

    due: float  # (monotonic) the earliest time keepalive() can have something to do: the sweep calls it from then on

    def keepalive(self, now: float) -> bool:
        """Called by the hub's sweep from ``due`` on: ping when due; True when an unanswered ping closed the connection."""


class Outbox:
    """One client as the hub sees it: what it follows, what it has yet to receive, and its :class:`Writer`.

    A frame is written at once, from the caller (the hub's tick), when nothing is
    queued and the writer takes it without waiting. Otherwise it is queued (the
    newest message per stream and a few control messages) and a drain task, which
    lives only while there is something to send, writes it, waiting on the socket;
    ``blocked_since`` tells the hub's sweep how long it has waited. An idle client
    holds no task, no timer and no empty containers: just this object's slots.
    """

    __slots__ = ("tenant", "alerts", "wire", "pending", "control", "streams", "joining", "expires_at",
                 "blocked_since", "task", "closing")

    def __init__(self, tenant: str, expires_at: float, wire: Writer, *, alerts: bool = True) -> None:
        self.tenant = tenant
        self.alerts = alerts  # whether the tenant's alerts (queue figures) are for this client
        self.wire = wire
        self.pending: dict[StreamKey, Frame] | None = None
        self.control: list[Frame] | None = None
        self.streams: tuple[StreamKey, ...] = ()
        self.joining: set[StreamKey] | None = None
        self.expires_at = expires_at  # wall-clock time after which the sweep closes it with 4401
        self.blocked_since = 0.0  # monotonic time its current send started waiting on the socket; 0: not waiting
        self.task: asyncio.Task[None] | None = None  # the drain task while something is queued, or the closing
        self.closing = False  # evicted: the hub's sweep drops it, its task closes the socket

    # -- queueing --------------------------------------------------------

    def offer(self, key: StreamKey, data: Frame) -> bool:
        """Send a stream message, or queue it in place of an unsent older one of the same stream.

        True when it replaced such an older one (an update dropped for this client)."""
        if self.joining is not None and key in self.joining:
            return False
        if self.task is None and self.wire.write(data):
            return False
        replaced = False
        if self.pending is None:
            self.pending = {key: data}
        else:
            replaced = key in self.pending
            self.pending[key] = data
        self.wake()
        return replaced

    def say(self, data: Frame) -> None:
        """Send a control message, or queue it; a client that lets CONTROL_QUEUE of them pile up is evicted."""
        if self.task is None and self.wire.write(data):
            return
        if self.control is None:
            self.control = [data]
        elif len(self.control) >= CONTROL_QUEUE:
            self.evict(1013, "client is not reading its messages")
            return
        else:
            self.control.append(data)
        self.wake()

    # -- writing ---------------------------------------------------------

    def wake(self) -> None:
        """Something was queued: make sure a drain task writes it."""
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._drain())

    def evict(self, code: int, reason: str) -> None:
        """Close the client with ``code``; the hub's sets are left alone (they may be iterated): its sweep drops it."""
        if self.closing:
            return
        self.closing = True
        previous = self.task
        if previous is not None:
            previous.cancel()
        self.task = asyncio.get_running_loop().create_task(self._evict(code, reason, previous))

    async def finish(self) -> None:
        """The connection ended: stop the drain task (a closing one runs to its end) and wait for it."""
        task = self.task
        if task is not None:
            if not self.closing:
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _evict(self, code: int, reason: str, previous: asyncio.Task[None] | None) -> None:
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        await self.wire.close(code, reason)

    async def _drain(self) -> None:
        """Send what the outbox holds, waiting on the socket as long as the hub's sweep allows, then end."""
        try:
            while items := self.take():
                for data in items:
                    self.blocked_since = time.monotonic()
                    await self.wire.send(data)
                    self.blocked_since = 0.0
        except (OSError, RuntimeError):  # the Writer's ConnectionError is an OSError
            pass  # the connection is gone: its reader sees the disconnect
        finally:
            self.blocked_since = 0.0
            if not self.closing:
                self.task = None

    def follows(self, queue: Any) -> bool:
        """Whether the client's queue filter lets ``queue`` through (no filter, or no subscription: yes)."""
        for key in self.streams:  # one subscribe message sets one filter for all of a client's streams
            return not key.queues or queue in key.queues
        return True

    def take(self) -> list[Frame]:
        """Everything due, control messages first; clears the outbox."""
        out = self.control or []
        if self.pending:
            out.extend(self.pending.values())
        self.pending = self.control = None
        return out


@dataclass(slots=True)
class FanoutCounts:
    """Plain counters the hub moves on its hot paths; the metrics sampler reads them (server/core/metrics.py)."""

    deliveries: int = 0  # messages offered to clients
    bytes: int = 0  # their bytes
    coalesced: int = 0  # tenant changes folded into a publish already due
    dropped: int = 0  # queued updates replaced by a newer one before they were sent
    closes: dict[str, int] = field(default_factory=dict)  # clients closed by the sweep, by reason
    tick_lags: list[float] = field(default_factory=list)  # how late each tick woke up (drained by the sampler)

    def closed(self, reason: str) -> None:
        self.closes[reason] = self.closes.get(reason, 0) + 1


def sweep_clients(clients: dict[str, set[Outbox]], now: float, send_timeout_s: float,
                  counts: FanoutCounts) -> list[Outbox]:
    """Evict the clients blocked on a send for longer than the send timeout (1013) or past their token (4401);
    return them and those evicted before (their control queue filled up), for the hub to drop.

    Every other client's wire is given its keepalive turn (:meth:`Writer.keepalive`)."""
    stuck_before = now - send_timeout_s
    wall = time.time()
    closing = []
    for boxes in clients.values():
        for box in boxes:
            if box.closing:
                counts.closed("control_overflow")
            elif box.expires_at <= wall:
                box.evict(4401, "token expired: send a fresh token in an auth message before it expires")
                counts.closed("token_expired")
            elif box.blocked_since and box.blocked_since < stuck_before:
                box.evict(1013, "client is not reading its messages")
                counts.closed("send_timeout")
            elif box.wire.due <= now and box.wire.keepalive(now):
                counts.closed("ping_timeout")  # closed by its wire (1011); its reader sees the disconnect
                continue
            else:
                continue
            closing.append(box)
    return closing


def status_message(live_ok: bool) -> Frame:
    return encode({"type": "status", "live": "ok" if live_ok else "stale", "as_of": iso_ms(time.time() * 1000)})


def render(key: StreamKey, snap: Snapshot, agents: list[dict[str, Any]]) -> Any:
    """The document of one stream from a tenant's snapshot."""
    wanted = set(key.queues)
    if key.view == "overview":
        return snap.overview(set(key.queues) if key.queues else None)
    if key.view == "calls":
        return calls_document(snap, wanted or None)
    rows = agents
    if key.agent is not None:
        rows = [a for a in rows if a["agent_id"] == key.agent]
    if wanted:
        rows = [a for a in rows if wanted.intersection(a["queues"])]
    return rows

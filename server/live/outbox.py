"""What a WebSocket client is owed: the streams it follows, frames encoded once, its outbox.

A :class:`StreamKey` names one distinct rendering (tenant, view, queue filter or agent);
the hub keeps one :class:`Stream` per key with its ``seq`` and last document. Messages are
encoded once as complete WebSocket text frames (:func:`encode`) and offered to every
subscriber's :class:`Outbox`, which keeps only the newest message per stream and a short
queue of control messages, so a slow client never piles up memory.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from server.live.view import iso_ms

VIEWS = ("overview", "agents")
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
    tag: str | None = None
    doc: Any = None
    sent_at: float = 0.0
    snapshot: Frame | None = None  # the encoded snapshot of ``seq``


class Outbox:
    """One client as the hub sees it: what it follows, and what it has yet to receive.

    The connection (ws.py) subclasses it and supplies the socket side:
    :meth:`write_now` writes a frame at once when the socket takes it without
    waiting, :meth:`wake` starts a writer for what had to be queued, and
    :meth:`evict` closes the client. What is queued is the newest message per
    stream and a few control messages. An idle client holds no task, no timer
    and no empty containers: just this object's slots.
    """

    __slots__ = ("tenant", "alerts", "pending", "control", "streams", "joining", "expires_at", "blocked_since")

    def __init__(self, tenant: str, expires_at: float, *, alerts: bool = True) -> None:
        self.tenant = tenant
        self.alerts = alerts  # whether the tenant's alerts (queue figures) are for this client
        self.pending: dict[StreamKey, Frame] | None = None
        self.control: list[Frame] | None = None
        self.streams: tuple[StreamKey, ...] = ()
        self.joining: set[StreamKey] | None = None
        self.expires_at = expires_at  # wall-clock time after which the sweep closes it with 4401
        self.blocked_since = 0.0  # monotonic time its current send started waiting on the socket; 0: not waiting

    # -- the socket side (ws.Connection) ---------------------------------

    def write_now(self, data: Frame) -> bool:
        """Write ``data`` at once if nothing is queued and the socket takes it without waiting."""
        return False

    def wake(self) -> None:
        """Something was queued: make sure a writer drains it."""

    def evict(self, code: int, reason: str) -> None:
        """Close the client with ``code``; must not change the hub's sets on the spot (they may be iterated)."""

    # -- queueing --------------------------------------------------------

    def offer(self, key: StreamKey, data: Frame) -> None:
        """Send a stream message, or queue it in place of an unsent older one of the same stream."""
        if self.joining is not None and key in self.joining:
            return
        if self.write_now(data):
            return
        if self.pending is None:
            self.pending = {key: data}
        else:
            self.pending[key] = data
        self.wake()

    def say(self, data: Frame) -> None:
        """Send a control message, or queue it; a client that lets CONTROL_QUEUE of them pile up is evicted."""
        if self.write_now(data):
            return
        if self.control is None:
            self.control = [data]
        elif len(self.control) >= CONTROL_QUEUE:
            self.evict(1013, "client is not reading its messages")
            return
        else:
            self.control.append(data)
        self.wake()

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


def status_message(live_ok: bool) -> Frame:
    return encode({"type": "status", "live": "ok" if live_ok else "stale", "as_of": iso_ms(time.time() * 1000)})

"""How frames reach a WebSocket: the one module that relies on what uvicorn does not publish.

An :class:`~server.live.outbox.Outbox` writes through a :class:`~server.live.outbox.Writer`;
:meth:`Wires.of` gives each connection one of two:

- :class:`AsgiWire`, the public path: every frame through the ASGI ``send`` (as a text
  message), from the outbox's drain task. Works under any ASGI server.
- :class:`DirectWire`: under uvicorn's ``websockets-sansio`` protocol (what
  ``app.uvicorn_options`` selects) the frame the hub built once is written to the
  connection's transport, from the hub's tick, past the ASGI ``send``: that path would
  cost a dict, a coroutine, an encode and a frame serialisation per message and client,
  most of the fan-out's CPU.

What :class:`DirectWire` uses is not public API: the protocol object is the ``__self__``
of the ASGI ``send`` uvicorn passes to the app, and of
``uvicorn.protocols.websockets.websockets_sansio_impl.WebSocketsSansIOProtocol`` it uses
``transport`` (written to), ``writable`` (the Event its ``pause_writing`` clears),
``close_sent`` and ``disconnected`` (no frame after a close), ``handshake_complete``,
``request`` and ``response`` (the handshake's, dropped once accepted), and ``queue``
(the ASGI ``receive`` messages). What a connection holds for months is trimmed once it
is accepted (:func:`trim`): the handshake request's headers are emptied (the
``websockets`` parser's generator frame keeps the request alive for the connection's
life: about 2.5 KiB), and uvicorn's ``asyncio.Queue`` and ``writable`` Event, four and
one deques of 760 bytes each that an idle connection never fills, are replaced by an
:class:`Inbox` and a :class:`Flag` with the same methods (about 3.5 KiB). Of Starlette only public API is used (``WebSocket.send``, ``close``,
``application_state``): ``app.WallboardApp`` hands ``ws.serve`` the ASGI ``receive`` and
``send`` themselves, so nothing reads ``WebSocket._receive`` or ``_send``. Checked against
uvicorn 0.54 and Starlette 1.10, both pinned to that minor version in pyproject.toml.

The check runs once, on the first connection (:meth:`Wires.check`): the protocol behind
its ``send`` must be that class with those attributes of the expected types. When it
fails (another server, another WebSocket implementation, a uvicorn that changed) one
``ws.direct_writes_off`` warning is logged and every connection of the process uses
:class:`AsgiWire`. ``WALLBOARD_WS_DIRECT_WRITES=off`` chooses the public path outright.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from starlette.types import Send
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState
from websockets.datastructures import Headers

from server.live.outbox import Frame, Writer

log = logging.getLogger("wallboard.ws")

PROTOCOL = ("uvicorn.protocols.websockets.websockets_sansio_impl", "WebSocketsSansIOProtocol")
CLOSE_WAIT_S = 30  # a client that stopped reading may never take the close frame
NO_HEADERS = Headers()
# The keepalive ping of every direct connection: a server frame is unmasked, so one frame serves all.
# One payload for all is safe: a connection is pinged again only after its pong came (or it is closed).
PING_PAYLOAD = b"wb:k"
PING_FRAME = bytes([0x89, len(PING_PAYLOAD)]) + PING_PAYLOAD  # what an accepted connection's handshake request keeps instead of its headers
NEVER = float("inf")


def text_of(data: Frame) -> str:
    """The payload of a frame from :func:`server.live.outbox.frame`, for the ASGI ``send``."""
    size = data[1] & 0x7F
    return data[2 if size < 126 else 4 if size == 126 else 10:].decode()


async def close(websocket: WebSocket, code: int, reason: str) -> None:
    """Close with ``code`` through the ASGI ``send``, unless already closed; never waits forever, never raises."""
    if websocket.application_state == WebSocketState.DISCONNECTED:
        return
    with contextlib.suppress(Exception):
        await asyncio.wait_for(websocket.close(code, reason), CLOSE_WAIT_S)


class AsgiWire:
    """The public path: every frame is a ``websocket.send`` text message, sent from the outbox's drain task."""

    __slots__ = ("ws",)

    def __init__(self, websocket: WebSocket) -> None:
        self.ws = websocket

    def write(self, data: Frame) -> bool:
        return False  # the ASGI send is a coroutine: only the drain task writes

    async def send(self, data: Frame) -> None:
        try:
            await self.ws.send({"type": "websocket.send", "text": text_of(data)})
        except WebSocketDisconnect as exc:
            raise ConnectionError(f"client gone ({exc.code})") from None

    async def close(self, code: int, reason: str) -> None:
        await close(self.ws, code, reason)

    due = NEVER  # uvicorn pings an ASGI connection itself

    def keepalive(self, now: float) -> bool:
        return False


class _Waiters:
    """Futures of the coroutines parked until something happens, kept only while there are some."""

    __slots__ = ("waiters",)

    def __init__(self) -> None:
        self.waiters: list[asyncio.Future[None]] | None = None

    async def _park(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self.waiters = [*(self.waiters or ()), waiter]
        try:
            await waiter
        finally:
            if self.waiters is not None and waiter in self.waiters:
                self.waiters.remove(waiter)
                if not self.waiters:
                    self.waiters = None

    def _wake(self) -> None:
        waiters, self.waiters = self.waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)


class Inbox(_Waiters):
    """uvicorn's queue of ASGI ``receive`` messages for one connection, without ``asyncio.Queue``'s four deques.

    The methods uvicorn calls (``put_nowait``, ``get``, ``empty``) and nothing else; unbounded like
    uvicorn's (it pauses reading while messages wait). A cancelled ``get`` loses no message: the
    message stays until a ``get`` returns it.
    """

    __slots__ = ("items",)

    def __init__(self, items: list[Any] | None = None) -> None:
        super().__init__()
        self.items = items or None

    @classmethod
    def taking(cls, queue: asyncio.Queue[Any]) -> Inbox:
        """An inbox holding what ``queue`` held (nobody awaits ``queue``: the caller is its only reader)."""
        items = []
        while not queue.empty():
            items.append(queue.get_nowait())
        return cls(items)

    def put_nowait(self, item: Any) -> None:
        if self.items is None:
            self.items = [item]
        else:
            self.items.append(item)
        self._wake()

    def empty(self) -> bool:
        return not self.items

    async def get(self) -> Any:
        while not self.items:
            await self._park()
        item = self.items.pop(0)
        if not self.items:
            self.items = None
        return item


class Flag(_Waiters):
    """uvicorn's ``writable`` Event (cleared by ``pause_writing``) without the deque each ``asyncio.Event`` holds."""

    __slots__ = ("value",)

    def __init__(self, value: bool) -> None:
        super().__init__()
        self.value = value

    def is_set(self) -> bool:
        return self.value

    def set(self) -> None:
        self.value = True
        self._wake()

    def clear(self) -> None:
        self.value = False

    async def wait(self) -> bool:
        if not self.value:
            await self._park()
        return True


def trim(proto: Any) -> None:
    """Drop what an accepted connection's protocol keeps but never uses again (see the module docstring)."""
    if proto.request is not None:
        proto.request.headers = NO_HEADERS
    proto.request = proto.response = None
    if type(proto.queue) is asyncio.Queue:
        proto.queue = Inbox.taking(proto.queue)
    if type(proto.writable) is asyncio.Event:
        proto.writable = Flag(proto.writable.is_set())


class DirectWire:
    """Frames written to uvicorn's transport with one ``transport.write`` each; keepalive pings from the hub's sweep.

    uvicorn pings each connection from a timer of its own (two ``TimerHandle`` s and a frame
    built by the ``websockets`` protocol per ping: at 10,000 connections and a 20 s interval, 500
    a second). A direct connection stops that timer when it is accepted; the hub's once-a-second
    sweep calls :meth:`keepalive` instead, which writes one pre-built ping frame (the same bytes
    for every connection) and closes with 1011, as uvicorn does, a connection whose pong has not
    come ``ws_ping_timeout`` after its ping. uvicorn's ``handle_pong`` still takes the pong: it
    clears ``pending_ping_payload`` when the payload matches. The cost: pings and timeouts land on
    the sweep's one-second grid, so a dead client is closed up to a second later than uvicorn would.
    """

    __slots__ = ("proto", "ws", "due")

    def __init__(self, proto: Any, websocket: WebSocket) -> None:
        self.proto = proto
        self.ws = websocket
        self.due = NEVER  # (monotonic) the earliest time keepalive() can have something to do
        if proto.ping_interval:
            proto.stop_keepalive()  # the hub's sweep pings from now on
            proto.ping_sent_at = time.monotonic()  # the first ping one interval after the accept, as uvicorn's
            self._schedule()

    def keepalive(self, now: float) -> bool:
        """Ping the connection when its interval has passed; close it (1011) when its last ping went unanswered.

        True when it was closed. ``now`` is ``time.monotonic()``, the clock of asyncio's default loops.
        Before :attr:`due` there is nothing to do: the sweep skips the call (one comparison per connection
        and second instead of a method call reading six attributes).
        """
        proto = self.proto
        if not proto.ping_interval or proto.close_sent or proto.disconnected:
            self.due = NEVER
            return False
        if proto.pending_ping_payload is not None:
            if proto.ping_timeout is not None and now - proto.ping_sent_at >= proto.ping_timeout:
                self.due = NEVER
                proto.keepalive_timeout()  # uvicorn's own: a 1011 close frame, then the transport closed
                return True
        elif now - proto.ping_sent_at >= proto.ping_interval and not proto.transport.is_closing():
            proto.pending_ping_payload = PING_PAYLOAD
            proto.ping_sent_at = now
            proto.transport.write(PING_FRAME)
        self._schedule()
        return False

    def _schedule(self) -> None:
        # The pong may come at any time (uvicorn clears pending_ping_payload), so the next turn is the
        # nearer of the ping's timeout and the next ping.
        proto = self.proto
        wait = proto.ping_interval if proto.ping_timeout is None else min(proto.ping_interval, proto.ping_timeout)
        self.due = proto.ping_sent_at + wait

    def write(self, data: Frame) -> bool:
        proto = self.proto
        if not proto.writable.is_set():
            return False
        if not (proto.close_sent or proto.disconnected or proto.transport.is_closing()):
            proto.transport.write(data)
        return True  # or dropped: the connection is closing, its reader sees the disconnect

    async def send(self, data: Frame) -> None:
        proto = self.proto
        if not proto.writable.is_set():
            await proto.writable.wait()  # uvicorn sets it again when the connection is lost
        if proto.close_sent or proto.disconnected or proto.transport.is_closing():
            raise ConnectionError("client gone")
        proto.transport.write(data)

    async def close(self, code: int, reason: str) -> None:
        await close(self.ws, code, reason)


def versions() -> dict[str, str]:
    found = {}
    for name in ("uvicorn", "starlette", "websockets"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "absent"
    return found


def problem(proto: Any) -> str | None:
    """Why the protocol behind an ASGI ``send`` cannot be written to directly; None when it can."""
    kind = type(proto)
    if (kind.__module__, kind.__qualname__) != PROTOCOL:
        return f"the ASGI send belongs to {kind.__module__}.{kind.__qualname__}, not {'.'.join(PROTOCOL)}"
    expected: dict[str, type | tuple[type, ...]] = {
        "writable": (asyncio.Event, Flag), "queue": (asyncio.Queue, Inbox), "close_sent": bool, "disconnected": bool,
        "handshake_complete": bool}
    for name, types in expected.items():
        if not isinstance(getattr(proto, name, None), types):
            return f"{kind.__qualname__}.{name} is not a {types}"
    keepalive = ("stop_keepalive", "keepalive_timeout")
    if not all(callable(getattr(proto, name, None)) for name in keepalive) or not all(
            hasattr(proto, name) for name in ("ping_interval", "ping_timeout", "ping_sent_at", "pending_ping_payload")):
        return f"{kind.__qualname__} has not the keepalive of uvicorn 0.54 (ping_sent_at, pending_ping_payload, ...)"
    transport = getattr(proto, "transport", None)
    if not all(callable(getattr(transport, name, None)) for name in ("write", "is_closing")):
        return f"{kind.__qualname__}.transport has no write() and is_closing()"
    if not (hasattr(proto, "request") and hasattr(proto, "response")):
        return f"{kind.__qualname__} keeps no request and response"
    if proto.request is not None and not isinstance(getattr(proto.request, "headers", None), Headers):
        return f"{kind.__qualname__}.request has no websockets Headers"
    return None


class Wires:
    """Chooses each connection's :class:`Writer`; owns the once-per-process check of the direct path."""

    def __init__(self, direct: bool = True) -> None:
        self.direct = direct  # WALLBOARD_WS_DIRECT_WRITES
        self.checked: type | None = None  # the protocol class that passed the check

    def of(self, websocket: WebSocket, send: Send) -> Writer:
        """The writer for an accepted connection whose ASGI ``send`` (as uvicorn called the app) is ``send``."""
        if self.direct:
            proto = getattr(send, "__self__", None)
            if self.checked is None:
                self.check(proto)
            if self.direct and type(proto) is self.checked:
                if proto.handshake_complete:
                    trim(proto)
                return DirectWire(proto, websocket)
        return AsgiWire(websocket)

    def check(self, proto: Any) -> bool:
        """Whether frames can be written to ``proto`` directly; if not, log once and use the ASGI send from now on."""
        reason = problem(proto)
        if reason is None:
            self.checked = type(proto)
            log.info("ws.direct_writes_on", extra=versions())
            return True
        self.direct = False
        log.warning("ws.direct_writes_off", extra={"reason": reason, **versions()})
        return False

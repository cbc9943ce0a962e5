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
``request`` and ``response`` (the handshake's, dropped once accepted: about 2 KiB a
connection). Of Starlette only public API is used (``WebSocket.send``, ``close``,
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
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from starlette.types import Send
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from server.live.outbox import Frame, Writer

log = logging.getLogger("wallboard.ws")

PROTOCOL = ("uvicorn.protocols.websockets.websockets_sansio_impl", "WebSocketsSansIOProtocol")
CLOSE_WAIT_S = 30  # a client that stopped reading may never take the close frame


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


class DirectWire:
    """Frames written to uvicorn's transport with one ``transport.write`` each (never interleaved with its pings)."""

    __slots__ = ("proto", "ws")

    def __init__(self, proto: Any, websocket: WebSocket) -> None:
        self.proto = proto
        self.ws = websocket

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
        "writable": asyncio.Event, "close_sent": bool, "disconnected": bool, "handshake_complete": bool}
    for name, types in expected.items():
        if not isinstance(getattr(proto, name, None), types):
            return f"{kind.__qualname__}.{name} is not a {types}"
    transport = getattr(proto, "transport", None)
    if not all(callable(getattr(transport, name, None)) for name in ("write", "is_closing")):
        return f"{kind.__qualname__}.transport has no write() and is_closing()"
    if not (hasattr(proto, "request") and hasattr(proto, "response")):
        return f"{kind.__qualname__} keeps no request and response"
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
                    proto.request = proto.response = None  # only the handshake needed them
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

"""The ``/ws`` endpoint of API.md: handshake, auth, views, seq, resync, limits.

One connection is one task: this handler reads the client's messages. What
the server sends is written straight from the hub (see hub.py) while the
socket takes it without waiting; only a blocked socket gets a writer task,
which the hub's sweep cancels, closing with 1013, when the block outlasts
``ws_send_timeout_s`` (the client stopped reading). Closing codes: 4401 bad or
expired token, 4403 forbidden, 4408 no auth in time, 4429 too many messages,
1008 origin refused, 1009 message too big (uvicorn enforces
``ws_max_message_bytes``), 1013 overloaded (stuck, or too many connections of
the tenant), 1012 server restart (uvicorn on graceful shutdown).

Trade-off, stated plainly: under uvicorn's ``websockets-sansio`` protocol (what
``uvicorn_options`` selects) frames the hub built once are written to the
connection's transport directly, past the ASGI ``send``: that path costs a
dict, a coroutine, an encode and a frame serialisation per message and
client, most of the fan-out's CPU. :class:`Wire` is the only code that knows
those internals and says which attributes it uses; under any other server it
is absent and every message goes through ``websocket.send`` from a writer task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from server.api.context import Services, services
from server.core.auth import Principal, Role
from server.core.errors import Unauthorized
from server.live.hub import Hub
from server.live.outbox import VIEWS, Frame, Outbox, StreamKey, encode, status_message

log = logging.getLogger("wallboard.ws")

PATH = "/ws"
SUBPROTOCOL = "wallboard.v1"
MAX_QUEUE_FILTER = 100


class Closing(Exception):
    """Close the connection with this code and reason."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def header(websocket: WebSocket, name: bytes) -> str | None:
    """One request header, read from the ASGI scope (no Headers object kept for the connection's life)."""
    for key, value in websocket.scope["headers"]:
        if key == name:
            return value.decode("latin-1")  # type: ignore[no-any-return]
    return None


def origin_allowed(websocket: WebSocket, svc: Services) -> bool:
    """No Origin (not a browser), an allowed origin, or the server's own origin."""
    origin = header(websocket, b"origin")
    if origin is None:
        return True
    origin = origin.rstrip("/").lower()
    if origin in svc.settings.allowed_origins:
        return True
    host = (header(websocket, b"host") or "").lower()
    scheme = "https" if websocket.scope.get("scheme") == "wss" else "http"
    return origin == f"{scheme}://{host}"


def error(code: str, message: str) -> Frame:
    return encode({"type": "error", "code": code, "message": message})


def text_of(data: Frame) -> str:
    """The payload of a frame from :func:`server.live.outbox.frame`, for ``websocket.send``."""
    size = data[1] & 0x7F
    return data[2 if size < 126 else 4 if size == 126 else 10:].decode()


class Wire:
    """Writes hub frames to uvicorn's ``websockets-sansio`` connection without the ASGI ``send``.

    Uses, of ``uvicorn.protocols.websockets.websockets_sansio_impl.WebSocketsSansIOProtocol``:
    ``transport`` (written to), ``writable`` (the Event its ``pause_writing`` clears),
    ``close_sent`` and ``disconnected`` (no frame after a close). A frame is written with
    one ``transport.write``, so it never interleaves with uvicorn's own frames (pings,
    pongs, close). The handshake's request and response, which uvicorn keeps for the
    connection's life, are dropped once the socket is accepted (about 2 KiB a connection).
    """

    @staticmethod
    def of(websocket: WebSocket) -> Any:
        """The uvicorn protocol behind ``websocket`` when it has what this class uses, else None."""
        proto = getattr(getattr(websocket, "_send", None), "__self__", None)
        if type(proto).__name__ != "WebSocketsSansIOProtocol":
            return None
        if not all(hasattr(proto, name) for name in ("transport", "writable", "close_sent", "disconnected")):
            return None
        return proto

    @staticmethod
    def accepted(proto: Any) -> None:
        """The handshake is over: let its request and response (and their headers) go."""
        if getattr(proto, "handshake_complete", False):
            for name in ("request", "response"):
                if hasattr(proto, name):
                    setattr(proto, name, None)

    @staticmethod
    def put(proto: Any, data: Frame) -> None:
        """Write one frame, unless the connection is closing (then its reader sees the disconnect)."""
        if not (proto.close_sent or proto.disconnected or proto.transport.is_closing()):
            proto.transport.write(data)


class Connection(Outbox):
    """One authenticated WebSocket client: the hub's outbox of it, and its socket.

    ``writer`` is a task only while the socket is blocked (or, without
    :class:`Wire`, while anything is queued), or while the client is being closed.
    """

    __slots__ = ("ws", "svc", "hub", "who", "wire", "window_start", "window_count", "writer", "closing",
                 "subscribes_start", "subscribes")

    def __init__(self, websocket: WebSocket, svc: Services, who: Principal, wire: Any) -> None:
        # An agent sees only itself, so not the queue figures that alerts carry.
        super().__init__(who.tenant, who.exp + svc.settings.ws_token_grace_s, alerts=who.role != Role.AGENT)
        self.ws = websocket
        self.svc = svc
        self.hub: Hub = svc.hub
        self.who = who
        self.wire = wire
        self.window_start = time.monotonic()
        self.window_count = 0
        self.writer: asyncio.Task[None] | None = None
        self.closing = False
        self.subscribes_start = self.window_start
        self.subscribes = 0

    async def run(self) -> None:
        if not self.hub.admit(self):
            raise Closing(1013, "too many connections for this tenant")
        try:
            self.say(status_message(self.hub.live_ok))
            # The server's own receive, past Starlette's wrapper: one coroutine less waiting on every idle
            # connection (about 220 bytes each); the loop ends at the disconnect, the one state it tracks.
            receive = getattr(self.ws, "_receive", self.ws.receive)
            while await self._handle(await receive()):
                pass  # nothing of a message outlives its handling: an idle connection keeps none
        finally:
            self.hub.remove(self)
            if self.writer is not None:
                if not self.closing:
                    self.writer.cancel()
                await asyncio.gather(self.writer, return_exceptions=True)

    # -- writing ---------------------------------------------------------

    def write_now(self, data: Frame) -> bool:
        wire = self.wire
        if self.writer is not None or wire is None or not wire.writable.is_set():
            return False
        Wire.put(wire, data)
        return True

    def wake(self) -> None:
        if self.writer is None:
            self.writer = asyncio.get_running_loop().create_task(self._drain())

    def evict(self, code: int, reason: str) -> None:
        if self.closing:
            return
        self.closing = True
        previous = self.writer
        if previous is not None:
            previous.cancel()
        self.writer = asyncio.get_running_loop().create_task(self._evict(code, reason, previous))

    async def _evict(self, code: int, reason: str, previous: asyncio.Task[None] | None) -> None:
        # Stop feeding it first: a stuck client must not hold more than what is already in flight.
        self.hub.remove(self)
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        await _close(self.ws, code, reason)

    async def _drain(self) -> None:
        """Send what the outbox holds, waiting on the socket as long as the hub's sweep allows, then end."""
        try:
            while items := self.take():
                for data in items:
                    await self._send(data)
        except (WebSocketDisconnect, OSError, RuntimeError):
            pass  # the connection is gone: the reader sees the disconnect
        finally:
            self.blocked_since = 0.0
            if not self.closing:
                self.writer = None

    async def _send(self, data: Frame) -> None:
        wire = self.wire
        if wire is None:
            self.blocked_since = time.monotonic()
            await self.ws.send({"type": "websocket.send", "text": text_of(data)})
            self.blocked_since = 0.0
            return
        if not wire.writable.is_set():
            self.blocked_since = time.monotonic()
            await wire.writable.wait()
            self.blocked_since = 0.0
        Wire.put(wire, data)

    # -- reading ---------------------------------------------------------

    async def _handle(self, message: dict[str, Any]) -> bool:
        """Act on one received ASGI message; False when the client has gone."""
        if message["type"] == "websocket.disconnect":
            return False
        self._count()
        raw = message.get("text") or message.get("bytes") or b""
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self.say(error("invalid_json", "messages are JSON objects, e.g. {\"type\": \"ping\"}"))
            return True
        if not isinstance(body, dict):
            self.say(error("invalid_message", "messages are JSON objects with a type"))
            return True
        await self._act(body)
        return True

    def _count(self) -> None:
        now = time.monotonic()
        if now - self.window_start >= 60:
            self.window_start, self.window_count = now, 0
        self.window_count += 1
        if self.window_count > self.svc.settings.ws_max_messages_per_minute:
            raise Closing(4429, f"more than {self.svc.settings.ws_max_messages_per_minute} messages a minute")

    async def _act(self, body: dict[str, Any]) -> None:
        kind = body.get("type")
        if kind == "ping":
            self.say(encode({"type": "pong", "ts": body.get("ts")}))
        elif kind == "subscribe":
            await self._subscribe(body)
        elif kind == "resync":
            await self.hub.resync(self)
        elif kind == "auth":
            self._refresh(body.get("token"))
        else:
            self.say(error("unknown_type", f"unknown message type {kind!r}: expected subscribe, resync, auth "
                                               "or ping"))

    async def _subscribe(self, body: dict[str, Any]) -> None:
        now = time.monotonic()
        if now - self.subscribes_start >= 60:
            self.subscribes_start, self.subscribes = now, 0
        self.subscribes += 1
        if self.subscribes > (allowed := self.svc.settings.ws_max_subscribes_per_minute):
            self.say(error("subscribe_rate_limited", f"at most {allowed} subscribe messages a minute; the previous "
                                                     "subscription stays"))
            return
        views = body.get("views", ["overview"])
        queues = body.get("queues") or []
        if (not isinstance(views, list) or not views or any(v not in VIEWS for v in views)):
            self.say(error("invalid_views", f"views: expected a list of {', '.join(VIEWS)}"))
            return
        if (not isinstance(queues, list) or len(queues) > MAX_QUEUE_FILTER
                or any(not isinstance(q, str) or not 0 < len(q) <= 128 for q in queues)):
            self.say(error("invalid_queues", f"queues: expected a list of at most {MAX_QUEUE_FILTER} queue ids"))
            return
        agent = None
        if self.who.role == Role.AGENT:
            if "overview" in views:
                self.say(error("view_forbidden", "an agent token may follow only the agents view of itself"))
                return
            agent = self.who.sub
        keys = [StreamKey(self.who.tenant, view, tuple(sorted(set(queues))), agent) for view in dict.fromkeys(views)]
        if not await self.hub.subscribe(self, keys):
            self.say(error("too_many_streams", f"this tenant already follows {self.hub.max_streams} distinct views and "
                                               "queue filters; the previous subscription stays"))

    def _refresh(self, token: Any) -> None:
        try:
            who = self.svc.verifier.verify(token if isinstance(token, str) else None)
        except Unauthorized as exc:
            raise Closing(4401, exc.message[:120]) from None
        if who.tenant != self.who.tenant or who.role != self.who.role or who.sub != self.who.sub:
            raise Closing(4403, "a refreshed token must be for the same tenant, role and subject")
        self.who = who
        self.expires_at = who.exp + self.svc.settings.ws_token_grace_s
        self.say(encode({"type": "auth", "ok": True, "expires_at": who.exp}))


async def authenticate(websocket: WebSocket, svc: Services, offered: str | None) -> Principal:
    """The principal of the subprotocol token, or of the first message (within the auth timeout)."""
    token = offered
    if token is None:
        try:
            message = await asyncio.wait_for(websocket.receive(), svc.settings.ws_auth_timeout_s)
        except TimeoutError:
            raise Closing(4408, "no auth in time: offer the bearer.<jwt> subprotocol or send an auth message") from None
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        try:
            body = orjson.loads(message.get("text") or message.get("bytes") or b"")
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict) or body.get("type") != "auth" or not isinstance(body.get("token"), str):
            raise Closing(4401, 'the first message must be {"type": "auth", "token": "<jwt>"}')
        token = body["token"]
    try:
        who = svc.verifier.verify(token)
    except Unauthorized as exc:
        raise Closing(4401, exc.message[:120]) from None
    if who.role == Role.INGEST:
        raise Closing(4403, "an ingest token may post events but read nothing")
    return who


async def handshake(websocket: WebSocket, svc: Services) -> Principal:
    """Accept, check the origin, authenticate; what only the handshake needs dies with this frame."""
    offered = websocket.scope.get("subprotocols") or []
    chosen = SUBPROTOCOL if SUBPROTOCOL in offered else None
    token = next((p[len("bearer."):] for p in offered if p.startswith("bearer.")), None)
    await websocket.accept(subprotocol=chosen)
    if not origin_allowed(websocket, svc):
        raise Closing(1008, "origin not allowed: add it to WALLBOARD_ALLOWED_ORIGINS")
    return await authenticate(websocket, svc, token)


async def ws_endpoint(websocket: WebSocket) -> None:
    """``GET /ws``: see the module docstring and API.md "WebSocket"."""
    svc = services(websocket)
    address = (websocket.scope.get("client") or ("?", 0))[0]
    refused = svc.hub.admission.enter(address)
    if refused is not None:
        await websocket.accept()
        await _close(websocket, 1013, refused)
        return
    try:
        who = await handshake(websocket, svc)
        wire = Wire.of(websocket)
        if wire is not None:
            Wire.accepted(wire)
        # Nothing reads the request headers or the offered subprotocols (one holds the token) again.
        websocket.scope["headers"] = []
        websocket.scope["subprotocols"] = []
        await Connection(websocket, svc, who, wire).run()
    except Closing as closing:
        await _close(websocket, closing.code, closing.reason)
    except WebSocketDisconnect:
        pass
    except Exception:
        log.exception("ws.failed")
        await _close(websocket, 1011, "internal error")
    finally:
        svc.hub.admission.leave(address)


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    if websocket.application_state == WebSocketState.DISCONNECTED:
        return
    # A client that stopped reading may never take the close frame: do not wait for it forever.
    with contextlib.suppress(Exception):
        await asyncio.wait_for(websocket.close(code, reason), 30)



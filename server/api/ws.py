"""The ``/ws`` endpoint of API.md: handshake, auth, views, seq, resync, limits.

One connection is one task: this handler reads the client's messages. What
the server sends is written straight from the hub (see hub.py) while the
socket takes it without waiting; only a blocked socket gets a drain task (outbox.py),
which the hub's sweep cancels, closing with 1013, when the block outlasts
``ws_send_timeout_s`` (the client stopped reading). Closing codes: 4401 bad or
expired token, 4403 forbidden, 4408 no auth in time, 4429 too many messages,
1008 origin refused, 1009 message too big (uvicorn enforces
``ws_max_message_bytes``), 1013 overloaded (stuck, or too many connections of
the tenant), 1012 server restart (uvicorn on graceful shutdown).

How frames reach the socket (written straight to uvicorn's transport from the hub's
tick, or through the ASGI ``send``) is server/api/wire.py's business: the one module
that relies on what uvicorn does not publish, checked on the first connection.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from server.api.context import Services, services
from server.api.observe import process_headers
from server.api.wire import Wires, close
from server.core.auth import Principal, Role
from server.core.errors import Unauthorized
from server.live.hub import Hub
from server.live.outbox import VIEWS, Frame, Outbox, StreamKey, Writer, encode, status_message

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


class Connection:
    """One authenticated WebSocket client: its reader, and the hub's :class:`Outbox` of it."""

    __slots__ = ("receive", "svc", "hub", "who", "box", "window_start", "window_count", "subscribes_start", "subscribes")

    def __init__(self, receive: Receive, svc: Services, who: Principal, wire: Writer) -> None:
        self.receive = receive  # the server's own, past Starlette's wrapper: one coroutine less per idle connection
        self.svc = svc
        self.hub: Hub = svc.hub
        self.who = who
        # An agent sees only itself, so not the queue figures that alerts carry.
        self.box = Outbox(who.tenant, who.exp + svc.settings.ws_token_grace_s, wire, alerts=who.role != Role.AGENT)
        self.window_start = time.monotonic()
        self.window_count = 0
        self.subscribes_start = self.window_start
        self.subscribes = 0

    def say(self, data: Frame) -> None:
        self.box.say(data)

    async def run(self) -> None:
        if not self.hub.admit(self.box):
            raise Closing(1013, "too many connections for this tenant")
        try:
            self.say(status_message(self.hub.live_ok))
            receive = self.receive
            while await self._handle(await receive()):
                pass  # nothing of a message outlives its handling: an idle connection keeps none
        finally:
            self.hub.remove(self.box)
            await self.box.finish()

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
            await self.hub.resync(self.box)
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
            if {"overview", "calls"}.intersection(views):
                self.say(error("view_forbidden", "an agent token may follow only the agents view of itself"))
                return
            agent = self.who.sub
        keys = [StreamKey(self.who.tenant, view, tuple(sorted(set(queues))), agent) for view in dict.fromkeys(views)]
        if not await self.hub.subscribe(self.box, keys):
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
        self.box.expires_at = who.exp + self.svc.settings.ws_token_grace_s
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
    await websocket.accept(subprotocol=chosen, headers=process_headers(svc.settings))
    if not origin_allowed(websocket, svc):
        raise Closing(1008, "origin not allowed: add it to WALLBOARD_ALLOWED_ORIGINS")
    return await authenticate(websocket, svc, token)


async def serve(scope: Scope, receive: Receive, send: Send, wires: Wires) -> None:
    """``GET /ws``, from the ASGI call: see the module docstring and API.md "WebSocket"."""
    websocket: WebSocket = WebSocket(scope, receive, send)
    svc = services(websocket)
    address = (websocket.scope.get("client") or ("?", 0))[0]
    refused = svc.hub.admission.enter(address)
    if refused is not None:
        await websocket.accept()
        await close(websocket, 1013, refused)
        return
    try:
        who = await handshake(websocket, svc)
        wire = wires.of(websocket, send)
        # Nothing reads the request headers or the offered subprotocols (one holds the token) again.
        scope["headers"] = []
        scope["subprotocols"] = []
        await Connection(receive, svc, who, wire).run()
    except Closing as closing:
        await close(websocket, closing.code, closing.reason)
    except WebSocketDisconnect:
        pass
    except Exception:
        log.exception("ws.failed")
        await close(websocket, 1011, "internal error")
    finally:
        svc.hub.admission.leave(address)

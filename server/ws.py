"""The ``/ws`` endpoint of API.md: handshake, auth, views, seq, resync, limits.

One connection runs two loops: this handler reads the client's messages, and
a writer task drains the client's outbox (see hub.py). The writer is the only
one that awaits the socket; a send blocked longer than ``ws_send_timeout_s``
(the client stopped reading) closes the connection with 1013. Closing codes:
4401 bad or expired token, 4403 forbidden, 4408 no auth in time, 4429 too
many messages, 1008 origin refused, 1009 message too big (uvicorn enforces
``ws_max_message_bytes``), 1013 overloaded (stuck, or too many connections of
the tenant), 1012 server restart (uvicorn on graceful shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from .auth import Principal, Role
from .errors import Unauthorized
from .hub import VIEWS, Hub, Outbox, StreamKey, status_message
from .services import Services, services

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


def origin_allowed(websocket: WebSocket, svc: Services) -> bool:
    """No Origin (not a browser), an allowed origin, or the server's own origin."""
    origin = websocket.headers.get("origin")
    if origin is None:
        return True
    origin = origin.rstrip("/").lower()
    if origin in svc.settings.allowed_origins:
        return True
    host = websocket.headers.get("host", "").lower()
    scheme = "https" if websocket.url.scheme == "wss" else "http"
    return origin == f"{scheme}://{host}"


def error(code: str, message: str) -> str:
    return orjson.dumps({"type": "error", "code": code, "message": message}).decode()


class Connection:
    """One authenticated WebSocket client.

    The handler task reads the client's messages. A writer task exists only
    while the outbox has something to send: an idle wallboard costs no task.
    """

    __slots__ = ("ws", "svc", "hub", "who", "box", "window_start", "window_count", "writer", "expiry", "expired")

    def __init__(self, websocket: WebSocket, svc: Services, who: Principal) -> None:
        self.ws = websocket
        self.svc = svc
        self.hub: Hub = svc.hub
        self.who = who
        self.box = Outbox(who.tenant, self._notify)
        self.window_start = time.monotonic()
        self.window_count = 0
        self.writer: asyncio.Task[None] | None = None
        self.expiry: asyncio.TimerHandle | None = None
        self.expired = False

    async def run(self) -> None:
        if not self.hub.admit(self.box):
            raise Closing(1013, "too many connections for this tenant")
        try:
            self._arm_expiry()
            self.box.say(status_message(self.hub.live_ok))
            await self._read()
        finally:
            self.hub.remove(self.box)
            if self.expiry is not None:
                self.expiry.cancel()
            if self.writer is not None:
                self.writer.cancel()
                await asyncio.gather(self.writer, return_exceptions=True)

    def _arm_expiry(self) -> None:
        """Close with 4401 at the token's expiry plus the grace, unless a fresh token comes first."""
        if self.expiry is not None:
            self.expiry.cancel()
        loop = asyncio.get_running_loop()
        delay = max(0.0, self.who.exp + self.svc.settings.ws_token_grace_s - time.time())
        self.expiry = loop.call_later(delay, self._expire)

    def _expire(self) -> None:
        self.expired = True
        self._notify()

    # -- writing ---------------------------------------------------------

    def _notify(self) -> None:
        if self.writer is None:
            self.writer = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        """Send what the outbox holds, then end; 4401 when the token expired, 1013 when the client is stuck."""
        try:
            await self._drain()
        except Closing as closing:
            # Stop feeding it first: a stuck client must not hold more than what is already in flight.
            self.hub.remove(self.box)
            await _close(self.ws, closing.code, closing.reason)
        finally:
            self.writer = None

    async def _drain(self) -> None:
        timeout = self.svc.settings.ws_send_timeout_s
        while True:
            if self.expired:
                raise Closing(4401, "token expired: send a fresh token in an auth message before it expires")
            if self.box.overflowed:
                raise Closing(1013, "client is not reading its messages")
            items = self.box.take()
            if not items:
                return
            for data in items:
                try:
                    # asyncio.timeout, not wait_for: no extra task per send.
                    async with asyncio.timeout(timeout):
                        await self.ws.send({"type": "websocket.send", "text": data})
                except TimeoutError:
                    raise Closing(1013, "client is not reading its messages") from None

    # -- reading ---------------------------------------------------------

    async def _read(self) -> None:
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            self._count()
            raw = message.get("text") or message.get("bytes") or b""
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                self.box.say(error("invalid_json", "messages are JSON objects, e.g. {\"type\": \"ping\"}"))
                continue
            if not isinstance(body, dict):
                self.box.say(error("invalid_message", "messages are JSON objects with a type"))
                continue
            await self._handle(body)

    def _count(self) -> None:
        now = time.monotonic()
        if now - self.window_start >= 60:
            self.window_start, self.window_count = now, 0
        self.window_count += 1
        if self.window_count > self.svc.settings.ws_max_messages_per_minute:
            raise Closing(4429, f"more than {self.svc.settings.ws_max_messages_per_minute} messages a minute")

    async def _handle(self, body: dict[str, Any]) -> None:
        kind = body.get("type")
        if kind == "ping":
            self.box.say(orjson.dumps({"type": "pong", "ts": body.get("ts")}).decode())
        elif kind == "subscribe":
            await self._subscribe(body)
        elif kind == "resync":
            await self.hub.resync(self.box)
        elif kind == "auth":
            self._refresh(body.get("token"))
        else:
            self.box.say(error("unknown_type", f"unknown message type {kind!r}: expected subscribe, resync, auth "
                                               "or ping"))

    async def _subscribe(self, body: dict[str, Any]) -> None:
        views = body.get("views", ["overview"])
        queues = body.get("queues") or []
        if (not isinstance(views, list) or not views or any(v not in VIEWS for v in views)):
            self.box.say(error("invalid_views", f"views: expected a list of {', '.join(VIEWS)}"))
            return
        if (not isinstance(queues, list) or len(queues) > MAX_QUEUE_FILTER
                or any(not isinstance(q, str) or not 0 < len(q) <= 128 for q in queues)):
            self.box.say(error("invalid_queues", f"queues: expected a list of at most {MAX_QUEUE_FILTER} queue ids"))
            return
        agent = None
        if self.who.role == Role.AGENT:
            if "overview" in views:
                self.box.say(error("view_forbidden", "an agent token may follow only the agents view of itself"))
                return
            agent = self.who.sub
        keys = [StreamKey(self.who.tenant, view, tuple(sorted(set(queues))), agent) for view in dict.fromkeys(views)]
        await self.hub.subscribe(self.box, keys)

    def _refresh(self, token: Any) -> None:
        try:
            who = self.svc.verifier.verify(token if isinstance(token, str) else None)
        except Unauthorized as exc:
            raise Closing(4401, exc.message[:120]) from None
        if who.tenant != self.who.tenant or who.role != self.who.role or who.sub != self.who.sub:
            raise Closing(4403, "a refreshed token must be for the same tenant, role and subject")
        self.who = who
        self._arm_expiry()
        self.box.say(orjson.dumps({"type": "auth", "ok": True, "expires_at": who.exp}).decode())


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


async def ws_endpoint(websocket: WebSocket) -> None:
    """``GET /ws``: see the module docstring and API.md "WebSocket"."""
    svc = services(websocket)
    offered = websocket.scope.get("subprotocols") or []
    chosen = SUBPROTOCOL if SUBPROTOCOL in offered else None
    token = next((p[len("bearer."):] for p in offered if p.startswith("bearer.")), None)
    await websocket.accept(subprotocol=chosen)
    try:
        if not origin_allowed(websocket, svc):
            raise Closing(1008, "origin not allowed: add it to WALLBOARD_ALLOWED_ORIGINS")
        who = await authenticate(websocket, svc, token)
        await Connection(websocket, svc, who).run()
    except Closing as closing:
        await _close(websocket, closing.code, closing.reason)
    except WebSocketDisconnect:
        pass
    except Exception:
        log.exception("ws.failed")
        await _close(websocket, 1011, "internal error")


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    if websocket.application_state == WebSocketState.DISCONNECTED:
        return
    # A client that stopped reading may never take the close frame: do not wait for it forever.
    with contextlib.suppress(Exception):
        await asyncio.wait_for(websocket.close(code, reason), 30)



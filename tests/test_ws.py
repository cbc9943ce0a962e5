"""The /ws endpoint with real clients: snapshot then updates, seq and resync, views and filters, auth, limits."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from server.api.wire import AsgiWire
from server.app import create_app, uvicorn_options
from server.core.config import Settings

from .conftest import ROOT, TEST_SECRET, RunningServer, _Server, free_socket

SUBPROTOCOL = "wallboard.v1"

Factory = Callable[[Settings], Awaitable[RunningServer]]


def new_tenant(label: str = "ws") -> str:
    return f"{label}-{secrets.token_hex(4)}"


def ws_url(base: str) -> str:
    return "ws" + base.removeprefix("http") + "/ws"


class Board:
    """A real WebSocket client that reads in the background and keeps every message with its arrival time."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.messages: list[tuple[float, dict[str, Any]]] = []
        self.raw: list[str] = []
        self._arrived = asyncio.Event()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                text = raw if isinstance(raw, str) else raw.decode()
                self.raw.append(text)
                self.messages.append((time.monotonic(), orjson.loads(text)))
                self._arrived.set()
        except ConnectionClosed:
            pass
        finally:
            self._arrived.set()

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [body for _, body in self.messages]

    def of(self, kind: str, view: str | None = None) -> list[dict[str, Any]]:
        return [b for b in self.bodies if b["type"] == kind and (view is None or b.get("view") == view)]

    async def send(self, body: dict[str, Any] | str | bytes) -> None:
        await self.ws.send(body if isinstance(body, (str, bytes)) else orjson.dumps(body).decode())

    async def subscribe(self, views: list[str], queues: list[str] | None = None) -> None:
        body: dict[str, Any] = {"type": "subscribe", "views": views}
        if queues is not None:
            body["queues"] = queues
        await self.send(body)

    async def next(self, match: Callable[[dict[str, Any]], bool], *, after: int = 0,
                   timeout: float = 5.0) -> dict[str, Any]:
        """The first message from index ``after`` on that matches; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            for _, body in self.messages[after:]:
                if match(body):
                    return body
            left = deadline - time.monotonic()
            if left <= 0 or self.reader.done():
                kinds = [(b["type"], b.get("view"), b.get("seq")) for b in self.bodies[after:]]
                raise AssertionError(f"no matching message within {timeout}s (closed: {self.reader.done()}, "
                                     f"code {self.ws.close_code}); got {kinds}")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)

    async def closed(self, timeout: float = 5.0) -> int | None:
        """Wait for the server to close the connection; its close code."""
        await asyncio.wait_for(asyncio.shield(self.reader), timeout)
        return self.ws.close_code

    @property
    def open(self) -> bool:
        return not self.reader.done()


@contextlib.asynccontextmanager
async def board(base: str, token: str | None = None, *, protocols: list[str] | None = None,
                **kw: Any) -> AsyncIterator[Board]:
    """Connect to ``base``/ws, offering ``wallboard.v1`` and ``bearer.<token>`` when a token is given."""
    offered = protocols if protocols is not None else [SUBPROTOCOL] + ([f"bearer.{token}"] if token else [])
    subprotocols = [Subprotocol(p) for p in offered] or None
    async with connect(ws_url(base), subprotocols=subprotocols, compression=None, open_timeout=10, close_timeout=2,
                       **kw) as ws:
        client = Board(ws)
        try:
            yield client
        finally:
            client.reader.cancel()
            await asyncio.gather(client.reader, return_exceptions=True)


async def post(server: RunningServer, tenant: str, events: list[dict[str, Any]]) -> None:
    async with server.client(server.token(tenant, "ingest")) as client:
        response = await client.post("/api/events", json=events)
    assert response.status_code == 200, response.text


def queued(queue: str, count: int = 1) -> list[dict[str, Any]]:
    """``count`` calls entering ``queue`` a second ago."""
    now = int(time.time() * 1000) - 1000
    out = []
    for _ in range(count):
        call = secrets.token_hex(6)
        out.append({"event_id": f"q-{call}", "type": "call.queued", "ts": now, "call_id": call, "queue_id": queue})
    return out


def agent_state(agent: str, state: str = "available", queues: list[str] | None = None,
                **fields: Any) -> dict[str, Any]:
    return {"event_id": f"s-{secrets.token_hex(6)}", "type": "agent.state", "ts": int(time.time() * 1000) - 500,
            "agent_id": agent, "state": state, "queues": queues or [], **fields}


def offered(body: dict[str, Any]) -> int:
    return int(body["data"]["today"]["offered"])


def update_offered(count: int) -> Callable[[dict[str, Any]], bool]:
    return lambda m: m["type"] == "update" and offered(m) == count


def assert_consecutive(messages: list[dict[str, Any]]) -> None:
    seqs = [m["seq"] for m in messages]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs


async def wait_health(url: str, process: subprocess.Popen[bytes], within_s: float = 30) -> None:
    deadline = time.monotonic() + within_s
    async with httpx.AsyncClient(timeout=2) as client:
        while True:
            assert process.poll() is None, f"server B exited with {process.returncode}"
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"{url}/api/metrics/health")).status_code == 200:
                    return
            assert time.monotonic() < deadline, "server B did not answer /api/metrics/health in time"
            await asyncio.sleep(0.2)


def subprocess_env(settings: Settings, **extra: str) -> tuple[int, dict[str, str]]:
    """A free port and the environment of a ``python -m server serve`` on the run's PostgreSQL, Redis and prefix."""
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    assert settings.database_url and settings.redis_url
    return port, {**os.environ, "DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
                  "WALLBOARD_JWT_SECRET": TEST_SECRET, "WALLBOARD_KEY_PREFIX": settings.key_prefix,
                  "WALLBOARD_LOG_LEVEL": "WARNING", **extra}


@contextlib.asynccontextmanager
async def second_process(settings: Settings) -> AsyncIterator[str]:
    """``python -m server serve`` in a subprocess on the same PostgreSQL, Redis and key prefix; its base URL."""
    port, env = subprocess_env(settings)
    process = subprocess.Popen([sys.executable, "-m", "server", "serve", "--port", str(port)], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        await wait_health(url, process)
        yield url
    finally:
        process.terminate()
        try:
            await asyncio.to_thread(process.wait, 15)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait)


# -- snapshot, updates, seq ------------------------------------------------


async def test_snapshot_then_updates_with_rising_seq(server: RunningServer) -> None:
    """A new wallboard gets a status and a snapshot, then one update per change whose seq rises by exactly one."""
    tenant = new_tenant()
    async with board(server.url, server.token(tenant)) as client:
        assert client.ws.subprotocol == SUBPROTOCOL
        status = await client.next(lambda m: True)
        assert status["type"] == "status" and status["live"] == "ok"
        await client.subscribe(["overview"])
        snapshot = await client.next(lambda m: m["type"] == "snapshot")
        assert snapshot["view"] == "overview" and isinstance(snapshot["seq"], int)
        assert offered(snapshot) == 0
        for expected in (1, 2, 3):
            posted = time.monotonic()
            await post(server, tenant, queued("sales"))
            update = await client.next(update_offered(expected))
            assert time.monotonic() - posted < 5
            assert [q["queue_id"] for q in update["data"]["queues"]] == ["sales"]
        stream = client.of("snapshot", "overview") + client.of("update", "overview")
        assert stream[0] is snapshot or stream[0] == snapshot
        assert_consecutive([m for m in client.bodies if m.get("view") == "overview"])
        assert stream[-1]["seq"] >= snapshot["seq"] + 3


async def test_resync_answers_with_current_snapshot(server: RunningServer) -> None:
    """A wallboard that asks for resync gets a snapshot with the current seq and the full current data."""
    tenant = new_tenant()
    await post(server, tenant, queued("sales", 2) + queued("support"))
    async with board(server.url, server.token(tenant)) as client:
        await client.subscribe(["overview"])
        await client.next(lambda m: m["type"] == "snapshot")
        await post(server, tenant, queued("sales"))
        last = await client.next(lambda m: m["type"] == "update" and offered(m) == 4)
        mark = len(client.messages)
        await client.send({"type": "resync"})
        snapshot = await client.next(lambda m: m["type"] == "snapshot", after=mark)
        before = [m for m in client.bodies[:mark] if m.get("view") == "overview"]
        assert snapshot["seq"] >= before[-1]["seq"] >= last["seq"]
        assert offered(snapshot) == 4
        assert {q["queue_id"]: q["today"]["offered"] for q in snapshot["data"]["queues"]} == {"sales": 3, "support": 1}
        await post(server, tenant, queued("support"))
        after = await client.next(lambda m: m["type"] == "update" and offered(m) == 5, after=mark)
        assert after["seq"] > snapshot["seq"]
        assert_consecutive([m for m in client.bodies[mark:] if m.get("view") == "overview"])


@pytest.mark.timeout(90)
async def test_event_at_one_process_reaches_client_of_another(server: RunningServer, settings: Settings) -> None:
    """An event posted to server A appears within 5 s on a wallboard connected to server B."""
    tenant = new_tenant()
    async with second_process(settings) as b_url, board(b_url, server.token(tenant)) as client:
        await client.subscribe(["overview"])
        await client.next(lambda m: m["type"] == "snapshot", timeout=10)
        posted = time.monotonic()
        await post(server, tenant, queued("sales"))
        update = await client.next(lambda m: m["type"] == "update" and offered(m) == 1)
        assert time.monotonic() - posted < 5
        assert update["data"]["queues"][0]["queue_id"] == "sales"


# -- what a token can see --------------------------------------------------


async def test_queue_filter_delivers_only_that_queue(server: RunningServer) -> None:
    """A wallboard filtered to the sales queue shows only sales, in its queues and in its totals."""
    tenant = new_tenant()
    await post(server, tenant, [agent_state("ann", queues=["sales"]), agent_state("bob", queues=["support"])])
    async with board(server.url, server.token(tenant)) as client:
        await client.subscribe(["overview", "agents"], queues=["sales"])
        await client.next(lambda m: m["type"] == "snapshot" and m["view"] == "overview")
        await client.next(lambda m: m["type"] == "snapshot" and m["view"] == "agents")
        await post(server, tenant, queued("support", 3) + queued("sales", 2))
        await client.next(lambda m: m.get("view") == "overview" and offered(m) == 2)
        await asyncio.sleep(0.5)
    overviews = [m for m in client.bodies if m.get("view") == "overview"]
    assert {q["queue_id"] for m in overviews for q in m["data"]["queues"]} == {"sales"}
    assert max(offered(m) for m in overviews) == 2
    assert all(m["data"]["agents"]["logged_in"] <= 1 for m in overviews)
    agents = [m for m in client.bodies if m.get("view") == "agents"]
    assert agents and all([a["agent_id"] for a in m["data"]] == ["ann"] for m in agents)


async def test_tenant_never_receives_another_tenants_data(server_factory: Factory, settings: Settings) -> None:
    """Whatever tenant A subscribes to, even B's queue names, A's wallboards never carry B's queues or agents."""
    server = await server_factory(settings.replace(ws_refresh_s=1))
    a, b = new_tenant("ta"), new_tenant("tb")
    b_queue, b_agent = f"bq-{secrets.token_hex(4)}", f"bagent-{secrets.token_hex(4)}"
    await post(server, a, queued("a-sales"))
    async with (board(server.url, server.token(a)) as everything,
                board(server.url, server.token(a)) as filtered,
                board(server.url, server.token(a, "admin")) as admin,
                board(server.url, server.token(b)) as tenant_b):
        await everything.subscribe(["overview", "agents"])
        await filtered.subscribe(["overview", "agents"], queues=[b_queue, "a-sales"])
        await admin.subscribe(["agents", "overview"], queues=[b_queue])
        await tenant_b.subscribe(["overview", "agents"])
        for client in (everything, filtered, admin, tenant_b):
            await client.next(lambda m: m["type"] == "snapshot")
        await post(server, b, [agent_state(b_agent, queues=[b_queue])] + queued(b_queue, 3))
        await tenant_b.next(lambda m: m.get("view") == "overview" and offered(m) == 3)
        await post(server, a, queued("a-sales"))
        await everything.next(lambda m: m.get("view") == "overview" and offered(m) == 2)
        await filtered.next(lambda m: m.get("view") == "overview" and offered(m) == 2)
        await asyncio.sleep(2.5)  # heartbeats of every stream (ws_refresh_s=1) after B's events
    assert any(b_agent in raw for raw in tenant_b.raw), "tenant B itself saw its agent"
    for client in (everything, filtered, admin):
        assert len(client.of("update")) >= 2, "A kept receiving updates and heartbeats"
        for raw in client.raw:
            assert b_queue not in raw and b_agent not in raw and b not in raw, raw[:300]
    assert all(m["data"] == [] for m in admin.of("update", "agents") + admin.of("snapshot", "agents"))


async def test_agent_token_sees_only_itself(server: RunningServer) -> None:
    """An agent's wallboard is refused the overview and its agents view lists only that agent."""
    tenant = new_tenant()
    await post(server, tenant, [agent_state("ann", queues=["sales"], name="Ann"),
                                agent_state("bob", "on_call", queues=["sales"], name="Bob")])
    async with board(server.url, server.token(tenant, "agent", sub="ann")) as client:
        await client.subscribe(["overview", "agents"])
        refused = await client.next(lambda m: m["type"] == "error")
        assert refused["code"] == "view_forbidden"
        await client.subscribe(["agents"])
        snapshot = await client.next(lambda m: m["type"] == "snapshot")
        assert snapshot["view"] == "agents"
        assert [(a["agent_id"], a["name"]) for a in snapshot["data"]] == [("ann", "Ann")]
        await post(server, tenant, [agent_state("bob", "break", queues=["sales"]),
                                    agent_state("ann", "on_call", queues=["sales"])])
        update = await client.next(lambda m: m["type"] == "update" and m["data"][0]["state"] == "on_call")
        assert [a["agent_id"] for a in update["data"]] == ["ann"]
        assert not client.of("snapshot", "overview") and not client.of("update", "overview")
    assert all("bob" not in raw and "Bob" not in raw for raw in client.raw)


# -- origin and authentication ---------------------------------------------


async def test_origin_checked(server_factory: Factory, settings: Settings) -> None:
    """A browser from a foreign origin is closed with 1008; the server's own origin and an allowed one connect."""
    server = await server_factory(settings.replace(allowed_origins=("https://board.example.com",)))
    tenant = new_tenant()
    token = server.token(tenant)
    async with board(server.url, token, origin="http://evil.example") as evil:
        assert await evil.closed() == 1008
        assert "origin" in (evil.ws.close_reason or "")
    for origin in (server.url, "https://board.example.com"):
        async with board(server.url, token, origin=origin) as client:
            await client.subscribe(["overview"])
            await client.next(lambda m: m["type"] == "snapshot")
            assert client.open


async def test_no_auth_in_time_is_closed_4408(server_factory: Factory, settings: Settings) -> None:
    """A client that never authenticates is closed with 4408 after the auth timeout."""
    server = await server_factory(settings.replace(ws_auth_timeout_s=1))
    started = time.monotonic()
    async with board(server.url) as client:
        assert await client.closed(5) == 4408
    assert 0.8 < time.monotonic() - started < 3
    assert not client.messages


@pytest.mark.timeout(60)
async def test_default_auth_timeout_is_five_seconds(server: RunningServer) -> None:
    """With the default settings an unauthenticated client is closed with 4408 about 5 s after connecting."""
    started = time.monotonic()
    async with board(server.url) as client:
        assert await client.closed(10) == 4408
    assert 4.5 <= time.monotonic() - started <= 7


async def test_first_message_auth(server: RunningServer) -> None:
    """A client that cannot offer subprotocols authenticates with its first message and then subscribes."""
    tenant = new_tenant()
    async with board(server.url, protocols=[SUBPROTOCOL]) as client:
        await client.send({"type": "auth", "token": server.token(tenant)})
        assert (await client.next(lambda m: True))["type"] == "status"
        await client.subscribe(["overview"])
        await client.next(lambda m: m["type"] == "snapshot")
    async with board(server.url, protocols=[]) as bare:
        assert bare.ws.subprotocol is None
        await bare.send({"type": "auth", "token": server.token(tenant)})
        await bare.send({"type": "ping"})
        await bare.next(lambda m: m["type"] == "pong")


@pytest.mark.parametrize("how", ["subprotocol", "message"])
async def test_bad_token_4401_and_ingest_token_4403(server: RunningServer, how: str) -> None:
    """A bad token closes with 4401 and an ingest token (which may read nothing) with 4403, however offered."""
    tenant = new_tenant()
    forged = server.token(tenant)[:-4] + "AAAA"
    expired = server.token(tenant, ttl_s=-120)
    cases = [(forged, 4401), ("not-a-jwt", 4401), (expired, 4401), (server.token(tenant, "ingest"), 4403)]
    for token, code in cases:
        if how == "subprotocol":
            connection = board(server.url, token)
        else:
            connection = board(server.url, protocols=[SUBPROTOCOL])
        async with connection as client:
            if how == "message":
                await client.send({"type": "auth", "token": token})
            assert await client.closed() == code, (token[:20], client.ws.close_reason)
            assert not [m for m in client.bodies if m["type"] in ("status", "snapshot")]
    async with board(server.url, protocols=[SUBPROTOCOL]) as wrong_first:
        await wrong_first.send({"type": "subscribe", "views": ["overview"]})
        assert await wrong_first.closed() == 4401


async def test_expired_token_closes_4401(server_factory: Factory, settings: Settings) -> None:
    """A wallboard whose token expires (no grace) is closed with 4401 within seconds of the expiry."""
    server = await server_factory(settings.replace(ws_token_grace_s=0, ws_refresh_s=1))
    tenant = new_tenant()
    token = server.token(tenant, ttl_s=2)
    started = time.monotonic()
    async with board(server.url, token) as client:
        await client.subscribe(["overview"])
        await client.next(lambda m: m["type"] == "snapshot")
        assert await client.closed(6) == 4401
    assert 0.5 < time.monotonic() - started < 5
    assert "expired" in (client.ws.close_reason or "")


async def test_token_refresh_keeps_socket_open(server_factory: Factory, settings: Settings) -> None:
    """A fresh token sent before expiry keeps the wallboard open and updating past the old expiry."""
    server = await server_factory(settings.replace(ws_token_grace_s=0, ws_refresh_s=1))
    tenant = new_tenant()
    old = server.token(tenant, ttl_s=3)
    expires = time.time() + 2  # the int(exp) of a 3 s token is at least 2 s away
    async with board(server.url, old) as client:
        await client.subscribe(["overview"])
        await client.next(lambda m: m["type"] == "snapshot")
        await client.send({"type": "auth", "token": server.token(tenant, ttl_s=3600)})
        ack = await client.next(lambda m: m["type"] == "auth")
        assert ack["ok"] is True and ack["expires_at"] > time.time() + 3000
        await asyncio.sleep(max(0.0, expires - time.time()) + 3)
        assert client.open
        arrived_after = [t for t, m in client.messages if m["type"] == "update"]
        assert arrived_after and arrived_after[-1] > time.monotonic() - 1.5, "heartbeats still arrive"
        await post(server, tenant, queued("sales"))
        await client.next(lambda m: m["type"] == "update" and offered(m) == 1)


async def test_refresh_for_another_tenant_is_4403(server: RunningServer) -> None:
    """Refreshing with a token of another tenant (or role) closes with 4403; a bad refresh token with 4401."""
    tenant = new_tenant()
    async with board(server.url, server.token(tenant)) as other_tenant:
        await other_tenant.next(lambda m: m["type"] == "status")
        await other_tenant.send({"type": "auth", "token": server.token(new_tenant())})
        assert await other_tenant.closed() == 4403
    async with board(server.url, server.token(tenant)) as other_role:
        await other_role.next(lambda m: m["type"] == "status")
        await other_role.send({"type": "auth", "token": server.token(tenant, "admin")})
        assert await other_role.closed() == 4403
    async with board(server.url, server.token(tenant)) as garbage:
        await garbage.next(lambda m: m["type"] == "status")
        await garbage.send({"type": "auth", "token": "garbage"})
        assert await garbage.closed() == 4401


# -- limits ----------------------------------------------------------------


async def test_connections_per_tenant_limit(server_factory: Factory, settings: Settings) -> None:
    """A tenant's 4th connection over a limit of 3 is closed with 1013; other tenants still connect."""
    server = await server_factory(settings.replace(ws_max_connections_per_tenant=3))
    tenant = new_tenant()
    async with contextlib.AsyncExitStack() as stack:
        admitted = [await stack.enter_async_context(board(server.url, server.token(tenant))) for _ in range(3)]
        for client in admitted:
            await client.next(lambda m: m["type"] == "status")
        async with board(server.url, server.token(tenant)) as fourth:
            assert await fourth.closed() == 1013
        async with board(server.url, server.token(new_tenant())) as other:
            await other.subscribe(["overview"])
            await other.next(lambda m: m["type"] == "snapshot")
        assert all(client.open for client in admitted)
        await admitted[0].ws.close()
        await asyncio.sleep(0.3)
        async with board(server.url, server.token(tenant)) as again:
            await again.subscribe(["overview"])
            await again.next(lambda m: m["type"] == "snapshot")


async def test_messages_per_minute_limit(server_factory: Factory, settings: Settings) -> None:
    """A client sending more than its per-minute allowance of messages is closed with 4429."""
    server = await server_factory(settings.replace(ws_max_messages_per_minute=5))
    async with board(server.url, server.token(new_tenant())) as client:
        for n in range(5):
            await client.send({"type": "ping", "ts": n})
        await client.next(lambda m: m["type"] == "pong" and m["ts"] == 4)
        assert [m["ts"] for m in client.of("pong")] == [0, 1, 2, 3, 4]
        assert client.open
        await client.send({"type": "ping", "ts": 5})
        assert await client.closed() == 4429
    assert len(client.of("pong")) == 5


async def test_message_size_limit(server_factory: Factory, settings: Settings) -> None:
    """An inbound message above the size limit closes the connection with 1009."""
    server = await server_factory(settings.replace(ws_max_message_bytes=1024))
    tenant = new_tenant()
    async with board(server.url, server.token(tenant)) as small:
        await small.send({"type": "subscribe", "views": ["overview"], "queues": ["q" * 50] * 10})
        await small.next(lambda m: m["type"] == "snapshot")
    async with board(server.url, server.token(tenant)) as client:
        await client.next(lambda m: m["type"] == "status")
        await client.send({"type": "ping", "pad": "x" * 2048})
        assert await client.closed() == 1009


async def test_ping_pong(server: RunningServer) -> None:
    """A ping message is answered by a pong echoing its ts; unknown or malformed messages get an error."""
    async with board(server.url, server.token(new_tenant())) as client:
        await client.send({"type": "ping", "ts": 12345})
        assert (await client.next(lambda m: m["type"] == "pong"))["ts"] == 12345
        await client.send("not json")
        assert (await client.next(lambda m: m["type"] == "error"))["code"] == "invalid_json"
        await client.send({"type": "dance"})
        assert (await client.next(lambda m: m.get("code") == "unknown_type"))["type"] == "error"
        await client.send({"type": "subscribe", "views": ["everything"]})
        assert (await client.next(lambda m: m.get("code") == "invalid_views"))["type"] == "error"
        assert client.open


async def test_quiet_tenant_gets_heartbeats(server_factory: Factory, settings: Settings) -> None:
    """A tenant with no events still gets an update at least every ws_refresh_s."""
    server = await server_factory(settings.replace(ws_refresh_s=1))
    async with board(server.url, server.token(new_tenant())) as client:
        await client.subscribe(["overview"])
        await client.next(lambda m: m["type"] == "snapshot")
        mark = len(client.messages)
        await asyncio.sleep(3)
        beats = [m for m in client.bodies[mark:] if m["type"] == "update"]
    assert len(beats) >= 2, beats
    assert_consecutive([m for m in client.bodies if m.get("view") == "overview"])


async def test_graceful_shutdown_closes_1012(server_factory: Factory, settings: Settings) -> None:
    """When the server shuts down gracefully its wallboards are closed with 1012 (service restart)."""
    server = await server_factory(settings)
    async with board(server.url, server.token(new_tenant())) as client:
        await client.subscribe(["overview"])
        await client.next(lambda m: m["type"] == "snapshot")
        await asyncio.wait_for(server.stop(), 15)
        assert await client.closed() == 1012


async def test_joiners_of_busy_tenant_get_snapshot_first(server_factory: Factory, settings: Settings) -> None:
    """Wallboards that subscribe at the same moment each get their snapshot first, then updates with rising seq."""
    server = await server_factory(settings.replace(ws_tick_ms=10, ws_refresh_s=1))
    tenant = new_tenant()
    agents = [f"agent-{n}" for n in range(200)]
    await post(server, tenant, [agent_state(a, queues=[f"q{n % 30}"], name=a.upper() * 20) for n, a in enumerate(agents)])
    wrong = []
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(board(server.url, server.token(tenant))) for _ in range(30)]
        await asyncio.gather(*(c.next(lambda m: m["type"] == "status") for c in clients))
        await asyncio.gather(*(c.subscribe(["agents", "overview"], queues=[f"q{n}"]) for n, c in enumerate(clients)))
        await post(server, tenant, queued("q0"))
        await asyncio.gather(*(c.next(lambda m: m.get("view") == "agents" and m["type"] == "update") for c in clients))
        await asyncio.sleep(0.5)
    for n, client in enumerate(clients):
        for view in ("agents", "overview"):
            stream = [(m["type"], m["seq"]) for m in client.bodies if m.get("view") == view]
            seqs = [seq for _, seq in stream]
            if stream[0][0] != "snapshot" or seqs != sorted(set(seqs)):
                wrong.append((n, view, stream[:3]))
    assert not wrong, f"{len(wrong)} of {2 * len(clients)} streams did not start with a snapshot: {wrong[:4]}"


@pytest.mark.filterwarnings("ignore:The `websockets` implementation is deprecated")
async def test_other_websocket_implementation_gets_the_same_protocol(settings: Settings,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    """Under a WebSocket implementation other than websockets-sansio, messages go through the ASGI send, same protocol."""
    caplog.set_level(logging.INFO, logger="wallboard.ws")
    sock = free_socket()
    config = uvicorn.Config(create_app(settings), log_level="warning",
                            **{**uvicorn_options(settings), "ws": "websockets"})
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            assert not task.done(), "server exited during start-up"
            await asyncio.sleep(0.01)
        running = RunningServer(url=f"http://127.0.0.1:{sock.getsockname()[1]}", settings=settings, server=server,
                                task=task)
        tenant = new_tenant("legacy")
        async with board(running.url, running.token(tenant)) as client:
            await client.subscribe(["overview"])
            snapshot = await client.next(lambda m: m["type"] == "snapshot")
            [connection] = server.lifespan.state["services"].hub.clients[tenant]
            assert isinstance(connection.wire, AsgiWire), "no direct writes under another implementation"
            await post(running, tenant, queued("sales"))
            await client.next(update_offered(1))
            await client.send({"type": "ping", "ts": 7})
            assert (await client.next(lambda m: m["type"] == "pong"))["ts"] == 7
        assert client.bodies[0]["type"] == "status"
        assert_consecutive([m for m in client.bodies if m.get("view") == "overview"])
        assert snapshot["seq"] < client.of("update")[-1]["seq"]
        async with board(running.url, running.token(tenant)) as again:
            await again.next(lambda m: m["type"] == "status")
        checks = [r for r in caplog.records if r.getMessage().startswith("ws.direct_writes")]
        assert [r.getMessage() for r in checks] == ["ws.direct_writes_off"], "the failed check is logged once"
        assert "websockets_impl" in checks[0].reason
    finally:
        server.should_exit = True
        await task
        sock.close()


async def test_tenants_read_together_each_see_their_own_figures(server_factory: Factory, settings: Settings) -> None:
    """Boards of eight tenants whose reads go to Redis together (events at once, then refreshes on the same tick) each
    see their own queue and count."""
    server = await server_factory(settings.replace(ws_refresh_s=1))
    tenants = [new_tenant("batch") for _ in range(8)]
    async with contextlib.AsyncExitStack() as stack:
        boards = [await stack.enter_async_context(board(server.url, server.token(t))) for t in tenants]
        for client in boards:
            await client.subscribe(["overview"])
            await client.next(lambda m: m["type"] == "snapshot")
        for rounds in (1, 2):  # the first round declares each tenant's new queue, the second reads it as known
            await asyncio.gather(*(post(server, t, queued(f"q{i}", i + 1)) for i, t in enumerate(tenants)))
            for i, client in enumerate(boards):
                update = await client.next(update_offered(rounds * (i + 1)))
                assert [q["queue_id"] for q in update["data"]["queues"]] == [f"q{i}"]
        seen = [len(client.messages) for client in boards]
        for i, client in enumerate(boards):  # the refreshes of the quiet tenants fall due on the same ticks
            refresh = await client.next(lambda m: m["type"] == "update", after=seen[i], timeout=5)
            assert [q["queue_id"] for q in refresh["data"]["queues"]] == [f"q{i}"]
            assert offered(refresh) == 2 * (i + 1)

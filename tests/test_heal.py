"""Self-healing: batches a dead process left, a Redis that lost data, and drift are found and rebuilt."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from server.app import close_services, open_services
from server.core.config import Settings
from server.core.redis_client import redis_client
from server.ingest.events import parse_event
from server.live.keys import Keys
from server.live.state import Calendar

from .conftest import ROOT, TEST_SECRET, RunningServer
from .test_ws import board

Factory = Callable[[Settings], Awaitable[RunningServer]]
FAST = {"live_sweep_s": 1, "live_pending_age_s": 2, "live_check_s": 1, "live_reconcile_s": 0}


def calls(count: int) -> list[dict[str, Any]]:
    """``count`` calls queued and answered a minute ago (one queue)."""
    now = int(time.time() * 1000) - 60_000
    out = []
    for i in range(count):
        c = secrets.token_hex(5)
        out.append({"event_id": f"q-{c}", "type": "call.queued", "ts": now + i, "call_id": c, "queue_id": "sales"})
        out.append({"event_id": f"a-{c}", "type": "call.answered", "ts": now + i + 4000, "call_id": c,
                    "queue_id": "sales", "agent_id": "ann"})
    return out


async def serve(factory: Factory, settings: Settings, **changes: Any) -> RunningServer:
    """A server of its own key prefix whose first generation check (a new prefix: nothing to rebuild) is done."""
    server = await factory(settings.replace(**{"key_prefix": f"wbh{secrets.token_hex(3)}", **FAST, **changes}))
    if server.settings.live_check_s < 10:
        client = redis_client(server.settings.redis_url, 4)  # a Redis Cluster's URL too (test_redis_cluster.py)
        try:
            async def verified() -> bool:
                return bool(await client.exists(f"{server.settings.key_prefix}:generation"))
            await until(verified, 10)
        finally:
            await client.aclose()
    return server


async def offered(server: RunningServer, tenant: str) -> int:
    async with server.client(server.token(tenant)) as client:
        response = await client.get("/api/metrics/live")
    if response.status_code != 200:
        return -1
    return int(response.json()["data"]["today"]["offered"])


async def ingest(server: RunningServer, tenant: str, events: list[dict[str, Any]]) -> None:
    async with server.client(server.token(tenant, "ingest")) as client:
        response = await client.post("/api/events", json=events)
    assert response.status_code == 200, response.text


async def commit_only(settings: Settings, tenant: str, events: list[dict[str, Any]], *, marker: bool) -> None:
    """What a process that died between the PostgreSQL commit and the Redis apply leaves behind."""
    svc = await open_services(settings, background=False)
    try:
        parsed = sorted((parse_event(e) for e in events), key=lambda e: e.event_id)
        cal = Calendar(await svc.settings_store.get(tenant))
        batch = secrets.randbits(63) if marker else None
        await svc.ingestor.store_events(tenant, parsed, cal, batch=batch)
    finally:
        await close_services(svc)


async def until(probe: Callable[[], Awaitable[bool]], within_s: float) -> float:
    started = time.monotonic()
    while not await probe():
        assert time.monotonic() - started < within_s, f"not within {within_s}s"
        await asyncio.sleep(0.2)
    return time.monotonic() - started


async def test_batch_left_by_a_dead_process_is_swept(server_factory: Factory, settings: Settings) -> None:
    """Events committed by a process that died before applying them reach the board within seconds, and the marker goes."""
    server = await serve(server_factory, settings)
    tenant = f"heal-{secrets.token_hex(3)}"
    await ingest(server, tenant, calls(3))
    assert await offered(server, tenant) == 3
    await commit_only(server.settings, tenant, calls(4), marker=True)
    assert await offered(server, tenant) == 3, "nobody applied the batch yet"

    async def healed() -> bool:
        return await offered(server, tenant) == 7
    await until(healed, 10)
    conn = await asyncpg.connect(settings.database_url)
    try:
        async def cleared() -> bool:
            return await conn.fetchval("SELECT count(*) FROM live_pending WHERE client_id = $1", tenant) == 0
        await until(cleared, 5)
    finally:
        await conn.close()


async def test_redis_restored_from_an_older_state_is_rebuilt(server_factory: Factory, settings: Settings) -> None:
    """A Redis whose run_id changed (a restore from a snapshot) has its active tenants replayed, and boards see stale then exact."""
    server = await serve(server_factory, settings)
    tenant = f"gen-{secrets.token_hex(3)}"
    await ingest(server, tenant, calls(2))
    assert await offered(server, tenant) == 2
    async with board(server.url, server.token(tenant)) as wall:
        await wall.subscribe(["overview"])
        await wall.next(lambda b: b["type"] == "snapshot")
        mark = len(wall.bodies)
        # Committed, never applied, no marker: only the generation check can find these.
        await commit_only(server.settings, tenant, calls(5), marker=False)
        client = aioredis.Redis.from_url(settings.redis_url)
        try:
            await client.set(f"{server.settings.key_prefix}:generation", "an-older-redis")
        finally:
            await client.aclose()
        await wall.next(lambda b: b["type"] == "status" and b["live"] == "stale", after=mark, timeout=10)
        snap = await wall.next(lambda b: b["type"] == "snapshot" and b["data"]["today"]["offered"] == 7, after=mark,
                               timeout=10)
        assert snap["view"] == "overview"
        await wall.next(lambda b: b["type"] == "status" and b["live"] == "ok", after=mark, timeout=5)
    assert await offered(server, tenant) == 7


async def test_reconciliation_repairs_a_double_count(server_factory: Factory, settings: Settings) -> None:
    """A counter that drifted in Redis is found by the reconciliation and the tenant rebuilt to the rollups' figures."""
    server = await serve(server_factory, settings, live_reconcile_s=3)
    tenant = f"rec-{secrets.token_hex(3)}"
    await ingest(server, tenant, calls(3))
    assert await offered(server, tenant) == 3
    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        keys = [k async for k in client.scan_iter(match=Keys(server.settings.key_prefix).tenant_prefix(tenant) + "qd:*")]
        assert keys
        await client.hincrby(keys[0], "offered", 2)
    finally:
        await client.aclose()

    async def drifted() -> bool:  # a poll is answered from the rendering of the last tick: seen within one
        return await offered(server, tenant) == 5
    await until(drifted, 2)

    async def healed() -> bool:
        return await offered(server, tenant) == 3
    await until(healed, 10)


@pytest.mark.parametrize("drift", [False, True])
async def test_check_live_command(server_factory: Factory, settings: Settings, drift: bool) -> None:
    """`wallboard check-live` prints one line per tenant, exits 1 on a mismatch, and --repair makes it equal again."""
    server = await serve(server_factory, settings, live_check_s=300, live_sweep_s=300)  # the command alone repairs
    tenant = f"chk-{secrets.token_hex(3)}"
    await ingest(server, tenant, calls(2))
    assert await offered(server, tenant) == 2
    if drift:
        await commit_only(server.settings, tenant, calls(1), marker=False)
    env = {"DATABASE_URL": str(settings.database_url), "REDIS_URL": str(settings.redis_url),
           "WALLBOARD_JWT_SECRET": TEST_SECRET, "WALLBOARD_KEY_PREFIX": server.settings.key_prefix,
           "WALLBOARD_LOG_LEVEL": "WARNING", "PATH": "/usr/bin:/bin"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "server", "check-live", *args], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=60)

    first = await asyncio.to_thread(run, "--tenant", tenant)
    assert first.returncode == (1 if drift else 0), first.stdout + first.stderr
    line = [x for x in first.stdout.splitlines() if x.startswith(tenant)]
    assert len(line) == 1 and ("MISMATCH" in line[0]) == drift, first.stdout
    if drift:
        repaired = await asyncio.to_thread(run, "--tenant", tenant, "--repair")
        assert repaired.returncode == 1 and "rebuilt" in repaired.stdout, repaired.stdout + repaired.stderr
        again = await asyncio.to_thread(run, "--all")
        assert again.returncode == 0, again.stdout + again.stderr
        assert any(x.startswith(tenant) and "equal" in x for x in again.stdout.splitlines()), again.stdout
        assert await offered(server, tenant) == 3

"""Chaos under steady ingest: Redis killed or cut, servers killed, PostgreSQL cut. Nothing acknowledged is lost or counted twice.

Each scenario runs real processes (a private redis-server, `python -m server serve`), several tenants'
connectors that retry a batch until it is acknowledged (out of order, with duplicates) and one wallboard
per tenant. After the fault every acknowledged event must be counted exactly once in the live figures,
on the boards and in the history rollups, equal to a hand count (live_reference.py), within 15 s of the
fault's end. Figures per scenario are printed (pytest -s) and written to test-artifacts/chaos.json.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from server.tools.simulate import SimulationConfig, generate

from .chaos_rig import REDIS_SERVER, Connector, RedisProcess, ServerProcess, Wall, token
from .conftest import ROOT
from .live_reference import recompute
from .proxy import Proxy, postgres_proxy
from .test_live_exact import assert_matches, day_started_hours_ago

pytestmark = [pytest.mark.slow, pytest.mark.chaos, pytest.mark.timeout(180),
              pytest.mark.skipif(not Path(REDIS_SERVER).exists(), reason="redis-server is not installed")]

TENANTS = 3
EXACT_WITHIN_S = 15.0
COUNTERS = ("offered", "answered", "abandoned", "handled")
ARTIFACT = ROOT / "test-artifacts" / "chaos.json"


@dataclass
class Rig:
    redis: RedisProcess
    servers: list[ServerProcess]
    database_url: str
    connectors: list[Connector] = field(default_factory=list)
    walls: list[Wall] = field(default_factory=list)
    redis_proxy: Proxy | None = None
    pg_proxy: Proxy | None = None
    day_start: int = 0

    def fault(self, name: str | None) -> None:
        for c in self.connectors:
            c.fault = name


Fault = Callable[[Rig], Awaitable[float]]  # does the fault; returns the monotonic time it ended


@contextlib.asynccontextmanager
async def rig(tmp: Path, database_url: str, *, servers: int = 1, redis_proxy: bool = False,
              pg_proxy: bool = False) -> AsyncIterator[Rig]:
    redis = RedisProcess(tmp / "redis")
    await redis.start()
    r_proxy = p_proxy = None
    redis_url, db_url = redis.url, database_url
    if redis_proxy:
        r_proxy = Proxy("127.0.0.1", redis.port)
        await r_proxy.start()
        redis_url = f"redis://127.0.0.1:{r_proxy.port}/0"
    if pg_proxy:
        p_proxy, proxied = postgres_proxy(database_url)
        await p_proxy.start()
        db_url = proxied()
    procs = [ServerProcess(db_url, redis_url, f"chaos{secrets.token_hex(2)}", tmp / f"server{i}.log") for i in range(servers)]
    for proc in procs:
        proc.env["WALLBOARD_KEY_PREFIX"] = procs[0].env["WALLBOARD_KEY_PREFIX"]
    the = Rig(redis, procs, database_url, redis_proxy=r_proxy, pg_proxy=p_proxy)
    try:
        for proc in procs:
            await proc.start()
        yield the
    finally:
        for wall in the.walls:
            await wall.close()
        for proc in procs:
            await proc.stop()
        for proxy in (r_proxy, p_proxy):
            if proxy is not None:
                await proxy.cut()
        if redis.proc is not None and redis.proc.poll() is None:
            redis.kill(forget=True)


async def scenario(name: str, the: Rig, fault: Fault, *, visible: bool) -> dict[str, Any]:
    """Steady ingest, the fault, then the time until every board, the live API and the history are exact."""
    starts_at, the.day_start = day_started_hours_ago(5)
    start = datetime.now(UTC) - timedelta(minutes=65)
    async with httpx.AsyncClient(timeout=10) as client:
        for i in range(TENANTS):
            tenant = f"{name[:12]}{i}-{secrets.token_hex(2)}"
            response = await client.put(f"{the.servers[0].url}/api/settings", json={"day_starts_at": starts_at},
                                        headers={"Authorization": f"Bearer {token(tenant, 'admin')}"})
            assert response.status_code == 200, response.text
            events = generate(SimulationConfig(agents=15, queues=2, calls_per_hour=1500, seed=100 + i), start,
                              timedelta(minutes=60))
            the.connectors.append(Connector(tenant, events, the.servers, seed=i))
            the.walls.append(Wall(tenant, the.servers))
    stop = asyncio.Event()
    feeding = [asyncio.create_task(c.run(stop)) for c in the.connectors]
    await asyncio.sleep(4)
    fault_start = time.monotonic()
    fault_end = await fault(the)
    the.fault(None)
    await asyncio.sleep(2)  # ingest goes on after the fault, then each connector drains its batch in flight
    stop.set()
    async with asyncio.timeout(60):
        await asyncio.gather(*feeding)
    exact_at, lost, double = await until_exact(the, fault_end)
    figures = {"fault_end_to_exact_s": round(exact_at - fault_end, 2) if exact_at else None,
               "acknowledged": sum(len(c.acked) for c in the.connectors), "lost": lost, "counted_twice": double,
               "replies": dict(sum((c.replies for c in the.connectors), start=type(the.connectors[0].replies)())),
               "fault_s": round(fault_end - fault_start, 1),
               "rebuilds": sum(len(s.logged('"live.rebuilt"')) for s in the.servers)}
    record(name, figures)
    assert exact_at is not None, f"{name}: not exact within {EXACT_WITHIN_S}s of the fault's end: {figures}"
    assert lost == 0 and double == 0, figures
    for wall in the.walls:
        if visible:
            told = [m for m in wall.since(fault_start, "status") if m["live"] == "stale"] + wall.since(fault_start, "disconnected")
            assert told, f"{name}: the board of {wall.tenant} was never told stale"
        if visible or wall.since(fault_start, "disconnected"):
            assert wall.since(fault_start, "snapshot"), f"{name}: the board of {wall.tenant} got no snapshot after the fault"
    return figures


async def until_exact(the: Rig, fault_end: float) -> tuple[float | None, int, int]:
    """Poll until boards, live API and rollups equal the hand count; (when, lost, counted twice) at the end."""
    now_ms = int(time.time() * 1000)
    refs = {c.tenant: recompute(list(c.acked.values()), the.day_start, the.day_start + 86_400_000, now=now_ms)
            for c in the.connectors}
    conn = await asyncpg.connect(the.database_url)
    try:
        while True:
            lost = double = 0
            exact = True
            for c, wall in zip(the.connectors, the.walls, strict=True):
                ref = refs[c.tenant]
                stored = await conn.fetchval("SELECT count(*) FROM events WHERE client_id = $1", c.tenant)
                lost += max(0, len(c.acked) - stored)
                double += max(0, stored - len(c.acked))
                history = {r["key"]: r for r in await conn.fetch(
                    "SELECT key, sum(offered) AS offered, sum(answered) AS answered, sum(abandoned) AS abandoned, "
                    "sum(handled) AS handled FROM performance_daily WHERE client_id = $1 AND dimension = 'queue' "
                    "GROUP BY key", c.tenant)}
                live, agents = await live_documents(the, c.tenant)
                board = wall.latest()
                for source in (history, live, board):
                    by_queue = _by_queue(source)
                    for queue, expected in ref["queues"].items():
                        for key in COUNTERS:
                            got = int(by_queue.get(queue, {}).get(key) or 0) if by_queue is not None else 0
                            lost += max(0, expected[key] - got)
                            double += max(0, got - expected[key])
                if live is None or board is None:
                    exact = False
                    continue
                try:
                    assert_matches(live, agents, ref)
                except (AssertionError, KeyError):
                    exact = False
            if exact and lost == 0 and double == 0:
                return time.monotonic(), 0, 0
            if time.monotonic() - fault_end > EXACT_WITHIN_S:
                return None, lost, double
            await asyncio.sleep(0.25)
    finally:
        await conn.close()


def _by_queue(source: Any) -> dict[str, Any] | None:
    if source is None:
        return None
    if isinstance(source, dict) and "queues" in source:
        return {q["queue_id"]: q["today"] for q in source["queues"]}
    return {k: dict(v) for k, v in source.items()}


async def live_documents(the: Rig, tenant: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    server = next((s for s in the.servers if s.alive), the.servers[0])
    headers = {"Authorization": f"Bearer {token(tenant, 'supervisor')}"}
    try:
        async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=5) as client:
            overview = await client.get("/api/metrics/live")
            agents = await client.get("/api/metrics/agents/status")
    except httpx.HTTPError:
        return None, []
    if overview.status_code != 200 or agents.status_code != 200:
        return None, []
    return overview.json()["data"], agents.json()["data"]


def record(name: str, figures: dict[str, Any]) -> None:
    ARTIFACT.parent.mkdir(exist_ok=True)
    found = orjson.loads(ARTIFACT.read_bytes()) if ARTIFACT.exists() else {}
    found[name] = figures
    ARTIFACT.write_bytes(orjson.dumps(found, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    print(f"\nchaos {name}: {figures}")


# -- scenarios -------------------------------------------------------------------------


async def test_redis_killed_and_restarted_empty(tmp_path: Path, database_factory: Callable[..., Awaitable[str]]) -> None:
    """Redis SIGKILLed and restarted empty: boards go stale, then every acknowledged event is counted once."""
    async def fault(the: Rig) -> float:
        the.redis.kill(forget=True)
        await asyncio.sleep(3)
        await the.redis.start()
        return time.monotonic()

    async with rig(tmp_path, await database_factory()) as the:
        await scenario("redis_killed_empty", the, fault, visible=True)


async def test_redis_restarted_from_an_older_snapshot(tmp_path: Path, database_factory: Callable[..., Awaitable[str]]) -> None:
    """Redis restarted from a snapshot taken seconds before the kill: the events since are replayed, none twice."""
    async def fault(the: Rig) -> float:
        await the.redis.save()
        await asyncio.sleep(4)  # events the snapshot will not have
        the.redis.kill(forget=False)
        await asyncio.sleep(1)
        await the.redis.start()
        return time.monotonic()

    async with rig(tmp_path, await database_factory()) as the:
        await scenario("redis_restored_snapshot", the, fault, visible=True)
        assert the.servers[0].logged('"live.redis_restarted"'), "the restore from a snapshot was detected"


async def test_server_killed_with_batches_in_flight(tmp_path: Path, database_factory: Callable[..., Awaitable[str]]) -> None:
    """The only server SIGKILLed mid-ingest and restarted: connectors' retries and the sweep lose nothing."""
    async def fault(the: Rig) -> float:
        the.servers[0].kill()
        await asyncio.sleep(2)
        await the.servers[0].start()
        return time.monotonic()

    async with rig(tmp_path, await database_factory()) as the:
        await scenario("server_killed", the, fault, visible=True)


async def test_one_of_two_servers_killed(tmp_path: Path, database_factory: Callable[..., Awaitable[str]]) -> None:
    """One of two servers SIGKILLed: the other keeps serving, sweeps what the dead one left, boards reconnect to it."""
    async def fault(the: Rig) -> float:
        the.servers[0].kill()
        return time.monotonic()

    async with rig(tmp_path, await database_factory(), servers=2) as the:
        await scenario("one_of_two_killed", the, fault, visible=False)


async def test_postgres_unreachable(tmp_path: Path, database_factory: Callable[..., Awaitable[str]]) -> None:
    """PostgreSQL cut off for 12 s: ingest answers 503 (never 200), and after it every retried event counts once."""
    async def fault(the: Rig) -> float:
        assert the.pg_proxy is not None
        await the.pg_proxy.cut()
        await asyncio.sleep(0.5)  # a commit already on the wire may still be acknowledged
        the.fault("postgres")
        await asyncio.sleep(11.5)
        the.fault(None)
        await the.pg_proxy.restore()
        return time.monotonic()

    async with rig(tmp_path, await database_factory(), pg_proxy=True) as the:
        figures = await scenario("postgres_unreachable", the, fault, visible=False)
        assert sum(c.oks_while["postgres"] for c in the.connectors) == 0, "a 200 while PostgreSQL was unreachable"
        assert figures["replies"].get("503", 0) > 0


async def test_redis_network_cut_several_times(tmp_path: Path, database_factory: Callable[..., Awaitable[str]]) -> None:
    """The network to Redis cut and restored three times in 15 s: boards go stale, and the figures come back exact."""
    async def fault(the: Rig) -> float:
        assert the.redis_proxy is not None
        for _ in range(3):
            await the.redis_proxy.cut()
            await asyncio.sleep(2)
            await the.redis_proxy.restore()
            await asyncio.sleep(3)
        return time.monotonic() - 3

    async with rig(tmp_path, await database_factory(), redis_proxy=True) as the:
        await scenario("redis_network_flaps", the, fault, visible=True)

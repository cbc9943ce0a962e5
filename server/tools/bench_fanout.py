"""``wallboard bench fanout``: ingest-to-wallboard latency and deliveries/s over many WebSockets.

Two phases, the same N clients (in ``--procs`` processes) spread evenly over the same tenants,
each subscribed to ``overview``:

- **server**: one ``wallboard serve`` subprocess on a scratch database. Every 50 ms the events
  then due (``call.queued`` → ``answered`` → ``completed`` per call, round-robin over tenants,
  ``ts`` = due time) are posted, one request in flight per tenant: a slow server delays ingest,
  never the schedule, so the delay shows in the latency (no coordinated omission). Before the
  clients connect, each tenant posts an agent and one call (:func:`warm_up`): the ingest process's
  new PostgreSQL connections are not measured planning their first statements.
- **baseline**: the least a fan-out does, in its own process: ``websockets`` connections kept by
  tenant, one Redis subscription, per message one fixed document as large as the server's, sent
  with ``broadcast``. The driver follows the same schedule and publishes every tenant that had
  events once per 250 ms (the server's coalescing tick).

Latency is joined after the run, not sampled: the driver logs per tenant (offered + answered
after a post, due time); each client logs (receive time, offered + answered) per ``overview``
message; a post's latency at a client is the receive time of the first message counting it,
minus its due time.

Trade-offs, stated plainly: the clients share the cores with the server (so its CPU and RSS
stand beside the latencies, and the clients are as lean as websockets allows: its sans-I/O
protocol on a bare transport) and parse every message, as a wallboard would; events go one
tenant per request, as connectors send them, so ingest costs the server CPU too. The notes
give the POST round trips and the server's logged warnings (a slow collection is one).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from bisect import bisect_left
from dataclasses import dataclass, replace
from itertools import accumulate
from typing import Any

import orjson
import psutil

from server.core.auth import mint
from server.core.config import Settings
from server.core.errors import ConfigError
from server.core.redis_client import redis_client
from server.runtime import as_owner, with_runtime
from server.tools.bench import NO_BUDGETS, BenchFailed, CpuSample, CpuUsed, Scratch, cpu_of, run_async, say
from server.tools.bench_baseline import baseline_process
from server.tools.bench_clients import RECEIVED, Fleet, Held, Spec, raise_fd_limit
from server.tools.bench_feed import COUNTED, KINDS, Batch, Feed, Ingest
from server.tools.bench_quiet import Quiet
from server.tools.bench_server import free_port, mark_ready, stop, tail, wait_healthy
from server.tools.fanout_report import report, warnings

TICK_S = 0.05  # the driver's schedule step
FLUSH_TICKS = 5  # the baseline publishes every 5 ticks: the server's 250 ms coalescing tick
IDLE_S = 5.0  # all connected and quiet this long before the idle RSS is read
GRACE_S = 5.0  # after the schedule, time for the last updates to arrive (the server refreshes every 5 s)



def cmd_bench_fanout(args: argparse.Namespace) -> int:
    """``wallboard bench fanout``: exit 0 with the figures, 1 when the run failed (with the reason)."""
    try:
        return run(clients=args.clients, tenants=args.tenants, events_per_s=args.events_per_s,
                   seconds=args.seconds, procs=args.procs, procs_server=args.procs_server, ingest_apart=args.ingest_apart)
    except BenchFailed as exc:
        print(f"\nwallboard: bench failed: {exc.message}", file=sys.stderr)
        return 1


def run(*, clients: int, tenants: int, events_per_s: float, seconds: float, procs: int, procs_server: int = 1,
        ingest_apart: bool = False) -> int:
    """Set up (embedded servers when DATABASE_URL/REDIS_URL are unset), run both phases, print the table."""
    if min(clients, tenants, procs) < 1 or events_per_s <= 0 or seconds <= 0 or tenants > clients:
        raise ConfigError(f"--clients {clients}, --tenants {tenants}, --events-per-s {events_per_s}, --seconds "
                          f"{seconds}, --procs {procs}: expected positive numbers and tenants ≤ clients")
    if clients + 500 > (hard := raise_fd_limit()):
        raise ConfigError(f"--clients {clients} needs {clients + 500} file descriptors in the server, the hard "
                          f"limit is {hard}: raise it (ulimit -Hn, /etc/security/limits.conf) or use fewer clients")
    settings, embedded = with_runtime(Settings.from_env())
    settings = as_owner(settings)
    try:
        names = [f"t{i:03d}" for i in range(tenants)]
        return run_async(bench(settings, clients, names, events_per_s, seconds, procs, procs_server, ingest_apart))
    finally:
        if embedded is not None:
            embedded.stop()


async def bench(settings: Settings, clients: int, tenants: list[str], rate: float, seconds: float,
                procs: int, procs_server: int = 1, ingest_apart: bool = False) -> int:
    assert settings.database_url is not None and settings.redis_url is not None
    scratch = Scratch.new(settings.database_url, settings.redis_url)
    local = settings.replace(database_url=scratch.dsn, key_prefix=scratch.key_prefix, jwt_secret=os.urandom(36).hex(),
                             jwt_public_key=None, jwt_private_key=None, jwt_algorithm="HS256")
    versions = await scratch.versions()
    say(f"scratch database {scratch.database}, Redis key prefix {scratch.key_prefix}")
    try:
        await scratch.create(settings.app_role)
        server = await server_phase(local, clients, tenants, rate, seconds, procs, procs_server, ingest_apart)
        baseline = await baseline_phase(local, clients, tenants, rate, seconds, procs, size=server.mean_bytes)
    finally:
        await scratch.drop()
    print(report(server, baseline, procs, versions, procs_server))
    return 0


# -- measuring one phase ---------------------------------------------------------


@dataclass(frozen=True)
class Phase:
    """What one phase measured. ``latencies_ms`` is sorted; a post a client never saw counts as infinite."""

    name: str
    clients: int
    tenants: int
    events: int
    wall_s: float
    deliveries: int  # overview messages received in the load window
    latencies_ms: list[float]
    missed: int
    cpu: CpuUsed
    clients_cpu_s: float
    rss: tuple[int, int, int]  # the server's: empty, idle with every client, highest under load
    gaps: int
    stale: int
    mean_bytes: int
    other: str = "none"
    retries: int = 0
    posts_ms: tuple[float, float, float] = (0.0, 0.0, 0.0)  # POST /api/events round trips: p50, p99, max
    window: tuple[float, float] = (0.0, 0.0)  # the load window, epoch ms
    warnings: str = "-"  # the server's log lines at warning and above, counted by event
    quiet: str = ""  # the quiet tenant beside the load (server phase): bench_quiet.Quiet.summary
    ingest_cpu_s: float | None = None  # with --ingest-apart: the ingest process's CPU over the phase

    def percentile(self, q: float) -> str:
        value = self.latencies_ms[min(len(self.latencies_ms) - 1, int(q * len(self.latencies_ms)))]
        return f">{GRACE_S * 1000:.0f}" if value == float("inf") else f"{value:,.0f}"

    def kib_per_conn(self, rss: int) -> str:
        return f"{(rss - self.rss[0]) / self.clients / 1024:.1f}"


def rss_of(pid: int) -> int:
    """RSS of the process and its children (the workers of ``serve --workers N``)."""
    try:
        proc = psutil.Process(pid)
        return sum(int(p.memory_info().rss) for p in (proc, *proc.children(recursive=True)))
    except psutil.Error:
        return 0


async def measure(name: str, fleet: Fleet, feed: Feed, seconds: float, pid: int, alive: Any, send: Any,
                  flush: Any = None) -> Phase:
    """Connect the fleet, let it idle, run the schedule for ``seconds``, collect and join."""
    rss_empty = rss_of(pid)
    await fleet.connect(name, alive)
    await asyncio.sleep(IDLE_S)
    alive()
    rss_idle = rss_load = rss_of(pid)
    before, clients_before, received = CpuSample.take(pid), sum(map(cpu_of, fleet.pids)), fleet.count(RECEIVED)
    started, t0, tick = time.perf_counter(), time.time() * 1000, 0
    while (elapsed := time.perf_counter() - started) < seconds:
        if batch := feed.due(elapsed, time.time() * 1000):
            await send(batch)
        tick += 1
        if flush is not None and tick % FLUSH_TICKS == 0:
            await flush()
        if tick % 10 == 0:
            alive()
            rss_load = max(rss_load, rss_of(pid))
            rate = (fleet.count(RECEIVED) - received) / max(elapsed, 1e-3)
            sys.stderr.write(f"\r{name}: {elapsed:4.0f}/{seconds:.0f} s  {feed.sent:,} events  "
                             f"{rate:,.0f} deliveries/s   ")
        await asyncio.sleep(max(0.0, started + tick * TICK_S - time.perf_counter()))
    wall, t1, rss_load = time.perf_counter() - started, time.time() * 1000, max(rss_load, rss_of(pid))
    after, clients_after = CpuSample.take(pid), sum(map(cpu_of, fleet.pids))
    sys.stderr.write("\n")
    if flush is not None:
        await flush()  # what fell due since the last flush
    await asyncio.sleep(GRACE_S)
    alive()
    held = await fleet.finish()
    if errors := sorted({h.error for h in held if h.error}):
        raise BenchFailed(f"{name}: {sum(h.closed for h in held):,} clients lost their connection; "
                          f"{'; '.join(errors)}")
    latencies, missed, deliveries = join(feed, held, t0, t1)
    seen = sum(len(times) for h in held for _, times, _ in h.records)
    other: dict[str, int] = {}
    for h in held:
        for kind, n in h.other.items():
            other[kind] = other.get(kind, 0) + n
    return Phase(name, fleet.total, len(feed.steps), feed.sent, wall, deliveries, latencies, missed,
                 CpuUsed.between(before, after), clients_after - clients_before, (rss_empty, rss_idle, rss_load),
                 sum(h.gaps for h in held), sum(h.stale for h in held), sum(h.bytes for h in held) // max(seen, 1),
                 ", ".join(f"{n:,} {kind}" for kind, n in sorted(other.items())) or "none", window=(t0, t1))


def join(feed: Feed, held: list[Held], t0: float, t1: float) -> tuple[list[float], int, int]:
    """(sorted latencies of every (client, post) pair, pairs never delivered, messages received in [t0, t1])."""
    latencies: list[float] = []
    missed = deliveries = 0
    for h in held:
        for tenant, times, counts in h.records:
            deliveries += sum(1 for t in times if t0 <= t <= t1)
            seen = list(accumulate(counts, max))  # monotone, even if a refresh ever went back
            for count, sent in feed.posts[tenant]:
                if (k := bisect_left(seen, count)) < len(seen):
                    latencies.append(times[k] - sent)
                else:
                    missed += 1
    latencies.sort()
    return latencies + [float("inf")] * missed, missed, deliveries


# -- the phases ----------------------------------------------------------------


async def server_phase(settings: Settings, clients: int, tenants: list[str], rate: float, seconds: float,
                       procs: int, procs_server: int = 1, ingest_apart: bool = False) -> Phase:
    """``wallboard serve [--workers N]`` in a subprocess (CPU and RSS of all its processes); clients authenticate
    with a supervisor token per tenant. With ``ingest_apart`` the events go to a second ``wallboard serve`` and
    reach the measured one through Redis, as where ingest and boards are served by different processes."""
    assert settings.database_url is not None and settings.redis_url is not None and settings.jwt_secret is not None
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("PORT", "WALLBOARD_JWT_PUBLIC_KEY", "WALLBOARD_JWT_PRIVATE_KEY")}
    env.update(DATABASE_URL=settings.database_url, REDIS_URL=settings.redis_url,
               WALLBOARD_JWT_SECRET=settings.jwt_secret, WALLBOARD_KEY_PREFIX=settings.key_prefix,
               WALLBOARD_LOG_LEVEL="WARNING", WALLBOARD_LOG_FORMAT="json", WALLBOARD_MAX_CONNECTIONS_PER_TENANT=str(max(5000, clients)),
               # every client comes from 127.0.0.1: the per-address and per-process caps must admit them all
               WALLBOARD_WS_MAX_PER_ADDRESS=str(max(1000, clients + 100)),
               WALLBOARD_WS_MAX_CONNECTIONS=str(max(20_000, clients + 100)), **NO_BUDGETS)
    with tempfile.TemporaryFile() as log:
        def serve(on: int, workers: int) -> subprocess.Popen[bytes]:
            return subprocess.Popen([sys.executable, "-m", "server", "serve", "--host", "127.0.0.1", "--port", str(on),
                                     "--workers", str(workers)],
                                    env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

        proc = serve(port, procs_server)
        procs_up = [proc]
        ingest_port = port
        if ingest_apart:
            ingest_port = free_port()
            procs_up.append(serve(ingest_port, 1))
        ingest = Ingest(ingest_port, [mint(settings, tenant=t, role="ingest", ttl_s=86_400) for t in tenants], log)
        try:
            for up, on in zip(procs_up, (port, ingest_port), strict=False):
                await wait_healthy(f"http://127.0.0.1:{on}", up, log)
            say(f"server phase: wallboard serve pid {proc.pid} on port {port}"
                + (f", events posted to pid {procs_up[-1].pid} on port {ingest_port}" if ingest_apart else ""))

            def alive() -> None:
                for up in procs_up:
                    if up.poll() is not None:
                        raise BenchFailed(f"wallboard serve exited with status {up.returncode}: {tail(log)}")
                ingest.check()

            await warm_up(settings, tenants, ingest, round(rate * TICK_S))
            tokens = [mint(settings, tenant=t, role="supervisor", sub="bench", ttl_s=86_400) for t in tenants]
            hello = orjson.dumps({"type": "subscribe", "views": ["overview"]})
            specs: list[Spec] = [(i % len(tenants), ["wallboard.v1", f"bearer.{tokens[i % len(tenants)]}"], hello)
                                 for i in range(clients)]
            await mark_ready(settings, "quiet")
            quiet = Quiet(port, mint(settings, tenant="quiet", role="ingest", ttl_s=86_400),
                          mint(settings, tenant="quiet", role="supervisor", sub="bench", ttl_s=86_400), ingest_port)
            await asyncio.sleep(1.0)  # let the start-up settle before the empty server's RSS is read
            fleet = Fleet(f"ws://127.0.0.1:{port}/ws", specs, procs)
            quieting = asyncio.create_task(quiet.run())
            try:
                ingest_before = cpu_of(procs_up[-1].pid)
                phase = await measure("server", fleet, Feed(len(tenants), rate, COUNTED), seconds, proc.pid, alive,
                                      ingest.send)
                if ingest_apart:
                    phase = replace(phase, ingest_cpu_s=cpu_of(procs_up[-1].pid) - ingest_before)
                quiet.stop()
                await quieting
                took = sorted(ingest.took_ms) or [0.0]
                return replace(phase, retries=ingest.retried, warnings=warnings(log, phase.window), quiet=quiet.summary(phase.window),
                               posts_ms=(took[len(took) // 2], took[int(len(took) * 0.99)], took[-1]))
            finally:
                quiet.stop()
                await asyncio.gather(quieting, return_exceptions=True)
                fleet.stop_event.set()
        finally:
            ingest.close()
            for up in procs_up:
                stop(up)


async def warm_up(settings: Settings, tenants: list[str], ingest: Ingest, at_once: int) -> None:
    """Before the boards connect: each tenant's agent, then one call of it, ``at_once`` tenants at a time (as the
    schedule's steps post them). The ingest process's PostgreSQL connections plan the ingest routine on their first
    calls (30-50 ms each, more while the others do the same): a start-up cost, not fan-out's, which would otherwise
    fall in the first second measured."""
    ts = int(time.time() * 1000)
    for i, tenant in enumerate(tenants):
        await mark_ready(settings, tenant)
        await ingest.post(i, [{"event_id": "agent-a1", "type": "agent.state", "ts": ts, "agent_id": "a1",
                               "state": "available", "queues": ["sales"]}])
    step = max(1, at_once)
    for kind in KINDS:
        for first in range(0, len(tenants), step):
            await asyncio.gather(*(ingest.post(i, [{"event_id": f"warm.{kind['type']}", "ts": ts, "call_id": "warm",
                                                    "queue_id": "sales", **kind}])
                                   for i in range(first, min(len(tenants), first + step))))


async def baseline_phase(settings: Settings, clients: int, tenants: list[str], rate: float, seconds: float,
                         procs: int, *, size: int) -> Phase:
    """The plain fan-out in its own process, fed through Redis pub/sub on the tick the server coalesces on."""
    assert settings.redis_url is not None
    port, channel, size = free_port(), f"{settings.key_prefix}:bench-fanout", size or 2048
    ctx = mp.get_context("spawn")
    ready, done = ctx.Event(), ctx.Event()
    server = ctx.Process(target=baseline_process, args=(port, settings.redis_url, channel, size, ready, done),
                         daemon=True, name="bench-baseline")
    server.start()
    publisher = redis_client(settings.redis_url)
    feed, dirty = Feed(len(tenants), rate), set[int]()

    def alive() -> None:
        if not server.is_alive():
            raise BenchFailed(f"the baseline server exited with status {server.exitcode}: see its output above")

    async def send(batch: Batch) -> None:
        dirty.update(batch)

    async def flush() -> None:
        pipe = publisher.pipeline(transaction=False)
        for i in dirty:
            pipe.publish(channel, orjson.dumps([tenants[i], feed.counts[i]]))
        dirty.clear()
        await pipe.execute()

    try:
        while not ready.is_set():
            alive()
            await asyncio.sleep(0.1)
        assert server.pid is not None
        say(f"baseline phase: websockets server pid {server.pid} on port {port}, documents of {size} bytes")
        specs: list[Spec] = [(i % len(tenants), None, orjson.dumps({"type": "subscribe", "views": ["overview"],
                                                                    "tenant": tenants[i % len(tenants)]}))
                             for i in range(clients)]
        fleet = Fleet(f"ws://127.0.0.1:{port}/", specs, procs)
        try:
            return await measure("baseline", fleet, feed, seconds, server.pid, alive, send, flush)
        finally:
            fleet.stop_event.set()
    finally:
        await publisher.aclose()
        done.set()
        server.join(15)
        if server.is_alive():
            server.terminate()

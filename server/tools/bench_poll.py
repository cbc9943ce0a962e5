"""``wallboard bench poll``: wallboards polling ``/api/metrics/live`` with ``If-None-Match``, against a minimal app.

Two phases, the same pollers at the same target rate, each poller on its own keep-alive
HTTP/1.1 connection sending ``If-None-Match`` with the current ETag (so nearly every answer is a 304):

- **server**: one ``wallboard serve`` subprocess on a scratch database and Redis key prefix,
  one tenant with a few events, polled with a supervisor token.
- **baseline**: the least such an endpoint does, in its own process: a Starlette app on the
  same uvicorn options whose one route reads one Redis key (the ETag) and answers 304.

With ``--refused`` the server's tenant is past its read budget, so every poll gets a 429 (what a
tenant flooding at many times its budget costs the server per request), and the baseline's one
route answers a fixed 429 without reading Redis: the least a refusal costs on the same uvicorn.

The schedule is open-loop: poller ``i`` of ``N`` sends at ``t0 + (i / N + k) · N / rate``, and a
poll's latency runs from that due time to the end of its reply, so a slow server shows in the
latency instead of slowing the pollers down (no coordinated omission). ``--rate 0`` polls as fast
as the pollers can (closed loop, latency from each send): the most polls/s each side takes.

Trade-offs, stated plainly: the pollers share the cores with the server (their CPU is printed
beside it); each is a raw asyncio stream, far leaner than an HTTP client library, and reads
only the status line and headers (and a body when there is one).
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
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from server.app import uvicorn_options
from server.core.auth import mint
from server.core.config import Settings
from server.core.errors import ConfigError
from server.core.redis_client import redis_client
from server.runtime import with_runtime
from server.tools.bench import NO_BUDGETS, BenchFailed, CpuSample, CpuUsed, Scratch, run_async, say, table
from server.tools.bench_server import free_port, mark_ready, stop, tail, wait_healthy

PATH = "/api/metrics/live"
TENANT = "poll"
TARGET = "target: CPU µs/poll ≤ 1.5 × the baseline's; p99 < 10 ms at 1,000 polls/s"
REFUSED_BODY = orjson.dumps({"success": False, "error": {"code": "rate_limited", "message": "past its read budget"}})


def cmd_bench_poll(args: argparse.Namespace) -> int:
    """``wallboard bench poll``: exit 0 with the figures, 1 when the run failed (with the reason)."""
    try:
        return run(pollers=args.pollers, rate=args.rate, seconds=args.seconds, refused=getattr(args, "refused", False))
    except BenchFailed as exc:
        print(f"\nwallboard: bench failed: {exc.message}", file=sys.stderr)
        return 1


def run(*, pollers: int, rate: float, seconds: float, refused: bool = False) -> int:
    if pollers < 1 or rate < 0 or seconds <= 0:
        raise ConfigError(f"--pollers {pollers}, --rate {rate}, --seconds {seconds}: expected pollers ≥ 1, "
                          "rate ≥ 0 (0: as fast as possible) and seconds > 0")
    settings, embedded = with_runtime(Settings.from_env())
    try:
        return run_async(bench(settings, pollers, rate, seconds, refused))
    finally:
        if embedded is not None:
            embedded.stop()


async def bench(settings: Settings, pollers: int, rate: float, seconds: float, refused: bool) -> int:
    assert settings.database_url is not None and settings.redis_url is not None
    scratch = Scratch.new(settings.database_url, settings.redis_url)
    local = settings.replace(database_url=scratch.dsn, key_prefix=scratch.key_prefix, jwt_secret=os.urandom(36).hex(),
                             jwt_public_key=None, jwt_private_key=None, jwt_algorithm="HS256")
    versions = await scratch.versions()
    say(f"scratch database {scratch.database}, Redis key prefix {scratch.key_prefix}")
    try:
        await scratch.create(settings.app_role)
        server = await server_phase(local, pollers, rate, seconds, refused)
        baseline = await baseline_phase(local, pollers, rate, seconds, refused)
    finally:
        await scratch.drop()
    print(report(server, baseline, rate, versions, refused))
    return 0


# -- the pollers -------------------------------------------------------------------


@dataclass(frozen=True)
class Phase:
    name: str
    pollers: int
    wall_s: float
    latencies_ms: list[float]  # sorted
    statuses: dict[int, int]
    cpu: CpuUsed

    @property
    def polls(self) -> int:
        return len(self.latencies_ms)

    def percentile(self, q: float) -> float:
        return self.latencies_ms[min(len(self.latencies_ms) - 1, int(q * len(self.latencies_ms)))]


async def poller(port: int, request: bytes, first: float, interval: float, until: float, latencies: list[float],
                 statuses: dict[int, int]) -> None:
    """One wallboard: a keep-alive connection sending ``request`` on its schedule until ``until``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        k = 0
        while True:
            now = time.perf_counter()
            due = first + k * interval if interval else now
            if due >= until:
                return
            if due > now:
                await asyncio.sleep(due - now)
            writer.write(request)
            lines = (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length" and int(value):
                    await reader.readexactly(int(value))
            latencies.append((time.perf_counter() - due) * 1000)
            status = int(lines[0].split(b" ", 2)[1])
            statuses[status] = statuses.get(status, 0) + 1
            k += 1
    finally:
        writer.close()


async def measure(name: str, port: int, pid: int, request: bytes, pollers: int, rate: float, seconds: float,
                  expected: int = 304) -> Phase:
    """Warm up for a second, then poll for ``seconds``; the server's CPU over the load window."""
    interval = pollers / rate if rate else 0.0
    warm = time.perf_counter() + 1.0
    await asyncio.gather(*(poller(port, request, time.perf_counter() + (i / pollers) * interval, interval, warm, [], {})
                           for i in range(pollers)))
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    before = CpuSample.take(pid)
    started = time.perf_counter()
    await asyncio.gather(*(poller(port, request, started + (i / pollers) * interval, interval, started + seconds,
                                  latencies, statuses) for i in range(pollers)))
    wall = time.perf_counter() - started
    used = CpuUsed.between(before, CpuSample.take(pid))
    if set(statuses) - {200, expected} or not statuses.get(expected):
        raise BenchFailed(f"{name}: answers by status {statuses}, expected {expected}s")
    return Phase(name, pollers, wall, sorted(latencies), statuses, used)


def poll_request(port: int, token: str | None, tag: str) -> bytes:
    auth = f"authorization: Bearer {token}\r\n" if token else ""
    return f"GET {PATH} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n{auth}if-none-match: {tag}\r\n\r\n".encode()


# -- the phases --------------------------------------------------------------------


async def server_phase(settings: Settings, pollers: int, rate: float, seconds: float, refused: bool = False) -> Phase:
    """``wallboard serve`` in a subprocess, one tenant with a few events, polled with a supervisor token.

    ``refused``: the tenant's read budget is one request an hour, spent by the first GET."""
    assert settings.database_url is not None and settings.redis_url is not None and settings.jwt_secret is not None
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("PORT", "WALLBOARD_JWT_PUBLIC_KEY", "WALLBOARD_JWT_PRIVATE_KEY")}
    env.update(DATABASE_URL=settings.database_url, REDIS_URL=settings.redis_url,
               WALLBOARD_JWT_SECRET=settings.jwt_secret, WALLBOARD_KEY_PREFIX=settings.key_prefix,
               WALLBOARD_LOG_LEVEL="WARNING", WALLBOARD_LOG_FORMAT="json", **NO_BUDGETS)
    if refused:
        env.update(WALLBOARD_RATE_READ_TENANT="1", WALLBOARD_RATE_WINDOW_S="3600")
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen([sys.executable, "-m", "server", "serve", "--host", "127.0.0.1", "--port", str(port)],
                                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            await wait_healthy(url, proc, log)
            say(f"server phase: wallboard serve pid {proc.pid} on port {port}")
            await mark_ready(settings, TENANT)
            token = mint(settings, tenant=TENANT, role="supervisor", sub="bench", ttl_s=86_400)
            now = int(time.time() * 1000)
            events = [{"event_id": "agent-a1", "type": "agent.state", "ts": now, "agent_id": "a1",
                       "state": "available", "queues": ["sales"]},
                      {"event_id": "call-1", "type": "call.queued", "ts": now, "call_id": "c1", "queue_id": "sales"}]
            async with httpx.AsyncClient(base_url=url, timeout=10) as client:
                posted = await client.post("/api/events", json=events,
                                           headers={"Authorization": f"Bearer {mint(settings, tenant=TENANT, role='ingest')}"})
                if posted.status_code != 200:
                    raise BenchFailed(f"POST /api/events answered {posted.status_code}: {posted.text[:300]}")
                first = await client.get(PATH, headers={"Authorization": f"Bearer {token}"})
                if first.status_code != 200:
                    raise BenchFailed(f"GET {PATH} answered {first.status_code}: {first.text[:300]}")
            phase = await measure("server", port, proc.pid, poll_request(port, token, first.headers["etag"]), pollers,
                                  rate, seconds, 429 if refused else 304)
            if proc.poll() is not None:
                raise BenchFailed(f"wallboard serve exited with status {proc.returncode}: {tail(log)}")
            return phase
        finally:
            stop(proc)


def baseline_process(port: int, redis_url: str, key: str, settings: Settings, ready: Any, refused: bool = False) -> None:
    """Entry of the baseline process: a minimal Starlette app that reads one Redis key and answers 304
    (``refused``: that answers a fixed 429 with Retry-After, reading nothing).

    It gets the settings, not the uvicorn options: those hold a protocol class made at run time,
    which a spawned process cannot unpickle."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def live(request: Request) -> Response:
        if refused:
            return Response(REFUSED_BODY, status_code=429, media_type="application/json",
                            headers={"Retry-After": "60", "RateLimit-Limit": "1", "RateLimit-Remaining": "0",
                                     "RateLimit-Reset": "60"})
        tag = (await client.get(key) or b"").decode()
        headers = {"ETag": tag, "Cache-Control": "no-cache"}
        if tag and tag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        return Response(orjson.dumps({"success": True, "data": {}}), media_type="application/json", headers=headers)

    async def main() -> None:
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", proxy_headers=True,
                                               **uvicorn_options(settings)))
        serving = asyncio.create_task(server.serve())
        while not server.started and not serving.done():
            await asyncio.sleep(0.05)
        ready.set()
        await serving

    client = redis_client(redis_url)
    app = Starlette(routes=[Route(PATH, live, methods=["GET"])])
    run_async(main())


async def baseline_phase(settings: Settings, pollers: int, rate: float, seconds: float, refused: bool = False) -> Phase:
    """The minimal app in its own process, its one key holding the ETag the pollers send."""
    assert settings.redis_url is not None
    port, key, tag = free_port(), f"{settings.key_prefix}:bench-poll", 'W/"bench"'
    publisher = redis_client(settings.redis_url)
    try:
        await publisher.set(key, tag)
    finally:
        await publisher.aclose()
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    server = ctx.Process(target=baseline_process, args=(port, settings.redis_url, key, settings, ready, refused), daemon=True,
                         name="bench-poll-baseline")
    server.start()
    try:
        while not ready.is_set():
            if not server.is_alive():
                raise BenchFailed(f"the baseline server exited with status {server.exitcode}: see its output above")
            await asyncio.sleep(0.1)
        assert server.pid is not None
        say(f"baseline phase: minimal Starlette app pid {server.pid} on port {port}")
        return await measure("baseline", port, server.pid, poll_request(port, None, tag), pollers, rate, seconds,
                             429 if refused else 304)
    finally:
        server.terminate()
        server.join(15)


def report(server: Phase, baseline: Phase, rate: float, versions: tuple[str, str], refused: bool = False) -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    header = ["phase", "pollers", "polls/s", "p50 ms", "p99 ms", "max ms", "server CPU %", "CPU µs/poll",
              "pollers CPU %", "redis CPU %", "answers"]
    rows = []
    for p in (server, baseline):
        share = 100 / p.wall_s
        rows.append([p.name, f"{p.pollers}", f"{p.polls / p.wall_s:,.0f}", f"{p.percentile(0.5):.2f}",
                     f"{p.percentile(0.99):.2f}", f"{p.latencies_ms[-1]:.1f}", f"{p.cpu.server * share:.0f}",
                     f"{1e6 * p.cpu.server / p.polls:.0f}", f"{p.cpu.own * share:.0f}", f"{p.cpu.redis * share:.0f}",
                     ", ".join(f"{n:,} × {s}" for s, n in sorted(p.statuses.items()))])
    ratio = (server.cpu.server / server.polls) / (baseline.cpu.server / baseline.polls)
    return "\n".join([
        f"wallboard bench poll: GET {PATH} "
        f"{'by a tenant past its read budget (429s)' if refused else 'with If-None-Match'}, target {rate:,.0f} polls/s"
        f"{' (0: as fast as possible)' if not rate else ''}, {versions[0]}, {versions[1]}, {cores} cores, "
        f"load average {os.getloadavg()[0]:.1f} at the end",
        table(header, rows),
        f"ratio server CPU µs/poll server/baseline: {ratio:.2f}"
        f"{' (a refusal against the least a 429 costs on the same uvicorn)' if refused else f' ({TARGET})'}",
        "latency runs from each poll's due time on the schedule; CPU % is of one core over the load window",
    ])

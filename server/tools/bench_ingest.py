"""``wallboard bench ingest``: events/s through ``POST /api/events``, against the raw storage work.

Two phases over the same simulated events, each under its own tenant and from
the same empty event tables:

- **server**: a real ``wallboard serve`` subprocess on the scratch database,
  driven by ``--concurrency`` keep-alive connections posting pre-encoded
  batches. Every reply must be 200 with every event accepted.
- **baseline**: what ingest cannot avoid, in this process: per batch one
  ``events_store`` (:meth:`Ingestor.store_events`, events and history in one statement) and one ``apply.lua`` call,
  with the events parsed, sorted and compacted beforehand, outside the clock.

``ratio = server / baseline`` is the share of the storage work's throughput
that HTTP, authentication, validation and the event loop leave over. Both
tenants' live state is marked ready before their phase, as in a server that
has run for a while: the one-off rebuild of a new tenant is not measured.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from typing import IO, Any, TypeVar

import httpx
import orjson

from server.app import close_services, open_services
from server.core.auth import mint
from server.core.config import Settings
from server.core.errors import ConfigError
from server.ingest.events import Event, parse_body
from server.live.keys import Keys
from server.live.state import Calendar, compact
from server.runtime import as_owner, with_runtime
from server.tools.bench import NO_BUDGETS, BenchFailed, CpuSample, CpuUsed, Progress, Scratch, run_async, say, table
from server.tools.simulate_activity import base_mix
from server.tools.simulate_model import ContactCenter, SimulationConfig

W = TypeVar("W")

SERVER_TENANT = "bench-server"
BASELINE_TENANT = "bench-baseline"
# A busy mid-size center: at the daily peak the queues overflow a little, as they do.
MODEL = {"agents": 800, "queues": 5, "calls_per_hour": 8000.0}
TARGET_EVENTS_S = 20_000
TARGET_RATIO = 0.5


@dataclass(frozen=True)
class Batch:
    """One request body, encoded once, and how many events it holds."""

    body: bytes
    count: int


@dataclass(frozen=True)
class Phase:
    """What one phase measured."""

    name: str
    events: int
    wall_s: float
    cpu: CpuUsed
    has_server: bool

    @property
    def events_s(self) -> float:
        return self.events / self.wall_s if self.wall_s > 0 else 0.0


def run(*, events: int, batch: int, concurrency: int, seconds: float | None, mix: str = "full") -> int:
    """Set up (embedded servers when DATABASE_URL/REDIS_URL are unset), run both phases, print the table."""
    settings = Settings.from_env()
    if events < 1 or concurrency < 1 or (seconds is not None and seconds <= 0):
        raise ConfigError(f"--events {events}, --concurrency {concurrency}, --seconds {seconds}: "
                          "expected positive numbers")
    if not 1 <= batch <= settings.max_events:
        raise ConfigError(f"--batch {batch} is out of range: expected 1..{settings.max_events} (WALLBOARD_MAX_EVENTS)")
    settings, embedded = with_runtime(settings)
    settings = as_owner(settings)
    try:
        return run_async(bench(settings, events=events, batch=batch, concurrency=concurrency, seconds=seconds, mix=mix))
    finally:
        if embedded is not None:
            embedded.stop()


async def bench(settings: Settings, *, events: int, batch: int, concurrency: int, seconds: float | None,
                mix: str = "full") -> int:
    assert settings.database_url is not None and settings.redis_url is not None
    scratch = Scratch.new(settings.database_url, settings.redis_url)
    secret = secrets.token_urlsafe(36)  # 48 characters
    local = settings.replace(database_url=scratch.dsn, key_prefix=scratch.key_prefix, jwt_secret=secret,
                             jwt_public_key=None, jwt_private_key=None, jwt_algorithm="HS256")
    versions = await scratch.versions()
    say(f"scratch database {scratch.database}, Redis key prefix {scratch.key_prefix}")
    try:
        await scratch.create(settings.app_role)
        batches = encode(simulate(events, mix), batch)
        await scratch.reset_events()
        server = await server_phase(local, scratch, batches, concurrency, seconds)
        await scratch.reset_events()
        baseline = await baseline_phase(local, batches, concurrency, seconds)
    finally:
        await scratch.drop()
    print(report([server, baseline], events=events, batch=batch, concurrency=concurrency, versions=versions))
    return 0


# -- the events ----------------------------------------------------------------


def simulate(total: int, mix: str = "full") -> list[dict[str, Any]]:
    """The ``total`` most recent events of a simulated center, ending now, in ``ts`` order (``mix`` "base": without
    the rings, holds, callbacks and revenue of issue 17, the mix before them).

    Windows are simulated backwards from now until there are enough, each with
    its own seed and id prefix, so no two events share an id.
    """
    end = datetime.now(UTC)
    hours = min(6.0, max(0.1, total / 40_000))
    windows: list[list[dict[str, Any]]] = []
    have = 0
    progress = Progress("simulating", total)
    for seed in range(1, 1000):
        start = end - timedelta(hours=hours)
        model = ContactCenter(SimulationConfig(**MODEL, seed=seed, id_prefix=f"bench{seed}"), start)  # type: ignore[arg-type]
        window: list[dict[str, Any]] = []
        step = start
        while step < end:
            step = min(end, step + timedelta(minutes=10))
            window += base_mix(model.advance(step)) if mix == "base" else model.advance(step)
            progress.update(min(total, have + len(window)))
        windows.append(window)
        have += len(window)
        if have >= total:
            break
        rate = max(len(window), 1) / hours
        end, hours = start, min(24.0, max(0.1, (total - have) / rate * 1.2))
    progress.finish(min(have, total))
    events = [event for window in reversed(windows) for event in window]
    return events[-total:]


def encode(events: Sequence[dict[str, Any]], size: int) -> list[Batch]:
    """JSON request bodies of ``size`` events (the last may be shorter)."""
    return [Batch(orjson.dumps(events[i:i + size]), len(events[i:i + size])) for i in range(0, len(events), size)]


# -- the phases ----------------------------------------------------------------


async def drive(name: str, work: Sequence[W], counts: Sequence[int], send: Callable[[W], Awaitable[None]], *,
                concurrency: int, seconds: float | None, server_pid: int | None) -> Phase:
    """Run ``send`` over ``work`` from ``concurrency`` workers; time it and take the CPU used meanwhile.

    With ``seconds``, no new item is started after that long; the figures cover what was done.
    """
    pending = iter(zip(work, counts, strict=True))
    progress = Progress(name, sum(counts))
    done = 0
    deadline = float("inf")

    async def worker() -> None:
        nonlocal done
        for item, count in pending:
            if time.perf_counter() >= deadline:
                return
            await send(item)
            done += count
            progress.update(done)

    before = CpuSample.take(server_pid)
    started = time.perf_counter()
    if seconds is not None:
        deadline = started + seconds
    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(concurrency):
                group.create_task(worker())
    except BaseExceptionGroup as failed:
        sys.stderr.write("\n")
        raise failed.exceptions[0] from None
    wall = time.perf_counter() - started
    after = CpuSample.take(server_pid)
    progress.finish(done)
    return Phase(name, done, wall, CpuUsed.between(before, after), has_server=server_pid is not None)


async def server_phase(settings: Settings, scratch: Scratch, batches: Sequence[Batch], concurrency: int,
                       seconds: float | None) -> Phase:
    """``wallboard serve`` in a subprocess on the scratch database, fed over keep-alive connections."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items()
           if k not in ("PORT", "WALLBOARD_JWT_PUBLIC_KEY", "WALLBOARD_JWT_PRIVATE_KEY")}
    assert settings.database_url is not None and settings.redis_url is not None and settings.jwt_secret is not None
    env.update(DATABASE_URL=settings.database_url, REDIS_URL=settings.redis_url,
               WALLBOARD_JWT_SECRET=settings.jwt_secret, WALLBOARD_KEY_PREFIX=scratch.key_prefix,
               WALLBOARD_LOG_LEVEL="WARNING", **NO_BUDGETS)
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen([sys.executable, "-m", "server", "serve", "--host", "127.0.0.1", "--port", str(port)],
                                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        try:
            await wait_healthy(url, proc, log)
            await mark_ready(settings, SERVER_TENANT)
            token = mint(settings, tenant=SERVER_TENANT, role="ingest", ttl_s=24 * 3600)
            say(f"server phase: wallboard serve pid {proc.pid} on {url}")
            connections: asyncio.Queue[Connection] = asyncio.Queue()
            for _ in range(concurrency):
                connections.put_nowait(await Connection.open("127.0.0.1", port, token))

            async def post(batch: Batch) -> None:
                connection = await connections.get()
                try:
                    status, reply = await connection.post(batch.body)
                except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    raise BenchFailed(f"POST /api/events failed: {type(exc).__name__}: {exc}; "
                                      f"server said: {tail(log)}") from None
                connections.put_nowait(connection)
                check_reply(status, reply, batch.count)

            try:
                return await drive("server", batches, [b.count for b in batches], post,
                                   concurrency=concurrency, seconds=seconds, server_pid=proc.pid)
            finally:
                while not connections.empty():
                    connections.get_nowait().close()
        finally:
            stop(proc)


async def baseline_phase(settings: Settings, batches: Sequence[Batch], concurrency: int,
                         seconds: float | None) -> Phase:
    """The storage work alone, in this process: events_store, then one apply.lua call, per batch."""
    svc = await open_services(settings, background=False)
    try:
        tenant_settings = await svc.settings_store.get(BASELINE_TENANT)
        work: list[tuple[list[Event], Calendar, bytes]] = []
        for batch in batches:  # what the server does before storing, done here outside the clock
            valid, rejected = parse_body(batch.body, "application/json", max_events=settings.max_events)
            if rejected:
                raise BenchFailed(f"the simulator made an invalid event: {rejected[0]}")
            events = sorted((event for _, event in valid), key=attrgetter("event_id"))
            calendar = Calendar(tenant_settings)
            work.append((events, calendar, orjson.dumps([compact(event, calendar) for event in events])))
        await mark_ready(settings, BASELINE_TENANT)

        async def store(item: tuple[list[Event], Calendar, bytes]) -> None:
            events, calendar, payload = item
            fresh = await svc.ingestor.store_events(BASELINE_TENANT, events, calendar)
            if len(fresh) != len(events):
                raise BenchFailed(f"events_store stored {len(fresh)} of {len(events)} events: expected all")
            result = await svc.live._run_apply(BASELINE_TENANT, payload, force=False)
            if result[0] == -1:
                raise BenchFailed("apply.lua found the live state not ready: expected it marked ready")

        return await drive("baseline", work, [b.count for b in batches], store,
                           concurrency=concurrency, seconds=seconds, server_pid=None)
    finally:
        await close_services(svc)


# -- plumbing ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tail(log: IO[bytes], limit: int = 800) -> str:
    """The end of the server's output, on one line."""
    log.seek(0)
    text = log.read().decode(errors="replace").strip()
    return " | ".join(text[-limit:].splitlines()) or "(nothing)"


async def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: IO[bytes], timeout_s: float = 60) -> None:
    """Wait for ``GET /api/metrics/health`` to answer 200; fail with the server's output when it exits."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BenchFailed(f"wallboard serve exited with status {proc.returncode}: {tail(log)}")
            try:
                if (await client.get(f"{url}/api/metrics/health")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise BenchFailed(f"wallboard serve was not healthy after {timeout_s:.0f}s: {tail(log)}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 15 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def mark_ready(settings: Settings, tenant: str) -> None:
    """Mark the tenant's live state complete, as a running server's is (skips the first-touch rebuild)."""
    from server.core.redis_client import redis_client

    assert settings.redis_url is not None
    client = redis_client(settings.redis_url)
    try:
        await client.set(Keys(settings.key_prefix).ready(tenant), "1")
    finally:
        await client.aclose()


class Connection:
    """One keep-alive HTTP/1.1 connection that posts pre-encoded bodies to ``/api/events``.

    Measured on this project's batches, httpx spends ~2 ms of CPU per request of 500 events
    (~4 µs/event, taken from the cores the server needs); this spends ~0.06 ms. It reads
    replies with a Content-Length only, which is what the server sends.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> None:
        self.reader = reader
        self.writer = writer
        self.head = head

    @classmethod
    async def open(cls, host: str, port: int, token: str) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        head = (f"POST /api/events HTTP/1.1\r\nhost: {host}:{port}\r\nauthorization: Bearer {token}\r\n"
                "content-type: application/json\r\n").encode()
        return cls(reader, writer, head)

    async def post(self, body: bytes) -> tuple[int, bytes]:
        """Send one request and return (status, reply body)."""
        self.writer.write(self.head + b"content-length: %d\r\n\r\n" % len(body))
        self.writer.write(body)
        lines = (await self.reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                return status, await self.reader.readexactly(int(value))
        raise ValueError(f"a reply without Content-Length: {lines[:3]!r}")

    def close(self) -> None:
        self.writer.close()


def check_reply(status: int, reply: bytes, count: int) -> None:
    """Fail unless the reply is 200 with every event of the batch accepted."""
    if status != 200:
        raise BenchFailed(f"POST /api/events answered {status}, expected 200: {reply[:300].decode(errors='replace')}")
    data = orjson.loads(reply)["data"]
    if data["accepted"] != count:
        raise BenchFailed(f"POST /api/events accepted {data['accepted']} of {count} events "
                          f"({data['duplicates']} duplicates, {len(data['rejected'])} rejected): expected all")


def report(phases: list[Phase], *, events: int, batch: int, concurrency: int, versions: tuple[str, str]) -> str:
    """The figures: one row per phase, the ratio, and what the CPU columns count."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    header = ["phase", "events", "events/s", "wall s", "server CPU µs/event", "bench CPU µs/event",
              "postgres CPU s", "redis CPU s"]
    rows = []
    for p in phases:
        per_event = 1e6 / max(p.events, 1)
        rows.append([p.name, f"{p.events:,}", f"{p.events_s:,.0f}", f"{p.wall_s:.2f}",
                     f"{p.cpu.server * per_event:.1f}" if p.has_server else "-", f"{p.cpu.own * per_event:.1f}",
                     f"{p.cpu.postgres:.2f}", f"{p.cpu.redis:.2f}"])
    server, baseline = phases
    ratio = server.events_s / baseline.events_s if baseline.events_s else 0.0
    return "\n".join([
        f"wallboard bench ingest: {events:,} events, batches of {batch:,}, concurrency {concurrency}, "
        f"{versions[0]}, {versions[1]}, {cores} cores",
        table(header, rows),
        f"ratio server/baseline: {ratio:.2f}   (target: ≥ {TARGET_EVENTS_S:,} events/s and ≥ {TARGET_RATIO})",
        "bench CPU: this process (the load generator, raw HTTP/1.1; in the baseline, the storage work itself). "
        "postgres/redis CPU: every process of that name on the machine, best effort.",
    ])

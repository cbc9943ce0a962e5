"""``wallboard bench ingest``: events/s through ``POST /api/events``, against the raw storage work.

Two phases over the same simulated events, each under its own tenant and from
the same empty event tables:

- **server**: a real ``wallboard serve`` subprocess on the scratch database,
  driven by ``--concurrency`` keep-alive connections posting pre-encoded
  batches. Every reply must be 200 with every event accepted.
- **batched** (only when ``--batch`` is under 500): the same events through a fresh server in
  batches of 500 from at most 4 connections, the way a connector that batches posts; the
  one-by-one figure is compared with it (``ratio one-by-one/batched``, target ≥ 0.25: what group
  commit must recover of batching when every event comes in its own request). With ``--rounds N``
  the two phases run N times, alternated, each round under tenants of its own (a tenant's stored
  legs and rollups would make a second pass of the same events cheaper): the machine's speed drifts
  between runs more than between the phases of one round, so each round's ratio is printed and the
  median of them is the figure to quote.
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
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from typing import Any, TypeVar

import orjson

from server.app import close_services, open_services
from server.core.auth import mint
from server.core.config import Settings
from server.core.errors import ConfigError
from server.ingest.events import Event, parse_body
from server.live.shortform import Calendar, Declared, compact
from server.runtime import as_owner, with_runtime
from server.tools.bench import NO_BUDGETS, BenchFailed, CpuSample, CpuUsed, Progress, Scratch, run_async, say, table
from server.tools.bench_server import Connection, free_port, mark_ready, stop, tail, wait_healthy
from server.tools.pg_sessions import PERIOD_S, Sessions, Shares
from server.tools.simulate_activity import base_mix
from server.tools.simulate_model import ContactCenter, SimulationConfig

W = TypeVar("W")

SERVER_TENANT = "bench-server"
BATCHED_TENANT = "bench-batched"
BATCHED = 500  # the batch a batching connector sends: what one-event requests are compared with
TARGET_BATCHED_RATIO = 0.25
TARGET_P99_MS = 50.0
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
    latencies_ms: tuple[float, ...] = ()  # one per request (server phases)
    sessions: Shares | None = None  # what PostgreSQL's sessions spent the phase on (server phases)

    def latency(self, share: float) -> float | None:
        """The request latency at ``share`` (0.5 = median, 0.99 = p99), in ms; None without requests."""
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]

    @property
    def events_s(self) -> float:
        return self.events / self.wall_s if self.wall_s > 0 else 0.0


def run(*, events: int, batch: int, concurrency: int, seconds: float | None, mix: str = "full",
        pg_sessions: bool = False, rounds: int = 1) -> int:
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
        return run_async(bench(settings, events=events, batch=batch, concurrency=concurrency, seconds=seconds, mix=mix,
                               pg_sessions=pg_sessions, rounds=rounds))
    finally:
        if embedded is not None:
            embedded.stop()


async def bench(settings: Settings, *, events: int, batch: int, concurrency: int, seconds: float | None,
                mix: str = "full", pg_sessions: bool = False, rounds: int = 1) -> int:
    assert settings.database_url is not None and settings.redis_url is not None
    scratch = Scratch.new(settings.database_url, settings.redis_url)
    secret = secrets.token_urlsafe(36)  # 48 characters
    local = settings.replace(database_url=scratch.dsn, key_prefix=scratch.key_prefix, jwt_secret=secret,
                             jwt_public_key=None, jwt_private_key=None, jwt_algorithm="HS256")
    versions = await scratch.versions()
    say(f"scratch database {scratch.database}, Redis key prefix {scratch.key_prefix}")
    try:
        await scratch.create(settings.app_role)
        simulated = simulate(events, mix)
        batches = encode(simulated, batch)
        batched = encode(simulated, BATCHED) if batch < BATCHED else []
        phases: list[Phase] = []
        for n in range(1, (rounds if batched else 1) + 1):
            nth, tenant = (f" {n}", f"-{n}") if n > 1 else ("", "")  # round 1 is named as a run of one
            await scratch.reset_events()
            phases.append(await server_phase(f"server{nth}", SERVER_TENANT + tenant, local,
                                             scratch, batches, concurrency, seconds, pg_sessions))
            if batched:
                await scratch.reset_events()
                phases.append(await server_phase(f"batched{nth}", BATCHED_TENANT + tenant, local,
                                                 scratch, batched, min(concurrency, 4), seconds, pg_sessions))
        await scratch.reset_events()
        phases.append(await baseline_phase(local, batches, concurrency, seconds))
    finally:
        await scratch.drop()
    print(report(phases, events=events, batch=batch, concurrency=concurrency, versions=versions))
    return 0


# -- the events ----------------------------------------------------------------


def simulate(total: int, mix: str = "full", end: datetime | None = None) -> list[dict[str, Any]]:
    """The ``total`` most recent events of a simulated center, ending now (or at ``end``), in ``ts`` order (``mix``
    "base": without the offers, ring-no-answers, holds, callbacks and revenue: the mix before those kinds existed).

    Windows are simulated backwards from the end until there are enough, each with
    its own seed and id prefix, so no two events share an id.
    """
    end = datetime.now(UTC) if end is None else end
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
                concurrency: int, seconds: float | None, server_pid: int | None,
                latencies_ms: Sequence[float] = ()) -> Phase:
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
    return Phase(name, done, wall, CpuUsed.between(before, after), has_server=server_pid is not None,
                 latencies_ms=tuple(latencies_ms))


async def server_phase(name: str, tenant: str, settings: Settings, scratch: Scratch, batches: Sequence[Batch],
                       concurrency: int, seconds: float | None, pg_sessions: bool = False) -> Phase:
    """``wallboard serve`` in a subprocess on the scratch database, fed over keep-alive connections; with
    ``pg_sessions``, PostgreSQL's sessions of the scratch database sampled meanwhile (pg_sessions.py)."""
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
            await mark_ready(settings, tenant)
            token = mint(settings, tenant=tenant, role="ingest", ttl_s=24 * 3600)
            say(f"{name} phase: wallboard serve pid {proc.pid} on {url}")
            latencies: list[float] = []
            connections: asyncio.Queue[Connection] = asyncio.Queue()
            for _ in range(concurrency):
                connections.put_nowait(await Connection.open("127.0.0.1", port, token))

            async def post(batch: Batch) -> None:
                connection = await connections.get()
                try:
                    sent = time.perf_counter()
                    status, reply = await connection.post(batch.body)
                    latencies.append((time.perf_counter() - sent) * 1000)
                except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    raise BenchFailed(f"POST /api/events failed: {type(exc).__name__}: {exc}; "
                                      f"server said: {tail(log)}") from None
                connections.put_nowait(connection)
                check_reply(status, reply, batch.count)

            sessions = Sessions(scratch.dsn, scratch.database) if pg_sessions else None
            if sessions is not None:
                await sessions.start()
            try:
                phase = await drive(name, batches, [b.count for b in batches], post, concurrency=concurrency,
                                    seconds=seconds, server_pid=proc.pid, latencies_ms=latencies)
            finally:
                shares = await sessions.stop() if sessions is not None else None
                while not connections.empty():
                    connections.get_nowait().close()
            return replace(phase, sessions=shares)
        finally:
            stop(proc)


async def baseline_phase(settings: Settings, batches: Sequence[Batch], concurrency: int,
                         seconds: float | None) -> Phase:
    """The storage work alone, in this process: events_store, then one apply.lua call, per batch."""
    svc = await open_services(settings, background=False)
    try:
        tenant_settings = await svc.settings_store.get(BASELINE_TENANT)
        work: list[tuple[list[Event], Calendar, bytes, Declared]] = []
        for batch in batches:  # what the server does before storing, done here outside the clock
            valid, rejected = parse_body(batch.body, "application/json", max_events=settings.max_events)
            if rejected:
                raise BenchFailed(f"the simulator made an invalid event: {rejected[0]}")
            events = sorted((event for _, event in valid), key=attrgetter("event_id"))
            calendar = Calendar(tenant_settings)
            declared = Declared(svc.live.keys.of(BASELINE_TENANT))
            work.append((events, calendar, orjson.dumps([declared.add(compact(event, calendar)) for event in events]),
                         declared))
        await mark_ready(settings, BASELINE_TENANT)

        async def store(item: tuple[list[Event], Calendar, bytes, Declared]) -> None:
            events, calendar, payload, declared = item
            fresh = await svc.ingestor.store_events(BASELINE_TENANT, events, calendar)
            if len(fresh) != len(events):
                raise BenchFailed(f"events_store stored {len(fresh)} of {len(events)} events: expected all")
            result = await svc.live._run_apply(BASELINE_TENANT, payload, declared, force=False)
            if result[0] == -1:
                raise BenchFailed("apply.lua found the live state not ready: expected it marked ready")

        return await drive("baseline", work, [b.count for b in batches], store,
                           concurrency=concurrency, seconds=seconds, server_pid=None)
    finally:
        await close_services(svc)


# -- plumbing ------------------------------------------------------------------


def check_reply(status: int, reply: bytes, count: int) -> None:
    """Fail unless the reply is 200 with every event of the batch accepted."""
    if status != 200:
        raise BenchFailed(f"POST /api/events answered {status}, expected 200: {reply[:300].decode(errors='replace')}")
    data = orjson.loads(reply)["data"]
    if data["accepted"] != count:
        raise BenchFailed(f"POST /api/events accepted {data['accepted']} of {count} events "
                          f"({data['duplicates']} duplicates, {len(data['rejected'])} rejected): expected all")


def report(phases: list[Phase], *, events: int, batch: int, concurrency: int, versions: tuple[str, str]) -> str:
    """The figures: one row per phase, the ratios, and what the CPU columns count."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    header = ["phase", "events", "events/s", "wall s", "POST p50 ms", "POST p99 ms", "server CPU µs/event",
              "bench CPU µs/event", "postgres CPU s", "redis CPU s"]
    rows = []
    for p in phases:
        per_event = 1e6 / max(p.events, 1)
        p50, p99 = p.latency(0.5), p.latency(0.99)
        rows.append([p.name, f"{p.events:,}", f"{p.events_s:,.0f}", f"{p.wall_s:.2f}",
                     "-" if p50 is None else f"{p50:.1f}", "-" if p99 is None else f"{p99:.1f}",
                     f"{p.cpu.server * per_event:.1f}" if p.has_server else "-", f"{p.cpu.own * per_event:.1f}",
                     f"{p.cpu.postgres:.2f}", f"{p.cpu.redis:.2f}"])
    servers, baseline = phases[:-1:2], phases[-1]  # the server phase of each round (batched phases between them)
    server_s = statistics.median(p.events_s for p in servers)
    ratio = server_s / baseline.events_s if baseline.events_s else 0.0
    lines = [
        f"wallboard bench ingest: {events:,} events, batches of {batch:,}, concurrency {concurrency}, "
        f"{versions[0]}, {versions[1]}, {cores} cores",
        table(header, rows),
        f"ratio server/baseline: {ratio:.2f}{' (median server round)' if len(servers) > 1 else ''}   "
        f"(target: ≥ {TARGET_EVENTS_S:,} events/s and ≥ {TARGET_RATIO})",
    ]
    shares = [one.events_s / batched.events_s if batched.events_s else 0.0
              for one, batched in zip(servers, phases[1:-1:2], strict=True)] if len(phases) > 2 else []
    if len(shares) > 1:
        lines.append("ratio one-by-one/batched by round: " + ", ".join(f"{share:.3f}" for share in shares))
    if shares:
        lines.append(f"ratio one-by-one/batched: {statistics.median(shares):.3f}"  # three places: 0.247 is not 0.25
                     f"{' (median)' if len(shares) > 1 else ''}   (target: ≥ {TARGET_BATCHED_RATIO}, "
                     f"POST p99 < {TARGET_P99_MS:.0f} ms)")
    for p in phases:
        if p.sessions is not None:
            lines.append(f"postgres sessions in the {p.name} phase (average number in each state, sampled every "
                         f"{PERIOD_S * 1000:.0f} ms): {p.sessions.summary()}")
    lines.append("bench CPU: this process (the load generator, raw HTTP/1.1; in the baseline, the storage work itself). "
                 "postgres/redis CPU: every process of that name on the machine, best effort.")
    if any(p.sessions is not None for p in phases):
        lines.append("postgres sessions (--pg-sessions): see server/tools/pg_sessions.py; idle in transaction is "
                     "waiting for the server's next command. The sampling costs CPU itself: compare runs without it.")
    return "\n".join(lines)

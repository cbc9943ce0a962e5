"""``wallboard bench …``: commands that measure and print figures, never assert.

What every bench shares lives here: a scratch database and Redis key prefix
(made fresh, dropped at the end, so a bench never touches real data), CPU
accounting of the processes involved, a progress line, and the entry points
the CLI calls. The benches themselves are one module each
(:mod:`server.tools.bench_ingest`).

Trade-offs, stated plainly: the load generator runs on the same machine as
the server, PostgreSQL and Redis, so it competes with them for the cores.
Each bench therefore reports CPU time per event next to its throughput, and a
ratio against a baseline measured in the same run, which is what stays
comparable from one machine (or one noisy minute) to the next. PostgreSQL and
Redis CPU are read from every process of that name on the machine: best
effort, and inflated by anything else using them at the time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import sys
import time
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import psutil

from server.core.errors import WallboardError
from server.core.migrations import migrate
from server.core.redis_client import redis_client

T = TypeVar("T")

POSTGRES_NAMES = frozenset({"postgres", "postmaster"})
REDIS_NAMES = frozenset({"redis-server", "valkey-server"})
# The request budgets are off in a bench's server: a bench is one tenant (or a few) at many times any
# default budget, and what it measures is the path, not the limiter (WALLBOARD_RATE_*; 0 is no limit).
NO_BUDGETS = {"WALLBOARD_RATE_INGEST_TENANT": "0", "WALLBOARD_RATE_INGEST_TOKEN": "0",
              "WALLBOARD_RATE_READ_TENANT": "0", "WALLBOARD_RATE_READ_TOKEN": "0"}


class BenchFailed(WallboardError):
    """The system under test answered wrongly (a non-200, a wrong count): the figures would be meaningless."""

    code = "bench_failed"


def cmd_bench_ingest(args: argparse.Namespace) -> int:
    """``wallboard bench ingest``: see :mod:`server.tools.bench_ingest`."""
    from server.tools.bench_ingest import run

    try:
        return run(events=args.events, batch=args.batch, concurrency=args.concurrency, seconds=args.seconds,
                   mix=getattr(args, "mix", "full"), pg_sessions=getattr(args, "pg_sessions", False),
                   rounds=getattr(args, "rounds", 1))
    except BenchFailed as exc:
        print(f"\nwallboard: bench failed: {exc.message}", file=sys.stderr)
        return 1


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """Run on the event loop ``wallboard serve`` uses (uvloop when installed), so in-process work compares fairly."""
    from server.runtime import loop_factory

    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)


# -- scratch data ------------------------------------------------------------


def with_database(dsn: str, name: str) -> str:
    """The same PostgreSQL server URL pointing at another database (query options kept)."""
    return urlunsplit(urlsplit(dsn)._replace(path="/" + name))


@dataclass(frozen=True)
class Scratch:
    """A database and a Redis key prefix of one bench run, on the servers of ``admin_dsn`` and ``redis_url``."""

    admin_dsn: str
    redis_url: str
    tag: str

    @classmethod
    def new(cls, admin_dsn: str, redis_url: str) -> Scratch:
        return cls(admin_dsn, redis_url, secrets.token_hex(4))

    @property
    def database(self) -> str:
        return f"wbbench_{self.tag}"

    @property
    def dsn(self) -> str:
        return with_database(self.admin_dsn, self.database)

    @property
    def key_prefix(self) -> str:
        return f"wbbench{self.tag}"

    async def create(self, app_role: str) -> None:
        """Create the database from the admin URL's and apply every migration."""
        admin = await asyncpg.connect(self.admin_dsn)
        try:
            await admin.execute(f'CREATE DATABASE "{self.database}"')
        finally:
            await admin.close()
        await migrate(self.dsn, app_role=app_role)

    async def drop(self) -> None:
        """Drop the database (closing whatever is still connected) and delete every key of the prefix."""
        admin = await asyncpg.connect(self.admin_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        finally:
            await admin.close()
        client = redis_client(self.redis_url)
        try:
            batch: list[bytes] = []
            async for key in client.scan_iter(match=f"{self.key_prefix}:*", count=1000):
                batch.append(key)
                if len(batch) >= 500:
                    await client.delete(*batch)
                    batch = []
            if batch:
                await client.delete(*batch)
        finally:
            await client.aclose()

    async def reset_events(self) -> None:
        """Empty the event tables and checkpoint, so the next phase starts from the same state as the last."""
        conn = await asyncpg.connect(self.dsn)
        try:
            await conn.execute("TRUNCATE events, event_ids")
            await conn.execute("CHECKPOINT")
        finally:
            await conn.close()

    async def versions(self) -> tuple[str, str]:
        """("PostgreSQL 15.4", "Redis 7.0.15" or "Valkey 8.0.1") of the servers used."""
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            pg = str(await conn.fetchval("SHOW server_version")).split()[0]
        finally:
            await conn.close()
        client = redis_client(self.redis_url)
        try:
            info = await client.info("server")
        finally:
            await client.aclose()
        if "valkey_version" in info:
            return f"PostgreSQL {pg}", f"Valkey {info['valkey_version']}"
        return f"PostgreSQL {pg}", f"Redis {info.get('redis_version', '?')}"


# -- CPU accounting ----------------------------------------------------------


def cpu_of(pid: int) -> float:
    """User + system CPU seconds so far of one process and its live children (``serve --workers N``'s workers);
    0 when it is gone."""
    total = 0.0
    try:
        proc = psutil.Process(pid)
        for one in (proc, *proc.children(recursive=True)):
            with contextlib.suppress(psutil.Error):
                times = one.cpu_times()
                total += float(times.user + times.system)
    except psutil.Error:
        return 0.0
    return total


def cpu_by_name(names: Iterable[str]) -> dict[int, float]:
    """CPU seconds so far of every process whose name is one of ``names``, by pid."""
    wanted = frozenset(names)
    found: dict[int, float] = {}
    for proc in psutil.process_iter(["name", "cpu_times"]):
        info = proc.info
        if info.get("name") in wanted and info.get("cpu_times") is not None:
            found[proc.pid] = float(info["cpu_times"].user + info["cpu_times"].system)
    return found


@dataclass
class CpuSample:
    """CPU seconds of the server process, this process, and every PostgreSQL and Redis process, at one moment."""

    server: float
    own: float
    postgres: dict[int, float]
    redis: dict[int, float]

    @classmethod
    def take(cls, server_pid: int | None) -> CpuSample:
        return cls(server=cpu_of(server_pid) if server_pid else 0.0, own=time.process_time(),
                   postgres=cpu_by_name(POSTGRES_NAMES), redis=cpu_by_name(REDIS_NAMES))


@dataclass(frozen=True)
class CpuUsed:
    """CPU seconds spent between two samples. A process started in between counts in full; one gone is lost."""

    server: float
    own: float
    postgres: float
    redis: float

    @classmethod
    def between(cls, before: CpuSample, after: CpuSample) -> CpuUsed:
        def spent(old: dict[int, float], new: dict[int, float]) -> float:
            return sum(max(0.0, cpu - old.get(pid, 0.0)) for pid, cpu in new.items())

        return cls(server=after.server - before.server, own=after.own - before.own,
                   postgres=spent(before.postgres, after.postgres), redis=spent(before.redis, after.redis))


# -- output --------------------------------------------------------------------


class Progress:
    """One ``\\r`` line on stderr, redrawn at most every 0.2 s: ``label: done/total unit  rate/s``."""

    def __init__(self, label: str, total: int, unit: str = "events") -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self.started = time.perf_counter()
        self._drawn = 0.0

    def update(self, done: int, *, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self._drawn < 0.2:
            return
        self._drawn = now
        rate = done / max(now - self.started, 1e-9)
        sys.stderr.write(f"\r{self.label}: {done:,}/{self.total:,} {self.unit}  {rate:,.0f}/s   ")
        sys.stderr.flush()

    def finish(self, done: int) -> None:
        self.update(done, force=True)
        sys.stderr.write("\n")
        sys.stderr.flush()


def say(message: str) -> None:
    """A line of what the bench is doing, on stderr (stdout holds the figures only)."""
    print(message, file=sys.stderr, flush=True)


def table(header: list[str], rows: list[list[str]]) -> str:
    """Left-aligned first column, the others right-aligned under their headers."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines)


"""The log summary and the printed report of ``wallboard bench fanout`` (:mod:`server.tools.bench_fanout`)."""

from __future__ import annotations

import os
from datetime import datetime
from typing import IO, TYPE_CHECKING

import orjson

from server.tools.bench import table
from server.tools.bench_quiet import EVERY_S

if TYPE_CHECKING:
    from server.tools.bench_fanout import Phase

TARGET = "target ≥ 0.7; p99 < 1000 ms; idle ≤ 20 KiB/conn"


def warnings(log: IO[bytes], window: tuple[float, float]) -> str:
    """The server's JSON log lines at warning and above, counted by event, all and in the load window:
    ``6 × heap.pause (longest 397 ms); in the load window: none``."""
    log.seek(0)
    seen: list[tuple[str, float | None, bool]] = []  # (event, ms, in the window)
    for line in log.read().splitlines():
        try:
            record = orjson.loads(line)
            at = datetime.fromisoformat(record["ts"]).timestamp() * 1000
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            continue
        if record.get("level") in ("warning", "error", "critical"):
            ms = record.get("ms")
            seen.append((str(record.get("event")), float(ms) if isinstance(ms, (int, float)) else None,
                         window[0] <= at <= window[1]))

    def summary(records: list[tuple[str, float | None, bool]]) -> str:
        counts: dict[str, int] = {}
        longest: dict[str, float] = {}
        for event, ms, _ in records:
            counts[event] = counts.get(event, 0) + 1
            if ms is not None:
                longest[event] = max(longest.get(event, 0.0), ms)
        return ", ".join(f"{n:,} × {event}" + (f" (longest {longest[event]:.0f} ms)" if event in longest else "")
                         for event, n in sorted(counts.items(), key=lambda kv: -kv[1])) or "none"

    return f"{summary(seen)}; in the load window: {summary([r for r in seen if r[2]])}"


def report(server: Phase, baseline: Phase, procs: int, versions: tuple[str, str], procs_server: int = 1) -> str:
    """One row per phase, the ratio against the targets, and where else the CPU went."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    header = ["phase", "clients", "tenants", "events/s", "deliveries/s", "p50 ms", "p99 ms", "p99.9 ms",
              "server CPU %", "CPU µs/delivery", "idle KiB/conn", "load KiB/conn"]
    rows, notes = [], []
    for p in (server, baseline):
        share = 100 / p.wall_s  # CPU seconds → % of one core over the window
        rows.append([p.name, f"{p.clients:,}", f"{p.tenants}", f"{p.events / p.wall_s:,.0f}",
                     f"{p.deliveries / p.wall_s:,.0f}", p.percentile(0.5), p.percentile(0.99), p.percentile(0.999),
                     f"{p.cpu.server * share:.0f}", f"{1e6 * p.cpu.server / max(p.deliveries, 1):.1f}",
                     p.kib_per_conn(p.rss[1]), p.kib_per_conn(p.rss[2])])
        notes.append(f"{p.name}: {len(p.latencies_ms):,} (client, post) pairs, {p.missed:,} never seen; "
                     f"{p.gaps:,} seq gaps, {p.stale:,} stale statuses, {p.retries:,} ingest 503s retried; "
                     + (f"POST /api/events p50 {p.posts_ms[0]:.0f} ms, p99 {p.posts_ms[1]:.0f} ms, max "
                        f"{p.posts_ms[2]:.0f} ms; " if p.posts_ms[2] else "") + "other messages: "
                     f"{p.other}; "
                     f"{p.mean_bytes:,} bytes/message; CPU % of clients {p.clients_cpu_s * share:.0f}, "
                     f"bench driver {p.cpu.own * share:.0f}, redis {p.cpu.redis * share:.0f}, "
                     f"postgres {p.cpu.postgres * share:.0f}; server RSS MiB empty {p.rss[0] / 2**20:.0f}, "
                     f"idle {p.rss[1] / 2**20:.0f}, load {p.rss[2] / 2**20:.0f}"
                     + (f"; server warnings: {p.warnings}" if p.warnings != "-" else ""))
    ratio = server.deliveries / server.wall_s / (baseline.deliveries / baseline.wall_s) if baseline.deliveries else 0.0
    return "\n".join([
        f"wallboard bench fanout: {server.clients:,} clients over {server.tenants} tenants in {procs} processes, "
        f"{procs_server} server process(es), "
        f"{versions[0]}, {versions[1]}, {cores} cores, load average {os.getloadavg()[0]:.1f} at the end",
        table(header, rows),
        f"ratio deliveries/s server/baseline: {ratio:.2f} ({TARGET})",
        f"quiet tenant beside the load (1 board, one event every ~{EVERY_S:.0f} s): {server.quiet} "
        "(target: median < 50 ms, max < 300 ms)",
        *notes,
        *([f"events posted to a second server process (--ingest-apart): its CPU over the phase "
           f"{server.ingest_cpu_s:.1f} s, not counted in the server row"] if server.ingest_cpu_s is not None else []),
        "CPU % is of one core over the load window; KiB/conn is the server's RSS growth over its empty state.",
    ])

"""``wallboard bench history``: p50/p95 of every history endpoint over realistic ranges.

Runs against data already in ``DATABASE_URL`` (``wallboard seed-history`` makes it: the issue's
benchmark is one tenant of 10,000,000 calls beside nine of 1,000,000). A real ``wallboard
serve`` subprocess answers real HTTP requests, one at a time, each endpoint ``--repeat`` times
per range after a warm-up; the figures are wall-clock latencies seen by the client.

Ranges: yesterday by the hour; the last 30 whole days by the day; the last 365 whole days by the
month. Baseline, in the same run: the period's summary counted straight from the raw handled
calls (``agent_metrics``), as a server without rollups would, so the ratio shows what the
rollups buy. Then, per endpoint, the 365-day p95 beside the 30-day p95 and their ratio: whole months come
from the monthly rollups, so a year should cost at most ``MAX_RATIO`` times a month.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta

import asyncpg
import httpx

from server.core.auth import mint
from server.core.config import Settings
from server.core.errors import ConfigError
from server.runtime import as_owner, with_runtime
from server.tools.bench import NO_BUDGETS, BenchFailed, Progress, run_async, say, table
from server.tools.bench_server import free_port, stop, tail, wait_healthy

TARGETS_MS = {"30 days": 30.0, "365 days": 100.0}
MAX_RATIO = 3.0  # 365-day p95 / 30-day p95 of each endpoint
ENDPOINTS = (
    ("performance/summary", {}),
    ("performance/trends", {}),
    ("performance/agents", {}),
    ("performance/sectors", {}),
    ("performance/top-performers", {"metric": "handled"}),
    ("performance/agent/{agent}/detailed", {}),
    ("performance/summary", {"team": "{team}"}),
    ("calls/completion", {}),
    ("calls/timeline", {}),
    ("calls/quality", {"limit": "100"}),
    ("calls/quality/summary", {}),
    ("satisfaction", {}),
    ("costs", {}),
    ("predictions", {}),
    ("anomalies", {}),
    ("audit", {}),
)


def cmd_bench_history(args: argparse.Namespace) -> int:
    """``wallboard bench history``: exit 0 with the table, 1 when the run failed (with the reason)."""
    if args.repeat < 1:
        raise ConfigError(f"--repeat {args.repeat}: expected a positive number of requests per endpoint and range")
    settings, embedded = with_runtime(Settings.from_env())
    settings = as_owner(settings)
    try:
        return run_async(bench(settings, args.tenant, args.repeat))
    except BenchFailed as exc:
        print(f"\nwallboard: bench failed: {exc.message}", file=sys.stderr)
        return 1
    finally:
        if embedded is not None:
            embedded.stop()


async def facts(dsn: str, tenant: str) -> tuple[int, str, str, date]:
    """(handled calls, one busy agent, one team, the last day with calls) of the tenant."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute("SELECT set_config('wallboard.tenant', $1, true)", tenant)
            last = await conn.fetchval("SELECT max(day) FROM performance_daily WHERE client_id = $1", tenant)
            if last is None:
                raise BenchFailed(f'tenant "{tenant}" has no history in this database: run '
                                  f"wallboard seed-history --tenant {tenant} --days 365 --agents 500 "
                                  f"--calls 10000000 first")
            calls = await conn.fetchval(
                "SELECT coalesce(sum(handled), 0) FROM performance_daily WHERE client_id = $1 AND dimension = 'queue'",
                tenant)
            agent = await conn.fetchval(
                "SELECT key FROM performance_daily WHERE client_id = $1 AND dimension = 'agent' AND day = $2 "
                "ORDER BY handled DESC LIMIT 1", tenant, last)
            team = await conn.fetchval("SELECT team FROM agents WHERE client_id = $1 AND team IS NOT NULL LIMIT 1",
                                       tenant)
    finally:
        await conn.close()
    return int(calls), agent or "", team or "", last


async def naive_summary(dsn: str, tenant: str, start: date, end: date) -> float:
    """Seconds to count the period's handled calls and handle time from the raw rows."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute("SELECT set_config('wallboard.tenant', $1, true)", tenant)
            began = time.perf_counter()
            await conn.fetchrow(
                "SELECT count(*), sum(handle_s), sum(talk_s), count(*) FILTER (WHERE resolved) FROM agent_metrics "
                "WHERE client_id = $1 AND completed_at >= $2::date AND completed_at < $3::date", tenant, start, end)
            return time.perf_counter() - began
    finally:
        await conn.close()


async def bench(settings: Settings, tenant: str, repeat: int) -> int:
    assert settings.database_url is not None and settings.redis_url is not None
    calls, agent, team, last = await facts(settings.database_url, tenant)
    say(f"tenant {tenant}: {calls:,} handled calls, the last on {last}")
    secret = os.urandom(32).hex()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PORT", "WALLBOARD_JWT_PUBLIC_KEY")}
    env.update(DATABASE_URL=settings.database_url, REDIS_URL=settings.redis_url, WALLBOARD_JWT_SECRET=secret,
               WALLBOARD_LOG_LEVEL="WARNING", WALLBOARD_KEY_PREFIX=settings.key_prefix, **NO_BUDGETS)
    token = mint(settings.replace(jwt_secret=secret, jwt_public_key=None, jwt_private_key=None, jwt_algorithm="HS256"),
                 tenant=tenant, role="admin", sub="bench", ttl_s=86_400)
    end = last + timedelta(days=1)
    ranges = [("1 day", {"from": last.isoformat(), "to": last.isoformat(), "granularity": "hour"}),
              ("30 days", {"from": (end - timedelta(days=30)).isoformat(), "to": last.isoformat()}),
              ("365 days", {"from": (end - timedelta(days=365)).isoformat(), "to": last.isoformat(),
                            "granularity": "month"})]
    rows: list[list[str]] = []
    worst: dict[str, float] = {}
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen([sys.executable, "-m", "server", "serve", "--host", "127.0.0.1", "--port", str(port)],
                                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            await wait_healthy(url, proc, log)
            say(f"wallboard serve pid {proc.pid} on port {port}")
            progress = Progress("requests", len(ranges) * len(ENDPOINTS) * (repeat + 2), "requests")
            done = 0
            async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"},
                                         timeout=120) as client:
                for label, window in ranges:
                    for path, extra in ENDPOINTS:
                        path = path.format(agent=agent)
                        params = {**window, **{k: v.format(team=team) for k, v in extra.items()}}
                        times, status = await measure(client, f"/api/analytics/{path}", params, repeat)
                        done += repeat + 2
                        progress.update(done)
                        if status == 404:
                            rows.append([path, label, "-", "-", "not served"])
                            continue
                        if status != 200:
                            raise BenchFailed(f"GET /api/analytics/{path} {params} answered {status}: {tail(log)}")
                        p50, p95 = percentile(times, 0.5), percentile(times, 0.95)
                        worst[label] = max(worst.get(label, 0.0), p95)
                        rows.append([path + (" (team)" if "team" in extra else ""), label, f"{p50:.1f}", f"{p95:.1f}",
                                     "ok" if p95 < TARGETS_MS.get(label, float("inf")) else "OVER"])
            progress.finish(done)
        finally:
            stop(proc)
    naive = {label: await naive_summary(settings.database_url, tenant, date.fromisoformat(w["from"]),
                                        date.fromisoformat(w["to"]) + timedelta(days=1)) * 1000
             for label, w in ranges}
    summary = {r[1]: float(r[2]) for r in rows if r[0] == "performance/summary"}
    print(table(["endpoint", "range", "p50 ms", "p95 ms", "target"], rows))
    for label, _ in ranges:
        target = f" (target {TARGETS_MS[label]:.0f} ms)" if label in TARGETS_MS else ""
        print(f"{label}: worst p95 {worst.get(label, 0):.1f} ms{target}; baseline (raw rows counted) "
              f"{naive[label]:.1f} ms vs summary p50 {summary.get(label, 0):.1f} ms: ratio "
              f"{naive[label] / max(summary.get(label, 0), 1e-3):.1f}x")
    print(table(["endpoint", "30 days p95 ms", "365 days p95 ms", "ratio", f"target ≤ {MAX_RATIO:g}x"],
                year_against_month(rows)))
    return 0


def year_against_month(rows: list[list[str]]) -> list[list[str]]:
    """Per endpoint: its 30-day p95, its 365-day p95 and their ratio (rows as ``bench`` collects them)."""
    p95 = {(r[0], r[1]): float(r[3]) for r in rows if r[3] != "-"}
    out = []
    for name in dict.fromkeys(r[0] for r in rows):
        month, year = p95.get((name, "30 days")), p95.get((name, "365 days"))
        if month is None or year is None:
            continue
        ratio = year / max(month, 1e-3)
        out.append([name, f"{month:.1f}", f"{year:.1f}", f"{ratio:.2f}x", "ok" if ratio <= MAX_RATIO else "OVER"])
    return out


async def measure(client: httpx.AsyncClient, path: str, params: dict[str, str], repeat: int) -> tuple[list[float], int]:
    """Two warm-up requests, then ``repeat`` timed ones (ms); the last status."""
    times, status = [], 0
    for i in range(repeat + 2):
        began = time.perf_counter()
        response = await client.get(path, params=params)
        elapsed = (time.perf_counter() - began) * 1000
        status = response.status_code
        if status != 200:
            return [], status
        if i >= 2:
            times.append(elapsed)
        await asyncio.sleep(0)
    return times, status


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


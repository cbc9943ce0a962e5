"""`wallboard bench ingest` and `bench poll` on the test run's PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys

import asyncpg
import redis.asyncio as aioredis

from .conftest import ROOT, Backends


def bench_env(backends: Backends) -> dict[str, str]:
    ours = ("WALLBOARD_", "DATABASE_URL", "REDIS_URL", "PORT")
    base = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
    return {**base, "DATABASE_URL": backends.admin_dsn, "REDIS_URL": backends.redis_url}


async def test_bench_poll_prints_both_phases(backends: Backends) -> None:
    """A short `bench poll` measures the server and the minimal Starlette baseline (a spawned process) and their ratio."""
    args = [sys.executable, "-m", "server", "bench", "poll", "--pollers", "4", "--rate", "200", "--seconds", "1"]
    result = await asyncio.to_thread(subprocess.run, args, env=bench_env(backends), cwd=ROOT, capture_output=True,
                                     text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    assert re.search(r"^server\s", result.stdout, re.MULTILINE) and re.search(r"^baseline\s", result.stdout, re.MULTILINE), \
        result.stdout


async def test_bench_poll_refused_prints_both_phases_of_429s(backends: Backends) -> None:
    """`bench poll --refused` polls as a tenant past its budget: both phases answer only 429s, and the ratio prints."""
    args = [sys.executable, "-m", "server", "bench", "poll", "--refused", "--pollers", "4", "--rate", "200",
            "--seconds", "1"]
    result = await asyncio.to_thread(subprocess.run, args, env=bench_env(backends), cwd=ROOT, capture_output=True,
                                     text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    for phase in ("server", "baseline"):
        assert re.search(rf"^{phase}\s.*\d × 429$", result.stdout, re.MULTILINE), result.stdout
    assert re.search(r"^ratio server CPU µs/poll server/baseline: [\d.]+", result.stdout, re.MULTILINE), result.stdout


async def test_bench_ingest_prints_figures_and_cleans_up(backends: Backends) -> None:
    """A small run prints both phases and the ratio with positive figures, and with --pg-sessions what PostgreSQL's
    sessions spent the server phase on; then drops its database and keys."""
    env = bench_env(backends)
    args = [sys.executable, "-m", "server", "bench", "ingest", "--events", "3000", "--batch", "500",
            "--concurrency", "2", "--pg-sessions"]
    result = await asyncio.to_thread(subprocess.run, args, env=env, cwd=ROOT, capture_output=True, text=True,
                                     timeout=240)
    assert result.returncode == 0, result.stderr
    for phase in ("server", "baseline"):
        row = re.search(rf"^{phase}\s+3,000\s+([\d,]+)\s+([\d.]+)\s", result.stdout, re.MULTILINE)
        assert row, result.stdout
        assert float(row.group(1).replace(",", "")) > 0 and float(row.group(2)) > 0, row.group(0)
    ratio = re.search(r"^ratio server/baseline: ([\d.]+)", result.stdout, re.MULTILINE)
    assert ratio and float(ratio.group(1)) > 0, result.stdout
    sessions = re.search(r"^postgres sessions in the server phase .*: running ([\d.]+), row locks ([\d.]+), "
                         r"WAL flush ([\d.]+), idle in transaction ([\d.]+)$", result.stdout, re.MULTILINE)
    assert sessions and float(sessions.group(1)) > 0, result.stdout  # the phase's statements were seen running
    scratch = re.search(r"scratch database (wbbench_[0-9a-f]+), Redis key prefix (wbbench[0-9a-f]+)", result.stderr)
    assert scratch, result.stderr
    admin = await asyncpg.connect(backends.admin_dsn)
    try:
        assert await admin.fetchval("SELECT count(*) FROM pg_database WHERE datname = $1", scratch.group(1)) == 0
    finally:
        await admin.close()
    client = aioredis.Redis.from_url(backends.redis_url)
    try:
        assert [key async for key in client.scan_iter(match=f"{scratch.group(2)}:*", count=1000)] == []
    finally:
        await client.aclose()


async def test_bench_ingest_one_by_one_rounds_print_each_rounds_ratio_and_their_median(backends: Backends) -> None:
    """One event per request over two rounds: each round's one-by-one and batched phases are printed (every reply
    accepted every event), with each round's ratio and their median; the server/baseline ratio takes the median of
    the rounds' one-by-one phases."""
    args = [sys.executable, "-m", "server", "bench", "ingest", "--events", "600", "--batch", "1",
            "--concurrency", "8", "--rounds", "2"]
    result = await asyncio.to_thread(subprocess.run, args, env=bench_env(backends), cwd=ROOT, capture_output=True,
                                     text=True, timeout=240)
    assert result.returncode == 0, result.stderr
    speeds = {}
    for phase in ("server", "batched", "server 2", "batched 2"):
        row = re.search(rf"^{phase}\s+600\s+([\d,]+)\s", result.stdout, re.MULTILINE)
        assert row, result.stdout
        speeds[phase] = float(row.group(1).replace(",", ""))
        assert speeds[phase] > 0, row.group(0)
    rounds = re.search(r"^ratio one-by-one/batched by round: ([\d.]+), ([\d.]+)$", result.stdout, re.MULTILINE)
    median = re.search(r"^ratio one-by-one/batched: ([\d.]+) \(median\)", result.stdout, re.MULTILINE)
    assert rounds and median, result.stdout
    first, second = float(rounds.group(1)), float(rounds.group(2))
    assert abs(first - speeds["server"] / speeds["batched"]) < 0.002, result.stdout
    assert abs(second - speeds["server 2"] / speeds["batched 2"]) < 0.002, result.stdout
    assert abs(float(median.group(1)) - (first + second) / 2) < 0.0011, result.stdout
    baseline = re.search(r"^baseline\s+600\s+([\d,]+)\s", result.stdout, re.MULTILINE)
    ratio = re.search(r"^ratio server/baseline: ([\d.]+) \(median server round\)", result.stdout, re.MULTILINE)
    assert baseline and ratio, result.stdout
    expected = (speeds["server"] + speeds["server 2"]) / 2 / float(baseline.group(1).replace(",", ""))
    assert abs(float(ratio.group(1)) - expected) < 0.01 + expected * 0.01, result.stdout

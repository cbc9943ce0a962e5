"""`wallboard bench ingest` on the test run's PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys

import asyncpg
import redis.asyncio as aioredis

from .conftest import ROOT, Backends


async def test_bench_ingest_prints_figures_and_cleans_up(backends: Backends) -> None:
    """A small run prints both phases and the ratio with positive figures, then drops its database and keys."""
    ours = ("WALLBOARD_", "DATABASE_URL", "REDIS_URL", "PORT")
    base = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
    env = {**base, "DATABASE_URL": backends.admin_dsn, "REDIS_URL": backends.redis_url}
    args = [sys.executable, "-m", "server", "bench", "ingest", "--events", "3000", "--batch", "500",
            "--concurrency", "2"]
    result = await asyncio.to_thread(subprocess.run, args, env=env, cwd=ROOT, capture_output=True, text=True,
                                     timeout=240)
    assert result.returncode == 0, result.stderr
    for phase in ("server", "baseline"):
        row = re.search(rf"^{phase}\s+3,000\s+([\d,]+)\s+([\d.]+)\s", result.stdout, re.MULTILINE)
        assert row, result.stdout
        assert float(row.group(1).replace(",", "")) > 0 and float(row.group(2)) > 0, row.group(0)
    ratio = re.search(r"^ratio server/baseline: ([\d.]+)", result.stdout, re.MULTILINE)
    assert ratio and float(ratio.group(1)) > 0, result.stdout
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

"""`wallboard bench fanout` on the test run's PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys

import pytest

from .conftest import ROOT, Backends


@pytest.mark.slow
async def test_bench_fanout_prints_both_phases(backends: Backends) -> None:
    """A small run exits 0 and prints a server and a baseline row with positive deliveries/s, and the ratio;
    --procs-server 2 runs the server phase on serve --workers 2, and with --ingest-apart every event is posted
    to a third process and still reaches every board."""
    ours = ("WALLBOARD_", "DATABASE_URL", "REDIS_URL", "PORT", "PROMETHEUS_MULTIPROC_DIR")
    base = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
    env = {**base, "DATABASE_URL": backends.admin_dsn, "REDIS_URL": backends.redis_url}
    args = [sys.executable, "-m", "server", "bench", "fanout", "--clients", "60", "--tenants", "2",
            "--events-per-s", "20", "--seconds", "3", "--procs", "1", "--procs-server", "2", "--ingest-apart"]
    result = await asyncio.to_thread(subprocess.run, args, env=env, cwd=ROOT, capture_output=True, text=True,
                                     timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 server process(es)" in result.stdout, result.stdout
    assert ", 0 never seen;" in result.stdout.split("server:", 1)[1].split("\n", 1)[0], result.stdout
    for phase in ("server", "baseline"):
        row = re.search(rf"^{phase}\s+60\s+2\s+[\d,]+\s+([\d,]+)\s+([\d,]+)\s", result.stdout, re.MULTILINE)
        assert row and float(row.group(1).replace(",", "")) > 0, result.stdout
    ratio = re.search(r"^ratio deliveries/s server/baseline: ([\d.]+)", result.stdout, re.MULTILINE)
    assert ratio and float(ratio.group(1)) > 0, result.stdout
    assert re.search(r"^events posted to a second server process \(--ingest-apart\): its CPU over the phase [\d.]+ s",
                     result.stdout, re.MULTILINE), result.stdout

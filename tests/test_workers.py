"""``wallboard serve --workers 2`` as a real subprocess: shared port, cross-worker delivery, merged metrics, a killed worker."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from server.core.auth import mint
from server.core.config import Settings

from .conftest import ROOT
from .test_metrics import samples, value
from .test_ws import board, new_tenant, offered, queued, subprocess_env

pytestmark = pytest.mark.slow


@contextlib.asynccontextmanager
async def workers(settings: Settings, count: int = 2) -> AsyncIterator[tuple[str, subprocess.Popen[bytes]]]:
    """``python -m server serve --workers count`` on the run's PostgreSQL, Redis and key prefix; its URL and process."""
    port, env = subprocess_env(settings, WALLBOARD_METRICS_SAMPLE_S="0.2", WALLBOARD_DB_POOL_MIN="1",
                               WALLBOARD_DB_POOL_MAX="4")
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    process = subprocess.Popen([sys.executable, "-m", "server", "serve", "--workers", str(count), "--port", str(port)],
                               cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        seen: set[str] = set()
        deadline = time.monotonic() + 60
        while len(seen) < count:  # every worker answers
            assert process.poll() is None, f"serve --workers exited with {process.returncode}"
            assert time.monotonic() < deadline, f"only {seen} answered /api/metrics/health"
            with contextlib.suppress(httpx.HTTPError):
                seen.add((await get(url, "/api/metrics/health")).headers["x-wallboard-process"])
            await asyncio.sleep(0.05)
        yield url, process
    finally:
        process.terminate()
        try:
            await asyncio.to_thread(process.wait, 30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            await asyncio.to_thread(process.wait)


async def get(url: str, path: str) -> httpx.Response:
    """One GET on a fresh connection (so the kernel may hand it to either worker)."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        return await client.get(path)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_two_workers_share_the_port_deliver_across_merge_metrics_and_survive_a_kill(settings: Settings) -> None:
    """A board on one worker sees events posted to the other at once; /metrics merges both; a killed worker is replaced."""
    tenant = new_tenant("workers")
    ingest = {"Authorization": f"Bearer {mint(settings, tenant=tenant, role='ingest')}"}
    async with workers(settings) as (url, supervisor), board(url, mint(settings, tenant=tenant, role="supervisor")) as wb:
        board_on = wb.ws.response.headers["x-wallboard-process"]
        await wb.subscribe(["overview"])
        await wb.next(lambda m: m["type"] == "snapshot", timeout=10)
        posted_to: dict[str, int] = {}
        latency = None
        for _ in range(60):  # fresh connections until one reaches the other worker
            posted = time.monotonic()
            async with httpx.AsyncClient(base_url=url, headers=ingest, timeout=10) as client:
                answer = await client.post("/api/events", json=queued("sales"))
            assert answer.status_code == 200, answer.text
            tag = answer.headers["x-wallboard-process"]
            posted_to[tag] = posted_to.get(tag, 0) + 1
            total = sum(posted_to.values())
            await wb.next(lambda m, n=total: m["type"] == "update" and offered(m) == n, timeout=5)
            if tag != board_on:
                latency = time.monotonic() - posted
                break
        assert latency is not None, f"every post reached the board's worker {board_on}: {posted_to}"
        assert latency < 1.5, f"cross-worker update took {latency:.3f}s"

        await asyncio.sleep(0.5)  # one sample of each worker's gauges
        scrape = samples((await get(url, "/metrics")).text)
        assert value(scrape, "wallboard_ingest_events_total", outcome="accepted") == sum(posted_to.values())
        assert value(scrape, "wallboard_ws_clients", view="overview") == 1
        assert value(scrape, "wallboard_db_pool_connections", state="max") == 2 * 4

        other = next(t for t in posted_to if t != board_on)
        victim = int(other.split("/")[1])
        os.kill(victim, signal.SIGKILL)
        for _ in range(10):
            assert (await get(url, "/api/metrics/health")).status_code == 200
        async with httpx.AsyncClient(base_url=url, headers=ingest, timeout=10) as client:
            assert (await client.post("/api/events", json=queued("sales"))).status_code == 200
        await wb.next(lambda m: m["type"] == "update" and offered(m) == sum(posted_to.values()) + 1, timeout=5)
        replaced = None
        deadline = time.monotonic() + 30
        while replaced is None and time.monotonic() < deadline:  # the supervisor starts worker 1 again
            tag = (await get(url, "/api/metrics/health")).headers["x-wallboard-process"]
            if tag.split("/")[0] == other.split("/")[0] and tag != other:
                replaced = tag
            await asyncio.sleep(0.05)
        assert replaced is not None, "the killed worker was not replaced"
        pids = [int(t.split("/")[1]) for t in (board_on, replaced)]
    await asyncio.sleep(0)
    assert supervisor.returncode is not None and not any(alive(pid) for pid in pids)

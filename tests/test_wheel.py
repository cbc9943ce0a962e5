"""The built wheel, installed outside the checkout, is a whole server: migrations, pages, ingest, live view."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import venv
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from server.core.auth import mint
from server.core.config import Settings

from .conftest import ROOT, TEST_SECRET, Backends, free_socket

pytestmark = pytest.mark.slow


def wallboard_env(database: str, redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WALLBOARD_", "DATABASE_URL", "REDIS_URL",
                                                                     "PYTHON", "VIRTUAL_ENV"))}
    env.update({"DATABASE_URL": database, "REDIS_URL": redis_url, "WALLBOARD_JWT_SECRET": TEST_SECRET,
                "WALLBOARD_KEY_PREFIX": f"wbwheel{os.getpid()}", "WALLBOARD_LOG_LEVEL": "WARNING"})
    return env


async def test_the_wheel_installs_and_serves_from_anywhere(
        tmp_path: Path, database_factory: Callable[..., Awaitable[str]], backends: Backends) -> None:
    """pip wheel → a fresh venv elsewhere → `migrate` and `serve --demo`: health, a page, an event in and out, a moving demo."""
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(ROOT)],
                   check=True, cwd=tmp_path, timeout=300)
    wheel = next(dist.glob("wallboard-*.whl"))
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    subprocess.run([str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)],
                   check=True, cwd=tmp_path, timeout=600)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    wallboard = str(env_dir / "bin" / "wallboard")
    database = await database_factory(migrated=False)
    env = wallboard_env(database, backends.redis_url)

    migrated = subprocess.run([wallboard, "migrate"], env=env, cwd=elsewhere, capture_output=True, text=True,
                              timeout=120)
    assert migrated.returncode == 0, migrated.stderr
    assert "applied" in migrated.stdout

    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    proc = subprocess.Popen([wallboard, "serve", "--demo", "--port", str(port)], env=env, cwd=elsewhere,
                            stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    admin = mint(Settings(jwt_secret=TEST_SECRET), tenant="wheel", role="admin")
    auth = {"Authorization": f"Bearer {admin}"}
    try:
        async with httpx.AsyncClient(base_url=base, timeout=5) as client:
            deadline = time.monotonic() + 60
            health = None
            while time.monotonic() < deadline:
                try:
                    health = await client.get("/api/metrics/health")
                    break
                except httpx.TransportError:
                    assert proc.poll() is None, "the server stopped"
                    await asyncio.sleep(0.2)
            assert health is not None and health.status_code == 200, health
            page = await client.get("/wallboard.html")
            assert page.status_code == 200 and "<html" in page.text.lower()
            now_ms = int(time.time() * 1000)
            posted = await client.post("/api/events", headers=auth, json=[
                {"event_id": "w1", "type": "call.queued", "ts": now_ms, "call_id": "c1", "queue_id": "sales"}])
            assert posted.status_code == 200, posted.text
            assert posted.json()["data"]["accepted"] == 1
            waiting = None
            while time.monotonic() < deadline and waiting != 1:
                await asyncio.sleep(0.1)
                live = await client.get("/api/metrics/queue/status", headers=auth)
                waiting = next((q["waiting"] for q in live.json()["data"] if q["queue_id"] == "sales"), None)
            assert waiting == 1
            demo = {"Authorization": f"Bearer {mint(Settings(jwt_secret=TEST_SECRET), tenant='demo', role='supervisor')}"}
            offered = 0
            while time.monotonic() < deadline and not offered:
                await asyncio.sleep(0.2)
                live = await client.get("/api/metrics/live", headers=demo)
                offered = live.json()["data"]["today"]["offered"] if live.status_code == 200 else 0
            assert offered > 0, "the demo tenant never moved"
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "Traceback" not in err, err

"""The chaos suite's rig: a private redis-server, server processes, retrying connectors and reconnecting boards.

Everything is a real process or a real socket; the faults are real (SIGKILL, a cut TCP proxy).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
import redis.asyncio as aioredis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from server.core.auth import mint
from server.core.config import Settings

from .conftest import ROOT, TEST_SECRET, free_socket

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
SIGNER = Settings(jwt_secret=TEST_SECRET)
# Fast healing for the suite: markers swept after 2 s, generations checked each second, reconciliation every 5 s.
HEAL_ENV = {"WALLBOARD_LIVE_SWEEP_S": "1", "WALLBOARD_LIVE_PENDING_AGE_S": "2", "WALLBOARD_LIVE_CHECK_S": "1",
            "WALLBOARD_LIVE_RECONCILE_S": "5", "WALLBOARD_DB_POOL_MAX": "6", "WALLBOARD_GC_FREEZE_S": "0"}


def free_port() -> int:
    sock = free_socket()
    port = int(sock.getsockname()[1])
    sock.close()
    return port


def token(tenant: str, role: str) -> str:
    return mint(SIGNER, tenant=tenant, role=role, ttl_s=3600)


class RedisProcess:
    """A redis-server of the test's own, on a fixed port and directory: killed and restarted at will."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        with open(self.dir / "redis.log", "ab") as out:  # the child keeps its own descriptor
            self.proc = subprocess.Popen([REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
                                          str(self.dir), "--save", "", "--appendonly", "no", "--dbfilename", "dump.rdb"],
                                         stdout=out, stderr=subprocess.STDOUT)
        client = aioredis.Redis(port=self.port)
        try:
            for _ in range(100):
                with contextlib.suppress(aioredis.RedisError, OSError):
                    if await client.ping():
                        return
                await asyncio.sleep(0.05)
            raise RuntimeError("redis-server did not start")
        finally:
            await client.aclose()

    async def save(self) -> None:
        client = aioredis.Redis(port=self.port)
        try:
            await client.save()
        finally:
            await client.aclose()

    def kill(self, *, forget: bool) -> None:
        """SIGKILL; with ``forget`` its snapshot goes too (the next start is empty)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        if forget:
            (self.dir / "dump.rdb").unlink(missing_ok=True)


class ServerProcess:
    """``python -m server serve`` on a fixed port, with the given DATABASE_URL / REDIS_URL."""

    def __init__(self, database_url: str, redis_url: str, prefix: str, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url, "WALLBOARD_JWT_SECRET": TEST_SECRET,
                    "WALLBOARD_KEY_PREFIX": prefix, "WALLBOARD_LOG_LEVEL": "INFO", **HEAL_ENV}
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "server", "serve", "--port", str(self.port)], cwd=ROOT,
                                         env=self.env, stdout=subprocess.DEVNULL, stderr=out)
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient(timeout=2) as client:
            while True:
                assert self.proc.poll() is None, f"server exited with {self.proc.returncode}; see {self.log}"
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.url}/api/metrics/health")).status_code == 200:
                        return
                assert time.monotonic() < deadline, "server did not become healthy"
                await asyncio.sleep(0.1)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    async def stop(self) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.terminate()
            try:
                await asyncio.to_thread(self.proc.wait, 15)
            except subprocess.TimeoutExpired:
                self.kill()

    def logged(self, event: str) -> list[dict[str, Any]]:
        """The JSON log records of ``event`` this server wrote."""
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            if event in line and line.startswith("{"):
                with contextlib.suppress(orjson.JSONDecodeError):
                    out.append(orjson.loads(line))
        return out


class Connector:
    """A contact center's connector: batches (out of order, some events twice), each retried until acknowledged."""

    def __init__(self, tenant: str, events: list[dict[str, Any]], servers: list[ServerProcess], seed: int) -> None:
        self.tenant = tenant
        self.servers = servers
        self.rng = random.Random(seed)
        self.todo = list(events)
        self.acked: dict[str, dict[str, Any]] = {}
        self.replies: Counter[str] = Counter()
        self.oks_while: Counter[str] = Counter()  # 200s answered while a fault named here was on
        self.fault: str | None = None
        self.token = token(tenant, "ingest")

    def _batch(self) -> list[dict[str, Any]]:
        size = self.rng.randint(4, 30)
        batch, self.todo = self.todo[:size], self.todo[size:]
        if len(self.todo) > 20 and self.rng.random() < 0.3:  # a later event overtakes earlier ones
            batch.append(self.todo.pop(self.rng.randrange(10, 20)))
        if self.acked and self.rng.random() < 0.3:  # a resend of something acknowledged already
            batch += self.rng.sample(list(self.acked.values()), min(3, len(self.acked)))
        self.rng.shuffle(batch)
        return batch

    async def run(self, stop: asyncio.Event, period_s: float = 0.2) -> None:
        async with httpx.AsyncClient(timeout=5, headers={"Authorization": f"Bearer {self.token}"}) as client:
            while self.todo and not stop.is_set():
                await self.deliver(client, self._batch())
                await asyncio.sleep(period_s)

    async def deliver(self, client: httpx.AsyncClient, batch: list[dict[str, Any]]) -> None:
        turn = self.rng.randrange(len(self.servers))
        while True:
            alive = [s for s in self.servers if s.alive] or self.servers
            server = alive[turn % len(alive)]
            turn += 1
            try:
                response = await client.post(f"{server.url}/api/events", json=batch)
            except httpx.HTTPError:
                self.replies["error"] += 1
                await asyncio.sleep(0.2)
                continue
            self.replies[str(response.status_code)] += 1
            if response.status_code == 200:
                if self.fault is not None:
                    self.oks_while[self.fault] += 1
                for event in batch:
                    self.acked[event["event_id"]] = event
                return
            await asyncio.sleep(0.3)


class Wall:
    """A wallboard on overview that reconnects (to any live server) when its connection drops."""

    def __init__(self, tenant: str, servers: list[ServerProcess]) -> None:
        self.tenant = tenant
        self.servers = servers
        self.messages: list[tuple[float, dict[str, Any]]] = []
        self.reconnects = 0
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        turn = 0
        while True:
            alive = [s for s in self.servers if s.alive] or self.servers
            server = alive[turn % len(alive)]
            turn += 1
            url = "ws" + server.url.removeprefix("http") + "/ws"
            protocols = [Subprotocol("wallboard.v1"), Subprotocol(f"bearer.{token(self.tenant, 'supervisor')}")]
            try:
                async with connect(url, subprotocols=protocols, compression=None, open_timeout=5, close_timeout=1) as ws:
                    await ws.send(orjson.dumps({"type": "subscribe", "views": ["overview"]}).decode())
                    async for raw in ws:
                        self.messages.append((time.monotonic(), orjson.loads(raw)))
            except (OSError, ConnectionClosed, InvalidHandshake, InvalidStatus, TimeoutError):
                pass
            self.reconnects += 1
            self.messages.append((time.monotonic(), {"type": "disconnected"}))
            await asyncio.sleep(0.3)

    def since(self, at: float, kind: str) -> list[dict[str, Any]]:
        return [m for t, m in self.messages if t >= at and m["type"] == kind]

    def latest(self) -> dict[str, Any] | None:
        """The newest overview document the board shows (None right after a reconnect, before its snapshot)."""
        for _, m in reversed(self.messages):
            if m["type"] == "disconnected":
                return None
            if m["type"] in ("snapshot", "update") and m.get("view") == "overview":
                return m["data"]  # type: ignore[no-any-return]
        return None

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)

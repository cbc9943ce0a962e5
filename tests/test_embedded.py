"""The embedded default: `wallboard serve` with no DATABASE_URL/REDIS_URL, as a new user runs it."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import asyncpg
import httpx
import jwt
import pytest
import redis.asyncio as aioredis

from .conftest import free_socket


async def start(data_dir: Path, port: int) -> tuple[asyncio.subprocess.Process, str]:
    """Start `wallboard serve` on the embedded default; return it and the URL it printed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WALLBOARD_", "DATABASE_URL", "REDIS_URL"))}
    env.update({"WALLBOARD_DATA_DIR": str(data_dir), "WALLBOARD_LOG_FORMAT": "text"})
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "server", "serve", "--port", str(port),
                                                env=env, stderr=asyncio.subprocess.PIPE)
    assert proc.stderr is not None
    seen = []
    async with asyncio.timeout(90):
        while True:
            line = (await proc.stderr.readline()).decode()
            assert line, "server exited before printing its URL:\n" + "".join(seen)
            seen.append(line)
            if line.startswith("open http"):
                break
    asyncio.get_running_loop().create_task(proc.stderr.read())  # keep draining
    text = "".join(seen)
    assert "Traceback" not in text
    return proc, text


def pids(data_dir: Path) -> tuple[int, int]:
    pg = int((data_dir / "postgres" / "postmaster.pid").read_text().splitlines()[0])
    vk = int((data_dir / "valkey" / "valkey.pid").read_text().strip())
    return pg, vk


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]


async def stop_and_check(proc: asyncio.subprocess.Process, sig: int, data_dir: Path, owned: tuple[int, int]) -> None:
    proc.send_signal(sig)
    async with asyncio.timeout(60):
        code = await proc.wait()
    assert code in (0, 130, 128 + signal.SIGTERM), code
    for _ in range(50):
        if not any(alive(p) for p in owned):
            break
        await asyncio.sleep(0.1)
    assert not any(alive(p) for p in owned), f"left running: {[p for p in owned if alive(p)]}"


def valkey_port(data_dir: Path) -> int:
    conf = (data_dir / "valkey" / "valkey.conf").read_text()
    match = re.search(r"^port (\d+)$", conf, re.M)
    assert match
    return int(match.group(1))


async def pg_connect(data_dir: Path) -> asyncpg.Connection:
    socket_dir = (data_dir / "postgres" / "postmaster.pid").read_text().splitlines()[4]
    return await asyncpg.connect(host=socket_dir, user="postgres", database="wallboard")


@pytest.mark.timeout(240)
async def test_embedded_default_starts_serves_stops_and_keeps_data(tmp_path: Path) -> None:
    """README command 1: health 200, served by the login role; SIGTERM and Ctrl-C leave no server behind; a restart
    reuses data."""
    data_dir = tmp_path / ".wallboard"
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    proc, printed = await start(data_dir, port)
    assert "new cluster" in printed
    url = re.search(r"open (http://\S+)", printed).group(1)  # type: ignore[union-attr]
    assert "?" not in url and "#token=" in url, "the token belongs in the fragment, never the query string"
    token = url.split("#token=", 1)[1]
    secret = (data_dir / "jwt-secret").read_text().strip()
    assert jwt.decode(token, secret, algorithms=["HS256"], audience="wallboard")["client_id"] == "demo"
    async with httpx.AsyncClient() as client:
        health = await client.get(f"http://127.0.0.1:{port}/api/metrics/health")
        page = await client.get(url.split("#")[0])
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert page.status_code == 200 and "<html" in page.text
    assert "db.serving_role_is_owner" not in printed
    owned = pids(data_dir)
    conn = await pg_connect(data_dir)
    serving = await conn.fetch("SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = 'wallboard' "
                               "AND backend_type = 'client backend' AND pid <> pg_backend_pid()")
    assert [r["usename"] for r in serving] == ["wallboard_login"], "the server's pool serves as the login role"
    await conn.execute("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('still here')")
    await conn.close()
    kv = aioredis.Redis(port=valkey_port(data_dir))
    await kv.set("kept", "still here")
    await kv.aclose()
    await stop_and_check(proc, signal.SIGTERM, data_dir, owned)

    proc, printed = await start(data_dir, port)
    assert "reusing data" in printed
    conn = await pg_connect(data_dir)
    assert await conn.fetchval("SELECT v FROM kept") == "still here"
    await conn.close()
    kv = aioredis.Redis(port=valkey_port(data_dir))
    assert await kv.get("kept") == b"still here"
    await kv.aclose()
    assert (data_dir / "jwt-secret").read_text().strip() == secret
    async with httpx.AsyncClient() as client:
        whoami = await client.get(f"http://127.0.0.1:{port}/api/auth/whoami", headers={"Authorization": f"Bearer {token}"})
    assert whoami.status_code == 200, "a token from the first run still verifies: the secret is kept"
    await stop_and_check(proc, signal.SIGINT, data_dir, pids(data_dir))

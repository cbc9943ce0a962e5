"""No token, secret or Authorization header reaches the logs, at any level, nor the start-up output of a real server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from server.core.auth import mint
from server.core.config import Settings
from server.core.logs import JsonFormatter, Redactor

from .conftest import TEST_SECRET, Backends, free_socket


def test_the_redactor_blanks_every_credential_shape() -> None:
    """JWTs (whole or cut short), bearer values, Authorization headers and the secret are blanked in a line."""
    redact = Redactor([TEST_SECRET])
    lines = ["< Authorization: Bearer eyJhbGciOi.eyJzdWIi.c2ln", "(b'authorization', b'Basic dXNlcjpwYXNz')",
             "< Sec-WebSocket-Protocol: wallboard.v1, bearer.eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzd",
             "< TEXT '{\"type\":\"auth\",\"token\":\"eyJhbGciOiJIUzI1NiIsInR5...' [412 bytes]",
             f"GET /api/metrics/live?token=eyJa.b.c HTTP/1.1 key={TEST_SECRET}"]
    out = "\n".join(redact(line) for line in lines)
    for leaked in ("eyJ", "dXNlcjpwYXNz", TEST_SECRET, "Bearer e"):
        assert leaked not in out, out
    assert out.count("[redacted]") == 6


def test_a_redacted_json_line_stays_json() -> None:
    """Headers logged as a dict or as JSON text are blanked in a JSON log line that still parses."""
    import logging

    formatter = JsonFormatter(Redactor([TEST_SECRET]))
    for value in ({"authorization": "Bearer eyJa.b.c", "x-key": TEST_SECRET},
                  '{"authorization": "Basic dXNlcjpwYXNz", "token": "eyJhbGciOi.x"}'):
        line = formatter.format(logging.LogRecord("t", logging.INFO, "", 0, "headers %s", (value,), None))
        assert orjson.loads(line)["event"].count("[redacted]") == 2, line
        assert "eyJ" not in line and TEST_SECRET not in line and "dXNlcjpwYXNz" not in line


@pytest.mark.timeout(120)
async def test_a_debug_server_logs_no_credential(database: str, backends: Backends, tmp_path: Path) -> None:
    """A server at DEBUG, hit with good, bad and expired tokens over HTTP and WebSocket, prints none of them."""
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WALLBOARD_", "DATABASE_URL", "REDIS_URL"))}
    env.update({"DATABASE_URL": database, "REDIS_URL": backends.redis_url, "WALLBOARD_JWT_SECRET": TEST_SECRET,
                "WALLBOARD_KEY_PREFIX": f"wblog{os.getpid()}", "WALLBOARD_LOG_LEVEL": "DEBUG",
                "WALLBOARD_LOG_FORMAT": "text"})
    log = tmp_path / "server.log"
    settings = Settings(jwt_secret=TEST_SECRET)
    good = mint(settings, tenant="logt", role="supervisor", sub="sue")
    expired = mint(settings, tenant="logt", role="supervisor", ttl_s=-3600)
    forged = mint(Settings(jwt_secret="another-secret-" + "y" * 40), tenant="logt", role="admin")
    base = f"http://127.0.0.1:{port}"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "server", "serve", "--port", str(port)], env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            deadline = time.monotonic() + 60
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/api/metrics/health")).status_code in (200, 503):
                        break
                assert time.monotonic() < deadline and proc.poll() is None, log.read_text()
                await asyncio.sleep(0.2)
            for token in (good, expired, forged, "eyJnot-a-token", TEST_SECRET):
                await client.get("/api/metrics/live", headers={"Authorization": f"Bearer {token}"})
                await client.get("/api/metrics/live", params={"token": token})
            assert (await client.get("/api/metrics/live", headers={"Authorization": f"Bearer {good}"})).status_code == 200
            assert (await client.get("/api/metrics/live", headers={"Authorization": f"Basic {good}"})).status_code == 401
        ws = f"ws://127.0.0.1:{port}/ws"
        async with connect(ws, subprotocols=["wallboard.v1", f"bearer.{good}"], compression=None) as conn:  # type: ignore[list-item]
            await conn.send(orjson.dumps({"type": "subscribe", "views": ["overview"]}).decode())
            assert orjson.loads(await conn.recv())["type"] in ("status", "snapshot")
            await conn.send(orjson.dumps({"type": "auth", "token": good}).decode())
            await conn.send(orjson.dumps({"type": "auth", "token": forged}).decode())
            with contextlib.suppress(ConnectionClosed):
                while True:
                    await asyncio.wait_for(conn.recv(), 5)
        for token in (expired, forged):
            with contextlib.suppress(ConnectionClosed, InvalidStatus):
                async with connect(ws, subprotocols=["wallboard.v1"], compression=None) as conn:  # type: ignore[list-item]
                    await conn.send(orjson.dumps({"type": "auth", "token": token}).decode())
                    await asyncio.wait_for(conn.recv(), 5)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    text = log.read_text()
    assert "GET /api/metrics/live" in text and "DEBUG" in text, text[-2000:]  # the access log and DEBUG lines ran
    assert "listening on" in text and "#token=TOKEN" in text  # external servers, no --demo: no demo tokens
    for leaked in ("eyJ", TEST_SECRET, good[40:], "Bearer e", "bearer.e", "Basic e"):
        assert leaked not in text, f"{leaked[:12]}… in the log: " + text[max(0, text.find(leaked) - 300):][:600]

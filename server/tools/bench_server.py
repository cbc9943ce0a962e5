"""The benches' own server: a ``wallboard serve`` subprocess, its health, and raw keep-alive clients.

Shared by every bench that measures a real server process (ingest, poll, fanout, history,
quiet-tenant latency): they start it, wait for it to be healthy, mark tenants ready, post
with :class:`Connection`, and stop it.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import time
from typing import IO

import httpx

from server.core.config import Settings
from server.live.keys import Keys
from server.tools.bench import BenchFailed


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tail(log: IO[bytes], limit: int = 800) -> str:
    """The end of the server's output, on one line."""
    log.seek(0)
    text = log.read().decode(errors="replace").strip()
    return " | ".join(text[-limit:].splitlines()) or "(nothing)"


async def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: IO[bytes], timeout_s: float = 60) -> None:
    """Wait for ``GET /api/metrics/health`` to answer 200; fail with the server's output when it exits."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BenchFailed(f"wallboard serve exited with status {proc.returncode}: {tail(log)}")
            try:
                if (await client.get(f"{url}/api/metrics/health")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise BenchFailed(f"wallboard serve was not healthy after {timeout_s:.0f}s: {tail(log)}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 15 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def mark_ready(settings: Settings, tenant: str) -> None:
    """Mark the tenant's live state complete, as a running server's is (skips the first-touch rebuild)."""
    from server.core.redis_client import redis_client

    assert settings.redis_url is not None
    client = redis_client(settings.redis_url)
    try:
        await client.set(Keys(settings.key_prefix).ready(tenant), "1")
    finally:
        await client.aclose()


class Connection:
    """One keep-alive HTTP/1.1 connection that posts pre-encoded bodies to ``/api/events``.

    Measured on this project's batches, httpx spends ~2 ms of CPU per request of 500 events
    (~4 µs/event, taken from the cores the server needs); this spends ~0.06 ms. It reads
    replies with a Content-Length only, which is what the server sends.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> None:
        self.reader = reader
        self.writer = writer
        self.head = head

    @classmethod
    async def open(cls, host: str, port: int, token: str) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        head = (f"POST /api/events HTTP/1.1\r\nhost: {host}:{port}\r\nauthorization: Bearer {token}\r\n"
                "content-type: application/json\r\n").encode()
        return cls(reader, writer, head)

    async def post(self, body: bytes) -> tuple[int, bytes]:
        """Send one request and return (status, reply body)."""
        self.writer.write(self.head + b"content-length: %d\r\n\r\n" % len(body))
        self.writer.write(body)
        lines = (await self.reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                return status, await self.reader.readexactly(int(value))
        raise ValueError(f"a reply without Content-Length: {lines[:3]!r}")

    def close(self) -> None:
        self.writer.close()

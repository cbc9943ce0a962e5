"""HTTP/1.1 on the server's own connection protocol: answers complete, in order, whatever their shape."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import orjson

from .conftest import RunningServer


async def read_answer(reader: asyncio.StreamReader, *, head: bool = False) -> tuple[int, dict[str, str], bytes]:
    """One answer off the socket: status, headers (lower-case names), body (none for a HEAD)."""
    lines = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).decode("latin-1").split("\r\n")
    headers = dict((name.lower(), value.strip()) for name, _, value in (line.partition(":") for line in lines[1:] if line))
    length = 0 if head else int(headers.get("content-length", "0"))
    return int(lines[0].split(" ")[1]), headers, await asyncio.wait_for(reader.readexactly(length), 10)


async def test_head_100_continue_and_close_answers_arrive_whole(server: RunningServer) -> None:
    """A HEAD answer (a header with no body), a 100 Continue and a closing answer each reach the client whole."""
    host, port = server.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(f"HEAD /api/metrics/health HTTP/1.1\r\nhost: {host}\r\n\r\n".encode())
        status, headers, _ = await read_answer(reader, head=True)
        assert status == 200 and int(headers["content-length"]) > 0

        body = orjson.dumps([{"event_id": "conn-1", "type": "agent.state", "ts": datetime.now(UTC).isoformat(),
                              "agent_id": "a1", "state": "available"}])
        writer.write(f"POST /api/events HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {server.token(role='ingest')}\r\n"
                     f"content-type: application/json\r\ncontent-length: {len(body)}\r\nexpect: 100-continue\r\n\r\n"
                     .encode())
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert interim.startswith(b"HTTP/1.1 100")
        writer.write(body)
        status, _, answer = await read_answer(reader)
        assert status == 200 and orjson.loads(answer)["data"]["accepted"] + orjson.loads(answer)["data"]["duplicates"] == 1

        writer.write(f"GET /api/metrics/health HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n".encode())
        status, headers, answer = await read_answer(reader)
        assert status == 200 and orjson.loads(answer)
        assert await asyncio.wait_for(reader.read(), 10) == b""  # then the server closed the connection
    finally:
        writer.close()

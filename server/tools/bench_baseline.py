"""The baseline of ``wallboard bench fanout``: the least a fan-out does, in its own process.

Connections kept by tenant (the first message names it), one Redis subscription, and per
pub/sub message one fixed document as large as the server's, sent with ``websockets.broadcast``.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import orjson
from websockets.asyncio.server import ServerConnection, broadcast, serve

from server.core.redis_client import redis_client
from server.tools.bench import run_async
from server.tools.bench_clients import raise_fd_limit


def baseline_process(port: int, redis_url: str, channel: str, size: int, ready: Any, done: Any) -> None:
    raise_fd_limit()
    run_async(serve_baseline(port, redis_url, channel, size, ready, done))


async def serve_baseline(port: int, redis_url: str, channel: str, size: int, ready: Any, done: Any) -> None:
    """Connections by tenant (the first message names it); per pub/sub message one document, broadcast."""
    groups: dict[str, set[ServerConnection]] = {}
    seqs: dict[str, int] = {}
    latest: dict[str, int] = {}
    pad = "x" * max(0, size - 190)

    def render(tenant: str, count: int, kind: str = "update") -> bytes:
        seqs[tenant] = seqs.get(tenant, 0) + (kind == "update")  # a snapshot repeats the stream's seq
        return orjson.dumps({"type": kind, "view": "overview", "seq": seqs[tenant], "data": {
            "as_of": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "agents": {"logged_in": 1}, "queues": [], "today": {"offered": count, "answered": 0}, "pad": pad}})

    async def handler(ws: ServerConnection) -> None:
        tenant = orjson.loads(await ws.recv())["tenant"]
        await ws.send(render(tenant, latest.get(tenant, 0), "snapshot"), text=True)
        groups.setdefault(tenant, set()).add(ws)
        try:
            await ws.wait_closed()
        finally:
            groups[tenant].discard(ws)

    async def listen() -> None:
        async for message in pubsub.listen():
            if message["type"] == "message":
                tenant, latest[tenant] = orjson.loads(message["data"])
                broadcast(groups.get(tenant, ()), render(tenant, latest[tenant]), text=True)

    client = redis_client(redis_url)
    pubsub = client.pubsub()
    await pubsub.subscribe(channel)
    async with serve(handler, "127.0.0.1", port, compression=None, backlog=4096):
        listener = asyncio.create_task(listen())
        ready.set()
        while not done.is_set() and not listener.done():
            await asyncio.sleep(0.1)
        listener.cancel()
    await pubsub.aclose()
    await client.aclose()

"""A quiet tenant beside the load of ``wallboard bench fanout``: one board, one event every few seconds.

Each event is one ``call.queued`` posted on its own (to another server process than the board's, when
``post_port`` names one: the update then reaches the board through Redis); its latency runs from the POST being sent
to the arrival, at the board, of the first ``overview`` update that counts it. With the hub's
leading edge (a tenant quiet for a tick is sent at once) this is the ingest and fan-out path
alone; waiting for a fixed tick would add up to one tick (250 ms).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from server.tools.bench import BenchFailed
from server.tools.bench_server import Connection

EVERY_S = 2.0  # mean pause between the quiet tenant's events (±25 %, so they fall anywhere in the tick)


@dataclass
class Quiet:
    """The quiet tenant's board and poster, run beside a phase; ``latencies_ms`` once stopped."""

    port: int  # the board's server
    ingest_token: str
    board_token: str
    post_port: int | None = None  # where the events go, when not to the board's server (another process)
    latencies_ms: list[float] = field(default_factory=list)
    posted_ms: list[float] = field(default_factory=list)  # when each measured event was posted (epoch ms)
    error: str = ""
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        """Connect the board, then post one event per pause until told to stop."""
        try:
            await self._run()
        except Exception as exc:  # noqa: BLE001 - the loaded phase must still report; the reason goes in its notes
            self.error = f"{type(exc).__name__}: {exc}"

    def stop(self) -> None:
        self._stop.set()

    async def _run(self) -> None:
        protocols = [Subprotocol("wallboard.v1"), Subprotocol(f"bearer.{self.board_token}")]
        async with connect(f"ws://127.0.0.1:{self.port}/ws", subprotocols=protocols, compression=None,
                           open_timeout=30) as ws:
            await ws.send(orjson.dumps({"type": "subscribe", "views": ["overview"]}).decode())
            offered = await self._snapshot(ws)
            poster = await Connection.open("127.0.0.1", self.post_port or self.port, self.ingest_token)
            try:
                while not self._stop.is_set():
                    try:
                        await asyncio.wait_for(self._stop.wait(), EVERY_S * random.uniform(0.75, 1.25))
                        return
                    except TimeoutError:
                        pass
                    offered += 1
                    call = f"quiet-{offered}-{random.getrandbits(32):08x}"
                    event = {"event_id": call, "type": "call.queued", "ts": int(time.time() * 1000),
                             "call_id": call, "queue_id": "sales"}
                    sent, posted = time.perf_counter(), time.time() * 1000
                    status, reply = await poster.post(orjson.dumps([event]))
                    if status != 200:
                        raise BenchFailed(f"quiet tenant: POST /api/events answered {status}: {reply[:200]!r}")
                    while True:
                        body = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
                        if body.get("type") == "update" and body["data"]["today"]["offered"] >= offered:
                            self.latencies_ms.append((time.perf_counter() - sent) * 1000)
                            self.posted_ms.append(posted)
                            break
            finally:
                poster.close()

    @staticmethod
    async def _snapshot(ws: ClientConnection) -> int:
        while True:
            body = orjson.loads(await asyncio.wait_for(ws.recv(), 30))
            if body.get("type") == "snapshot":
                return int(body["data"]["today"]["offered"])

    def summary(self, window: tuple[float, float] | None = None) -> str:
        """``12 events, POST-to-update median 8 ms, max 31 ms``, or why there are no figures.

        With the load ``window`` (epoch ms), the events posted within it are summed up on their own too: the
        others fall while the clients connect, idle, or disconnect all at once, which is not the steady load."""
        if not self.latencies_ms:
            return f"no event measured{': ' + self.error if self.error else ''}"
        text = _figures(self.latencies_ms)
        if window is not None:
            inside = [ms for ms, at in zip(self.latencies_ms, self.posted_ms, strict=True) if window[0] <= at <= window[1]]
            text += f"; in the load window: {_figures(inside) if inside else 'none'}"
        return text + (f" (then: {self.error})" if self.error else "")


def _figures(latencies_ms: list[float]) -> str:
    ordered = sorted(latencies_ms)
    return f"{len(ordered)} events, POST-to-update median {ordered[len(ordered) // 2]:.0f} ms, max {ordered[-1]:.0f} ms"

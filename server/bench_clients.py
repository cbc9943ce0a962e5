"""The WebSocket clients of ``wallboard bench fanout``: processes that each hold many connections.

Each client logs (receive time, offered + answered) per ``overview`` message and answers a
``seq`` gap with ``resync``, as a wallboard does; the parent joins the logs with its schedule.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import resource
import time
from array import array
from dataclasses import dataclass, field
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from .bench import BenchFailed, Progress, run_async

CONNECT_AT_ONCE = 500  # handshakes in flight over all client processes
CONNECTED, FAILED, RECEIVED = range(3)  # the counters a client process shares with the parent
Spec = tuple[int, list[str] | None, bytes]  # one client: tenant index, subprotocols, first message


@dataclass
class Held:
    """What one client process saw; sent to the parent once it is told to stop."""

    error: str = ""
    records: list[tuple[int, array[float], array[int]]] = field(default_factory=list)  # (tenant, recv ms, count)
    gaps: int = 0
    stale: int = 0
    other: dict[str, int] = field(default_factory=dict)  # messages that are no overview, by type
    closed: int = 0
    bytes: int = 0
    stopping: bool = False


def raise_fd_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit; returns it."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    hard = 1 << 20 if hard == resource.RLIM_INFINITY else hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def client_process(uri: str, specs: list[Spec], chunk: int, counts: Any, stop_event: Any, results: Any) -> None:
    """Entry of one client process: hold ``specs`` connections until told to stop, then report."""
    raise_fd_limit()
    try:
        held = run_async(hold(uri, specs, chunk, counts, stop_event))
    except BaseException as exc:  # the parent must hear about it, whatever it was
        held = Held(error=f"{type(exc).__name__}: {exc}")
    results.put(held)


async def hold(uri: str, specs: list[Spec], chunk: int, counts: Any, stop_event: Any) -> Held:
    """Open ``specs``, ``chunk`` handshakes at a time, and log every overview message (resync on a seq gap)."""
    held = Held()
    sockets: list[ClientConnection] = []
    readers: list[asyncio.Task[None]] = []
    window = asyncio.Semaphore(chunk)

    def fail(message: str) -> None:
        held.error = held.error or message

    async def read(ws: ClientConnection, tenant: int) -> None:
        times, seen = array("d"), array("q")
        held.records.append((tenant, times, seen))
        last_seq = None
        try:
            while True:
                raw = await ws.recv(decode=False)
                now = time.time() * 1000
                msg = orjson.loads(raw)
                if msg.get("type") in ("snapshot", "update") and msg.get("view") == "overview":
                    today = msg["data"]["today"]
                    times.append(now)
                    seen.append(today["offered"] + today["answered"])
                    counts[RECEIVED] += 1
                    held.bytes += len(raw)
                    if msg["type"] == "update" and last_seq is not None and msg["seq"] != last_seq + 1:
                        held.gaps += 1
                        await ws.send(b'{"type":"resync"}', text=True)
                    last_seq = msg["seq"]
                else:
                    kind = str(msg.get("type"))
                    held.other[kind] = held.other.get(kind, 0) + 1
                    if kind == "status" and msg.get("live") == "stale":
                        held.stale += 1
        except ConnectionClosed as exc:
            if not held.stopping:
                held.closed += 1
                fail(f"closed by the server: {exc}")
        except Exception as exc:  # noqa: BLE001 - a message the bench cannot read fails the run
            fail(f"reading a message: {type(exc).__name__}: {exc}")

    async def open_one(tenant: int, protocols: list[str] | None, hello: bytes) -> None:
        async with window:
            try:
                ws = await connect(uri, subprotocols=protocols, compression=None,  # type: ignore[arg-type]
                                   max_queue=64, open_timeout=60, ping_interval=None, close_timeout=5)
                await ws.send(hello, text=True)
            except Exception as exc:  # noqa: BLE001 - reported; the parent fails the run
                fail(f"connect failed: {type(exc).__name__}: {exc}")
                counts[FAILED] += 1
                return
            sockets.append(ws)
            readers.append(asyncio.create_task(read(ws, tenant)))
            counts[CONNECTED] = len(sockets)

    await asyncio.gather(*(open_one(*spec) for spec in specs))
    while not stop_event.is_set():
        await asyncio.sleep(0.1)
    held.stopping = True
    if sockets:
        await asyncio.wait([asyncio.create_task(ws.close()) for ws in sockets], timeout=15)
    for task in readers:
        task.cancel()
    return held


class Fleet:
    """``procs`` client processes holding ``len(specs)`` connections between them, spread round-robin."""

    def __init__(self, uri: str, specs: list[Spec], procs: int) -> None:
        ctx = mp.get_context("spawn")  # never fork a process that runs an event loop
        self.total, self.stop_event, self.results = len(specs), ctx.Event(), ctx.Queue()
        self.counts = [ctx.Array("q", 3, lock=False) for _ in range(procs)]
        self.procs = [ctx.Process(target=client_process, daemon=True, name=f"bench-clients-{i}",
                                  args=(uri, specs[i::procs], max(1, CONNECT_AT_ONCE // procs), self.counts[i],
                                        self.stop_event, self.results)) for i in range(procs)]

    @property
    def pids(self) -> list[int]:
        return [proc.pid for proc in self.procs if proc.pid is not None]

    def count(self, which: int) -> int:
        return sum(int(counts[which]) for counts in self.counts)

    async def connect(self, label: str, alive: Any) -> None:
        """Start the processes and wait until every client is connected; fail when one cannot be."""
        for proc in self.procs:
            proc.start()
        progress = Progress(f"{label}: connecting", self.total, "clients")
        while (done := self.count(CONNECTED)) < self.total:
            progress.update(done)
            alive()
            if any(not proc.is_alive() for proc in self.procs) or done + self.count(FAILED) >= self.total:
                progress.finish(done)
                errors = "; ".join(sorted({h.error for h in await self.finish() if h.error}))
                raise BenchFailed(f"{label}: {done:,} of {self.total:,} clients connected: {errors or 'no reason'}")
            await asyncio.sleep(0.2)
        progress.finish(done)

    async def finish(self) -> list[Held]:
        """Tell every process to stop and collect what each saw."""
        self.stop_event.set()
        held = []
        for proc in self.procs:
            try:
                held.append(await asyncio.to_thread(self.results.get, True, 120))
            except Exception:  # noqa: BLE001 - queue.Empty: the process died without a word
                held.append(Held(error=f"{proc.name} sent nothing (exit code {proc.exitcode})"))
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
        return held

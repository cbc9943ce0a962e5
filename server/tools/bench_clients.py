"""The WebSocket clients of ``wallboard bench fanout``: processes that each hold many connections.

Each client logs (receive time, offered + answered) per ``overview`` message and answers a
``seq`` gap with ``resync``, as a wallboard does; the parent joins the logs with its schedule.
A client is ``websockets``' sans-I/O protocol on a bare asyncio transport (:class:`Client`): the
same parser as the library's asyncio client, without its task and queue per connection and message.
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
from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

from server.tools.bench import BenchFailed, Progress, run_async

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


class Client(asyncio.Protocol):
    """One bench connection: websockets' sans-I/O protocol on a bare asyncio transport.

    The load generator shares the machine's cores with the server, so each message costs
    it as little as it can: parsed by ``websockets`` as it arrives (pings are answered there
    too), decoded with orjson, logged; no task, queue or future per message.
    """

    def __init__(self, uri: str, protocols: list[str] | None, hello: bytes, tenant: int, held: Held,
                 counts: Any) -> None:
        self.ws = ClientProtocol(parse_uri(uri), subprotocols=[Subprotocol(p) for p in protocols or ()] or None,
                                 max_size=None)
        self.hello, self.held, self.counts = hello, held, counts
        self.times, self.seen = array("d"), array("q")
        held.records.append((tenant, self.times, self.seen))
        self.last_seq: int | None = None
        self.parts: list[bytes] = []
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are no asyncio.Transport subclass
        self.ws.send_request(self.ws.connect())
        self.flush()

    def data_received(self, data: bytes) -> None:
        now = time.time() * 1000
        self.ws.receive_data(data)
        self.handle(now)

    def eof_received(self) -> None:
        self.ws.receive_eof()
        self.handle(time.time() * 1000)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"connection lost during the handshake: {exc}"))
        elif not self.held.stopping:
            self.held.closed += 1
            self.fail(f"closed by the server: {self.ws.close_rcvd or exc or 'connection lost'}")
        if not self.lost.done():
            self.lost.set_result(None)

    def fail(self, message: str) -> None:
        self.held.error = self.held.error or message

    def handle(self, now: float) -> None:
        for event in self.ws.events_received():
            if isinstance(event, Response):
                if self.ws.handshake_exc is not None:
                    self.opened.set_exception(self.ws.handshake_exc)
                else:
                    self.ws.send_text(self.hello)
                    self.opened.set_result(None)
            elif event.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
                self.parts.append(event.data)
                if event.fin:
                    raw = b"".join(self.parts)
                    self.parts = []
                    try:
                        self.message(raw, now)
                    except Exception as exc:  # noqa: BLE001 - a message the bench cannot read fails the run
                        self.fail(f"reading a message: {type(exc).__name__}: {exc}")
        self.flush()

    def message(self, raw: bytes, now: float) -> None:
        """Log an overview message's (arrival, offered + answered); ask for a resync on a seq gap."""
        msg = orjson.loads(raw)
        kind = msg.get("type")
        if kind in ("snapshot", "update") and msg.get("view") == "overview":
            today = msg["data"]["today"]
            self.times.append(now)
            self.seen.append(today["offered"] + today["answered"])
            self.counts[RECEIVED] += 1
            self.held.bytes += len(raw)
            if kind == "update" and self.last_seq is not None and msg["seq"] != self.last_seq + 1:
                self.held.gaps += 1
                self.ws.send_text(b'{"type":"resync"}')
            self.last_seq = msg["seq"]
        else:
            self.held.other[str(kind)] = self.held.other.get(str(kind), 0) + 1
            if kind == "status" and msg.get("live") == "stale":
                self.held.stale += 1

    def flush(self) -> None:
        assert self.transport is not None
        for chunk in self.ws.data_to_send():
            if chunk:
                self.transport.write(chunk)
            elif self.transport.can_write_eof():
                self.transport.write_eof()
        if self.ws.state is State.CLOSED:
            self.transport.close()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            if self.ws.state is State.OPEN:
                self.ws.send_close()
            self.flush()


async def hold(uri: str, specs: list[Spec], chunk: int, counts: Any, stop_event: Any) -> Held:
    """Open ``specs``, ``chunk`` handshakes at a time, and log every overview message (resync on a seq gap)."""
    held = Held()
    clients: list[Client] = []
    window = asyncio.Semaphore(chunk)
    target = parse_uri(uri)
    loop = asyncio.get_running_loop()

    async def open_one(tenant: int, protocols: list[str] | None, hello: bytes) -> None:
        async with window:
            client = Client(uri, protocols, hello, tenant, held, counts)
            try:
                async with asyncio.timeout(60):
                    await loop.create_connection(lambda: client, target.host, target.port)
                    await client.opened
            except Exception as exc:  # noqa: BLE001 - reported; the parent fails the run
                client.fail(f"connect failed: {type(exc).__name__}: {exc}")
                counts[FAILED] += 1
                if client.transport is not None:
                    client.transport.abort()
                return
            clients.append(client)
            counts[CONNECTED] = len(clients)

    await asyncio.gather(*(open_one(*spec) for spec in specs))
    while not stop_event.is_set():
        await asyncio.sleep(0.1)
    held.stopping = True
    for client in clients:
        client.close()
    if clients:
        await asyncio.wait([client.lost for client in clients], timeout=15)
    for client in clients:
        if client.transport is not None and not client.lost.done():
            client.transport.abort()
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

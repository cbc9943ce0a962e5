"""The load of ``wallboard bench fanout``: its schedule of events, and their posting to the server.

:class:`Feed` is the schedule both phases follow; :class:`Ingest` posts it to ``wallboard serve``
as connectors do, one tenant per request, without ever letting a slow server delay the schedule.
"""

from __future__ import annotations

import asyncio
import time
from typing import IO, Any

import orjson

from server.tools.bench import BenchFailed
from server.tools.bench_server import Connection, tail

KINDS = ({"type": "call.queued"}, {"type": "call.answered", "agent_id": "a1"},
         {"type": "call.completed", "agent_id": "a1", "talk_s": 60.0, "hold_s": 0.0, "wrap_s": 5.0})
COUNTED = 2  # a call's first KINDS raise the boards' offered + answered, one each; completed does not
Batch = dict[int, list[dict[str, Any]]]  # events by tenant index


class Feed:
    """The schedule of both phases: ``rate`` events/s, round-robin over tenants, calls on queue ``sales``.

    ``posts[t]`` logs (offered + answered after the post, due time ms) of each of tenant ``t``'s
    posts that raised that count: what the clients' messages are joined with.
    """

    def __init__(self, tenants: int, rate: float, counted: int = 0) -> None:
        """``counted``: offered + answered each tenant holds before the schedule (``COUNTED`` per warm-up call)."""
        self.rate, self.sent, self.next = rate, 0, 0
        self.steps, self.counts = [0] * tenants, [counted] * tenants
        self.posts: list[list[tuple[int, float]]] = [[] for _ in range(tenants)]

    def due(self, elapsed_s: float, now_ms: float) -> Batch:
        """The events owed by now (catching up after a late tick), by tenant index; logs the posts."""
        batch: Batch = {}
        for _ in range(int(elapsed_s * self.rate) - self.sent):
            i, self.next = self.next, (self.next + 1) % len(self.steps)
            call, kind = divmod(self.steps[i], 3)
            self.steps[i] += 1
            self.counts[i] += kind < COUNTED
            batch.setdefault(i, []).append({"event_id": f"e{call}.{kind}", "ts": int(now_ms), "call_id": f"c{call}",
                                            "queue_id": "sales", **KINDS[kind]})
            self.sent += 1
        for i in batch:
            if not self.posts[i] or self.posts[i][-1][0] < self.counts[i]:
                self.posts[i].append((self.counts[i], now_ms))
        return batch


class Ingest:
    """Posts each tenant's events on its own keep-alive connection, one request in flight per tenant.

    ``send`` never waits for the server: events due while a tenant's request is out go in its
    next one. Like a connector, it reopens a connection the server idled out and retries a 503
    after a pause (counted in ``retried``); any other answer but 200 fails the run.
    """

    def __init__(self, port: int, tokens: list[str], log: IO[bytes]) -> None:
        self.port, self.tokens, self.log, self.retried = port, tokens, log, 0
        self.took_ms: list[float] = []  # each POST's round trip
        self.conns: dict[int, Connection] = {}
        self.pending: Batch = {}
        self.tasks: dict[int, asyncio.Task[None]] = {}

    async def send(self, batch: Batch) -> None:
        for i, events in batch.items():
            self.pending.setdefault(i, []).extend(events)
            if i not in self.tasks or self.tasks[i].done():
                self.tasks[i] = asyncio.create_task(self.drain(i))

    async def drain(self, i: int) -> None:
        while events := self.pending.pop(i, None):
            await self.post(i, events)

    def check(self) -> None:
        """Raise what a finished request raised."""
        for task in self.tasks.values():
            if task.done() and (exc := task.exception()) is not None:
                raise exc

    async def post(self, i: int, events: list[dict[str, Any]]) -> None:
        body, status, reply = orjson.dumps(events), 0, b""
        for attempt in range(1, 21):
            try:
                if i not in self.conns:
                    self.conns[i] = await Connection.open("127.0.0.1", self.port, self.tokens[i])
                began = time.perf_counter()
                status, reply = await self.conns[i].post(body)
                self.took_ms.append((time.perf_counter() - began) * 1000)
            except (OSError, asyncio.IncompleteReadError) as exc:
                if i in self.conns:
                    self.conns.pop(i).close()
                if attempt > 1:
                    raise BenchFailed(f"POST /api/events failed: {type(exc).__name__}: {exc}; "
                                      f"server said: {tail(self.log)}") from None
                continue
            if status != 503:
                data = orjson.loads(reply).get("data") or {}
                if status == 200 and data.get("accepted", 0) + data.get("duplicates", 0) == len(events):
                    return
                break
            self.retried += 1
            await asyncio.sleep(0.1 * attempt)
        raise BenchFailed(f"POST /api/events answered {status} (attempt {attempt}), expected 200 with every "
                          f"event taken: {reply[:300].decode(errors='replace')}")

    def close(self) -> None:
        for task in self.tasks.values():
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: the first one was raised already, by check()
            task.cancel()
        for conn in self.conns.values():
            conn.close()

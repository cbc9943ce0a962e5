"""The hub's reads of the tenants that fall due together, sent to Redis as one pipeline.

Each publish reads its tenant's live state once (read.lua). Publishes begin in bursts: the events
of one group commit reach every process at once, and a tick starts every tenant that is due. Sent
one by one, each read costs a connection taken from the pool, a write, a wait and a parse in
redis-py: at 200 publishes a second, more of the fan-out process's time than the render. A
:class:`ReadBatch` holds the reads asked for in one turn of the event loop and sends them together
at the next turn: one connection, one write, one wait.

Trade-offs, stated plainly:

- Only the common case rides the pipeline. A read whose tenant's queues or agents changed since
  they were declared (read.lua answers ``members``), whose state is not ready (a rebuild is due),
  whose script is not loaded yet, or that failed in any way, is made again alone by
  :meth:`LiveState.read`, which handles each of those. The batch adds one turn of the loop (no
  timer) to a read, and nothing to what a read can return.
- The batched read does not take a slot of the tenant's Redis share (``LiveState.slots``): the hub
  reads a tenant at most once at a time (its publish lock), so it never holds more than one
  connection's worth of reads for it.
- Under Redis Cluster the tenants' keys live on different nodes: every read goes alone.
"""

from __future__ import annotations

import asyncio
from typing import Any

from server.core.redis_client import is_cluster
from server.core.tenant_settings import TenantSettings
from server.live.members import CHANGED
from server.live.state import REDIS_DOWN, LiveState

Pending = tuple[list[str], list[Any], "asyncio.Future[list[Any] | None]"]


class ReadBatch:
    """:meth:`LiveState.read` for the hub, pipelined with the other reads of the same turn of the loop."""

    def __init__(self, live: LiveState) -> None:
        self.live = live
        self.enabled = not is_cluster(live.redis)
        self._pending: list[Pending] = []

    async def read(self, tenant: str, settings: TenantSettings, now_ms: int, *, agent_changes: bool) -> list[Any]:
        """The raw state of the tenant's current day, as :meth:`LiveState.read` returns it."""
        if self.enabled:
            call = self.live.read_call(tenant, settings, now_ms, agent_changes)
            keys, argv = call(self.live.members.get(tenant))
            future: asyncio.Future[list[Any] | None] = asyncio.get_running_loop().create_future()
            self._pending.append((keys, argv, future))
            if len(self._pending) == 1:  # the turn's first read sends them all, once the turn's others are in
                try:
                    await asyncio.sleep(0)
                except BaseException:  # cancelled before sending: the others go alone rather than wait
                    self._release(self._pending, [])
                    raise
                await self._send()
            raw = await future
            if raw is not None:
                return raw
        return await self.live.read(tenant, settings, now_ms, agent_changes=agent_changes)

    async def _send(self) -> None:
        pending, self._pending = self._pending, []  # reads asked for from now on make the next batch
        results: list[Any] = []
        try:
            pipe = self.live.redis.pipeline(transaction=False)
            for keys, argv, _ in pending:
                pipe.evalsha(self.live.read_sha, len(keys), *keys, *argv)
            results = await pipe.execute(raise_on_error=False)
            self.live.redis_ok = True
        except REDIS_DOWN:
            pass  # each read goes again alone: LiveState.read tells Redis is down
        finally:  # also when cancelled: no read waits for an answer that will not come
            self._release(pending, results)

    def _release(self, pending: list[Pending], results: list[Any]) -> None:
        """Hand each read its answer, or None (made again alone) when there is none or it is not the common case."""
        if pending is self._pending:
            self._pending = []
        for index, (_, _, future) in enumerate(pending):
            raw = results[index] if index < len(results) else None
            ready = isinstance(raw, list) and len(raw) > 0 and raw[0] == b"1" and (len(raw) < 2 or raw[1] != CHANGED)
            if not future.done():
                future.set_result(raw if ready else None)

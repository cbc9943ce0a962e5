"""Group commit: concurrent small ingest requests of one tenant share one transaction.

A connector that posts each event as it happens sends many one-event requests at
once; one transaction each costs PostgreSQL a commit, a tenant binding and a
statement per event, and the pool a connection per request. Here the requests of a
tenant that arrive while its commit is in flight wait in its lane and are stored
together by the next commit (one transaction, one ``events_store`` statement, one
``apply.lua`` call), and each request is answered once that shared commit is done:
nothing is acknowledged before it is durable.

- **No added latency when idle**: a request that finds its tenant's lane free is
  committed at once; grouping happens only behind a commit already in flight.
- **Tenants stay apart**: a lane holds one tenant's requests, so the shared
  transaction is bound to that tenant and RLS holds as for a lone request.
- **A request's own answer**: each request gets back the ids that *it* made new; an id
  sent by two requests of one group is new for the first and a duplicate for the other.
- **One failure stays one**: when a shared commit fails on something other than the
  database being away, each request of the group is retried alone, so one request's
  problem is never another's.
- **Batches go alone**: a request of more than a tenth of ``max_events`` events already
  shares its commit among its own events; it does not wait for others and nobody waits
  for it (grouping batches of 500 cut the concurrency of their commits and their throughput).

Trade-off: at most ``inflight`` commits per tenant run at once; the rest queue behind
them in the lane. A tenant flooding small requests therefore holds at most that many
database connections, whatever its request rate.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from server.core import background
from server.core.errors import ServiceUnavailable
from server.ingest.events import Event

log = logging.getLogger("wallboard.ingest")

Commit = Callable[[str, Sequence[Event]], Awaitable[set[str]]]


@dataclass
class _Request:
    """One request's events in a lane, and where its answer goes."""

    events: Sequence[Event]
    answer: asyncio.Future[set[str]]


@dataclass
class _Lane:
    """A tenant's requests waiting for the next commit, and how many commits run for it."""

    waiting: list[_Request] = field(default_factory=list)
    running: int = 0  # commits in flight


class GroupCommit:
    """Stores the events of concurrent requests of one tenant with one commit (see the module docstring)."""

    def __init__(self, commit: Commit, *, max_events: int = 1000, inflight: int = 2) -> None:
        self._commit = commit  # stores and applies a batch of unique events, returns the new ids
        self.max_events = max_events
        self.inflight = max(1, inflight)
        self._lanes: dict[str, _Lane] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def close(self) -> None:
        """Ends the commits in flight (their requests are answered 503: nothing they held is acknowledged)."""
        await background.stop(list(self._tasks))

    async def store(self, tenant: str, events: Sequence[Event]) -> set[str]:
        """Commit ``events`` (unique by id) with whatever else of the tenant is waiting; the ids this request made new."""
        if len(events) > self.max_events // 10:
            return await self._commit(tenant, events)
        lane = self._lanes.get(tenant)
        if lane is None:
            lane = self._lanes[tenant] = _Lane()
        request = _Request(events, asyncio.get_running_loop().create_future())
        lane.waiting.append(request)
        if lane.running < self.inflight:
            lane.running += 1
            task = asyncio.get_running_loop().create_task(self._drive(tenant, lane), name=f"group-commit:{tenant}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await asyncio.shield(request.answer)

    async def _drive(self, tenant: str, lane: _Lane) -> None:
        """Commit the lane's waiting requests, group after group, until none waits."""
        try:
            while lane.waiting:
                group = self._take(lane)
                await self._run(tenant, group)
        except asyncio.CancelledError:
            for request in lane.waiting:
                _fail(request, ServiceUnavailable("the server is stopping; nothing was stored: retry",
                                                  code="shutting_down"))
            lane.waiting.clear()
            raise
        finally:
            lane.running -= 1
            if not lane.running and not lane.waiting:
                self._lanes.pop(tenant, None)

    def _take(self, lane: _Lane) -> list[_Request]:
        """The next group: waiting requests in arrival order, up to ``max_events`` events (at least one request)."""
        group: list[_Request] = []
        count = 0
        while lane.waiting and (not group or count + len(lane.waiting[0].events) <= self.max_events):
            request = lane.waiting.pop(0)
            group.append(request)
            count += len(request.events)
        return group

    async def _run(self, tenant: str, group: list[_Request]) -> None:
        """One shared commit for the group; each request answered with the ids it made new."""
        owner: dict[str, _Request] = {}
        for request in group:
            for event in request.events:
                owner.setdefault(event.event_id, request)
        events = [event for request in group for event in request.events if owner[event.event_id] is request]
        try:
            fresh = await self._commit(tenant, events)
        except asyncio.CancelledError:
            for request in group:
                _fail(request, ServiceUnavailable("the server is stopping; nothing was stored: retry",
                                                  code="shutting_down"))
            raise
        except ServiceUnavailable as exc:  # the database is away or busy: every request of the group gets it
            for request in group:
                _fail(request, exc)
            return
        except Exception as exc:
            if len(group) == 1:
                _fail(group[0], exc)
                return
            log.warning("ingest.group_failed", extra={"tenant": tenant, "requests": len(group),
                                                      "error": type(exc).__name__})
            for request in group:  # alone, so that one request's failure stays its own
                try:
                    _answer(request, await self._commit(tenant, request.events))
                except Exception as alone:
                    _fail(request, alone)
            return
        mine: dict[int, set[str]] = {id(request): set() for request in group}
        for event_id in fresh:
            mine[id(owner[event_id])].add(event_id)
        for request in group:
            _answer(request, mine[id(request)])


def _answer(request: _Request, fresh: set[str]) -> None:
    if not request.answer.done():
        request.answer.set_result(fresh)


def _fail(request: _Request, exc: BaseException) -> None:
    if not request.answer.done():
        request.answer.set_exception(exc)
        request.answer.exception()  # retrieved here: a request that went away must not log it as lost

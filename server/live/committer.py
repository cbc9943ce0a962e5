"""Group commit: concurrent small ingest requests of one tenant share one transaction.

A connector that posts each event as it happens sends many one-event requests at
once; one transaction each costs PostgreSQL a commit, a tenant binding and a
statement per event, and the pool a connection per request. Here the requests of a
tenant that arrive while its commit is in flight wait in its lane and are stored
together by the next commit (one transaction, one ``events_store`` statement, one
``apply.lua`` call; one round trip to PostgreSQL, through the ``ingest`` routine, see
recorder.py), and each request is answered once that shared commit is done:
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

- **The next group stores while the last one applies**: a commit holds its lane's slot only
  while it stores in PostgreSQL; once its transaction committed (``stored``), the next group of
  the lane starts storing while this one is applied to Redis. Commits of one tenant
  wait for each other on the same rollup rows anyway; the Redis apply (a round trip to a server
  that may be busy) no longer adds to that cycle.
- **Answered once durable, ahead of the apply**: a group's requests are answered as soon as its
  transaction committed, while its apply to Redis runs on (the answer promises durability, which
  the commit gives; the apply's own failures were never the request's: the healer repairs them from
  the batch's pending marker). The poster still reads what it posted from this process: the live reads
  here wait for the tenant's applies in flight (:meth:`LiveState.settled`). At most ``apply_ahead``
  groups of a lane are answered ahead of their apply at once; the next ones are answered after it, so
  a slow Redis slows the tenant's answers down rather than piling up unapplied groups in memory. With
  ``apply_ahead`` 0 every request is answered after its apply.

Trade-off: at most ``inflight`` commits per tenant store at once; the rest queue behind
them in the lane. A tenant flooding small requests therefore holds at most that many
database connections, whatever its request rate. Its groups being applied to Redis are not
bounded by it: there are as many as groups whose transactions committed and whose apply
has not ended yet (each one ``apply.lua`` call): at most ``apply_ahead`` whose requests were
answered, and those whose requests still wait (bounded by its clients' own concurrency); live state
applies them in any order, as it does the commits of concurrent requests.
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

CLOSE_GRACE_S = 2.0  # longest close() lets the commits in flight end on their own

# (tenant, events unique by id, stored): stores and applies them, returns the new ids; calls ``stored``
# (when given) with the new ids once the events are committed, before the apply to the live state.
Commit = Callable[[str, Sequence[Event], Callable[[set[str]], None] | None], Awaitable[set[str]]]


@dataclass
class _Request:
    """One request's events in a lane, and where its answer goes."""

    events: Sequence[Event]
    answer: asyncio.Future[set[str]]


@dataclass
class _Lane:
    """A tenant's requests waiting for the next commit, and how many commits run for it."""

    waiting: list[_Request] = field(default_factory=list)
    running: int = 0  # commits storing (not yet committed in PostgreSQL)
    applying: int = 0  # commits stored and not yet applied
    ahead: int = 0  # of those, the ones whose requests were answered already


class GroupCommit:
    """Stores the events of concurrent requests of one tenant with one commit (see the module docstring)."""

    def __init__(self, commit: Commit, *, max_events: int = 1000, inflight: int = 1, apply_ahead: int) -> None:
        self._commit = commit  # stores and applies a batch of unique events, returns the new ids
        self.max_events = max_events
        self.inflight = max(1, inflight)
        self.apply_ahead = max(0, apply_ahead)
        self._lanes: dict[str, _Lane] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False

    async def close(self) -> None:
        """Lets the commits in flight end on their own for at most ``CLOSE_GRACE_S`` (a group committed and answered
        ahead of its apply reaches the live state now rather than at the healer's sweep), then ends the rest (their
        requests are answered 503: nothing they held is acknowledged); the requests still waiting get 503 too."""
        self._closing = True
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=CLOSE_GRACE_S)
        await background.stop(list(self._tasks))
        for lane in self._lanes.values():
            for request in lane.waiting:
                _fail(request, _stopping())
        self._lanes.clear()

    async def store(self, tenant: str, events: Sequence[Event]) -> set[str]:
        """Commit ``events`` (unique by id) with whatever else of the tenant is waiting; the ids this request made new."""
        if len(events) > self.max_events // 10:
            return await self._commit(tenant, events, None)
        if self._closing:
            raise _stopping()
        lane = self._lanes.get(tenant)
        if lane is None:
            lane = self._lanes[tenant] = _Lane()
        request = _Request(events, asyncio.get_running_loop().create_future())
        lane.waiting.append(request)
        self._start(tenant, lane)
        return await asyncio.shield(request.answer)

    def _start(self, tenant: str, lane: _Lane) -> None:
        """A commit for the lane's waiting requests when fewer than ``inflight`` of its commits are storing.

        The task takes its group when it first runs: requests that arrive meanwhile join it."""
        if lane.waiting and lane.running < self.inflight and not self._closing:
            lane.running += 1
            task = asyncio.get_running_loop().create_task(self._drive(tenant, lane), name=f"group-commit:{tenant}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _drive(self, tenant: str, lane: _Lane) -> None:
        """Commit one group of the lane; once it is stored, the lane's next group may start (see the module docstring)."""
        storing = True
        ahead = False

        def stored() -> bool:
            """The group committed: the lane's next group may store. True when the group is answered now."""
            nonlocal storing, ahead
            if not storing:
                return False
            storing = False
            lane.running -= 1
            lane.applying += 1
            if lane.ahead < self.apply_ahead:
                lane.ahead += 1
                ahead = True
            self._start(tenant, lane)
            return ahead

        try:
            if lane.waiting:
                await self._run(tenant, self._take(lane), stored)
        except asyncio.CancelledError:
            for request in lane.waiting:
                _fail(request, _stopping())
            lane.waiting.clear()
            raise
        finally:
            if storing:
                storing = False
                lane.running -= 1
                self._start(tenant, lane)
            else:
                lane.applying -= 1
                lane.ahead -= ahead
            if not lane.running and not lane.applying and not lane.waiting and self._lanes.get(tenant) is lane:
                del self._lanes[tenant]

    def _take(self, lane: _Lane) -> list[_Request]:
        """The next group: waiting requests in arrival order, up to ``max_events`` events (at least one request)."""
        group: list[_Request] = []
        count = 0
        while lane.waiting and (not group or count + len(lane.waiting[0].events) <= self.max_events):
            request = lane.waiting.pop(0)
            group.append(request)
            count += len(request.events)
        return group

    async def _run(self, tenant: str, group: list[_Request], stored: Callable[[], bool]) -> None:
        """One shared commit for the group; each request answered with the ids it made new (once its events are
        committed when ``stored`` says so, else once they are applied too)."""
        owner: dict[str, _Request] = {}
        for request in group:
            for event in request.events:
                owner.setdefault(event.event_id, request)
        events = [event for request in group for event in request.events if owner[event.event_id] is request]

        def answer(fresh: set[str]) -> None:
            mine: dict[int, set[str]] = {id(request): set() for request in group}
            for event_id in fresh:
                mine[id(owner[event_id])].add(event_id)
            for request in group:
                _answer(request, mine[id(request)])

        def committed(fresh: set[str]) -> None:
            if stored():
                answer(fresh)

        try:
            fresh = await self._commit(tenant, events, committed)
        except asyncio.CancelledError:
            for request in group:
                _fail(request, _stopping())
            raise
        except ServiceUnavailable as exc:  # the database is away or busy: every request of the group gets it
            for request in group:
                _fail(request, exc)
            return
        except Exception as exc:
            if all(request.answer.done() for request in group):  # answered once committed: its apply failed
                log.warning("ingest.apply_failed", extra={"tenant": tenant, "requests": len(group),
                                                          "error": type(exc).__name__})
                return
            if len(group) == 1:
                _fail(group[0], exc)
                return
            log.warning("ingest.group_failed", extra={"tenant": tenant, "requests": len(group),
                                                      "error": type(exc).__name__})
            for request in group:  # alone, so that one request's failure stays its own
                try:
                    _answer(request, await self._commit(tenant, request.events, None))
                except Exception as alone:
                    _fail(request, alone)
            return
        answer(fresh)


def _stopping() -> ServiceUnavailable:
    return ServiceUnavailable("the server is stopping; nothing was stored: retry", code="shutting_down")


def _answer(request: _Request, fresh: set[str]) -> None:
    if not request.answer.done():
        request.answer.set_result(fresh)


def _fail(request: _Request, exc: BaseException) -> None:
    if not request.answer.done():
        request.answer.set_exception(exc)
        request.answer.exception()  # retrieved here: a request that went away must not log it as lost

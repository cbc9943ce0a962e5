"""A tenant's live size budget: how many distinct queues and agents its live state may hold.

Every queue and agent of a tenant is a hash read and rendered at each of its ticks, a row of its
boards' documents and a share of Redis memory: a connector that sends events under thousands of
made-up queue or agent ids (a bug, or garbage) would make that tenant's renders cost the event
loop tens to hundreds of milliseconds per tick, which every other tenant's requests and sockets
would wait behind. So a tenant holds at most ``WALLBOARD_LIVE_QUEUES_MAX`` queues and
``WALLBOARD_LIVE_AGENTS_MAX`` agents in its live state (the members sets of keys.py, which
apply.lua fills); an event that would add one more is rejected on its own, before it is stored
(422 ``live_budget``, naming the field), and the rest of its batch goes on.

The check costs nothing while a batch names only ids this process has seen admitted; an unseen id
costs one pipelined round trip (SCARD and SMISMEMBER of the two sets). Concurrent batches may
each see room for their new ids, so a tenant can pass its budget by what its commits in flight
add at once (at most a few batches); the budget bounds cost, not an exact count. When Redis does
not answer, events are admitted: the live state is rebuilt from PostgreSQL once Redis is back.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from server.ingest.events import Event
from server.live.keys import Keys

log = logging.getLogger("wallboard.live")

TENANTS_KEPT = 1_000  # tenants whose admitted ids this process remembers (the least recent forgotten first)
CODE = "live_budget"


class _Seen:
    __slots__ = ("queues", "agents")

    def __init__(self) -> None:
        self.queues: set[str] = set()
        self.agents: set[str] = set()


class Roster:
    """Admits events whose queue and agent ids fit the tenant's live size budget."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, *, max_queues: int, max_agents: int) -> None:
        self.redis = redis
        self.keys = keys
        self.max_queues = max_queues
        self.max_agents = max_agents
        self._seen: OrderedDict[str, _Seen] = OrderedDict()

    async def admit(self, tenant: str, valid: Sequence[tuple[int, Event]]) -> tuple[list[tuple[int, Event]],
                                                                                   list[dict[str, object]]]:
        """The events that fit (in order) and the rejections of those that would pass the budget."""
        seen = self._seen.get(tenant)
        if seen is None:
            seen = self._seen[tenant] = _Seen()
            while len(self._seen) > TENANTS_KEPT:
                self._seen.popitem(last=False)
        else:
            self._seen.move_to_end(tenant)
        new_queues = {e.queue_id for _, e in valid if e.queue_id is not None and e.queue_id not in seen.queues}
        new_agents = {e.agent_id for _, e in valid if e.agent_id is not None and e.agent_id not in seen.agents}
        if not new_queues and not new_agents:
            return list(valid), []
        found = await self._found(tenant, sorted(new_queues), sorted(new_agents))
        if found is None:
            return list(valid), []
        (queues, queue_count), (agents, agent_count) = found
        seen.queues.update(queues)
        seen.agents.update(agents)
        # The members sets lag behind what this process admitted while the tenant's live state is
        # (re)built from PostgreSQL: the larger of the two counts.
        queue_room = [self.max_queues - max(queue_count, len(seen.queues))]
        agent_room = [self.max_agents - max(agent_count, len(seen.agents))]
        admitted: list[tuple[int, Event]] = []
        rejected: list[dict[str, object]] = []
        for i, e in valid:
            problem = (self._problem(e.queue_id, "queue_id", seen.queues, queue_room, self.max_queues, "queues")
                       or self._problem(e.agent_id, "agent_id", seen.agents, agent_room, self.max_agents, "agents"))
            if problem is not None:
                field, reason = problem
                rejected.append({"index": i, "event_id": e.event_id, "error": f"{field}: {reason}", "field": field,
                                 "code": CODE})
                continue
            for value, known, room in ((e.queue_id, seen.queues, queue_room), (e.agent_id, seen.agents, agent_room)):
                if value is not None and value not in known:
                    known.add(value)
                    room[0] -= 1
            admitted.append((i, e))
        return admitted, rejected

    @staticmethod
    def _problem(value: str | None, field: str, known: set[str], room: list[int], limit: int,
                 what: str) -> tuple[str, str] | None:
        """None when ``value`` is known or there is room for it; else the field and the reason to refuse it."""
        if value is None or value in known or room[0] > 0:
            return None
        return field, (f"the tenant's live state holds {limit} {what}, its budget (WALLBOARD_LIVE_"
                       f"{what.upper()}_MAX): an event of a new one is refused; use the ids already in use, or "
                       f"raise the budget")

    async def _found(self, tenant: str, queues: list[str], agents: list[str]) -> tuple[
            tuple[list[str], int], tuple[list[str], int]] | None:
        """Of the ids not seen here, those already in the live state; and how many queues and agents it holds."""
        t = self.keys.of(tenant)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.scard(t.queues)
                if queues:
                    pipe.smismember(t.queues, queues)
                pipe.scard(t.agents)
                if agents:
                    pipe.smismember(t.agents, agents)
                answers: list[Any] = await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("roster.unchecked", extra={"tenant": tenant, "error": type(exc).__name__})
            return None
        queue_count = int(answers.pop(0))
        queue_known = answers.pop(0) if queues else []
        agent_count = int(answers.pop(0))
        agent_known = answers.pop(0) if agents else []
        return (([q for q, k in zip(queues, queue_known, strict=True) if k], queue_count),
                ([a for a, k in zip(agents, agent_known, strict=True) if k], agent_count))

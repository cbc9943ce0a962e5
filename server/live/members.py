"""The last known queues and agents of each tenant: which per-queue and per-agent keys a read declares.

read.lua and checksum.lua read one hash per queue and per agent of the tenant. Redis wants every
key a script touches passed in KEYS, so the caller must name them before the script runs, and only
the tenant's members sets (``queues``, ``agents``) say which there are. This process keeps, per
tenant, the members its previous read found, and declares their keys; the script compares the
members sets with what was declared and, when they differ, reads nothing else and answers the
current members instead (``{ready, "members", queues, agents}``): the caller learns them here and
calls again. In the steady state a read stays one round trip; a new queue or agent costs one more.

Trade-offs, stated plainly: the members of up to ``MEMBERS_CACHED`` tenants are kept (the oldest
learnt forgotten first: its next read takes one more round trip); the key names of a read are
built once per (day, interval, kind of read) and kept with the members, since they change only
with those.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from server.live.keys import TenantKeys

MEMBERS_CACHED = 10_000
CHANGED = b"members"  # the second element of a script's answer when the members sets differ from what was declared


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Members:
    """One tenant's queues and agents as last seen, with the read keys built from them."""

    __slots__ = ("queues", "agents", "_built")

    def __init__(self, queues: Sequence[str] = (), agents: Sequence[str] = ()) -> None:
        self.queues = tuple(queues)
        self.agents = tuple(agents)
        self._built: dict[tuple[str, str, int, bool], tuple[list[str], list[Any]]] = {}

    def read_call(self, t: TenantKeys, day: str, interval: int, changes: bool) -> tuple[list[str], list[Any]]:
        """KEYS and the member ARGV of read.lua (see its header) for the members known."""
        sig = (t.p, day, interval, changes)
        built = self._built.get(sig)
        if built is None:
            keys = [t.ready, t.queues, t.agents, t.tenant_day(day), t.callbacks, t.callbacks_pending]
            for q in self.queues:
                keys += (t.queue_day(day, q), t.queue_interval(interval, q), t.waiting(q))
            for a in self.agents:
                keys += (t.agent(a), t.agent_day(day, a), t.agent_changes(a)) if changes else (t.agent(a),
                                                                                             t.agent_day(day, a))
            if len(self._built) >= 4:  # a new day or interval: the old ones are done with
                self._built.clear()
            built = self._built[sig] = (keys, [len(self.queues), *self.queues, *self.agents])
        return built

    def checksum_keys(self, t: TenantKeys, day: str) -> list[str]:
        """KEYS of checksum.lua (see its header); its ARGV is the queues."""
        return [t.ready, t.queues, t.tenant_day(day), t.callbacks, t.callbacks_pending,
                *(t.queue_day(day, q) for q in self.queues)]


class MembersCache:
    """The members of the tenants this process read lately."""

    def __init__(self, size: int = MEMBERS_CACHED) -> None:
        self.size = size
        self._known: dict[str, Members] = {}

    def get(self, tenant: str) -> Members:
        return self._known.get(tenant) or Members()

    def learn(self, tenant: str, answer: list[Any], agents_too: bool = True) -> Members:
        """The members a script answered with (``answer[2]`` the queues, ``answer[3]`` the agents)."""
        queues = sorted(_text(q) for q in answer[2])
        agents = sorted(_text(a) for a in answer[3]) if agents_too else self.get(tenant).agents
        self._known.pop(tenant, None)  # learnt again: the newest
        found = self._known[tenant] = Members(queues, agents)
        while len(self._known) > self.size:
            del self._known[next(iter(self._known))]
        return found

    def forget(self, tenant: str) -> None:
        self._known.pop(tenant, None)

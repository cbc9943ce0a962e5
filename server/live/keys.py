"""Every Redis key and channel the server uses, from one prefix.

All keys of a tenant share the hash tag ``{tenant}``, so a tenant's keys sit
in one Redis Cluster slot and one Lua script may touch them all. The Lua
scripts build the same names from :meth:`Keys.tenant_prefix`; the layout
below is the single description of both sides.

    {p}:{t}:ready              live state is complete (absent: rebuild from PostgreSQL)
    {p}:{t}:queues / agents    ids seen
    {p}:{t}:call:{q}:{c}       one queue leg: qts, ats, bts, cts, agent, aday, aiv, bday, biv
    {p}:{t}:wait:{q}           zset call_id → queued ts (calls waiting)
    {p}:{t}:qd:{day}:{q}       counters of a queue for a tenant day
    {p}:{t}:qi:{ms}:{q}        counters of a queue for a 15-minute interval
    {p}:{t}:td:{day}           tenant-day counters that belong to no queue (CSAT, quality)
    {p}:{t}:ag:{a}             an agent: state, reason, since, name, team, queues, call_id, queue_id
    {p}:{t}:agt:{a}            zset of the agent's state changes ("ts|state|reason" by ts)
    {p}:{t}:ad:{day}:{a}       an agent's counters for a tenant day
    {p}:{t}:seen:{day}         event ids of CSAT/quality events applied (they have no natural key)
    {p}:{t}:rebuild            lock held while the state is rebuilt
    {p}:changes                pub/sub channel: the tenant id, after each applied batch
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    prefix: str

    @property
    def changes(self) -> str:
        """The pub/sub channel on which every applied batch announces its tenant."""
        return f"{self.prefix}:changes"

    def tenant_prefix(self, tenant: str) -> str:
        return f"{self.prefix}:{{{tenant}}}:"

    def ready(self, tenant: str) -> str:
        return self.tenant_prefix(tenant) + "ready"

    def rebuild_lock(self, tenant: str) -> str:
        return self.tenant_prefix(tenant) + "rebuild"

    def tenant_pattern(self, tenant: str) -> str:
        """A SCAN pattern matching every key of the tenant (for flushes in tests and tools)."""
        return self.tenant_prefix(tenant).replace("{", "\\{").replace("}", "\\}") + "*"

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
    {p}:alerts                 pub/sub channel: "<tenant>\n<alert message>", delivered by every hub
    {p}:analytics:tenants      zset tenant → last change seen (ms): whom forecasts and anomaly checks cover
    {p}:{t}:staffing:{ms}      marker: forecast staffing written into the qi hashes of interval ms
    {p}:alertstate:{t}:open    set of the threshold conditions raised and not cleared ("q|metric|level")
    {p}:alertstate:{t}:c:{q|m|l}  one threshold condition: at = the newest observation that decided it (ms)
    {p}:alertstate:{t}:checked:{ms}  marker: the interval starting at ms was checked against its forecast
    (alerts sit outside the tenant pattern, so a rebuild of the live state neither forgets an
    open alert nor re-checks an interval; they share the tenant's hash tag all the same)
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

    @property
    def alerts(self) -> str:
        """The pub/sub channel of alerts: ``<tenant>\n<the encoded alert message>``."""
        return f"{self.prefix}:alerts"

    @property
    def rate_prefix(self) -> str:
        """Prefix of the request-budget counters (the ``limits`` library builds the rest)."""
        return f"{self.prefix}:rate"

    def tenant_prefix(self, tenant: str) -> str:
        return f"{self.prefix}:{{{tenant}}}:"

    def ready(self, tenant: str) -> str:
        return self.tenant_prefix(tenant) + "ready"

    def rebuild_lock(self, tenant: str) -> str:
        return self.tenant_prefix(tenant) + "rebuild"

    def tenant_pattern(self, tenant: str) -> str:
        """A SCAN pattern matching every key of the tenant (for flushes in tests and tools)."""
        return self.tenant_prefix(tenant).replace("{", "\\{").replace("}", "\\}") + "*"

    # -- analytics (forecasts, anomalies, threshold alerts) ---------------

    @property
    def active_tenants(self) -> str:
        return f"{self.prefix}:analytics:tenants"

    def alerts_prefix(self, tenant: str) -> str:
        return f"{self.prefix}:alertstate:{{{tenant}}}:"

    def alerts_open(self, tenant: str) -> str:
        return self.alerts_prefix(tenant) + "open"

    def anomaly_checked(self, tenant: str, interval_ms: int) -> str:
        return self.alerts_prefix(tenant) + f"checked:{interval_ms}"

    def staffing_written(self, tenant: str, interval_ms: int) -> str:
        return self.tenant_prefix(tenant) + f"staffing:{interval_ms}"

    def queue_interval(self, tenant: str, interval_ms: int, queue_id: str) -> str:
        """The counters of a queue's 15-minute interval (apply.lua writes them; the forecast adds its staffing)."""
        return self.tenant_prefix(tenant) + f"qi:{interval_ms}:{queue_id}"

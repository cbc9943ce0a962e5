"""Every Redis key and channel the server uses, from one prefix.

All keys of a tenant share the hash tag ``{tenant}``, so a tenant's keys sit
in one Redis Cluster slot and one Lua script may touch them all. This module
is the only place that builds a name: every key a Lua script touches is
computed here and passed to it in KEYS (the EVAL contract that Redis Cluster,
proxies and servers which lock only declared keys rely on), never built inside
the script from a prefix. ``{t}`` stands for the tenant prefix ``{tenant}:v3``
(hash tag, then the layout version).

No two ids can make one name: a tenant id has no ``:`` or braces (the token's
``client_id`` pattern), every other name has at most one free id and it comes
last, and the one name with two ids (a call leg) length-prefixes the first. The
layout version changes whenever a name changes: a server with a new layout finds
no ``ready`` key and rebuilds each tenant's live state from PostgreSQL on first
touch, instead of counting on top of keys it would no longer read (the old ones
expire or go with the next reset rebuild, whose pattern covers every layout).

    {p}:{t}:ready              live state is complete (absent: rebuild from PostgreSQL)
    {p}:{t}:queues / agents    ids seen
    {p}:{t}:call:{n}:{q}:{c}   one queue leg: qts, ats, bts, cts, agent, aday, aiv, bday, biv
                               ({n}: the queue id's length in UTF-8 bytes)
    {p}:{t}:wait:{q}           zset call_id → queued ts (calls waiting)
    {p}:{t}:cb                 hash callback_id → pending callback (JSON)
    {p}:{t}:cbn                hash queue_id → pending callbacks of the queue (the records of cb, counted)
    {p}:{t}:qd:{day}:{q}       counters of a queue for a tenant day
    {p}:{t}:qi:{ms}:{q}        counters of a queue for a 15-minute interval
    {p}:{t}:td:{day}           tenant-day counters that belong to no queue (CSAT, quality)
    {p}:{t}:ag:{a}             an agent: state, reason, since, name, team, queues, call_id, queue_id,
                               hold (when its call went on hold, ms; absent when not on hold)
    {p}:{t}:agt:{a}            zset of the agent's state changes ("ts|state|reason" by ts)
    {p}:{t}:ad:{day}:{a}       an agent's counters for a tenant day
    {p}:{t}:seen:{day}         event ids of CSAT/quality/activity events applied (they have no natural key)
    {p}:{t}:hold:{c}           a call's hold state "ts|flag|event id" (1 on hold, 0 off; the newest ts wins)
    {p}:{t}:cbl:{id}           one callback: req / done, once known (a completion that came first wins)
    {p}:{t}:rebuild            lock held while the state is rebuilt
    {p}:{t}:heal:{job}         lock of one repair job for the tenant (sweep, reconcile), with expiry
    {p}:generation             the Redis run_id the live state was last verified for (absent or another
                               run_id: this Redis restarted, empty or from a snapshot; see heal.py)
    {p}:generation:lock        held by the one process verifying a new generation
    {p}:changes                pub/sub channel: the tenant id, after each applied batch
    {p}:alerts                 pub/sub channel: "<tenant>\n<alert message>", delivered by every hub
    {p}:changes:{tag} / {p}:alerts:{tag}   on a Redis Cluster, the same as sharded channels (SPUBLISH):
                               one pair per range of 256 hash slots, its {tag} a string whose slot is in
                               the range, so a tenant's channels sit on the shard that holds its keys
    {p}:rate:{LIMITER/…}       request budgets, named by the ``limits`` library after rate_prefix: the
                               hash tag is the budget's own name (its two windows share one slot)
    {p}:analytics:tenants      zset tenant → last change seen (ms): whom forecasts and anomaly checks cover
    {p}:retention:claim        marker with expiry: the process that set it sweeps retention this period
    {p}:{t}:staffing:{ms}      marker: forecast staffing written into the qi hashes of interval ms
    {p}:alertstate:{t}:open    set of the threshold conditions raised and not cleared ("q|metric|level")
    {p}:alertstate:{t}:c:{q|m|l}  one threshold condition: at = the newest observation that decided it (ms)
    {p}:alertstate:{t}:checked:{ms}  marker: the interval starting at ms was checked against its forecast
    (alerts sit outside the tenant pattern, so a rebuild of the live state neither forgets an
    open alert nor re-checks an interval; they share the tenant's hash tag all the same)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

LAYOUT = 3  # version of the key names below; a change makes every tenant rebuild its live state
CHANNEL_SHARDS = 64  # sharded channels per kind on a Redis Cluster (each covers 256 hash slots)
SLOTS_PER_CHANNEL = REDIS_CLUSTER_HASH_SLOTS // CHANNEL_SHARDS


@cache
def channel_tags() -> tuple[str, ...]:
    """For each range of SLOTS_PER_CHANNEL hash slots, the smallest decimal string whose slot is in it."""
    tags: dict[int, str] = {}
    n = 0
    while len(tags) < CHANNEL_SHARDS:
        tags.setdefault(key_slot(str(n).encode()) // SLOTS_PER_CHANNEL, str(n))
        n += 1
    return tuple(tags[i] for i in range(CHANNEL_SHARDS))


def tenant_tag(tenant: str) -> str:
    """The hash tag of the sharded channels of the tenant: one in the slot range of its keys."""
    return channel_tags()[key_slot(tenant.encode()) // SLOTS_PER_CHANNEL]


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

    def changes_shard(self, tenant: str) -> str:
        """On a Redis Cluster: the sharded channel on which the tenant's applied batches are announced."""
        return f"{self.prefix}:changes:{{{tenant_tag(tenant)}}}"

    def alerts_shard(self, tenant: str) -> str:
        """On a Redis Cluster: the sharded channel of the tenant's alerts."""
        return f"{self.prefix}:alerts:{{{tenant_tag(tenant)}}}"

    def shard_channels(self) -> list[str]:
        """Every sharded channel (changes, then alerts): what each process subscribes to on a cluster."""
        tags = channel_tags()
        return [f"{self.prefix}:changes:{{{t}}}" for t in tags] + [f"{self.prefix}:alerts:{{{t}}}" for t in tags]

    @property
    def rate_prefix(self) -> str:
        """Prefix of the request-budget counters (the ``limits`` library builds the rest)."""
        return f"{self.prefix}:rate"

    def tenant_prefix(self, tenant: str) -> str:
        return f"{self.prefix}:{{{tenant}}}:v{LAYOUT}:"

    def ready(self, tenant: str) -> str:
        return self.tenant_prefix(tenant) + "ready"

    def rebuild_lock(self, tenant: str) -> str:
        return self.tenant_prefix(tenant) + "rebuild"

    def heal_lock(self, tenant: str, job: str) -> str:
        return self.tenant_prefix(tenant) + f"heal:{job}"

    @property
    def generation(self) -> str:
        return f"{self.prefix}:generation"

    @property
    def generation_lock(self) -> str:
        return f"{self.prefix}:generation:lock"

    def tenant_pattern(self, tenant: str) -> str:
        """A SCAN pattern matching every key of the tenant (for flushes in tests and tools)."""
        return f"{self.prefix}:\\{{{tenant}\\}}:*"  # every layout's keys, not only this one's

    # -- analytics (forecasts, anomalies, threshold alerts) ---------------

    @property
    def retention_claim(self) -> str:
        """Marker with expiry: the process that set it runs this period's retention sweep."""
        return f"{self.prefix}:retention:claim"

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

    def of(self, tenant: str) -> TenantKeys:
        """The names of one tenant's live keys (what the Lua scripts are given in KEYS)."""
        return TenantKeys(self.tenant_prefix(tenant))

    def callbacks(self, tenant: str) -> str:
        """hash callback_id → pending callback (JSON)"""
        return self.of(tenant).callbacks

    def call_leg(self, tenant: str, queue_id: str, call_id: str) -> str:
        """One queue leg of a call: the queue id length-prefixed."""
        return self.of(tenant).leg(queue_id, call_id)

    def queue_interval(self, tenant: str, interval_ms: int, queue_id: str) -> str:
        """The counters of a queue's 15-minute interval (apply.lua writes them; the forecast adds its staffing)."""
        return self.of(tenant).queue_interval(interval_ms, queue_id)

    def alert_condition(self, tenant: str, condition: str) -> str:
        """One threshold condition ("queue|metric|level"): the newest observation that decided it."""
        return self.alerts_prefix(tenant) + f"c:{condition}"


class TenantKeys:
    """The live keys of one tenant (the layout above), built from its prefix ``{p}:{t}:``."""

    __slots__ = ("p", "ready", "queues", "agents", "callbacks", "callbacks_pending")

    def __init__(self, prefix: str) -> None:
        self.p = prefix
        self.ready = prefix + "ready"
        self.queues = prefix + "queues"
        self.agents = prefix + "agents"
        self.callbacks = prefix + "cb"
        self.callbacks_pending = prefix + "cbn"

    def leg(self, queue_id: str, call_id: str) -> str:
        return f"{self.p}call:{len(queue_id.encode())}:{queue_id}:{call_id}"

    def waiting(self, queue_id: str) -> str:
        return f"{self.p}wait:{queue_id}"

    def queue_day(self, day: str, queue_id: str) -> str:
        return f"{self.p}qd:{day}:{queue_id}"

    def queue_interval(self, interval_ms: int | str, queue_id: str) -> str:
        return f"{self.p}qi:{interval_ms}:{queue_id}"

    def tenant_day(self, day: str) -> str:
        return f"{self.p}td:{day}"

    def agent(self, agent_id: str) -> str:
        return f"{self.p}ag:{agent_id}"

    def agent_changes(self, agent_id: str) -> str:
        return f"{self.p}agt:{agent_id}"

    def agent_day(self, day: str, agent_id: str) -> str:
        return f"{self.p}ad:{day}:{agent_id}"

    def seen(self, day: str) -> str:
        return f"{self.p}seen:{day}"

    def hold(self, call_id: str) -> str:
        return f"{self.p}hold:{call_id}"

    def callback(self, callback_id: str) -> str:
        return f"{self.p}cbl:{callback_id}"

"""Rings, ring-no-answer, holds, callbacks and revenue: exact live and in history, whatever the delivery order."""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
import redis.asyncio as aioredis

from server.core.db import query
from server.core.tenant_settings import TenantSettings
from server.live.keys import Keys

from .conftest import RunningServer
from .live_reference import hold_ms_of, ms
from .test_cli import run
from .test_live_exact import day_started_hours_ago, live_documents, new_tenant, post_all, put_settings
from .test_seed_history import rollups, tenant_conn

QUEUES = ("sales", "support", "billing")
AGENTS = tuple(f"ag{i}" for i in range(6))


def team_of(agent: str) -> str:
    return f"team-{int(agent[2:]) % 2}"


def scenario(start: int, rng: random.Random) -> list[dict[str, Any]]:
    """Calls that ring, ring out, get answered, held and completed (with or without revenue), and callbacks.

    Each agent's last call stays open (on the call, maybe on hold); every earlier one is completed.
    """
    out: list[dict[str, Any]] = []
    n = 0

    def ev(kind: str, ts: int, **fields: Any) -> None:
        nonlocal n
        n += 1
        out.append({"event_id": f"e{n}", "type": kind, "ts": ts, **fields})

    for agent in AGENTS:
        ev("agent.state", start, agent_id=agent, state="available", queues=list(QUEUES), team=team_of(agent))
    t = {a: start + 1000 for a in AGENTS}
    for c in range(240):
        agent = AGENTS[c % len(AGENTS)]
        q = rng.choice(QUEUES)
        call = f"c{c}"
        at = t[agent] + rng.randint(1000, 5000)
        ev("call.queued", at, call_id=call, queue_id=q)
        if rng.random() < 0.3:  # rings at another agent first, who lets it ring out
            other = rng.choice([a for a in AGENTS if a != agent])
            ev("call.offered", at + 100, call_id=call, queue_id=q, agent_id=other)
            ring = {"ring_s": round(rng.uniform(5, 30), 3)} if rng.random() < 0.8 else {}
            ev("call.missed", at + 200, call_id=call, queue_id=q, agent_id=other, **ring)
        ev("call.offered", at + 300, call_id=call, queue_id=q, agent_id=agent)
        ev("call.answered", at + 400, call_id=call, queue_id=q, agent_id=agent)
        ev("agent.state", at + 401, agent_id=agent, state="on_call", call_id=call, queue_id=q, team=team_of(agent))
        span = at + 500
        for _ in range(rng.randint(0, 3)):
            where = {"queue_id": q} if rng.random() < 0.6 else {}
            ev("call.hold", span, call_id=call, agent_id=agent, **where)
            if rng.random() < 0.15:  # on hold again while on hold: the span counts from the first
                ev("call.hold", span + rng.randint(0, 3000), call_id=call, agent_id=agent, **where)
            span += rng.randint(1000, 20_000)
            ev("call.unhold", span, call_id=call, agent_id=agent, **where)
            if rng.random() < 0.1:  # an unhold while off hold changes nothing
                ev("call.unhold", span + 700, call_id=call, agent_id=agent, **where)
            span += 1500  # some intervals between two holds cross a 15-minute boundary: the span is on the completion
        last = c >= 240 - len(AGENTS)
        if last:
            if rng.random() < 0.6:
                ev("call.hold", span, call_id=call, agent_id=agent)
        else:
            if rng.random() < 0.15:  # still on hold at the completion: the span runs to it
                ev("call.hold", span, call_id=call, queue_id=q, agent_id=agent)
            money = rng.choice([{}, {"revenue": 0}, {"revenue": round(rng.uniform(1, 500), 2)}, {"revenue": 19.995}])
            # hold_s 0 with hold events (queue_log), a connector's own total, or a total with no hold events at all
            hold_s = rng.choice([0.0, 5.0, round(rng.uniform(1, 90), 3)])
            ev("call.completed", span + 1000, call_id=call, queue_id=q, agent_id=agent, talk_s=60.0, hold_s=hold_s,
               wrap_s=10.0, **money)
            ev("agent.state", span + 1000, agent_id=agent, state="available", team=team_of(agent))
            if rng.random() < 0.1:  # after the completion: not part of its hold time
                ev("call.hold", span + 1200, call_id=call, queue_id=q, agent_id=agent)
                ev("call.unhold", span + 1400, call_id=call, queue_id=q, agent_id=agent)
        t[agent] = span + 2000
    for b in range(60):
        q = rng.choice(QUEUES)
        at = start + rng.randint(1000, 600_000)
        due = {"due_ts": datetime.fromtimestamp((at + 3_600_000) / 1000, UTC).isoformat()} if b % 2 else {}
        ev("callback.requested", at, callback_id=f"cb{b}", queue_id=q, **due)
        if b % 3:
            who = {"agent_id": rng.choice(AGENTS)} if b % 4 else {}
            ev("callback.completed", at + rng.randint(-5000, 90_000), callback_id=f"cb{b}", queue_id=q,
               outcome=rng.choice(["reached", "no_answer", "cancelled"]), **who)
    return out


def recount(events: list[dict[str, Any]]) -> dict[str, Any]:
    """What METRICS.md says each figure is, counted by hand from the events (all of them lie in today)."""
    q: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    agent_day: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    # hold and handle time per completion, on the 15-minute interval of the completion
    held = hold_ms_of(events)
    intervals: dict[tuple[str, str, int], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    current: dict[str, tuple[int, str, str, str]] = {}  # agent → its newest state: (ts, event id, call, queue)
    holds: dict[str, tuple[int, str, bool]] = {}
    requested: dict[str, str] = {}
    closed: set[str] = set()
    for e in events:
        t, queue, agent = e["type"], e.get("queue_id"), e.get("agent_id")
        where = [d for d in (q[queue] if queue else None, agent_day[agent] if agent else None) if d is not None]
        fields = {"call.offered": ["rings"], "call.missed": ["missed"], "call.hold": ["holds"],
                  "callback.requested": ["callbacks_requested"], "callback.completed": ["callbacks_completed"]}
        for d in where:
            for f in fields.get(t, []):
                d[f] += 1
            if t == "call.missed":
                d["missed_ring_ms"] += round(e.get("ring_s", 0) * 1000)
            if t == "callback.completed" and e["outcome"] == "reached":
                d["callbacks_reached"] += 1
            if t == "call.completed" and "revenue" in e:
                cents = int((Decimal(str(e["revenue"])) * 100).quantize(Decimal(1), ROUND_HALF_UP))
                d["revenue_cents"] += cents
                d["converted"] += cents > 0
        if t == "call.completed":
            q[queue]["handled"] += 1
            agent_day[agent]["handled"] += 1
            hold = held[e["event_id"]]
            handle = round(e["talk_s"] * 1000) + hold + round(e["wrap_s"] * 1000)
            cell = ms(e["ts"]) // 900_000 * 900_000
            for d in (q[queue], agent_day[agent], intervals[("queue", queue, cell)], intervals[("agent", agent, cell)]):
                d["hold_ms"] += hold
                d["handle_ms"] += handle
        if t == "agent.state" and (ms(e["ts"]), e["event_id"]) > current.get(agent, (0, "", "", ""))[:2]:
            current[agent] = (ms(e["ts"]), e["event_id"], e.get("call_id", ""), e.get("queue_id", ""))
        if t in ("call.hold", "call.unhold") and (ms(e["ts"]), e["event_id"]) > holds.get(e["call_id"], (0, ""))[:2]:
            holds[e["call_id"]] = (ms(e["ts"]), e["event_id"], t == "call.hold")
        if t == "callback.requested":
            requested[e["callback_id"]] = queue
        if t == "callback.completed":
            closed.add(e["callback_id"])
    on_hold: dict[str, int] = defaultdict(int)
    for _, _, call, queue in current.values():
        if call and holds.get(call, (0, "", False))[2]:
            on_hold[queue] += 1
    pending: dict[str, int] = defaultdict(int)
    for cb, queue in requested.items():
        if cb not in closed:
            pending[queue] += 1
    return {"queues": q, "agents": agent_day, "on_hold": on_hold, "pending": pending, "intervals": intervals,
            "held_agents": {a: holds[call][0] for a, (_, _, call, _) in current.items()
                            if call and holds.get(call, (0, "", False))[2]}}


def assert_live(overview: dict[str, Any], agents: list[dict[str, Any]], ref: dict[str, Any]) -> None:
    by_queue = {row["queue_id"]: row for row in overview["queues"]}
    for name in QUEUES:
        row, counted = by_queue[name], ref["queues"][name]
        assert row["today"]["missed"] == counted["missed"], name
        assert row["today"]["missed_rate"] == pytest.approx(counted["missed"] / counted["rings"]), name
        assert row["on_hold"] == ref["on_hold"][name], (name, row["on_hold"], ref["on_hold"][name])
        assert row["callbacks_pending"] == ref["pending"][name], name
        aht = counted["handle_ms"] / counted["handled"] / 1000
        assert row["today"]["aht_s"] == pytest.approx(aht, rel=1e-12, abs=1e-9), name
    assert overview["today"]["on_hold"] == sum(ref["on_hold"].values())
    assert overview["today"]["callbacks_pending"] == sum(ref["pending"].values())
    listed = {a["agent_id"]: a for a in agents}
    for agent in AGENTS:
        assert listed[agent]["today"]["missed"] == ref["agents"][agent]["missed"], agent
        assert listed[agent]["today"]["offers"] == ref["agents"][agent]["rings"], agent
        figures = ref["agents"][agent]
        assert listed[agent]["today"]["aht_s"] == pytest.approx(figures["handle_ms"] / figures["handled"] / 1000,
                                                                 rel=1e-12, abs=1e-9), agent
        assert listed[agent]["on_hold"] == (agent in ref["held_agents"]), agent
        since = listed[agent]["on_hold_since"]
        assert (ms(since) if since else None) == ref["held_agents"].get(agent), agent


def batches_apart(later: int, earlier: int, size: int = 173) -> bool:
    """Whether the event at position ``later`` of the stream was posted in a batch after the one at ``earlier``."""
    return later // size > earlier // size


def rebuild_live(server: RunningServer, tenant: str) -> None:
    """`wallboard rebuild-live --tenant T`, run as a command against the test server's PostgreSQL and Redis."""
    env = {"DATABASE_URL": server.settings.database_url or "", "REDIS_URL": server.settings.redis_url or "",
           "WALLBOARD_KEY_PREFIX": server.settings.key_prefix, "WALLBOARD_JWT_SECRET": server.settings.jwt_secret or ""}
    result = run(["rebuild-live", "--tenant", tenant], env, timeout=120)
    assert result.returncode == 0, result.stderr


COUNTED = ("rings", "missed", "missed_ring_ms", "holds", "callbacks_requested", "callbacks_completed",
           "callbacks_reached", "revenue_cents", "converted", "hold_ms", "handle_ms")


@pytest.mark.timeout(300)
async def test_new_event_types_shuffled_with_duplicates_equal_a_recount(server: RunningServer) -> None:
    """Every new event type, shuffled with 5 % duplicates: live, rollups and revenue equal a recount, and again
    after `wallboard rebuild-live` and a rebuild of the rollups."""
    tenant = new_tenant("activity")
    starts_at, day_start = day_started_hours_ago(3)
    await put_settings(server, tenant, day_starts_at=starts_at, timezone="UTC")
    rng = random.Random(17)
    events = scenario(day_start + 60_000, rng)
    assert max(ms(e["ts"]) for e in events) < time.time() * 1000
    stream = events + rng.sample(events, len(events) // 20)
    rng.shuffle(stream)
    batches = [stream[i:i + 173] for i in range(0, len(stream), 173)]
    async with server.client(server.token(tenant, "ingest")) as client:
        totals = await post_all(client, batches)
    assert (totals["accepted"], totals["duplicates"]) == (len(events), len(stream) - len(events))
    ref = recount(events)
    # the scenario covers what the hold rule distinguishes: holds that came in after their completion was
    # stored, calls with holds and hold_s 0, and calls with hold_s and no hold events
    arrived = {e["event_id"]: i for i, e in reversed(list(enumerate(stream)))}
    done = {(e["call_id"], e["queue_id"]): e for e in events if e["type"] == "call.completed"}
    late = [e for e in events if e["type"] in ("call.hold", "call.unhold") and (e["call_id"], e.get("queue_id")) in done
            and batches_apart(arrived[e["event_id"]], arrived[done[(e["call_id"], e["queue_id"])]["event_id"]])]
    held = hold_ms_of(events)
    spans = {d["event_id"] for d in done.values()
             if any(e["type"] == "call.hold" and e.get("queue_id") == d["queue_id"] and e["call_id"] == d["call_id"]
                    for e in events)}
    assert len(late) > 20
    assert sum(1 for d in done.values() if d["event_id"] in spans and d["hold_s"] == 0 and held[d["event_id"]]) > 10
    assert sum(1 for d in done.values() if d["event_id"] not in spans and d["hold_s"] > 0) > 10
    assert sum(ref["on_hold"].values()) > 0 and sum(ref["pending"].values()) > 0
    assert_live(*await live_documents(server, tenant), ref)

    # History: the daily rollups per queue and agent, and the revenue endpoint.
    dsn = server.settings.database_url
    assert dsn is not None
    conn = await tenant_conn(dsn, tenant)
    try:
        trends, daily, monthly = await rollups(conn, tenant)
        for dimension, keys, counted in (("queue", QUEUES, ref["queues"]), ("agent", AGENTS, ref["agents"])):
            for key in keys:
                got = {f: sum(row[f] for (d, k, _), row in daily.items() if (d, k) == (dimension, key)) for f in COUNTED}
                assert got == {f: counted[key].get(f, 0) for f in COUNTED}, (dimension, key)
        # hold and handle time on the 15-minute interval of the completion
        cells = {(d, k, int(at.timestamp() * 1000)): {f: row[f] for f in ("hold_ms", "handle_ms")}
                 for (d, k, at), row in trends.items() if d in ("queue", "agent") and row["handled"]}
        assert cells == {key: dict(v) for key, v in ref["intervals"].items()}
        # A rebuild of the rollups from the stored facts and events gives the same rows.
        lo = day_start // 900_000 * 900_000
        await conn.execute(query("history_rebuild"), tenant, datetime.fromtimestamp(lo / 1000, UTC),
                           datetime.fromtimestamp((day_start + 86_400_000) / 1000, UTC), "UTC",
                           TenantSettings(day_starts_at=starts_at).day_start_minutes)
        assert await rollups(conn, tenant) == (trends, daily, monthly)
    finally:
        await conn.close()
    async with server.client(server.token(tenant, "supervisor")) as client:
        response = await client.get("/api/analytics/revenue")
    assert response.status_code == 200, response.text
    stats = response.json()["statistics"]
    for row in stats["by_queue"]:
        counted = ref["queues"][row["queue_id"]]
        assert row["revenue"] == pytest.approx(counted["revenue_cents"] / 100)
        assert row["conversion_rate"] == pytest.approx(counted["converted"] / counted["handled"])
        assert row["revenue_per_call"] == pytest.approx(counted["revenue_cents"] / 100 / counted["handled"])
        assert row["cost_per_call"] is not None
    assert {r["agent_id"]: r["converted"] for r in stats["by_agent"]} == {
        a: ref["agents"][a]["converted"] for a in AGENTS if ref["agents"][a]["handled"]}
    teams = {t: [a for a in AGENTS if team_of(a) == t] for t in ("team-0", "team-1")}
    assert {r["team"]: (r["converted"], r["revenue"]) for r in stats["by_team"]} == {
        t: (sum(ref["agents"][a]["converted"] for a in members),
            pytest.approx(sum(ref["agents"][a]["revenue_cents"] for a in members) / 100))
        for t, members in teams.items()}
    assert stats["revenue"] == pytest.approx(sum(c["revenue_cents"] for c in ref["queues"].values()) / 100)

    rebuild_live(server, tenant)  # counts it all again from PostgreSQL
    assert_live(*await live_documents(server, tenant), ref)


async def test_rebuild_brings_back_callbacks_requested_before_its_window(server: RunningServer) -> None:
    """A callback requested three days ago and never completed is still pending after `wallboard rebuild-live`."""
    tenant = new_tenant("oldcb")
    then = int(time.time() * 1000) - 3 * 86_400_000
    events = [
        {"event_id": "r1", "type": "callback.requested", "ts": then, "callback_id": "old", "queue_id": "sales"},
        {"event_id": "r2", "type": "callback.requested", "ts": then, "callback_id": "done", "queue_id": "sales"},
        {"event_id": "c2", "type": "callback.completed", "ts": then + 60_000, "callback_id": "done",
         "queue_id": "sales", "outcome": "reached"},
    ]
    async with server.client(server.token(tenant, "ingest")) as client:
        assert (await client.post("/api/events", json=events)).status_code == 200

    async def pending() -> int:
        overview, _ = await live_documents(server, tenant)
        return sum(q["callbacks_pending"] for q in overview["queues"] if q["queue_id"] == "sales")

    assert await pending() == 1
    rebuild_live(server, tenant)
    assert await pending() == 1


@pytest.mark.timeout(300)
async def test_holds_posted_beside_their_completion_count_once(server: RunningServer) -> None:
    """Each call's completion and its holds posted at the same moment in two requests (their commits race on
    the leg): the hold time is counted exactly once, live and in the rollups."""
    tenant = new_tenant("holdrace")
    starts_at, day_start = day_started_hours_ago(3)
    await put_settings(server, tenant, day_starts_at=starts_at, timezone="UTC")
    rng = random.Random(29)
    pairs: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]] = []
    events: list[dict[str, Any]] = []
    for c in range(60):
        q, agent, at = QUEUES[c % 3], AGENTS[c % len(AGENTS)], day_start + 120_000 + c * 60_000
        call = {"call_id": f"r{c}", "queue_id": q}
        done = [{"event_id": f"r{c}q", "type": "call.queued", "ts": at, **call},
                {"event_id": f"r{c}a", "type": "call.answered", "ts": at + 1000, "agent_id": agent, **call},
                {"event_id": f"r{c}c", "type": "call.completed", "ts": at + 50_000, "agent_id": agent, "talk_s": 40.0,
                 "hold_s": 0.0, "wrap_s": 3.0, **call}]
        hold_at, holds = at + 5000, []
        for k in range(rng.randint(1, 3)):
            length = rng.randint(500, 9000)
            holds += [{"event_id": f"r{c}h{k}", "type": "call.hold", "ts": hold_at, "agent_id": agent, **call},
                      {"event_id": f"r{c}u{k}", "type": "call.unhold", "ts": hold_at + length, "agent_id": agent, **call}]
            hold_at += length + 1000
        pairs.append((done, holds))
        events += done + holds
    async with server.client(server.token(tenant, "ingest")) as client:
        for i in range(0, len(pairs), 6):
            sends = [client.post("/api/events", json=batch) for pair in pairs[i:i + 6] for batch in pair]
            for response in await asyncio.gather(*sends):
                assert response.status_code == 200, response.text
    ref = recount(events)
    assert all(ref["queues"][q]["hold_ms"] > 0 for q in QUEUES)
    overview, _ = await live_documents(server, tenant)
    for row in overview["queues"]:
        counted = ref["queues"][row["queue_id"]]
        assert row["today"]["aht_s"] == pytest.approx(counted["handle_ms"] / counted["handled"] / 1000, rel=1e-12)
    dsn = server.settings.database_url
    assert dsn is not None
    conn = await tenant_conn(dsn, tenant)
    try:
        _, daily, _ = await rollups(conn, tenant)
    finally:
        await conn.close()
    got = {(d, k): (row["hold_ms"], row["handle_ms"]) for (d, k, _), row in daily.items() if row["handled"]}
    assert got == {**{("queue", q): (ref["queues"][q]["hold_ms"], ref["queues"][q]["handle_ms"]) for q in QUEUES},
                   **{("agent", a): (ref["agents"][a]["hold_ms"], ref["agents"][a]["handle_ms"]) for a in AGENTS}}


@pytest.mark.timeout(300)
async def test_a_flood_of_holds_on_one_call_counts_its_hold_s(server: RunningServer) -> None:
    """300 holds and unholds on one call (past the 64 marks a leg keeps) make its hold time the completion's
    hold_s, in any order, live, in the rollups and after rebuild-live; the leg keeps no more marks, in Redis
    or PostgreSQL; a call beside it with a few holds still counts their spans."""
    tenant = new_tenant("holdflood")
    starts_at, day_start = day_started_hours_ago(3)
    await put_settings(server, tenant, day_starts_at=starts_at, timezone="UTC")
    events: list[dict[str, Any]] = []
    for c, pairs in (("flood", 150), ("calm", 2)):
        call, at = {"call_id": c, "queue_id": QUEUES[0]}, day_start + 600_000
        events += [{"event_id": f"{c}q", "type": "call.queued", "ts": at, **call},
                   {"event_id": f"{c}a", "type": "call.answered", "ts": at + 1000, "agent_id": AGENTS[0], **call},
                   {"event_id": f"{c}c", "type": "call.completed", "ts": at + 900_000, "agent_id": AGENTS[0],
                    "talk_s": 600.0, "hold_s": 7.0, "wrap_s": 3.0, **call}]
        for k in range(pairs):
            events += [{"event_id": f"{c}h{k}", "type": "call.hold", "ts": at + 2000 + k * 4000, "agent_id": AGENTS[0],
                        **call},
                       {"event_id": f"{c}u{k}", "type": "call.unhold", "ts": at + 4000 + k * 4000,
                        "agent_id": AGENTS[0], **call}]
    held = hold_ms_of(events)
    assert (held["floodc"], held["calmc"]) == (7000, 4000)  # the calm call: two spans of 2 s
    rng = random.Random(41)
    stream = events + rng.sample(events, 30)
    rng.shuffle(stream)
    async with server.client(server.token(tenant, "ingest")) as client:
        await post_all(client, [stream[i:i + 50] for i in range(0, len(stream), 50)], workers=1)

    async def check() -> None:
        overview, _ = await live_documents(server, tenant)
        row = next(q for q in overview["queues"] if q["queue_id"] == QUEUES[0])
        assert row["today"]["aht_s"] == pytest.approx((600 + 7 + 3 + 600 + 4 + 3) / 2, rel=1e-12)

    await check()
    conn = await tenant_conn(server.settings.database_url or "", tenant)
    try:
        _, daily, _ = await rollups(conn, tenant)
        queue_day = next(row for (d, k, _), row in daily.items() if (d, k) == ("queue", QUEUES[0]))
        assert (queue_day["hold_ms"], queue_day["handle_ms"]) == (11_000, 1_217_000)
        kept = await conn.fetchval("SELECT jsonb_array_length(holds) FROM call_legs WHERE client_id = $1 "
                                   "AND call_id = 'flood'", tenant)
        assert kept <= 64 + 50  # it stopped taking marks in the batch that passed the cap
    finally:
        await conn.close()
    leg = Keys(server.settings.key_prefix).call_leg(tenant, QUEUES[0], "flood")
    redis = aioredis.Redis.from_url(server.settings.redis_url or "")
    try:
        assert await redis.hget(leg, "hm") is None and await redis.hget(leg, "ho") == b"1"
    finally:
        await redis.aclose()
    rebuild_live(server, tenant)
    await check()

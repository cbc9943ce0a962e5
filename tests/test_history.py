"""History endpoints: their numbers equal a hand count of the raw events, and the live view for today."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from server.tools.simulate import SimulationConfig, generate

from .conftest import RunningServer
from .live_reference import ms, recompute
from .test_live_exact import delivery, live_documents, new_tenant, post_all, put_settings

COUNTS = ("offered", "answered", "abandoned", "short_abandoned", "answered_within_sl", "abandoned_within_sl", "handled")
RATES = ("service_level", "asa_s", "aht_s", "abandon_rate", "fcr", "transfer_rate")


def agree(got: dict[str, Any], expected: dict[str, Any], where: Any) -> None:
    for key in COUNTS:
        assert got[key] == expected.get(key, 0), (where, key, got[key], expected.get(key, 0))
    for key in (k for k in RATES if k in expected or not expected):
        value = expected.get(key)
        if value is None:
            assert got[key] is None, (where, key, got[key])
        else:
            assert got[key] == pytest.approx(value, abs=2e-3 if key.endswith("_s") else 1e-9), (where, key)


def reach_of(events: list[dict[str, Any]]) -> int:
    """The scenario's longest call, in ms: from the first to the last event of a call id."""
    calls: dict[str, list[int]] = {}
    for e in events:
        if e.get("call_id"):
            calls.setdefault(e["call_id"], []).append(ms(e["ts"]))
    return max((max(t) - min(t) for t in calls.values()), default=0)


def recount(events: list[dict[str, Any]], lo: int, hi: int, reach: int) -> dict[str, Any]:
    """recompute's queue figures for [lo, hi), from the events within ``reach`` (reach_of) of it.

    Every event that counts in a bucket (a queued time, a hold before a completion) belongs to a call with an
    event in the bucket, so it lies within the longest call's span of the bucket's bounds: a recount of each
    bucket reads those, not the whole scenario (a day's hours recounted in seconds, not in half a minute). The
    queues' figures are the same; the waiting calls and agents are not compared through this.
    """
    return recompute([e for e in events if lo - reach <= ms(e["ts"]) <= hi + reach], lo, hi)


def tenant_total(ref: dict[str, Any]) -> dict[str, Any]:
    """The recount of every queue together, rates from the summed counters (METRICS.md)."""
    out = {k: sum(q[k] for q in ref["queues"].values()) for k in COUNTS}
    handled = sum(q["handled"] for q in ref["queues"].values())
    answered, abandoned, short = out["answered"], out["abandoned"], out["short_abandoned"]
    div = lambda a, b: a / b if b else None  # noqa: E731
    out.update(
        service_level=div(out["answered_within_sl"], answered + abandoned - short),
        asa_s=div(sum((q["asa_s"] or 0) * q["answered"] for q in ref["queues"].values()), answered),
        aht_s=div(sum((q["aht_s"] or 0) * q["handled"] for q in ref["queues"].values()), handled),
        abandon_rate=div(abandoned - short, answered + abandoned - short),
        transfer_rate=div(sum((q["transfer_rate"] or 0) * q["handled"] for q in ref["queues"].values()),
                                    handled),
    )
    return out


POSTED: dict[str, dict[str, Any]] = {}  # the history scenario posted to the run's server, by its URL


@pytest.fixture(scope="module")
async def history(server: RunningServer) -> dict[str, Any]:
    """Two and a half simulated days in New York with days starting at 06:00, posted out of order with duplicates.

    Posted once to the run's server (tests/test_reports.py reads the same tenant); no test writes to its tenant."""
    if server.url not in POSTED:
        POSTED[server.url] = await post_history(server)
    return POSTED[server.url]


async def post_history(server: RunningServer) -> dict[str, Any]:
    tenant = new_tenant("hist")
    await put_settings(server, tenant, timezone="America/New_York", day_starts_at="06:00")
    now = datetime.now(UTC).replace(microsecond=0)
    config = SimulationConfig(agents=24, queues=3, calls_per_hour=240, seed=5)
    events = generate(config, now - timedelta(hours=60), timedelta(hours=60) - timedelta(seconds=30))
    batches = delivery(events, random.Random(3), dup_share=0.03, disorder_share=0.1)
    async with server.client(server.token(tenant, "ingest")) as client:
        totals = await post_all(client, batches)
    assert totals["accepted"] == len(events)
    return {"tenant": tenant, "events": events, "now": now, "reach": reach_of(events)}


async def get(server: RunningServer, tenant: str, path: str, role: str = "supervisor", sub: str | None = None,
              **params: Any) -> Any:
    async with server.client(server.token(tenant, role, sub=sub)) as client:
        response = await client.get(f"/api/analytics/{path}", params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def test_hourly_trends_equal_a_recount_per_hour(server: RunningServer, history: dict[str, Any]) -> None:
    """Each hour of the last day, for the tenant and for one queue, equals a hand count of that hour's events."""
    tenant, events, now, reach = history["tenant"], history["events"], history["now"], history["reach"]
    start = (now - timedelta(hours=26)).replace(minute=0, second=0)
    end = start + timedelta(hours=24)
    body = await get(server, tenant, "performance/trends", granularity="hour",
                     **{"from": start.isoformat().replace("+00:00", "Z"), "to": end.isoformat().replace("+00:00", "Z")})
    assert body["count"] == 24 == len(body["data"])
    for bucket in body["data"]:
        ref = recount(events, ms(bucket["start"]), ms(bucket["end"]), reach)
        agree(bucket, tenant_total(ref), bucket["start"])
    assert sum(b["offered"] for b in body["data"]) == body["statistics"]["offered"] > 200
    queue = sorted({e["queue_id"] for e in events if e.get("queue_id")})[1]
    body = await get(server, tenant, "performance/trends", granularity="15m", queue_id=queue,
                     **{"from": start.isoformat().replace("+00:00", "Z"), "to": (start + timedelta(hours=6)).isoformat()})
    assert body["count"] == 24
    for bucket in body["data"]:
        ref = recount(events, ms(bucket["start"]), ms(bucket["end"]), reach)
        agree(bucket, ref["queues"].get(queue, {k: 0 for k in COUNTS}), (queue, bucket["start"]))


async def test_daily_trends_follow_the_tenant_day(server: RunningServer, history: dict[str, Any]) -> None:
    """Days start at 06:00 New York time: each day bucket spans exactly that, and counts equal a recount."""
    tenant, events, now, reach = history["tenant"], history["events"], history["now"], history["reach"]
    local = now.astimezone(ZoneInfo("America/New_York"))
    first = (local - timedelta(days=3)).date()
    body = await get(server, tenant, "performance/trends", granularity="day",
                     **{"from": first.isoformat(), "to": local.date().isoformat()})
    assert body["count"] == 4
    for bucket in body["data"]:
        start = datetime.fromisoformat(bucket["start"].replace("Z", "+00:00")).astimezone(ZoneInfo("America/New_York"))
        assert (start.hour, start.minute) == (6, 0)
        agree(bucket, tenant_total(recount(events, ms(bucket["start"]), ms(bucket["end"]), reach)), bucket["start"])
    assert body["statistics"]["offered"] == sum(1 for e in events if e["type"] == "call.queued"
                                                and ms(body["data"][0]["start"]) <= ms(e["ts"]) < ms(body["data"][-1]["end"]))


async def test_today_equals_the_live_view(server: RunningServer, history: dict[str, Any]) -> None:
    """The summary of today (no from/to) and each queue's completion equal /api/metrics/live's today."""
    tenant = history["tenant"]
    overview, _ = await live_documents(server, tenant)
    summary = (await get(server, tenant, "performance/summary"))["data"]
    for key in (*COUNTS, *RATES, "csat", "nps", "quality_score"):
        live = overview["today"][key]
        assert summary[key] == (pytest.approx(live, abs=1e-9) if isinstance(live, float) else live), key
    completion = {row["queue_id"]: row for row in (await get(server, tenant, "calls/completion"))["data"]}
    for queue in overview["queues"]:
        for key in ("offered", "answered", "abandoned", "short_abandoned", "handled"):
            assert completion[queue["queue_id"]][key] == queue["today"][key], (queue["queue_id"], key)


async def test_agents_and_feedback_equal_a_recount(server: RunningServer, history: dict[str, Any]) -> None:
    """Per agent handled and AHT; CSAT, NPS and quality over two days equal a hand count."""
    tenant, events, now = history["tenant"], history["events"], history["now"]
    start, end = now - timedelta(hours=50), now + timedelta(minutes=15)
    window = {"from": start.isoformat().replace("+00:00", "Z"), "to": end.isoformat().replace("+00:00", "Z")}
    body = await get(server, tenant, "performance/agents", **window)
    lo, hi = ms(body["statistics"]["from"]), ms(body["statistics"]["to"])
    ref = recompute(events, lo, hi)
    by_agent = {a["agent_id"]: a for a in body["data"]}
    handled = {a: f["handled"] for a, f in ref["agents"].items() if f["handled"]}
    assert {a: row["handled"] for a, row in by_agent.items() if row["handled"]} == handled
    for agent, figures in ref["agents"].items():
        if figures["handled"]:
            assert by_agent[agent]["aht_s"] == pytest.approx(figures["aht_s"], abs=2e-3), agent
    assert all(row["name"] for row in body["data"])
    feedback = (await get(server, tenant, "satisfaction", granularity="day", **window))["statistics"]
    assert feedback["csat_responses"] > 20
    for key in ("csat", "nps"):
        assert feedback[key] == pytest.approx(ref["feedback"][key], abs=1e-9), key
    quality = (await get(server, tenant, "calls/quality/summary", **window))["statistics"]
    assert quality["quality_score"] == pytest.approx(ref["feedback"]["quality_score"], abs=1e-9)


async def test_sectors_list_queues_and_teams(server: RunningServer, history: dict[str, Any]) -> None:
    """Every queue with calls and every team of the agents show up, the teams' handled summing to the queues'."""
    tenant, events = history["tenant"], history["events"]
    body = await get(server, tenant, "performance/sectors", **{"from": (history["now"] - timedelta(days=3)).date().isoformat()})
    kinds = {(row["kind"], row["id"]) for row in body["data"]}
    queues = {e["queue_id"] for e in events if e.get("queue_id")}
    assert {q for k, q in kinds if k == "queue"} <= queues
    assert any(k == "team" for k, _ in kinds)
    handled = lambda kind: sum(row["handled"] for row in body["data"] if row["kind"] == kind)  # noqa: E731
    assert handled("team") == handled("queue") > 0


async def test_agent_token_sees_only_itself(server: RunningServer, history: dict[str, Any]) -> None:
    tenant, events = history["tenant"], history["events"]
    agent = next(e["agent_id"] for e in events if e["type"] == "call.completed")
    body = await get(server, tenant, "performance/agents", role="agent", sub=agent,
                     **{"from": (history["now"] - timedelta(hours=50)).date().isoformat()})
    assert [row["agent_id"] for row in body["data"]] == [agent]
    async with server.client(server.token(tenant, "agent", sub=agent)) as client:
        other = await client.get("/api/analytics/performance/summary", params={"agent_id": "someone-else"})
        sectors = await client.get("/api/analytics/performance/sectors")
    assert other.status_code == 403 and other.json()["error"]["code"] == "agent_scope"
    assert sectors.status_code == 403


async def test_another_tenant_sees_nothing_of_it(server: RunningServer, history: dict[str, Any]) -> None:
    """Tenant B's token naming tenant A's queues and agents gets empty figures."""
    events = history["events"]
    queue = next(e["queue_id"] for e in events if e.get("queue_id"))
    agent = next(e["agent_id"] for e in events if e["type"] == "call.completed")
    other = new_tenant("other")
    since = {"from": (history["now"] - timedelta(days=4)).date().isoformat()}
    for path, params in (("performance/summary", {"queue_id": queue}), ("performance/summary", {"agent_id": agent}),
                         ("performance/agents", {}), ("calls/completion", {}), ("calls/quality", {}),
                         ("performance/summary", {})):
        body = await get(server, other, path, **params, **since)
        data = body["data"]
        if isinstance(data, list):
            assert data == [], path
        else:
            assert data.get("offered", 0) == 0 and data.get("handled", 0) == 0 and data["csat"] is None, (path, params)


@pytest.mark.parametrize(("params", "parameter"), [
    ({"from": "2026-13-01"}, "from"),
    ({"from": "yesterday"}, "from"),
    ({"to": "2026-02-30"}, "to"),
    ({"from": "2026-11-20", "to": "2026-11-10"}, "from"),
    ({"granularity": "fortnight"}, "granularity"),
    ({"from": "2026-01-01", "to": "2026-11-01", "granularity": "15m"}, "to"),
    ({"from": "1999-12-31"}, "from"),
    ({"limit": "0"}, "limit"),
    ({"limit": "many"}, "limit"),
    ({"queue_id": "x" * 200}, "queue_id"),
])
async def test_bad_parameters_get_a_400_naming_them(server: RunningServer, params: dict[str, str],
                                                    parameter: str) -> None:
    async with server.client(server.token(new_tenant("badp"), "supervisor")) as client:
        response = await client.get("/api/analytics/performance/trends", params=params)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_parameter"
    assert error["details"]["parameter"] == parameter
    assert error["message"].startswith(f"{parameter}: ")


async def test_a_recorded_quality_score_counts_everywhere(server: RunningServer) -> None:
    """POST a review: it is listed, in the agent's summary and in the live view; bad input is refused."""
    tenant = new_tenant("qual")
    async with server.client(server.token(tenant, "supervisor", sub="sue")) as client:
        made = await client.post("/api/analytics/calls/quality",
                                 json={"call_id": "c1", "agent_id": "ann", "score": 4.5, "criteria": {"greeting": 5}})
        assert made.status_code == 201, made.text
        bad_score = await client.post("/api/analytics/calls/quality", json={"call_id": "c1", "agent_id": "ann",
                                                                            "score": 7})
        unknown = await client.post("/api/analytics/calls/quality", json={"call_id": "c1", "agent_id": "ann",
                                                                          "score": 3, "client_id": "x"})
        listed = (await client.get("/api/analytics/calls/quality")).json()
        summary = (await client.get("/api/analytics/calls/quality/summary")).json()
    assert bad_score.status_code == 400 and bad_score.json()["error"]["details"]["field"] == "score"
    assert unknown.status_code == 400 and unknown.json()["error"]["details"]["field"] == "client_id"
    assert [(r["call_id"], r["agent_id"], r["score"], r["reviewer"], r["source"], r["criteria"])
            for r in listed["data"]] == [("c1", "ann", 4.5, "sue", "api", {"greeting": 5})]
    assert summary["data"] == [{"agent_id": "ann", "quality_score": 4.5, "reviews": 1}]
    overview, _ = await live_documents(server, tenant)
    assert overview["today"]["quality_score"] == 4.5
    async with server.client(server.token(tenant, "agent", sub="ann")) as client:
        refused = await client.post("/api/analytics/calls/quality", json={"call_id": "c2", "agent_id": "ann",
                                                                          "score": 5})
    assert refused.status_code == 403


async def test_history_survives_late_events(server: RunningServer) -> None:
    """An answer that arrives days after its call was queued still counts its wait on the answered interval."""
    tenant = new_tenant("late")
    base = int(time.time() * 1000) - 3 * 86_400_000
    base -= base % 900_000
    queued = {"event_id": "q1", "type": "call.queued", "ts": base + 1000, "call_id": "c1", "queue_id": "sales"}
    answered = {"event_id": "a1", "type": "call.answered", "ts": base + 31_000, "call_id": "c1",
                "queue_id": "sales", "agent_id": "ann"}
    async with server.client(server.token(tenant, "ingest")) as client:
        assert (await client.post("/api/events", json=[answered])).status_code == 200
        assert (await client.post("/api/events", json=[queued, answered])).status_code == 200
    start = datetime.fromtimestamp(base / 1000, UTC)
    body = await get(server, tenant, "performance/summary",
                     **{"from": start.isoformat(), "to": (start + timedelta(hours=1)).isoformat()})
    data = body["data"]
    assert (data["offered"], data["answered"], data["answered_within_sl"], data["asa_s"]) == (1, 1, 0, 30.0)


HISTORY_TABLES = ("call_legs", "performance_trends", "agents", "agent_metrics", "customer_satisfaction",
                  "call_quality_scores")


async def test_row_level_security_hides_every_row_without_a_tenant(server: RunningServer,
                                                                   history: dict[str, Any]) -> None:
    """As the application role: no tenant set → 0 rows; its own tenant → its rows only; RLS cannot be turned off."""
    tenant = history["tenant"]
    role = server.settings.app_role
    conn = await asyncpg.connect(server.settings.database_url)
    try:
        for table in HISTORY_TABLES:
            async with conn.transaction():
                await conn.execute(f"SET LOCAL ROLE {role}")
                assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0, table
                await conn.execute("SELECT set_config('wallboard.tenant', $1, true)", tenant)
                mine = await conn.fetchval(f"SELECT count(*) FROM {table}")
                others = await conn.fetchval(f"SELECT count(*) FROM {table} WHERE client_id <> $1", tenant)
                assert mine > 0 and others == 0, (table, mine, others)
        for statement in ("ALTER TABLE performance_trends DISABLE ROW LEVEL SECURITY",
                          "ALTER TABLE performance_trends NO FORCE ROW LEVEL SECURITY",
                          "DROP POLICY tenant_isolation ON performance_trends"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                async with conn.transaction():
                    await conn.execute(f"SET LOCAL ROLE {role}")
                    await conn.execute(statement)
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
            async with conn.transaction():
                await conn.execute(f"SET LOCAL ROLE {role}")
                await conn.execute("SET LOCAL row_security = off")
                await conn.fetchval("SELECT count(*) FROM performance_trends")
    finally:
        await conn.close()


async def test_pooled_connections_carry_no_tenant_past_their_transaction(server: RunningServer) -> None:
    """After ingest and after a failed transaction, every pooled connection is back to the login role
    with no tenant set: nothing of one tenant's transaction leaks into the next one's."""
    db = server.services.db
    tenant = new_tenant("pool")
    events = generate(SimulationConfig(agents=4, queues=1, calls_per_hour=600, seed=5),
                      datetime.now(UTC) - timedelta(minutes=30), timedelta(minutes=10))
    async with server.client(server.token(tenant, "ingest")) as client:
        totals = await post_all(client, [events[i:i + 20] for i in range(0, len(events), 20)])
    assert totals["accepted"] == len(events)
    with pytest.raises(asyncpg.UndefinedTableError):
        async with db.tenant(tenant) as conn:
            await conn.execute("SELECT * FROM no_such_table")
    held = [await db.pool.acquire(timeout=5) for _ in range(db.pool.get_max_size())]
    try:
        for conn in held:
            row = await conn.fetchrow("SELECT current_user = session_user AS login,"
                                      " coalesce(current_setting('wallboard.tenant', true), '') AS tenant")
            assert row["login"] and row["tenant"] == "", dict(row)
            assert not conn.is_in_transaction()
    finally:
        for conn in held:
            await db.pool.release(conn)


async def test_costs_price_handle_and_talk_time(server: RunningServer, history: dict[str, Any]) -> None:
    """Costs per day × queue follow METRICS.md from the tenant's rates, with a queue's override."""
    tenant, events = history["tenant"], history["events"]
    queues = sorted({e["queue_id"] for e in events if e.get("queue_id")})
    await put_settings(server, tenant, costs={"agent_cost_per_hour": 30, "telephony_cost_per_minute": 0.02,
                                              "currency": "EUR", "queues": {queues[0]: {"agent_cost_per_hour": 45}}})
    window = {"from": (history["now"] - timedelta(days=3)).date().isoformat()}
    body = await get(server, tenant, "costs", **window)
    stats = body["statistics"]
    lo, hi = ms(stats["from"]), ms(stats["to"])
    expected = 0.0
    for e in events:
        if e["type"] == "call.completed" and lo <= ms(e["ts"]) < hi:
            per_hour = 45 if e["queue_id"] == queues[0] else 30
            expected += per_hour * (e["talk_s"] + e["hold_s"] + e["wrap_s"]) / 3600 + 0.02 * e["talk_s"] / 60
    assert stats["currency"] == "EUR"
    assert stats["total_cost"] == pytest.approx(expected, abs=0.01 * len(body["data"]))
    assert stats["cost_per_call"] == pytest.approx(stats["total_cost"] / stats["handled"])
    assert {q["queue_id"] for q in stats["by_queue"]} <= set(queues)
    assert sum(a["handled"] for a in stats["by_agent"]) == stats["handled"]


async def test_agent_detail_top_performers_and_timeline(server: RunningServer, history: dict[str, Any]) -> None:
    """The top agents are ranked by the metric; the best one's detail adds up; the timeline has buckets."""
    tenant, now = history["tenant"], history["now"]
    window = {"from": (now - timedelta(hours=50)).isoformat().replace("+00:00", "Z"),
              "to": (now + timedelta(minutes=15)).isoformat().replace("+00:00", "Z")}
    top = await get(server, tenant, "performance/top-performers", metric="handled", limit="3", **window)
    assert [a["rank"] for a in top["data"]] == [1, 2, 3]
    assert top["data"][0]["handled"] >= top["data"][1]["handled"] >= top["data"][2]["handled"]
    best = top["data"][0]["agent_id"]
    detail = (await get(server, tenant, f"performance/agent/{best}/detailed", **window))["data"]
    assert detail["handled"] == top["data"][0]["handled"]
    assert sum(b["handled"] for b in detail["buckets"]) == detail["handled"]
    assert 0 < len(detail["recent_calls"]) <= 20 and detail["name"]
    timeline = await get(server, tenant, "calls/timeline")
    assert timeline["count"] >= 1 and all(b["end"] > b["start"] for b in timeline["data"])
    async with server.client(server.token(tenant, "supervisor")) as client:
        bad_metric = await client.get("/api/analytics/performance/top-performers", params={"metric": "speed"})
    assert bad_metric.status_code == 400 and bad_metric.json()["error"]["details"]["parameter"] == "metric"
    async with server.client(server.token(tenant, "agent", sub="someone")) as client:
        other = await client.get(f"/api/analytics/performance/agent/{best}/detailed")
    assert other.status_code == 403


async def test_scorecards_sum_the_last_30_whole_days(server: RunningServer) -> None:
    """The materialized scorecards count days 1-30 ago (not today, not older); refreshed concurrently; tenant-only."""
    tenant = new_tenant("score")
    day = 86_400_000
    midnight = int(time.time() * 1000) // day * day
    events = [{"event_id": f"c{i}", "type": "call.completed", "ts": ts, "call_id": f"call{i}", "queue_id": "sales",
               "agent_id": "ann", "talk_s": 100, "hold_s": 0, "wrap_s": 20}
              for i, ts in enumerate([midnight - 2 * day + 3_600_000, midnight - 5 * day + 3_600_000,
                                      midnight - 40 * day, midnight + 60_000])]
    async with server.client(server.token(tenant, "admin")) as client:  # 40 days ago is past the default window
        assert (await client.put("/api/settings", json={"ingest_window_days": 45})).status_code == 200
    async with server.client(server.token(tenant, "ingest")) as client:
        assert (await client.post("/api/events", json=events)).status_code == 200
    conn = await asyncpg.connect(server.settings.database_url)
    try:
        assert await conn.fetchval("SELECT refresh_scorecards()") is True
        async with conn.transaction():  # a second refresh while one holds the lock is skipped
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('wallboard.refresh_scorecards'))")
            other = await asyncpg.connect(server.settings.database_url)
            try:
                assert await other.fetchval("SELECT refresh_scorecards()") is False
            finally:
                await other.close()
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with conn.transaction():
                await conn.execute(f"SET LOCAL ROLE {server.settings.app_role}")
                await conn.fetch("SELECT * FROM agent_scorecards")
    finally:
        await conn.close()
    cards = await get(server, tenant, "performance/scorecards")
    assert [(c["agent_id"], c["handled"], c["aht_s"], c["days"]) for c in cards["data"]] == [("ann", 2, 120.0, 2)]
    assert cards["statistics"]["refreshed_at"] is not None
    assert (await get(server, new_tenant("score-other"), "performance/scorecards"))["data"] == []


async def test_weekly_trends_in_kolkata_equal_a_recount(server: RunningServer) -> None:
    """A +05:30 tenant whose day starts at 00:00: day and ISO-week buckets start at local midnight and equal a recount."""
    tenant = new_tenant("kol")
    await put_settings(server, tenant, timezone="Asia/Kolkata", day_starts_at="00:00")
    now = datetime.now(UTC).replace(microsecond=0)
    config = SimulationConfig(agents=4, queues=2, calls_per_hour=20, seed=9)
    events = generate(config, now - timedelta(days=9), timedelta(days=9) - timedelta(seconds=30))
    async with server.client(server.token(tenant, "ingest")) as client:
        totals = await post_all(client, delivery(events, random.Random(5), dup_share=0.02, disorder_share=0.1))
    assert totals["accepted"] == len(events)
    local = now.astimezone(ZoneInfo("Asia/Kolkata")).date()
    reach = reach_of(events)
    for granularity in ("day", "week"):
        body = await get(server, tenant, "performance/trends", granularity=granularity,
                         **{"from": (local - timedelta(days=9)).isoformat(), "to": local.isoformat()})
        for bucket in body["data"]:
            start = datetime.fromisoformat(bucket["start"].replace("Z", "+00:00")).astimezone(ZoneInfo("Asia/Kolkata"))
            assert (start.hour, start.minute) == (0, 0), bucket["start"]
            if granularity == "week" and bucket is not body["data"][0]:
                assert start.weekday() == 0
            agree(bucket, tenant_total(recount(events, ms(bucket["start"]), ms(bucket["end"]), reach)),
                  (granularity, bucket["start"]))
        assert body["statistics"]["offered"] == sum(b["offered"] for b in body["data"]) > 100


async def test_tenant_b_naming_tenant_a_in_path_and_body_gets_nothing(server: RunningServer,
                                                                        history: dict[str, Any]) -> None:
    """B's token with A's agent in the path sees no figures; B's review of A's call lands under B only."""
    tenant, events = history["tenant"], history["events"]
    completed = next(e for e in events if e["type"] == "call.completed")
    other = new_tenant("intruder")
    since = {"from": (history["now"] - timedelta(days=4)).date().isoformat()}
    detail = (await get(server, other, f"performance/agent/{completed['agent_id']}/detailed", **since))["data"]
    assert (detail["handled"], detail["recent_calls"], detail["name"]) == (0, [], None)
    async with server.client(server.token(other, "supervisor", sub="mallory")) as client:
        made = await client.post("/api/analytics/calls/quality", json={
            "call_id": completed["call_id"], "agent_id": completed["agent_id"], "score": 0})
    assert made.status_code == 201
    reviews = (await get(server, tenant, "calls/quality", **since))["data"]
    assert all(r["reviewer"] != "mallory" for r in reviews)
    mine = (await get(server, other, "calls/quality", **since))["data"]
    assert [(r["call_id"], r["reviewer"]) for r in mine] == [(completed["call_id"], "mallory")]

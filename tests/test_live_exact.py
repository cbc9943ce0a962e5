"""The live numbers are exact: they equal a hand count of the same events, whatever the delivery order."""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from server.tools.simulate import SimulationConfig, generate

from .conftest import RunningServer
from .live_reference import ms, recompute


def new_tenant(label: str) -> str:
    return f"{label}-{secrets.token_hex(3)}"


async def put_settings(server: RunningServer, tenant: str, **values: Any) -> None:
    async with server.client(server.token(tenant, "admin")) as client:
        response = await client.put("/api/settings", json=values)
    assert response.status_code == 200, response.text


def day_started_hours_ago(hours: float) -> tuple[str, int]:
    """A day_starts_at (UTC) that began ``hours`` ago, and that instant in ms."""
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=hours)
    return start.strftime("%H:%M"), int(start.timestamp() * 1000)


def simulated(now: datetime, *, hours: float, at_least: int, calls_per_hour: float, queues: int, seed: int
              ) -> list[dict[str, Any]]:
    """At least ``at_least`` simulated events of the last ``hours`` hours, whatever the hour the test runs at.

    The simulator's intraday curve puts a tenth of the mean volume at night: the rate is raised until the
    window holds enough events (agents grow with it, one per 12 calls an hour).
    """
    for _ in range(6):
        config = SimulationConfig(agents=max(int(calls_per_hour / 12), 10), queues=queues, calls_per_hour=calls_per_hour,
                                  seed=seed)
        events = generate(config, now - timedelta(hours=hours), timedelta(hours=hours) - timedelta(seconds=5))
        if len(events) >= at_least:
            return events
        calls_per_hour *= at_least / max(len(events), 1) * 1.05
    raise AssertionError(f"Expected at least {at_least} simulated events, got {len(events)}.")


def delivery(events: list[dict[str, Any]], rng: random.Random, *, dup_share: float, disorder_share: float
             ) -> list[list[dict[str, Any]]]:
    """Batches of random sizes, with some events moved out of order and some sent twice."""
    stream = list(events)
    for _ in range(int(len(stream) * disorder_share)):
        i = rng.randrange(len(stream))
        event = stream.pop(i)
        stream.insert(max(0, min(len(stream), i + rng.randint(-3000, 3000))), event)
    for event in rng.sample(events, int(len(events) * dup_share)):
        stream.insert(rng.randrange(len(stream) + 1), event)
    batches = []
    while stream:
        size = rng.choice([1, 7, 50, 200, 500, 1000, 2000])
        batches.append(stream[:size])
        stream = stream[size:]
    return batches


async def post_all(client: httpx.AsyncClient, batches: list[list[dict[str, Any]]], workers: int = 3) -> dict[str, int]:
    queue: asyncio.Queue[list[dict[str, Any]]] = asyncio.Queue()
    for batch in batches:
        queue.put_nowait(batch)
    totals = {"accepted": 0, "duplicates": 0}

    async def work() -> None:
        while not queue.empty():
            batch = queue.get_nowait()
            response = await client.post("/api/events", json=batch)
            assert response.status_code == 200, response.text
            for key in totals:
                totals[key] += response.json()["data"][key]

    await asyncio.gather(*(work() for _ in range(workers)))
    return totals


def assert_matches(overview: dict[str, Any], agents: list[dict[str, Any]], ref: dict[str, Any]) -> None:
    """Every counter and rate of every queue, the waiting calls, and every agent's state and figures."""
    by_queue = {q["queue_id"]: q for q in overview["queues"]}
    assert set(ref["queues"]) <= set(by_queue)
    for name, expected in ref["queues"].items():
        got = by_queue[name]["today"]
        for key, value in expected.items():
            if value is None or isinstance(value, int):
                assert got[key] == value, (name, key, got[key], value)
            else:
                tolerance = 2e-3 if key.endswith("_s") else 1e-9
                assert got[key] == pytest.approx(value, abs=tolerance), (name, key, got[key], value)
    for name, row in by_queue.items():
        count, oldest = ref["waiting"].get(name, (0, None))
        assert row["waiting"] == count, (name, row["waiting"], count)
        if count:
            assert ms(row["oldest_queued_at"]) == oldest
    totals = overview["today"]
    for key in ("offered", "answered", "abandoned", "short_abandoned", "handled"):
        assert totals[key] == sum(q[key] for q in ref["queues"].values()), key
    for key, value in ref["feedback"].items():
        assert totals[key] == pytest.approx(value, abs=1e-9) if value is not None else totals[key] is None, key
    states = [a["state"] for a in ref["agents"].values() if a["state"]]
    for state in ("available", "on_call", "wrap_up", "break", "other"):
        assert overview["agents"]["by_state"][state] == states.count(state), state
    assert overview["agents"]["logged_in"] == sum(s != "logged_out" for s in states)
    listed = {a["agent_id"]: a for a in agents}
    for agent_id, expected in ref["agents"].items():
        got = listed[agent_id]
        if expected["state"]:
            assert (got["state"], got["reason"], ms(got["since"])) == (
                expected["state"], expected["reason"], expected["since"]), agent_id
        assert got["today"]["handled"] == expected["handled"], agent_id
        if expected["aht_s"] is None:
            assert got["today"]["aht_s"] is None
        else:
            assert got["today"]["aht_s"] == pytest.approx(expected["aht_s"], abs=2e-3), agent_id


async def live_documents(server: RunningServer, tenant: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    async with server.client(server.token(tenant, "supervisor")) as client:
        overview = await client.get("/api/metrics/live")
        agents = await client.get("/api/metrics/agents/status")
    assert overview.status_code == 200, overview.text
    assert agents.status_code == 200, agents.text
    return overview.json()["data"], agents.json()["data"]


@pytest.mark.timeout(600)
async def test_simulated_day_with_duplicates_and_disorder_is_exact(server: RunningServer) -> None:
    """50,000+ simulated events in random batches, 5% duplicated and 10% out of order, equal a hand count."""
    tenant = new_tenant("exact")
    starts_at, day_start = day_started_hours_ago(5)
    await put_settings(server, tenant, day_starts_at=starts_at, timezone="UTC")
    now = datetime.now(UTC)
    events = simulated(now, hours=4.5, at_least=50_000, calls_per_hour=1700.0, queues=4, seed=7)
    rng = random.Random(11)
    batches = delivery(events, rng, dup_share=0.05, disorder_share=0.10)
    async with server.client(server.token(tenant, "ingest")) as client:
        totals = await post_all(client, batches)
    assert totals["accepted"] == len(events)
    assert totals["duplicates"] == sum(len(b) for b in batches) - len(events)
    overview, agents = await live_documents(server, tenant)
    ref = recompute(events, day_start, day_start + 86_400_000, now=int(time.time() * 1000))
    assert_matches(overview, agents, ref)
    assert sum(q["offered"] for q in ref["queues"].values()) > 5000


async def test_answered_before_queued_is_reconciled(server: RunningServer) -> None:
    """An answer that arrives before its queued event still gets its wait counted once the queued event comes."""
    tenant = new_tenant("recon")
    base = int(time.time() * 1000) - 60_000
    queued = {"event_id": "q1", "type": "call.queued", "ts": base, "call_id": "c1", "queue_id": "sales"}
    answered = {"event_id": "a1", "type": "call.answered", "ts": base + 12_000, "call_id": "c1", "queue_id": "sales",
                "agent_id": "ann"}
    async with server.client(server.token(tenant, "ingest")) as client:
        assert (await client.post("/api/events", json=[answered])).status_code == 200
        overview, _ = await live_documents(server, tenant)
        sales = overview["queues"][0]
        assert (sales["today"]["answered"], sales["today"]["asa_s"], sales["waiting"]) == (1, 0.0, 0)
        assert (await client.post("/api/events", json=[queued, answered])).status_code == 200
    overview, _ = await live_documents(server, tenant)
    sales = overview["queues"][0]
    assert sales["today"]["offered"] == 1
    assert sales["today"]["answered"] == 1
    assert sales["today"]["asa_s"] == 12.0
    assert sales["today"]["answered_within_sl"] == 1
    assert sales["waiting"] == 0


async def test_older_agent_state_never_overwrites_newer(server: RunningServer) -> None:
    """A late agent.state with an older ts is kept in history but does not change the current state."""
    tenant = new_tenant("order")
    now = int(time.time() * 1000)
    newer = {"event_id": "s2", "type": "agent.state", "ts": now - 1000, "agent_id": "bo", "state": "break",
             "reason": "lunch", "name": "Bo"}
    older = {"event_id": "s1", "type": "agent.state", "ts": now - 5000, "agent_id": "bo", "state": "available"}
    async with server.client(server.token(tenant, "ingest")) as client:
        await client.post("/api/events", json=[newer])
        await client.post("/api/events", json=[older])
    _, agents = await live_documents(server, tenant)
    assert [(a["agent_id"], a["state"], a["reason"], a["name"]) for a in agents] == [("bo", "break", "lunch", "Bo")]
    assert ms(agents[0]["since"]) == now - 1000

"""The simulated contact center: determinism, event shape, and call-flow realism."""

from __future__ import annotations

import functools
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from server.tools.simulate_activity import base_mix
from server.tools.simulate_model import ContactCenter, SimulationConfig, arrival_rate, generate

START = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
STATES = {"logged_out", "available", "on_call", "wrap_up", "break", "other"}
REQUIRED: dict[str, dict[str, type | tuple[type, ...]]] = {
    "agent.state": {"agent_id": str, "state": str},
    "call.queued": {"call_id": str, "queue_id": str},
    "call.answered": {"call_id": str, "queue_id": str, "agent_id": str},
    "call.abandoned": {"call_id": str, "queue_id": str},
    "call.completed": {"call_id": str, "queue_id": str, "agent_id": str,
                       "talk_s": float, "hold_s": float, "wrap_s": float},
    "quality.scored": {"call_id": str, "agent_id": str, "score": (int, float)},
    "csat.response": {"call_id": str},
    "call.offered": {"call_id": str, "queue_id": str, "agent_id": str},
    "call.missed": {"call_id": str, "queue_id": str, "agent_id": str, "ring_s": float},
    "call.hold": {"call_id": str, "queue_id": str, "agent_id": str},
    "call.unhold": {"call_id": str, "queue_id": str, "agent_id": str},
    "callback.requested": {"callback_id": str, "queue_id": str, "due_ts": str},
    "callback.completed": {"callback_id": str, "queue_id": str, "outcome": str},
}
OPTIONAL: dict[str, dict[str, type | tuple[type, ...]]] = {
    "agent.state": {"reason": str, "name": str, "team": str, "queues": list,
                    "call_id": str, "queue_id": str},
    "call.completed": {"resolved": bool, "disposition": str, "transferred": bool, "revenue": (int, float)},
    "callback.completed": {"agent_id": str},
    "quality.scored": {"criteria": dict, "reviewer": str},
    "csat.response": {"agent_id": str, "csat": int, "nps": int, "comment": str},
}


def parse_ts(ts: str) -> datetime:
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


@functools.cache
def day() -> tuple[ContactCenter, list[dict[str, Any]]]:
    """One simulated 8-hour day (08:00-16:00 UTC) at the default 600 calls/hour, shared by tests."""
    center = ContactCenter(SimulationConfig(seed=7), START)
    return center, center.advance(START + timedelta(hours=8))


def of_type(events: list[dict[str, Any]], type_: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == type_]


def test_same_seed_gives_identical_events() -> None:
    """Two runs with the same seed and start produce identical event lists."""
    config = SimulationConfig(seed=3, agents=20, calls_per_hour=200)
    assert generate(config, START, timedelta(hours=1)) == generate(config, START, timedelta(hours=1))


def test_different_seed_gives_different_events() -> None:
    """Another seed produces another run."""
    a = generate(SimulationConfig(seed=1, agents=20, calls_per_hour=200), START, timedelta(hours=1))
    b = generate(SimulationConfig(seed=2, agents=20, calls_per_hour=200), START, timedelta(hours=1))
    strip = [{k: v for k, v in e.items() if k != "event_id"} for e in a]
    assert strip != [{k: v for k, v in e.items() if k != "event_id"} for e in b]


def test_advancing_in_steps_equals_one_step() -> None:
    """Advancing the virtual clock minute by minute yields the same events as one big advance."""
    config = SimulationConfig(seed=5, agents=15, calls_per_hour=150)
    center = ContactCenter(config, START)
    stepped: list[dict[str, Any]] = []
    for minute in range(1, 61):
        stepped += center.advance(START + timedelta(minutes=minute))
    assert stepped == generate(config, START, timedelta(hours=1))
    assert center.now == START + timedelta(hours=1)
    assert center.advance(START) == []


def test_advance_returns_only_events_up_to_until() -> None:
    """advance(until) returns no event later than until."""
    center = ContactCenter(SimulationConfig(seed=4), START)
    until = START + timedelta(minutes=7, seconds=13.5)
    assert all(parse_ts(e["ts"]) <= until for e in center.advance(until))


def test_events_are_ordered_unique_and_well_formed() -> None:
    """Events come in ts order with unique ids and exactly API.md's fields, correctly typed."""
    _, events = day()
    stamps = [parse_ts(e["ts"]) for e in events]
    assert stamps == sorted(stamps)
    assert all(e["ts"].endswith("Z") and len(e["ts"]) == 24 for e in events)
    assert len({e["event_id"] for e in events}) == len(events)
    for event in events:
        assert isinstance(event["event_id"], str) and 0 < len(event["event_id"]) <= 128
        required, optional = REQUIRED[event["type"]], OPTIONAL.get(event["type"], {})
        assert set(event) - {"event_id", "type", "ts"} - set(required) <= set(optional), event
        for name, kind in {**required, **optional}.items():
            if name in event or name in required:
                assert isinstance(event[name], kind), (name, event)
        assert "client_id" not in event
    assert {e["state"] for e in of_type(events, "agent.state")} <= STATES


def test_every_agent_logs_in_with_profile() -> None:
    """Each agent starts with an `available` event carrying name, team and a non-empty skill list."""
    center, events = day()
    first: dict[str, dict[str, Any]] = {}
    for e in of_type(events, "agent.state"):
        first.setdefault(e["agent_id"], e)
    assert len(first) == center.config.agents
    assert all(e["state"] == "available" and e["name"] and e["team"].startswith("team-")
               and 1 <= len(e["queues"]) <= 3 for e in first.values())
    assert parse_ts(max(e["ts"] for e in first.values())) <= START + timedelta(minutes=2)
    served = {q for e in first.values() for q in e["queues"]}
    assert served == set(center.queue_ids) == {"sales", "support", "billing"}


def test_offered_volume_matches_the_arrival_curve() -> None:
    """Offered calls (excluding transfer legs) are within 15% of the curve's expected count."""
    center, events = day()
    expected = sum(arrival_rate(center.config, START + timedelta(minutes=m, seconds=30)) / 60
                   for m in range(8 * 60))
    transfers = sum(e["transferred"] for e in of_type(events, "call.completed"))
    offered = len(of_type(events, "call.queued")) - transfers
    assert abs(offered - expected) <= 0.15 * expected, (offered, expected)


def test_each_queue_leg_ends_once() -> None:
    """Every answer follows its queued leg, and each leg ends in exactly one answer or abandon."""
    center, events = day()
    queued: dict[tuple[str, str], datetime] = {}
    outcomes: Counter[tuple[str, str]] = Counter()
    for e in events:
        leg = (e.get("queue_id", ""), e.get("call_id", ""))
        if e["type"] == "call.queued":
            assert leg not in queued
            queued[leg] = parse_ts(e["ts"])
        elif e["type"] in ("call.answered", "call.abandoned"):
            assert leg in queued and queued[leg] <= parse_ts(e["ts"])
            outcomes[leg] += 1
    assert all(n == 1 for n in outcomes.values())
    unfinished = {leg for leg in queued if leg not in outcomes}
    assert unfinished == center.pending_legs()


def test_completion_follows_answer_by_same_agent() -> None:
    """Every completed call was answered earlier by the same agent, with plausible durations."""
    _, events = day()
    answered: dict[tuple[str, str], tuple[str, datetime]] = {}
    for e in events:
        leg = (e.get("queue_id", ""), e.get("call_id", ""))
        if e["type"] == "call.answered":
            answered[leg] = (e["agent_id"], parse_ts(e["ts"]))
        elif e["type"] == "call.completed":
            agent_id, at = answered.pop(leg)
            assert agent_id == e["agent_id"]
            span = (parse_ts(e["ts"]) - at).total_seconds()
            assert abs(span - (e["talk_s"] + e["hold_s"] + e["wrap_s"])) < 0.01


def test_agent_states_follow_the_call_cycle() -> None:
    """An agent goes on_call at the answer, then wrap_up, and never takes two calls at once."""
    _, events = day()
    current: dict[str, str] = {}
    for e in events:
        if e["type"] == "call.answered":
            assert current[e["agent_id"]] == "available"
        elif e["type"] == "agent.state":
            previous = current.get(e["agent_id"])
            if e["state"] == "wrap_up":
                assert previous == "on_call"
            if e["state"] == "on_call":
                assert previous == "available" and e["call_id"]
            current[e["agent_id"]] = e["state"]


def test_day_has_abandons_transfers_breaks_and_feedback() -> None:
    """A day shows abandons (some short), transfers, breaks with reasons, CSAT and quality scores."""
    _, events = day()
    queued = {(e["queue_id"], e["call_id"]): parse_ts(e["ts"]) for e in of_type(events, "call.queued")}
    waits = [(parse_ts(e["ts"]) - queued[(e["queue_id"], e["call_id"])]).total_seconds()
             for e in of_type(events, "call.abandoned")]
    assert waits and sum(w < 5 for w in waits) > 0
    completed = of_type(events, "call.completed")
    transfer_share = sum(e["transferred"] for e in completed) / len(completed)
    assert 0.02 < transfer_share < 0.09
    resolved_share = sum(e["resolved"] for e in completed) / len(completed)
    assert 0.6 < resolved_share < 0.85
    reasons = {e.get("reason") for e in of_type(events, "agent.state") if e["state"] == "break"}
    assert {"lunch", "coffee"} <= reasons and None not in reasons
    assert any(e["state"] == "other" for e in of_type(events, "agent.state"))
    csat = of_type(events, "csat.response")
    assert 0.15 * len(completed) < len(csat) < 0.45 * len(completed)
    assert all(1 <= e["csat"] <= 5 and 0 <= e.get("nps", 0) <= 10 for e in csat)
    assert sum(e["csat"] >= 4 for e in csat) > len(csat) / 2
    quality = of_type(events, "quality.scored")
    assert quality and all(0 <= e["score"] <= 5 and e["criteria"] and e["reviewer"] for e in quality)


def test_transfer_requeues_with_a_new_call_id() -> None:
    """A transferred call reappears as a new call_id queued on another queue at the same instant."""
    _, events = day()
    for i, e in enumerate(events):
        if e["type"] == "call.completed" and e["transferred"]:
            follow = events[i + 1]
            assert follow["type"] == "call.queued" and follow["ts"] == e["ts"]
            assert follow["call_id"] != e["call_id"] and follow["queue_id"] != e["queue_id"]


def test_intraday_curve_peaks_mid_morning() -> None:
    """More calls arrive 10:00-11:00 local than 03:00-04:00 local, in a non-UTC time zone too."""
    config = SimulationConfig(seed=11, agents=10, calls_per_hour=300, timezone="Europe/Berlin")
    midnight = datetime(2026, 11, 24, 23, 0, tzinfo=UTC)  # 00:00 in Berlin (UTC+1 in November)
    events = generate(config, midnight, timedelta(hours=12))

    def arrivals(hour: int) -> int:
        lo, hi = midnight + timedelta(hours=hour), midnight + timedelta(hours=hour + 1)
        return sum(lo <= parse_ts(e["ts"]) < hi for e in of_type(events, "call.queued"))

    assert arrivals(10) > 3 * max(1, arrivals(3))
    assert arrival_rate(config, midnight + timedelta(hours=10, minutes=30)) > config.calls_per_hour


def test_restart_gets_fresh_ids() -> None:
    """A run started at another time uses other event and call ids, so the server keeps both."""
    config = SimulationConfig(seed=0, agents=5, calls_per_hour=100)
    a = generate(config, START, timedelta(minutes=10))
    b = generate(config, START + timedelta(hours=1), timedelta(minutes=10))
    assert not {e["event_id"] for e in a} & {e["event_id"] for e in b}


def test_day_has_rings_misses_holds_callbacks_and_revenue() -> None:
    """Calls ring agents, some ring out and ring the next agent, holds pair up, callbacks close, sales earn."""
    center, events = day()
    kinds = {e["type"] for e in events}
    assert {"call.offered", "call.missed", "call.hold", "call.unhold", "callback.requested",
            "callback.completed"} <= kinds
    rung: set[tuple[str, str]] = set()
    for e in events:  # every answer and every miss follows a ring at that agent
        if e["type"] == "call.offered":
            rung.add((e["call_id"], e["agent_id"]))
        elif e["type"] in ("call.answered", "call.missed"):
            assert (e["call_id"], e["agent_id"]) in rung, e
    holds: dict[str, int] = {}
    for e in events:
        if e["type"] in ("call.hold", "call.unhold"):
            holds[e["call_id"]] = holds.get(e["call_id"], 0) + (1 if e["type"] == "call.hold" else -1)
            assert holds[e["call_id"]] in (0, 1)
    sales = [e for e in of_type(events, "call.completed") if e["queue_id"] == center.queue_ids[0]]
    assert sales and all("revenue" in e for e in sales)
    assert 0 < sum(e["revenue"] > 0 for e in sales) < len(sales)
    assert not any("revenue" in e for e in of_type(events, "call.completed") if e["queue_id"] != center.queue_ids[0])
    requested = {e["callback_id"] for e in of_type(events, "callback.requested")}
    assert {e["callback_id"] for e in of_type(events, "callback.completed")} <= requested


def test_base_mix_leaves_out_what_came_with_rings_holds_and_callbacks() -> None:
    """The bench's base mix is the day without rings, misses, holds, callbacks and revenue, and nothing else lost."""
    _, events = day()
    base = base_mix(events)
    new = {"call.offered", "call.missed", "call.hold", "call.unhold", "callback.requested", "callback.completed"}
    assert not {e["type"] for e in base} & new and not any("revenue" in e for e in base)
    assert [e["event_id"] for e in base] == [e["event_id"] for e in events if e["type"] not in new]

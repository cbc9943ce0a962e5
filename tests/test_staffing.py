"""Erlang C: the staffing calculator against the textbook formula, computed independently here."""

from __future__ import annotations

import math
from decimal import Decimal, getcontext

import pytest

from server.analytics.staffing import erlang_c, required_agents, staffing

from .conftest import RunningServer

getcontext().prec = 60


def textbook(agents: int, traffic: float, aht: float, threshold: float) -> tuple[float, float, float]:
    """P(wait), service level and ASA from A^N/N! · N/(N−A) / (Σ A^k/k! + A^N/N! · N/(N−A)), in 60-digit decimals."""
    a = Decimal(repr(traffic))
    term = Decimal(1)
    total = Decimal(0)
    for k in range(agents):
        total += term
        term = term * a / (k + 1)
    top = term * agents / (agents - a)
    pw = top / (total + top)
    gap = Decimal(agents) - a
    sl = 1 - pw * (-(gap * Decimal(repr(threshold)) / Decimal(repr(aht)))).exp()
    asa = pw * Decimal(repr(aht)) / gap
    return float(pw), float(sl), float(asa)


GRID = [(calls, aht, agents) for calls, aht in [(10, 180), (50, 240), (120, 300), (400, 240), (1500, 300), (3600, 270)]
        for agents in (1, 5, 12, 30, 60, 100, 150, 300, 500, 900, 1300)]


@pytest.mark.parametrize(("calls", "aht", "agents"), GRID)
def test_matches_the_textbook_formula(calls: int, aht: float, agents: int) -> None:
    """Waiting probability, service level and ASA equal the textbook Erlang C within 1e-6, N up to 1300 without overflow."""
    interval, threshold = 900.0, 20.0
    traffic = calls * aht / interval
    got = staffing(calls, aht, interval, threshold, agents)
    if agents <= traffic:
        assert (got.wait_probability, got.service_level, got.asa_s) == (1.0, 0.0, None)
        return
    pw, sl, asa = textbook(agents, traffic, aht, threshold)
    assert got.wait_probability == pytest.approx(pw, abs=1e-6)
    assert got.service_level == pytest.approx(sl, abs=1e-6)
    assert got.asa_s == pytest.approx(asa, abs=1e-6 * max(1.0, asa))
    assert got.occupancy == pytest.approx(traffic / agents, abs=1e-12)


def test_required_agents_is_the_smallest_meeting_the_target() -> None:
    """required_agents gives the smallest N with SL ≥ target; N−1 falls short."""
    for calls, aht in [(100, 240), (1000, 300), (3000, 280)]:
        n = required_agents(calls, aht, 900, 20, 0.8).agents
        assert staffing(calls, aht, 900, 20, n).service_level >= 0.8
        assert staffing(calls, aht, 900, 20, n - 1).service_level < 0.8


def test_large_n_does_not_overflow() -> None:
    """Thousands of agents and calls per interval give finite probabilities."""
    assert 0 <= erlang_c(5000, 4950.0) <= 1
    assert math.isfinite(staffing(20000, 240, 900, 20, 5400).service_level)


async def test_http_calculator(server: RunningServer) -> None:
    """The endpoint gives the figures for N agents, and the required agents with occupancy cap and shrinkage."""
    async with server.client(server.token("staff", "agent", sub="a1")) as client:
        fixed = await client.get("/api/analytics/staffing/erlang-c",
                                 params={"calls": 120, "aht_s": 300, "interval_s": 900, "sl_threshold_s": 20, "agents": 45})
        target = await client.get("/api/analytics/staffing/erlang-c",
                                  params={"calls": 120, "aht_s": 300, "interval_s": 900, "sl_threshold_s": 20,
                                          "target_sl": 0.8, "max_occupancy": 0.85, "shrinkage": 0.3})
    assert fixed.status_code == 200, fixed.text
    data = fixed.json()["data"]
    pw, sl, asa = textbook(45, 40.0, 300, 20)
    assert data["wait_probability"] == pytest.approx(pw, abs=1e-6)
    assert data["service_level"] == pytest.approx(sl, abs=1e-6)
    assert data["asa_s"] == pytest.approx(asa, abs=1e-6)
    assert data["occupancy"] == pytest.approx(40 / 45)
    body = target.json()["data"]
    raw = body["required_agents_before_shrinkage"]
    assert body["service_level"] >= 0.8 and body["occupancy"] <= 0.85
    assert body["required_agents"] == math.ceil(raw / 0.7)


@pytest.mark.parametrize(("params", "name"), [
    ({"aht_s": 300, "agents": 5}, "calls"),
    ({"calls": "many", "aht_s": 300, "agents": 5}, "calls"),
    ({"calls": 10, "aht_s": 0, "agents": 5}, "aht_s"),
    ({"calls": 10, "aht_s": 300}, "agents"),
    ({"calls": 10, "aht_s": 300, "agents": 2.5}, "agents"),
    ({"calls": 10, "aht_s": 300, "target_sl": 1.5}, "target_sl"),
    ({"calls": 10, "aht_s": 300, "target_sl": 0.8, "shrinkage": 1}, "shrinkage"),
])
async def test_bad_parameters_are_named(server: RunningServer, params: dict[str, object], name: str) -> None:
    """A missing or malformed parameter is a 400 naming it."""
    async with server.client(server.token("staff", "supervisor")) as client:
        response = await client.get("/api/analytics/staffing/erlang-c", params=params)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["details"]["parameter"] == name


async def test_ingest_role_may_not_use_it(server: RunningServer) -> None:
    """An ingest token reads nothing, the calculator included."""
    async with server.client(server.token("staff", "ingest")) as client:
        response = await client.get("/api/analytics/staffing/erlang-c", params={"calls": 1, "aht_s": 1, "agents": 1})
    assert response.status_code == 403

"""Erlang C: waiting probability, service level, ASA, occupancy and required agents.

The textbook formula divides A^N/N! by a sum of such terms, which overflows a
float long before N = 200. Here the Erlang B recursion
B(k) = A·B(k−1) / (k + A·B(k−1)) runs in floats that stay in [0, 1], and
C = N·B / (N − A·(1 − B)): exact to rounding for thousands of agents.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .auth import ANY_READER
from .errors import BadRequest
from .responses import success
from .services import principal

MAX_AGENTS = 100_000


@dataclass(frozen=True)
class Staffing:
    """Erlang C figures for N agents (``None`` where the queue is unstable: N ≤ A)."""

    agents: int
    traffic_erlangs: float
    wait_probability: float
    service_level: float
    asa_s: float | None
    occupancy: float

    def as_dict(self) -> dict[str, Any]:
        return {"agents": self.agents, "traffic_erlangs": self.traffic_erlangs,
                "wait_probability": self.wait_probability, "service_level": self.service_level,
                "asa_s": self.asa_s, "occupancy": self.occupancy}


def erlang_b(agents: int, traffic: float) -> float:
    """Blocking probability of N servers offered A Erlangs (stable recursion)."""
    b = 1.0
    for k in range(1, agents + 1):
        b = traffic * b / (k + traffic * b)
    return b


def erlang_c(agents: int, traffic: float) -> float:
    """Probability that a call waits, for N agents and A Erlangs; 1 when N ≤ A."""
    if agents <= traffic:
        return 1.0
    if traffic <= 0:
        return 0.0
    b = erlang_b(agents, traffic)
    return agents * b / (agents - traffic * (1 - b))


def staffing(calls: float, aht_s: float, interval_s: float, sl_threshold_s: float, agents: int) -> Staffing:
    """Erlang C figures for ``calls`` arriving per interval with handle time ``aht_s`` and N agents."""
    traffic = calls * aht_s / interval_s
    pw = erlang_c(agents, traffic)
    if agents <= traffic:
        return Staffing(agents, traffic, 1.0, 0.0, None, 1.0 if agents else 0.0)
    gap = agents - traffic
    sl = 1 - pw * math.exp(-gap * sl_threshold_s / aht_s) if aht_s > 0 else 1.0
    return Staffing(agents, traffic, pw, max(0.0, min(1.0, sl)), pw * aht_s / gap, traffic / agents)


def required_agents(calls: float, aht_s: float, interval_s: float, sl_threshold_s: float, target_sl: float,
                    max_occupancy: float | None = None) -> Staffing:
    """The smallest N whose service level meets the target (and occupancy ≤ max_occupancy)."""
    traffic = calls * aht_s / interval_s
    n = max(1, math.floor(traffic) + 1)
    while n <= MAX_AGENTS:
        figures = staffing(calls, aht_s, interval_s, sl_threshold_s, n)
        if figures.service_level >= target_sl and (max_occupancy is None or figures.occupancy <= max_occupancy):
            return figures
        n += 1
    raise BadRequest(f"no staffing up to {MAX_AGENTS} agents meets the target", code="invalid_parameter",
                     details={"parameter": "target_sl"})


def _number(request: Request, name: str, low: float, high: float, *, required: bool = True,
            integer: bool = False) -> float | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        if required:
            raise BadRequest(f"{name}: required", code="invalid_parameter", details={"parameter": name})
        return None
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        kind = "a whole number" if integer else "a number"
        raise BadRequest(f"{name}: expected {kind}, got {raw!r}", code="invalid_parameter",
                         details={"parameter": name}) from None
    if not math.isfinite(value) or not low <= value <= high:
        raise BadRequest(f"{name}: expected {low:g}..{high:g}, got {raw}", code="invalid_parameter",
                         details={"parameter": name})
    return value


async def erlang_c_route(request: Request) -> Response:
    """``GET /api/analytics/staffing/erlang-c`` (any role but ingest): figures for N agents, or the agents required."""
    principal(request, ANY_READER)
    calls = _number(request, "calls", 0, 1_000_000)
    aht = _number(request, "aht_s", 1, 86_400)
    interval = _number(request, "interval_s", 60, 86_400, required=False) or 900.0
    threshold = _number(request, "sl_threshold_s", 0, 86_400, required=False)
    threshold = 20.0 if threshold is None else threshold
    agents = _number(request, "agents", 0, MAX_AGENTS, required=False, integer=True)
    target = _number(request, "target_sl", 0, 0.9999, required=False)
    assert calls is not None and aht is not None
    if (agents is None) == (target is None):
        raise BadRequest("agents or target_sl: give exactly one (agents=N for its figures, target_sl=0.8 for the "
                         "agents required)", code="invalid_parameter", details={"parameter": "agents"})
    if agents is not None:
        return success(staffing(calls, aht, interval, threshold, int(agents)).as_dict())
    max_occupancy = _number(request, "max_occupancy", 0.01, 1, required=False)
    shrinkage = _number(request, "shrinkage", 0, 0.95, required=False) or 0.0
    assert target is not None
    figures = required_agents(calls, aht, interval, threshold, target, max_occupancy)
    data = figures.as_dict()
    data["required_agents_before_shrinkage"] = figures.agents
    data["required_agents"] = math.ceil(figures.agents / (1 - shrinkage) - 1e-9)
    data["shrinkage"] = shrinkage
    return success(data)


routes = [Route("/api/analytics/staffing/erlang-c", erlang_c_route, methods=["GET"])]

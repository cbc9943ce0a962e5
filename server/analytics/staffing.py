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

from server.core.errors import BadRequest

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

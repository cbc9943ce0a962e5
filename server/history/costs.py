"""``GET /api/analytics/costs`` and ``/revenue``: what handling calls cost (from the tenant's cost settings) and earn.

METRICS.md: cost of calls = agent cost per hour × handle hours + telephony cost per minute ×
talk minutes; ``cost_per_call`` = that / handled. Queue figures use the queue's override of the
rates where it has one; agent figures use the tenant's rates (an agent's calls span queues).
Revenue: Σ ``revenue`` of completed calls (kept in hundredths), ``revenue_per_call`` = that / handled,
``conversion_rate`` = handled with revenue > 0 / handled, next to the cost per call.
"""

from __future__ import annotations

from typing import Any

from server.history import formulas as metrics


def cost(c: metrics.Counters, rates: tuple[float, float]) -> dict[str, Any]:
    """Handle and talk time of ``c`` priced at (agent cost per hour, telephony cost per minute)."""
    per_hour, per_minute = rates
    handle_s, talk_s = c.get("handle_ms", 0) / 1000, c.get("talk_ms", 0) / 1000
    agent_cost = round(per_hour * handle_s / 3600, 4)
    telephony_cost = round(per_minute * talk_s / 60, 4)
    total = round(agent_cost + telephony_cost, 4)
    return {"handled": c.get("handled", 0), "handle_s": handle_s, "talk_s": talk_s, "agent_cost": agent_cost,
            "telephony_cost": telephony_cost, "total_cost": total,
            "cost_per_call": metrics.ratio(total, c.get("handled", 0))}


def summed(rows: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("handled", "handle_s", "talk_s", "agent_cost", "telephony_cost", "total_cost")
    out: dict[str, Any] = {k: round(sum(r[k] for r in rows), 4) for k in keys}
    out["cost_per_call"] = metrics.ratio(out["total_cost"], out["handled"])
    return out


Priced = tuple[metrics.Counters, tuple[float, float]]  # counters of a row, and the rates its costs use


def revenue(rows: list[Priced]) -> dict[str, Any]:
    """Revenue, revenue per handled call, conversion rate and cost per call of some rows, summed."""
    c = metrics.total(counters for counters, _ in rows)
    total_cost = round(sum(cost(counters, rates)["total_cost"] for counters, rates in rows), 4)
    handled = c.get("handled", 0)
    return {"handled": handled, "converted": c.get("converted", 0), "revenue": metrics.revenue(c),
            "revenue_per_call": metrics.revenue_per_call(c), "conversion_rate": metrics.conversion_rate(c),
            "total_cost": total_cost, "cost_per_call": metrics.ratio(total_cost, handled)}

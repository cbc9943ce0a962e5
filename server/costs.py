"""``GET /api/analytics/costs``: what handling calls cost, from the tenant's cost settings.

METRICS.md: cost of calls = agent cost per hour × handle hours + telephony cost per minute ×
talk minutes; ``cost_per_call`` = that / handled. Queue figures use the queue's override of the
rates where it has one; agent figures use the tenant's rates (an agent's calls span queues).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import metrics
from .auth import READ_ALL
from .history import Scope, counters
from .responses import success


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


async def costs(request: Request) -> Response:
    """Per bucket (a day unless ``granularity`` says otherwise) × queue; totals by queue, agent and bucket."""
    scope = await Scope.of(request, READ_ALL, granularity="day")
    s = scope.settings
    tenant_rates = (s.costs["agent_cost_per_hour"], s.costs["telephony_cost_per_minute"])
    keys = [scope.queue_id] if scope.queue_id else None
    data = []
    for row in await scope.rows("history_by_bucket_key", "queue", keys):
        c = counters(row)
        if c.get("handled"):
            data.append({**scope.period.bucket(row["bucket"]), "queue_id": row["key"],
                         **cost(c, s.queue_costs(row["key"]))})
    by_agent = []
    if not scope.queue_id:
        for row in await scope.rows("history_by_key", "agent", await scope.agent_keys()):
            if row["handled"]:
                by_agent.append({"agent_id": row["key"], **cost(counters(row), tenant_rates)})
    queues = sorted({r["queue_id"] for r in data})
    starts = sorted({r["start"] for r in data})
    statistics = {
        **scope.period.describe(), **({"queue_id": scope.queue_id} if scope.queue_id else {}),
        "currency": s.costs["currency"],
        "agent_cost_per_hour": tenant_rates[0], "telephony_cost_per_minute": tenant_rates[1],
        **summed(data),
        "by_queue": [{"queue_id": q, **summed([r for r in data if r["queue_id"] == q])} for q in queues],
        "by_bucket": [{"start": t, **summed([r for r in data if r["start"] == t])} for t in starts],
        "by_agent": by_agent,
    }
    return success(data, statistics=statistics)


routes = [Route("/api/analytics/costs", costs, methods=["GET"])]

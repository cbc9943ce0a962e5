"""`GET /api/analytics/costs` and `GET /api/analytics/revenue`."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api.context import scope_of
from server.api.responses import success
from server.core.auth import READ_ALL
from server.history.costs import Priced, cost, revenue, summed
from server.history.figures import agent_directory, counters


async def costs(request: Request) -> Response:
    """Per bucket (a day unless ``granularity`` says otherwise) × queue; totals by queue, agent and bucket."""
    scope = await scope_of(request, READ_ALL, granularity="day")
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


async def revenue_figures(request: Request) -> Response:
    """Per bucket × queue: revenue, revenue per call, conversion rate, cost per call; totals by queue, agent,
    team and bucket (agents and teams at the tenant's rates)."""
    scope = await scope_of(request, READ_ALL, granularity="day")
    s = scope.settings
    tenant_rates = (s.costs["agent_cost_per_hour"], s.costs["telephony_cost_per_minute"])
    keys = [scope.queue_id] if scope.queue_id else None
    rows: list[tuple[dict[str, str], str, Priced]] = []
    for row in await scope.rows("history_by_bucket_key", "queue", keys):
        c = counters(row)
        if c.get("handled"):
            rows.append((scope.period.bucket(row["bucket"]), row["key"], (c, s.queue_costs(row["key"]))))
    data = [{**bucket, "queue_id": q, **revenue([priced])} for bucket, q, priced in rows]
    agents: list[tuple[str, Priced]] = []
    if not scope.queue_id:
        agents = [(row["key"], (counters(row), tenant_rates))
                  for row in await scope.rows("history_by_key", "agent", await scope.agent_keys()) if row["handled"]]
    directory = await agent_directory(scope) if agents else {}
    teams: dict[str, list[Priced]] = {}
    for agent_id, priced in agents:
        team = directory.get(agent_id, {}).get("team")
        if team:
            teams.setdefault(team, []).append(priced)
    statistics = {
        **scope.period.describe(), **({"queue_id": scope.queue_id} if scope.queue_id else {}),
        "currency": s.costs["currency"],
        **revenue([priced for _, _, priced in rows]),
        "by_queue": [{"queue_id": q, **revenue([p for _, key, p in rows if key == q])}
                     for q in sorted({key for _, key, _ in rows})],
        "by_bucket": [{**b, **revenue([p for bucket, _, p in rows if bucket["start"] == b["start"]])}
                      for b in sorted({r[0]["start"]: r[0] for r in rows}.values(), key=lambda b: b["start"])],
        "by_agent": [{"agent_id": a, **revenue([priced])} for a, priced in agents],
        "by_team": [{"team": t, **revenue(members)} for t, members in sorted(teams.items())],
    }
    return success(data, statistics=statistics)


routes = [Route("/api/analytics/costs", costs, methods=["GET"]),
          Route("/api/analytics/revenue", revenue_figures, methods=["GET"])]

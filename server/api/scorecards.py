"""`GET /api/analytics/performance/scorecards`."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api.context import principal, services
from server.api.responses import success
from server.core.auth import READ_LIVE, Role
from server.history.figures import agent_figures, counters
from server.history.period import iso


async def scorecards(request: Request) -> Response:
    """The tenant's agents over the last 30 whole days, best handled first; an agent sees only itself."""
    who = principal(request, READ_LIVE)
    async with services(request).db.tenant(who.tenant) as conn:
        rows = await conn.fetch("SELECT * FROM agent_scorecards_mine ORDER BY handled DESC, agent_id")
        names = {r["agent_id"]: (r["name"], r["team"]) for r in
                 await conn.fetch("SELECT agent_id, name, team FROM agents WHERE client_id = $1", who.tenant)}
    if who.role == Role.AGENT:
        rows = [r for r in rows if r["agent_id"] == who.sub]
    data = [{"agent_id": r["agent_id"], "name": names.get(r["agent_id"], (None, None))[0],
             "team": names.get(r["agent_id"], (None, None))[1], "days": r["days"],
             **agent_figures(counters(r))} for r in rows]
    refreshed = max((r["refreshed_at"] for r in rows), default=None)
    return success(data, statistics={"window_days": 30,
                                     "refreshed_at": iso(int(refreshed.timestamp() * 1000)) if refreshed else None})


routes = [Route("/api/analytics/performance/scorecards", scorecards, methods=["GET"])]

"""``GET /api/analytics/agents/states``: agent-state history per agent × bucket (server/history/agent_states.py)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api.context import scope_of
from server.api.responses import success
from server.core.auth import READ_LIVE
from server.history.agent_states import agent_states


async def states(request: Request) -> Response:
    """Seconds per state and break reason, logged-in time, first login, last logout, occupancy, utilization and
    missed calls of each agent per bucket; an agent token sees only itself."""
    scope = await scope_of(request, READ_LIVE)
    rows = await agent_states(scope)
    return success(rows[:scope.limit], statistics={**scope.period.describe(), "rows": len(rows)})


routes = [Route("/api/analytics/agents/states", states, methods=["GET"])]

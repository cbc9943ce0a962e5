"""`GET /api/analytics/staffing/erlang-c`."""

from __future__ import annotations

import math

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.analytics.staffing import MAX_AGENTS, required_agents, staffing
from server.api.context import principal
from server.api.responses import success
from server.core.auth import ANY_READER
from server.core.errors import BadRequest


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

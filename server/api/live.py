"""Live REST: the overview, queues and agents of API.md, with ETag / If-None-Match.

Served from the process's latest rendering of the tenant (:mod:`server.live.renderings`):
never older than one tick, and a 304 costs neither a Redis round trip nor a render.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api.context import principal, services
from server.core.auth import READ_ALL, READ_LIVE, Principal, Role
from server.core.errors import BadRequest, Forbidden, NotFound
from server.live.calls import calls_document
from server.live.renderings import Rendering, overview_queues

STALE = '110 - "live state is being rebuilt"'


async def answer(request: Request, who: Principal, name: Hashable, make: Callable[[Rendering], Any], *,
                 agents: bool) -> Response:
    """200 with the document ``name`` of the tenant's rendering and its ETag, or 304 when the client's copy is current."""
    svc = services(request)
    doc = (await svc.hub.renderings.get(who.tenant, agents=agents)).doc(name, make)
    headers = {"ETag": doc.tag, "Cache-Control": "no-cache"}
    if svc.live.stale:
        headers["Warning"] = STALE
    if (wanted := request.headers.get("if-none-match")) and doc.tag in [t.strip() for t in wanted.split(",")]:
        return Response(status_code=304, headers=headers)
    return Response(doc.body(), media_type="application/json", headers=headers)


async def live_overview(request: Request) -> Response:
    """``GET /api/metrics/live``: the tenant overview document."""
    who = principal(request, READ_ALL)
    return await answer(request, who, "overview", lambda r: r.snap.overview(), agents=False)


async def queue_status(request: Request) -> Response:
    """``GET /api/metrics/queue/status``: the overview's queues."""
    who = principal(request, READ_ALL)
    return await answer(request, who, "queues", overview_queues, agents=False)


async def agents_status(request: Request) -> Response:
    """``GET /api/metrics/agents/status``: every agent; an agent token sees only itself."""
    who = principal(request, READ_LIVE)
    only = who.sub if who.role == Role.AGENT else None  # an agent token sees only itself
    filters = tuple((name, request.query_params.get(name) or None) for name in ("team", "queue_id", "state"))

    def make(rendering: Rendering) -> list[dict[str, Any]]:
        agents = [a for a in rendering.agents_list() if only is None or a["agent_id"] == only]
        for name, wanted in filters:
            if wanted:
                agents = [a for a in agents
                          if a.get(name) == wanted or (name == "queue_id" and wanted in a["queues"])]
        return agents

    return await answer(request, who, ("agents", only, filters), make, agents=True)


async def agent_status(request: Request) -> Response:
    """``GET /api/metrics/agents/{agent_id}/status``: one agent (404 when unknown)."""
    who = principal(request, READ_LIVE)
    agent_id = request.path_params["agent_id"]
    if not who.may_see_agent(agent_id):
        raise Forbidden("an agent token may read only its own status", code="agent_forbidden")
    rendering = await services(request).hub.renderings.get(who.tenant, agents=True)
    if not any(a["agent_id"] == agent_id for a in rendering.agents_list()):
        raise NotFound(f"no agent {agent_id!r} in the live state", code="agent_not_found")
    return await answer(request, who, ("agent", agent_id),
                        lambda r: next(a for a in r.agents_list() if a["agent_id"] == agent_id), agents=True)


MAX_QUEUE_FILTER = 100  # as many queues as a WebSocket subscription may name


async def calls_waiting(request: Request) -> Response:
    """``GET /api/metrics/calls/waiting``: the ``calls`` view (``?queue_id=a,b`` keeps those queues)."""
    who = principal(request, READ_ALL)
    wanted = [q.strip() for q in request.query_params.get("queue_id", "").split(",") if q.strip()]
    if len(wanted) > MAX_QUEUE_FILTER or any(len(q) > 128 for q in wanted):
        raise BadRequest(f"queue_id: expected at most {MAX_QUEUE_FILTER} comma-separated queue ids of at most "
                         "128 characters each", code="invalid_queue_id")
    only = tuple(sorted(set(wanted)))
    return await answer(request, who, ("calls", only), lambda r: calls_document(r.snap, set(only) or None),
                        agents=True)  # the full read lists the waiting calls


routes = [
    Route("/api/metrics/live", live_overview, methods=["GET"]),
    Route("/api/metrics/queue/status", queue_status, methods=["GET"]),
    Route("/api/metrics/agents/status", agents_status, methods=["GET"]),
    Route("/api/metrics/agents/{agent_id}/status", agent_status, methods=["GET"]),
    Route("/api/metrics/calls/waiting", calls_waiting, methods=["GET"]),
]

"""Live REST: the overview, queues and agents of API.md, with ETag / If-None-Match."""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api.context import principal, services
from server.api.responses import success
from server.core.auth import READ_ALL, READ_LIVE, Principal
from server.core.errors import Forbidden, NotFound
from server.live.view import Snapshot, etag


async def snapshot(request: Request, who: Principal, *, agent_changes: bool) -> Snapshot:
    svc = services(request)
    settings = await svc.settings_store.get(who.tenant)
    now_ms = int(time.time() * 1000)
    raw = await svc.live.read(who.tenant, settings, now_ms, agent_changes=agent_changes)
    return Snapshot(raw, settings, now_ms)


def conditional(request: Request, data: Any, *, stale: bool) -> Response:
    """200 with the document and its ETag, or 304 when the client's copy is current."""
    tag = etag(data)
    headers = {"ETag": tag, "Cache-Control": "no-cache"}
    if stale:
        headers["Warning"] = '110 - "live state is being rebuilt"'
    if tag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=304, headers=headers)
    return success(data, headers=headers)


async def live_overview(request: Request) -> Response:
    """``GET /api/metrics/live``: the tenant overview document."""
    who = principal(request, READ_ALL)
    snap = await snapshot(request, who, agent_changes=False)
    return conditional(request, snap.overview(), stale=services(request).live.stale)


async def queue_status(request: Request) -> Response:
    """``GET /api/metrics/queue/status``: the overview's queues."""
    who = principal(request, READ_ALL)
    snap = await snapshot(request, who, agent_changes=False)
    return conditional(request, snap.overview()["queues"], stale=services(request).live.stale)


async def agents_status(request: Request) -> Response:
    """``GET /api/metrics/agents/status``: every agent; an agent token sees only itself."""
    who = principal(request, READ_LIVE)
    snap = await snapshot(request, who, agent_changes=True)
    agents = [a for a in snap.agents_list() if who.may_see_agent(a["agent_id"])]
    for name in ("team", "queue_id", "state"):
        wanted = request.query_params.get(name)
        if wanted:
            agents = [a for a in agents if a.get(name) == wanted or (name == "queue_id" and wanted in a["queues"])]
    return conditional(request, agents, stale=services(request).live.stale)


async def agent_status(request: Request) -> Response:
    """``GET /api/metrics/agents/{agent_id}/status``: one agent (404 when unknown)."""
    who = principal(request, READ_LIVE)
    agent_id = request.path_params["agent_id"]
    if not who.may_see_agent(agent_id):
        raise Forbidden("an agent token may read only its own status", code="agent_forbidden")
    snap = await snapshot(request, who, agent_changes=True)
    for agent in snap.agents_list():
        if agent["agent_id"] == agent_id:
            return conditional(request, agent, stale=services(request).live.stale)
    raise NotFound(f"no agent {agent_id!r} in the live state", code="agent_not_found")


routes = [
    Route("/api/metrics/live", live_overview, methods=["GET"]),
    Route("/api/metrics/queue/status", queue_status, methods=["GET"]),
    Route("/api/metrics/agents/status", agents_status, methods=["GET"]),
    Route("/api/metrics/agents/{agent_id}/status", agent_status, methods=["GET"]),
]

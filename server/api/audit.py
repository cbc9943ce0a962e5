"""`GET /api/analytics/audit` (admin), and recording a request in the audit log."""

from __future__ import annotations

import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api.context import principal, services
from server.api.responses import success
from server.core.audit import record
from server.core.auth import ADMIN, Principal
from server.core.db import query
from server.history.period import iso, limit, parse


async def request_entry(request: Request, who: Principal, action: str, extra: dict[str, Any] | None = None) -> None:
    """Record a request: its path and query parameters, plus ``extra``."""
    parameters: dict[str, Any] = dict(request.query_params)
    parameters.update(extra or {})
    await record(services(request).db, who, action, request.url.path, parameters)


async def audit_list(request: Request) -> Response:
    """``GET /api/analytics/audit`` (admin): the period's entries, newest first."""
    who = principal(request, ADMIN)
    settings = await services(request).settings_store.get(who.tenant)
    period = parse(request.query_params, settings, int(time.time() * 1000), granularity="day")
    async with services(request).db.tenant(who.tenant) as conn:
        rows = await conn.fetch(query("audit_list"), who.tenant, period.bounds_dt[0], period.bounds_dt[-1],
                                limit(request.query_params))
    data = [{"at": iso(int(r["at"].timestamp() * 1000)), "sub": r["sub"], "role": r["role"], "action": r["action"],
             "route": r["route"], "parameters": orjson.loads(r["parameters"])} for r in rows]
    return success(data, statistics=period.describe())


routes = [Route("/api/analytics/audit", audit_list, methods=["GET"])]

"""``analytics_audit_log``: who exported, wrote or changed settings, what and when.

Entries are written in the caller's tenant transaction (row-level security applies, so an
entry can only ever land under the token's own tenant) and read by admins through
``GET /api/analytics/audit``.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .auth import ADMIN, Principal
from .db import Database, query
from .period import iso, limit, parse
from .responses import success
from .services import principal, services

MAX_PARAMETER_BYTES = 4096


async def record(db: Database, who: Principal, action: str, route: str, parameters: dict[str, Any]) -> None:
    """Write one entry; long parameter values are cut so one export cannot bloat the log."""
    kept = {k: (v if len(str(v)) <= 256 else f"{str(v)[:256]}…") for k, v in parameters.items()}
    encoded = orjson.dumps(kept)
    if len(encoded) > MAX_PARAMETER_BYTES:
        encoded = orjson.dumps({"truncated": True, "keys": sorted(kept)[:50]})
    async with db.tenant(who.tenant) as conn:
        await conn.execute(query("audit_insert"), who.tenant, who.sub or "", who.role.value, action, route,
                           encoded.decode())


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

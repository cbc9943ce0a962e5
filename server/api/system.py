"""`GET /api/metrics/health` (no token) and `GET /api/auth/whoami`."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api.context import principal, services
from server.api.responses import JSON, success
from server.core.auth import Role


async def health(request: Request) -> Response:
    """PostgreSQL and Redis, each ``ok`` or ``down`` (Redis also ``rebuilding``); no token needed.

    503 when PostgreSQL, the system of record, is down: nothing can be accepted.
    200 ``degraded`` when only the live view suffers (Redis down or live state
    being rebuilt): ingest still commits, so a load balancer should keep the
    process. 200 ``ok`` when all is well.
    """
    svc = services(request)

    async def check(probe: Any) -> str:
        try:
            await asyncio.wait_for(probe(), 2)
            return "ok"
        except Exception:  # noqa: BLE001 - any failure of the probe means "down"
            return "down"

    pg, rd = await asyncio.gather(check(svc.db.ping), check(svc.redis.ping))
    if rd == "ok" and svc.live.stale:
        rd = "rebuilding"
    body = {"status": "ok" if pg == rd == "ok" else "degraded", "postgres": pg, "redis": rd,
            "live": "stale" if rd != "ok" else "ok"}
    return JSON(body, status_code=503 if pg == "down" else 200, headers={"Cache-Control": "no-store"})


async def whoami(request: Request) -> Response:
    """The verified identity of the caller's token: tenant, role, sub, expiry (any role)."""
    who = principal(request, frozenset(Role))
    return success({"client_id": who.tenant, "role": who.role.value, "sub": who.sub,
                    "expires_at": _iso(who.exp)})


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


routes = [
    Route("/api/metrics/health", health, methods=["GET"]),
    Route("/api/auth/whoami", whoami, methods=["GET"]),
]

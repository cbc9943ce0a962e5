"""`GET|POST /api/report-schedules`, `DELETE /api/report-schedules/{id}`, `POST /api/report-schedules/{id}/run`
and `POST /api/alert-webhooks/secret` (admin; every change audited). The rules live in
server/analytics/schedules.py and alert_hooks.py."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.analytics.alert_hooks import tenant_secret
from server.analytics.schedules import ScheduleBook
from server.api import audit
from server.api.context import principal, services
from server.api.responses import success
from server.core.auth import ADMIN, Principal
from server.core.errors import BadRequest, ServiceUnavailable


def _book(request: Request) -> tuple[Principal, ScheduleBook]:
    who = principal(request, ADMIN)
    analytics = services(request).analytics
    if analytics is None:
        raise ServiceUnavailable("report schedules are not served by this process", code="schedules_unavailable")
    return who, analytics.schedules


async def list_schedules(request: Request) -> Response:
    """``GET /api/report-schedules``: the tenant's schedules with their next run and last delivery."""
    who, book = _book(request)
    return success(await book.list(who.tenant))


async def create_schedule(request: Request) -> Response:
    """``POST /api/report-schedules``: a new schedule; the answer (201) shows its signing secret, this once."""
    who, book = _book(request)
    try:
        body: Any = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise BadRequest("body: expected a JSON object with report, frequency, at and destination",
                         code="invalid_json") from None
    created = await book.create(who, body)
    await audit.request_entry(request, who, "schedule.create",
                              {k: created[k] for k in ("id", "report", "parameters", "frequency", "at", "destination")})
    return success(created, status=201)


async def delete_schedule(request: Request) -> Response:
    """``DELETE /api/report-schedules/{id}``: remove one schedule (404 when the tenant has no such one)."""
    who, book = _book(request)
    await book.delete(who.tenant, request.path_params["schedule_id"])
    await audit.request_entry(request, who, "schedule.delete", {"id": request.path_params["schedule_id"]})
    return success({"id": request.path_params["schedule_id"], "deleted": True})


async def run_schedule(request: Request) -> Response:
    """``POST /api/report-schedules/{id}/run``: deliver it at the scheduler's next look (202); its cadence is kept."""
    who, book = _book(request)
    await book.run_now(who.tenant, request.path_params["schedule_id"])
    await audit.request_entry(request, who, "schedule.run", {"id": request.path_params["schedule_id"]})
    return success({"id": request.path_params["schedule_id"], "queued": True}, status=202)


async def replace_alert_secret(request: Request) -> Response:
    """``POST /api/alert-webhooks/secret``: a new secret for the alert webhooks' signatures, shown this once (201)."""
    who = principal(request, ADMIN)
    secret = await tenant_secret(services(request).db, who.tenant, replace=True)
    await audit.request_entry(request, who, "alert_webhooks.secret", {})
    return success({"secret": secret}, status=201)


routes = [
    Route("/api/report-schedules", list_schedules, methods=["GET"]),
    Route("/api/report-schedules", create_schedule, methods=["POST"]),
    Route("/api/report-schedules/{schedule_id}", delete_schedule, methods=["DELETE"]),
    Route("/api/report-schedules/{schedule_id}/run", run_schedule, methods=["POST"]),
    Route("/api/alert-webhooks/secret", replace_alert_secret, methods=["POST"]),
]

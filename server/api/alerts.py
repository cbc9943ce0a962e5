"""`GET /api/alerts` (active and recent threshold alerts) and `POST /api/alerts/{id}/ack` (audited)."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api import audit
from server.api.anomalies import describe
from server.api.context import principal, services
from server.api.responses import success
from server.core.auth import READ_ALL
from server.core.db import query
from server.core.errors import NotFound
from server.history.period import bad, iso

log = logging.getLogger("wallboard.alerts")

RECENT_S = 86_400  # cleared alerts raised this recently are "recent"
MAX_ALERTS = 500


def alert(row: Any) -> dict[str, Any]:
    """A threshold row as ``/api/alerts`` shows it: the anomaly fields plus ``alert_id``, ``active`` and the ack."""
    out = describe(row)
    out["alert_id"] = out["anomaly_id"]
    out["active"] = row["cleared_at"] is None
    out["acked_at"] = iso(int(row["acked_at"].timestamp() * 1000)) if row["acked_at"] else None
    out["acked_by"] = row["acked_by"]
    return out


async def list_alerts(request: Request) -> Response:
    """``GET /api/alerts`` (supervisor, admin): open alerts and those raised in the last day, newest first."""
    who = principal(request, READ_ALL)
    since = datetime.fromtimestamp(time.time() - RECENT_S, UTC)
    async with services(request).db.tenant(who.tenant) as conn:
        rows = await conn.fetch(query("alerts_list"), who.tenant, since, MAX_ALERTS)
    data = [alert(r) for r in rows]
    return success(data, statistics={"active": sum(1 for a in data if a["active"]),
                                     "unacknowledged": sum(1 for a in data if a["active"] and not a["acked_at"])})


async def ack_alert(request: Request) -> Response:
    """``POST /api/alerts/{id}/ack`` (supervisor, admin): record who acknowledged it and when (the first ack stays);
    audited; every connected page of the tenant is told at once (an alert message with state ``acknowledged``)."""
    who = principal(request, READ_ALL)
    raw = request.path_params["id"]
    if not raw.isdigit() or not 0 < int(raw) < 2**63:
        raise bad("id", f'"{raw[:32]}" is not an alert id: expected the whole number alert_id from GET /api/alerts')
    async with services(request).db.tenant(who.tenant) as conn:
        row = await conn.fetchrow(query("alert_ack"), who.tenant, int(raw), who.sub or who.role.value)
    if row is None:
        raise NotFound(f"no threshold alert {raw} for this tenant: GET /api/alerts lists them", code="alert_not_found")
    data = alert(row)
    await audit.request_entry(request, who, "alerts.ack", {"alert_id": data["alert_id"]})
    try:
        await services(request).hub.publish_alert(who.tenant, {
            "kind": "threshold", "state": "acknowledged", "alert_id": data["alert_id"], "queue_id": data["queue_id"],
            "metric": data["metric"], "level": data["level"], "acked_by": data["acked_by"], "acked_at": data["acked_at"]})
    except (RedisError, OSError) as exc:  # stored all the same: the other consoles see it on their next read
        log.warning("alerts.ack_not_pushed", extra={"tenant": who.tenant, "error": f"{type(exc).__name__}: {exc}"})
    return success(data)


routes = [
    Route("/api/alerts", list_alerts, methods=["GET"]),
    Route("/api/alerts/{id}/ack", ack_alert, methods=["POST"]),
]

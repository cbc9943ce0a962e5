"""`GET /api/analytics/predictions` and `POST /api/analytics/predictions/refresh`."""

from __future__ import annotations

import bisect
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.analytics.predictions import INTERVAL_S, round_or_none
from server.api import audit
from server.api.context import principal, services
from server.api.responses import success
from server.core.auth import ADMIN, READ_ALL
from server.core.db import query
from server.core.errors import ServiceUnavailable
from server.history.period import bad, iso, parse


async def predictions_route(request: Request) -> Response:
    """``GET /api/analytics/predictions?queue_id=&from=&to=&granularity=``: the stored forecast with its accuracy.

    15-minute rows by default; with a coarser granularity offered is summed, AHT weighted by
    offered and ``required_agents`` is the peak interval's. ``statistics`` carries each queue's
    model, backtest accuracy (1 − WAPE on held-out days) and when the forecast was made.
    """
    who = principal(request, READ_ALL)
    svc = services(request)
    settings = await svc.settings_store.get(who.tenant)
    period = parse(request.query_params, settings, int(time.time() * 1000), granularity="15m")
    queue_id = request.query_params.get("queue_id") or None
    if queue_id is not None and (len(queue_id) > 128 or any(ord(ch) < 32 for ch in queue_id)):
        raise bad("queue_id", "expected an id of at most 128 printable characters")
    async with svc.db.tenant(who.tenant) as conn:
        rows = await conn.fetch(query("forecast_list"), who.tenant, queue_id, period.bounds_dt[0], period.bounds_dt[-1])
    buckets: dict[tuple[str, int], dict[str, Any]] = {}
    queues: dict[str, dict[str, Any]] = {}
    for row in rows:
        q = row["queue_id"]
        i = bisect.bisect_right(period.bounds, int(row["start_ms"]))
        b = buckets.setdefault((q, i), {"offered": 0.0, "handle": 0.0, "aht_weight": 0.0, "required": None})
        b["offered"] += row["offered"]
        if row["aht_s"] is not None:
            b["handle"] += row["aht_s"] * max(row["offered"], 1e-9)
            b["aht_weight"] += max(row["offered"], 1e-9)
        if row["required_agents"] is not None:
            b["required"] = max(b["required"] or 0, row["required_agents"])
        made = int(row["made_at"].timestamp() * 1000)
        meta = queues.setdefault(q, {"queue_id": q, "offered": 0.0, "made": -1})
        if made > meta["made"]:  # past intervals keep the forecast they had: describe the newest
            meta.update(model=row["model"], accuracy=round_or_none(row["accuracy"]), made_at=iso(made), made=made)
        meta["offered"] += row["offered"]
    data = [{"queue_id": q, **period.bucket(i), "offered": round(b["offered"], 2),
             "aht_s": round(b["handle"] / b["aht_weight"], 1) if b["aht_weight"] else None,
             "required_agents": b["required"]} for (q, i), b in buckets.items()]
    for meta in queues.values():
        meta["offered"] = round(meta["offered"], 1)
        del meta["made"]
    weight = sum(m["offered"] for m in queues.values() if m["accuracy"] is not None)
    overall = (sum(m["accuracy"] * m["offered"] for m in queues.values() if m["accuracy"] is not None) / weight
               if weight else None)
    return success(data, statistics={**period.describe(), "interval_s": INTERVAL_S, "target_sl": svc.settings.forecast_target_sl,
                                     "accuracy": round_or_none(overall), "queues": list(queues.values())})


async def refresh_route(request: Request) -> Response:
    """``POST /api/analytics/predictions/refresh`` (admin): refit the caller's forecast now (after importing history)."""
    who = principal(request, ADMIN)
    svc = services(request)
    if svc.analytics is None:
        raise ServiceUnavailable("forecasts are not running in this process", code="forecast_unavailable")
    svc.analytics.activity.touch(who.tenant)
    queues = await svc.analytics.forecaster.refresh(who.tenant, force=True) or []
    await audit.request_entry(request, who, "forecast.refresh", {"queues": len(queues)})
    return success([q.summary() for q in queues])


routes = [
    Route("/api/analytics/predictions", predictions_route, methods=["GET"]),
    Route("/api/analytics/predictions/refresh", refresh_route, methods=["POST"]),
]

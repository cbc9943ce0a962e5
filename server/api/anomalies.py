"""`GET /api/analytics/anomalies`."""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.analytics.anomaly import KINDS
from server.api.context import principal, services
from server.api.responses import success
from server.core.auth import READ_ALL
from server.core.db import query
from server.history.period import bad, iso, parse


def describe(row: Any) -> dict[str, Any]:
    """An ``anomaly_detection`` row as the API shows it (``level`` for threshold alerts)."""
    out = {"anomaly_id": row["anomaly_id"], "kind": row["kind"], "queue_id": row["queue_id"], "metric": row["metric"],
           "interval_start": iso(int(row["interval_start"].timestamp() * 1000)), "observed": row["observed"],
           "expected": row["expected"], "score": row["score"],
           "raised_at": iso(int(row["raised_at"].timestamp() * 1000)),
           "cleared_at": iso(int(row["cleared_at"].timestamp() * 1000)) if row["cleared_at"] else None}
    if row["kind"] == "threshold":
        out["level"] = "red" if (row["score"] or 0) >= 2 else "amber"
        out.pop("score")
        out["threshold"] = out.pop("expected")
    return out


async def anomalies_route(request: Request) -> Response:
    """``GET /api/analytics/anomalies?from=&to=&queue_id=&kind=&limit=``: flagged intervals and threshold alerts, newest first."""
    who = principal(request, READ_ALL)
    params = request.query_params
    settings = await services(request).settings_store.get(who.tenant)
    period = parse(params, settings, int(time.time() * 1000), granularity="15m")
    queue_id = params.get("queue_id") or None
    if queue_id is not None and (len(queue_id) > 128 or any(ord(ch) < 32 for ch in queue_id)):
        raise bad("queue_id", "expected an id of at most 128 printable characters")
    kind = params.get("kind") or None
    if kind is not None and kind not in KINDS:
        raise bad("kind", f'"{kind[:32]}" is not one of {", ".join(KINDS)}')
    raw = params.get("limit") or "1000"
    if not raw.isdigit() or not 1 <= int(raw) <= 10_000:
        raise bad("limit", f'"{raw[:32]}" is not a whole number from 1 to 10000')
    start, end = period.bounds_dt[0], period.bounds_dt[-1]
    async with services(request).db.tenant(who.tenant) as conn:
        rows = await conn.fetch(query("anomaly_list"), who.tenant, start, end, queue_id, kind, int(raw))
    data = [describe(r) for r in rows]
    by_metric: dict[str, int] = {}
    for item in data:
        by_metric[item["metric"]] = by_metric.get(item["metric"], 0) + 1
    statistics = {"from": iso(period.start_ms), "to": iso(period.end_ms), "by_metric": by_metric,
                  "open": sum(1 for item in data if item["kind"] == "threshold" and item["cleared_at"] is None)}
    return success(data, statistics=statistics)


routes = [Route("/api/analytics/anomalies", anomalies_route, methods=["GET"])]

"""`GET /api/reports/{name}`: a report as JSON or streamed CSV."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from server.api import audit
from server.api.context import scope_of, services
from server.api.responses import success
from server.core.auth import READ_ALL
from server.core.errors import NotFound
from server.history.period import bad, limit
from server.history.reports import JSON_DEFAULT_LIMIT, REPORTS, span, stream


def wants_csv(request: Request) -> bool:
    fmt = request.query_params.get("format")
    if fmt is not None:
        if fmt not in ("csv", "json"):
            raise bad("format", f'"{fmt[:32]}" is not csv or json')
        return fmt == "csv"
    return "text/csv" in request.headers.get("accept", "")


async def report(request: Request) -> Response:
    name = request.path_params["name"]
    spec = REPORTS.get(name)
    if spec is None:
        raise NotFound(f'no report "{name[:64]}": expected one of {", ".join(REPORTS)}', code="unknown_report")
    scope = await scope_of(request, READ_ALL, granularity="day")
    as_csv = wants_csv(request)
    await audit.request_entry(request, scope.who, "export", {"report": name, "format": "csv" if as_csv else "json"})
    if not as_csv:
        cap = limit(request.query_params, JSON_DEFAULT_LIMIT)
        async with services(request).db.tenant(scope.who.tenant) as conn:
            rows = await conn.fetch(f"{spec.sql(scope)} LIMIT {cap}", *spec.args(scope))
        data = [dict(zip(spec.columns, spec.row(r, scope), strict=True)) for r in rows]
        return success(data, statistics=scope.period.describe())
    filename = f"{name}_{span(scope)}.csv"
    return StreamingResponse(stream(scope, spec), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{filename}"',
                                      "Cache-Control": "no-store"})


routes = [Route("/api/reports/{name}", report, methods=["GET"])]

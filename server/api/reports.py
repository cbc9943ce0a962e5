"""`GET /api/reports/{name}`: a report as JSON or streamed CSV."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from server.api import audit
from server.api.context import scope_of, services
from server.api.responses import success
from server.core.auth import READ_ALL
from server.core.errors import NotFound, TooManyRequests
from server.history.figures import Scope as HistoryScope
from server.history.period import bad, limit
from server.history.reports import COMPUTED, JSON_DEFAULT_LIMIT, REPORTS, csv_text, span, stream


class Export(StreamingResponse):
    """A streamed CSV that gives its export slot back however it ends (done, cut off, never started)."""

    def __init__(self, content: AsyncIterator[bytes], release: Callable[[], None], **kwargs: object) -> None:
        super().__init__(content, **kwargs)  # type: ignore[arg-type]
        self.release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.release()


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
    if spec is None and name not in COMPUTED:
        raise NotFound(f'no report "{name[:64]}": expected one of {", ".join(sorted({*REPORTS, *COMPUTED}))}',
                       code="unknown_report")
    scope = await scope_of(request, READ_ALL, granularity="day")
    as_csv = wants_csv(request)
    if spec is None:
        return await computed(request, name, scope, as_csv)
    if not as_csv:
        await audit.request_entry(request, scope.who, "export", {"report": name, "format": "json"})
        cap = limit(request.query_params, JSON_DEFAULT_LIMIT)
        async with scope.db.tenant(scope.who.tenant) as conn:
            rows = await conn.fetch(f"{spec.sql(scope)} LIMIT {cap}", *spec.args(scope))
        data = [dict(zip(spec.columns, spec.row(r, scope), strict=True)) for r in rows]
        return success(data, statistics=scope.period.describe())
    filename = f"{name}_{span(scope)}.csv"
    slots = services(request).exports
    assert slots is not None, "open_services builds the export slots"
    if not slots.take(scope.who.tenant):
        raise TooManyRequests(f"too many CSV exports at once (at most {slots.per_tenant} per tenant, "
                              f"{slots.per_process} per server process): retry when one has finished",
                              retry_after=5)
    try:
        await audit.request_entry(request, scope.who, "export", {"report": name, "format": "csv"})
    except BaseException:
        slots.give(scope.who.tenant)
        raise
    return Export(stream(scope, spec, turn=slots.turn), lambda: slots.give(scope.who.tenant), media_type="text/csv; charset=utf-8",
                  headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"})


async def computed(request: Request, name: str, scope: HistoryScope, as_csv: bool) -> Response:
    """A report whose rows are put together in Python from several rollups (``agent-states``): one
    answer, not streamed; its period is bounded by the granularity's longest range (server/history/period.py)."""
    columns, rows = COMPUTED[name]
    await audit.request_entry(request, scope.who, "export", {"report": name, "format": "csv" if as_csv else "json"})
    data = await rows(scope)
    if not as_csv:
        cap = limit(request.query_params, JSON_DEFAULT_LIMIT)
        return success([dict(zip(columns, r, strict=True)) for r in data[:cap]], statistics=scope.period.describe())
    return Response(csv_text(columns, data), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}_{span(scope)}.csv"',
                             "Cache-Control": "no-store"})


routes = [Route("/api/reports/{name}", report, methods=["GET"])]

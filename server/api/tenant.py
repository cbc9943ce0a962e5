"""`DELETE /api/tenant?confirm=<client_id>` (admin): erase every row and key of the caller's tenant."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api.context import principal, services
from server.api.responses import success
from server.core.auth import ADMIN
from server.core.errors import BadRequest
from server.live.erasure import erase_tenant


async def delete_tenant(request: Request) -> Response:
    """Erase the token's tenant once ``confirm`` repeats its id; answers with the rows and keys erased."""
    who = principal(request, ADMIN)
    confirm = request.query_params.get("confirm")
    if confirm is None:
        raise BadRequest(f"confirm: required; repeat the tenant id to erase it for good (?confirm={who.tenant})",
                         code="confirmation_required", details={"field": "confirm", "reason": "missing"})
    if confirm != who.tenant:
        raise BadRequest(f"confirm: {confirm[:80]!r} is not this token's tenant; send ?confirm={who.tenant} "
                         "to erase it", code="confirmation_mismatch", details={"field": "confirm", "reason": "mismatch"})
    svc = services(request)
    if svc.healer is not None:
        svc.healer.forget(who.tenant)
    svc.analytics.activity.forget(who.tenant)  # this process's forecasts and staffing stop covering it
    erased = await erase_tenant(svc.db, svc.redis, svc.keys, who, batch_rows=svc.settings.retention_batch_rows,
                                settle_s=svc.settings.live_sweep_s + 0.5)
    svc.settings_store.invalidate(who.tenant)
    svc.hub.renderings.changed(who.tenant)
    await svc.hub.channels.changed(who.tenant, settings=True)  # the other processes drop their cached settings too
    return success({"client_id": who.tenant, "rows": erased.rows, "keys": erased.keys, "seconds": erased.seconds})


routes = [Route("/api/tenant", delete_tenant, methods=["DELETE"])]

"""`GET|PUT /api/settings` (admin): the tenant's settings, read and changed (audited)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api.responses import success
from server.core.auth import ADMIN
from server.core.errors import BadRequest, PayloadTooLarge
from server.core.settings_store import SettingsStore
from server.core.tenant_settings import MAX_BODY, TenantSettings


def _admin(request: Request) -> tuple[str, SettingsStore]:
    """The caller's tenant (role admin only) and the settings store."""
    from server.api.context import principal, services  # services imports this module: resolve at call time

    return principal(request, ADMIN).tenant, services(request).settings_store


async def get_settings(request: Request) -> Response:
    """``GET /api/settings`` (admin): every setting of the caller's tenant, defaults included."""
    tenant, store = _admin(request)
    return success((await store.get(tenant)).to_json())


async def put_settings(request: Request) -> Response:
    """``PUT /api/settings`` (admin): a partial update, audited with the keys sent and the values that moved
    (``before``/``after``); replies with every setting after it."""
    from server.api import audit
    from server.api.context import principal, services

    tenant, store = _admin(request)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise PayloadTooLarge(f"the settings body exceeds {MAX_BODY} bytes")
    try:
        patch = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON ({exc}): send a JSON object of settings",
                         code="invalid_json") from None
    if not isinstance(patch, dict):
        raise BadRequest(f"expected a JSON object of settings, got {type(patch).__name__}", code="expected_object")
    before = await store.get(tenant)
    after = await store.put(tenant, patch)
    old, new = before.to_json(), after.to_json()
    moved = sorted(k for k in new if old.get(k) != new[k])
    await audit.request_entry(request, principal(request, ADMIN), "settings.change",
                              {"changed": sorted(patch), "before": {k: old.get(k) for k in moved},
                               "after": {k: new[k] for k in moved}})
    if _counting_rules(before) != _counting_rules(after):
        # Today's counters were counted with the old day boundaries or thresholds: count them again.
        services(request).live.schedule_rebuild(tenant, reset=True, reason="settings")
    services(request).hub.renderings.changed(tenant)  # live reads here follow the new settings at once
    # Every process drops its cached settings of the tenant and re-renders the tenant's boards with the new ones now.
    await services(request).hub.channels.changed(tenant, settings=True)
    return success(after.to_json())


def _counting_rules(s: TenantSettings) -> tuple[Any, ...]:
    """The settings that decide how live counters are counted."""
    return (s.timezone, s.day_starts_at, s.sl_threshold_s, s.short_abandon_s,
            {q: {k: v for k, v in over.items() if k in ("sl_threshold_s", "short_abandon_s")}
             for q, over in sorted(s.queues.items())})


routes = [
    Route("/api/settings", get_settings, methods=["GET"]),
    Route("/api/settings", put_settings, methods=["PUT"]),
]

"""``GET /metrics``: the Prometheus text format of this process (or of every worker on the host).

No tenant data is in it (server/core/metrics.py). No token is needed unless
``WALLBOARD_METRICS_TOKEN`` is set; then it must come as ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import hmac

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api.context import services
from server.core.auth import bearer
from server.core.errors import Unauthorized
from server.core.metrics import CONTENT_TYPE


async def metrics(request: Request) -> Response:
    """The process's metrics; 401 without the metrics token when one is set."""
    svc = services(request)
    expected = svc.settings.metrics_token
    if expected is not None:
        offered = bearer(request.headers.get("authorization")) or ""
        if not hmac.compare_digest(offered.encode(), expected.encode()):
            raise Unauthorized("GET /metrics needs `Authorization: Bearer <WALLBOARD_METRICS_TOKEN>`",
                               code="token_invalid")
    assert svc.metrics is not None
    return Response(svc.metrics.exposition(), media_type=CONTENT_TYPE, headers={"Cache-Control": "no-store"})


routes = [Route("/metrics", metrics, methods=["GET"])]

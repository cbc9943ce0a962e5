"""The API.md response envelopes, encoded with orjson."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from starlette.responses import Response

from server.core.errors import ServiceUnavailable, TooManyRequests, WallboardError

log = logging.getLogger("wallboard.app")


class JSON(Response):
    """A JSON response encoded with orjson (non-str keys and dataclasses allowed)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


def success(data: Any, *, statistics: dict[str, Any] | None = None, status: int = 200,
            headers: dict[str, str] | None = None) -> JSON:
    """``{"success": true, "data": …, "count": n, "statistics": …}``; ``count`` only for lists."""
    body: dict[str, Any] = {"success": True, "data": data}
    if isinstance(data, list):
        body["count"] = len(data)
    if statistics is not None:
        body["statistics"] = statistics
    return JSON(body, status_code=status, headers=headers)


def failure(status: int, code: str, message: str, details: Any = None,
            headers: dict[str, str] | None = None, data: Any = None) -> JSON:
    """``{"success": false, "error": {"code", "message", "details"}}`` (and ``data`` when given)."""
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    body: dict[str, Any] = {"success": False, "error": error}
    if data is not None:
        body["data"] = data
    return JSON(body, status_code=status, headers=headers)


def error_answer(exc: Exception, path: str) -> JSON:
    """The answer to an error a route raised: a WallboardError's envelope (``Retry-After`` on 503 and 429,
    ``WWW-Authenticate`` on 401, logged when 5xx), anything else a logged 500 ``internal_error``."""
    if not isinstance(exc, WallboardError):
        log.error("request.failed", exc_info=exc, extra={"path": path})
        return failure(500, "internal_error", "the server failed on this request; it has been logged")
    headers = {}
    if isinstance(exc, ServiceUnavailable | TooManyRequests):
        headers["Retry-After"] = str(exc.retry_after)
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="wallboard"'
    if exc.status >= 500:
        log.warning("request.unavailable", extra={"path": path, "code": exc.code, "error": exc.message})
    return JSON(exc.envelope(), status_code=exc.status, headers=headers)

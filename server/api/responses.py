"""The API.md response envelopes, encoded with orjson."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response


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

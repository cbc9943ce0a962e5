"""The error tree.

Every error the server raises on purpose derives from :class:`WallboardError`.
Each class carries the HTTP status, a snake_case ``code`` for the JSON
envelope and the WebSocket close code that fits it, so handlers never guess.
Messages say what was expected, what came, and the fix.
"""

from __future__ import annotations

from typing import Any


class WallboardError(Exception):
    """Root of every error the server raises on purpose."""

    status: int = 500
    code: str = "internal_error"
    close_code: int = 1011

    def __init__(self, message: str, *, details: Any = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if code is not None:
            self.code = code

    def envelope(self) -> dict[str, Any]:
        """The API.md error envelope for this error."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            error["details"] = self.details
        return {"success": False, "error": error}


class ConfigError(WallboardError):
    """A setting is missing or malformed; start-up stops with this one line."""

    code = "config_error"


class BadRequest(WallboardError):
    """The request itself is malformed (bad JSON, bad parameter, wrong content type)."""

    status = 400
    code = "bad_request"
    close_code = 1003


class Unauthorized(WallboardError):
    """No token, or a token that does not verify."""

    status = 401
    code = "unauthorized"
    close_code = 4401


class Forbidden(WallboardError):
    """A valid token whose role may not do this."""

    status = 403
    code = "forbidden"
    close_code = 4403


class NotFound(WallboardError):
    status = 404
    code = "not_found"


class PayloadTooLarge(WallboardError):
    status = 413
    code = "payload_too_large"
    close_code = 1009


class UnsupportedMediaType(WallboardError):
    status = 415
    code = "unsupported_media_type"


class Unprocessable(WallboardError):
    status = 422
    code = "unprocessable"


class ServiceUnavailable(WallboardError):
    """A backing service is down; the client should retry after ``retry_after`` seconds."""

    status = 503
    code = "service_unavailable"
    close_code = 1013

    def __init__(self, message: str, *, retry_after: int = 2, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class TooManyRequests(WallboardError):
    """A budget (of requests, exports, connections) is spent; retry after ``retry_after`` seconds."""

    status = 429
    code = "rate_limited"
    close_code = 1013

    def __init__(self, message: str, *, retry_after: int = 5, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after

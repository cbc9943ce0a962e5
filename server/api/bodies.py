"""A byte cap on every request body, before any handler reads it.

Ingest routes take up to ``WALLBOARD_MAX_BODY_BYTES`` (5 MiB), every other route up to
``WALLBOARD_MAX_REQUEST_BYTES`` (1 MiB). A declared ``Content-Length`` past the cap is answered
413 at once, without reading a byte of the body; a chunked body is counted as it arrives and the
read that passes the cap raises :class:`~server.core.errors.PayloadTooLarge` (413 from the
handler's error handling). So a 60 MiB body costs at most the cap in memory and time, whatever
the handler does with it.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.api.responses import failure
from server.core.errors import PayloadTooLarge


class BodyLimit:
    """ASGI middleware: ``limits`` maps a path to its cap; any other path gets ``default``."""

    def __init__(self, app: ASGIApp, *, default: int, limits: Mapping[str, int]) -> None:
        self.app = app
        self.default = default
        self.limits = dict(limits)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = self.limits.get(scope["path"], self.default)
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or int(value) > cap:
                    message = (f"the body is {value.decode('latin-1')[:20]} bytes: at most {cap} bytes on this route"
                               if value.isdigit() else "Content-Length is not a number")
                    status = 413 if value.isdigit() else 400
                    code = "body_too_large" if value.isdigit() else "bad_content_length"
                    response = failure(status, code, message, details={"limit": cap})
                    await response(scope, receive, send)
                    return
                break
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > cap:
                    raise PayloadTooLarge(f"the body exceeds {cap} bytes: the most this route takes",
                                          code="body_too_large", details={"limit": cap})
            return message

        await self.app(scope, counted, send)

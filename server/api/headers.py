"""Security headers on every HTTP answer, pages and API alike.

``Content-Security-Policy`` allows only the server's own scripts, styles, images and connections
(WebSocket included: CSP 3 lets ``'self'`` match ``ws:``/``wss:`` of the same host) and no inline
code at all: the pages keep every script and style in files under ``static/``. No page may be
framed (``frame-ancestors 'none'``, and ``X-Frame-Options`` for older browsers), no answer is
sniffed into another type, and no request carries a ``Referer``. The token never is in a URL
the server sees: the pages move it from the fragment into ``sessionStorage`` at once.
"""

from __future__ import annotations

from starlette.types import Message, Send

CONTENT_SECURITY_POLICY = ("default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; "
                           "object-src 'none'")
HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)


def secured(send: Send) -> Send:
    """``send`` that adds HEADERS to the start of an HTTP response (errors and 500s included)."""

    async def send_secured(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), *HEADERS]
        await send(message)

    return send_secured

"""Security headers on every HTTP answer, pages and API alike.

``Content-Security-Policy`` allows only the server's own scripts, styles, images and connections
(WebSocket included: CSP 3 lets ``'self'`` match ``ws:``/``wss:`` of the same host) and no inline
code at all: the pages keep every script and style in files under ``static/``. No page may be
framed (``frame-ancestors 'none'``, and ``X-Frame-Options`` for older browsers), no answer is
sniffed into another type, and no request carries a ``Referer``. The token never is in a URL
the server sees: the pages move it from the fragment into ``sessionStorage`` at once.

The observer (server/api/observe.py), which every HTTP request of the app passes, adds them to the
start of every answer (errors and 500s included), with the request id: one wrapper of ``send``, not two.
"""

from __future__ import annotations

CONTENT_SECURITY_POLICY = ("default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; "
                           "object-src 'none'")
HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)


"""Outgoing webhooks: signed POSTs to a tenant's URLs, guarded, bounded and retried.

Used by the report scheduler and the alert webhooks (API.md "Screens and delivery").

* **Signature**: ``X-Wallboard-Signature: sha256=<hex HMAC-SHA256 of the body>`` with the
  schedule's or the tenant's secret (:func:`sign`); the receiver recomputes it over the raw body.
* **Address guard**: the host is resolved here and every address it resolves to must be public
  (no private, loopback, link-local, multicast, reserved or unspecified one) unless
  ``WALLBOARD_WEBHOOK_ALLOW_PRIVATE=1``; the request then goes to the address that was checked
  (the URL's host stays in ``Host`` and in TLS's SNI and certificate check), so a name that
  resolves to another address a moment later (DNS rebinding) cannot reach the inside. Redirects
  are not followed.
* **Bounds**: a timeout per try; at most ``per_tenant`` deliveries of one tenant in flight per
  process (its further ones wait their turn, other tenants' do not), and a process-wide cap on
  connections. The slot is held for one try only, never across a back-off wait.
* **Retries**: network errors, timeouts, 408, 429 and 5xx are tried again after
  ``backoff_s`` × 4ⁿ (±25 % jitter), ``attempts`` tries in all; any other answer is final.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import random
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx

from server.core.errors import BadRequest

log = logging.getLogger("wallboard.outbound")

SIGNATURE_HEADER = "X-Wallboard-Signature"
MAX_URL = 2048
RETRY_STATUSES = frozenset({408, 429})


class AddressRefused(BadRequest):
    """A webhook URL whose host is (or resolves to) an address deliveries may not reach."""

    code = "webhook_address_refused"


def sign(secret: str, body: bytes) -> str:
    """The signature header's value: ``sha256=`` and the hex HMAC-SHA256 of ``body`` under ``secret``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def check_url_syntax(field: str, url: object) -> str:
    """``url`` when it is an absolute http(s) URL with a host; BadRequest naming ``field`` otherwise."""
    if not isinstance(url, str) or not 0 < len(url) <= MAX_URL:
        raise BadRequest(f"{field}: expected an http(s) URL of at most {MAX_URL} characters",
                         code="invalid_url", details={"field": field, "reason": "not a URL"})
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        raise BadRequest(f"{field}: {url[:80]!r} is not an http(s) URL with a host (and no user or password in it)",
                         code="invalid_url", details={"field": field, "reason": "expected http(s)://host/path"})
    return url


def _private(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast or address.is_reserved or address.is_unspecified


async def resolve(field: str, url: str, *, allow_private: bool) -> str:
    """The address ``url``'s host is reached at; AddressRefused when it is private and that is not allowed."""
    host = urlsplit(url).hostname or ""
    try:
        literal = ipaddress.ip_address(host)
        addresses = [literal]
    except ValueError:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise BadRequest(f"{field}: the host {host[:80]!r} does not resolve ({exc}): check the URL",
                             code="webhook_unresolvable", details={"field": field, "reason": "host does not resolve"}) from None
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if not allow_private:
        refused = sorted({str(a) for a in addresses if _private(a)})
        if refused:
            raise AddressRefused(f"{field}: {host[:80]!r} is a private, loopback or link-local address ({', '.join(refused)}): "
                                 "use a public URL, or set WALLBOARD_WEBHOOK_ALLOW_PRIVATE=1 on the server",
                                 details={"field": field, "reason": "private address"})
    return str(addresses[0])


@dataclass(frozen=True)
class Delivery:
    """How a delivery ended: ``ok``, the tries made, the last HTTP status (if any) and the last error."""

    ok: bool
    attempts: int
    status: int | None = None
    error: str | None = None


async def with_retries(attempt: Callable[[], Awaitable[Delivery]], attempts: int, backoff_s: float) -> Delivery:
    """Call ``attempt`` until it succeeds, gives a final answer, or ``attempts`` tries are spent.

    An attempt returns a Delivery with ``attempts`` 0 for a failure worth trying again, 1 for a
    final one; the result counts the tries made.
    """
    outcome = Delivery(ok=False, attempts=0, error="not tried")
    for number in range(1, attempts + 1):
        outcome = await attempt()
        retry = not outcome.ok and outcome.attempts == 0
        outcome = Delivery(ok=outcome.ok, attempts=number, status=outcome.status, error=outcome.error)
        if not retry or number == attempts:
            return outcome
        await asyncio.sleep(backoff_s * 4 ** (number - 1) * random.uniform(0.75, 1.25))
    return outcome


class Outbound:
    """This process's webhook sender: one HTTP client, per-tenant slots. Build once; ``close`` it."""

    def __init__(self, *, allow_private: bool, timeout_s: float, per_tenant: int, attempts: int, backoff_s: float) -> None:
        self.allow_private, self.per_tenant = allow_private, per_tenant
        self.attempts, self.backoff_s = attempts, backoff_s
        self.client = httpx.AsyncClient(timeout=timeout_s, follow_redirects=False, trust_env=False,
                                        limits=httpx.Limits(max_connections=256, max_keepalive_connections=32))
        self._slots: dict[str, tuple[asyncio.Semaphore, int]] = {}  # tenant → (semaphore, users)

    async def close(self) -> None:
        await self.client.aclose()

    async def post(self, tenant: str, url: str, body: bytes, secret: str, content_type: str,
                   headers: dict[str, str] | None = None) -> Delivery:
        """POST ``body`` signed with ``secret`` to ``url``, tried again with back-off; never raises for the receiver's faults."""
        signed = {"Content-Type": content_type, SIGNATURE_HEADER: sign(secret, body),
                  "User-Agent": "wallboard-webhook/1", **(headers or {})}

        async def attempt() -> Delivery:
            try:
                address = await resolve("url", url, allow_private=self.allow_private)
            except BadRequest as exc:
                return Delivery(ok=False, attempts=1, error=exc.message)  # final: another try resolves the same
            async with self._slot(tenant):
                return await self._send(url, address, body, signed)

        return await with_retries(attempt, self.attempts, self.backoff_s)

    async def _send(self, url: str, address: str, body: bytes, headers: dict[str, str]) -> Delivery:
        parts = urlsplit(url)
        host = parts.hostname or ""
        shown = f"[{address}]" if ":" in address else address
        pinned = urlunsplit(parts._replace(netloc=f"{shown}:{parts.port}" if parts.port else shown))
        extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
        try:
            response = await self.client.post(pinned, content=body, extensions=extensions,
                                              headers={**headers, "Host": parts.netloc.rsplit("@", 1)[-1]})
        except httpx.HTTPError as exc:
            return Delivery(ok=False, attempts=0, error=f"{type(exc).__name__}: {str(exc)[:200] or 'no answer'}")
        if 200 <= response.status_code < 300:
            return Delivery(ok=True, attempts=1, status=response.status_code)
        again = response.status_code in RETRY_STATUSES or response.status_code >= 500
        return Delivery(ok=False, attempts=0 if again else 1, status=response.status_code,
                        error=f"the webhook answered HTTP {response.status_code}")

    def _slot(self, tenant: str) -> _TenantSlot:
        return _TenantSlot(self, tenant)


class _TenantSlot:
    """One of a tenant's ``per_tenant`` delivery slots, held for one try; an idle tenant's semaphore is dropped."""

    def __init__(self, outbound: Outbound, tenant: str) -> None:
        self.outbound, self.tenant = outbound, tenant

    async def __aenter__(self) -> None:
        slots = self.outbound._slots
        semaphore, users = slots.get(self.tenant) or (asyncio.Semaphore(self.outbound.per_tenant), 0)
        slots[self.tenant] = (semaphore, users + 1)
        try:
            await semaphore.acquire()
        except BaseException:
            self._leave()
            raise

    async def __aexit__(self, *exc: object) -> None:
        self.outbound._slots[self.tenant][0].release()
        self._leave()

    def _leave(self) -> None:
        semaphore, users = self.outbound._slots[self.tenant]
        if users <= 1:
            del self.outbound._slots[self.tenant]
        else:
            self.outbound._slots[self.tenant] = (semaphore, users - 1)

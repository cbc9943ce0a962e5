"""Request budgets (API.md "Operating it"): per tenant and per token, ingest and reads apart.

One ASGI middleware in front of the routes. It charges a request only after its token
verifies (the tenant comes from the token, never from the request; an unauthenticated
request is charged to nobody and gets its 401 from the route), counts it with the
``limits`` library's sliding-window counter in Redis (so the budget holds across every
process), and answers ``429 rate_limited`` with ``Retry-After`` and the ``RateLimit-*``
headers past it. ``/api/metrics/health`` is never charged.

Trade-off, stated plainly: when Redis does not answer within ``CHECK_TIMEOUT_S`` the
budgets fail open for ``FAIL_OPEN_S`` (logged once per outage): a Redis outage must not
turn every request into an error on top of what it already costs.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time

import redis.asyncio as aioredis
from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.storage import RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from starlette.types import ASGIApp, Receive, Scope, Send

from server.api.responses import failure
from server.core.auth import Principal, bearer
from server.core.config import Settings
from server.core.errors import Unauthorized
from server.live.keys import Keys

log = logging.getLogger("wallboard.budget")

INGEST = frozenset({("POST", "/api/events"), ("POST", "/api/ingest/asterisk/queue-log")})
EXEMPT = frozenset({"/api/metrics/health"})
CHECK_TIMEOUT_S = 0.5
FAIL_OPEN_S = 5.0


class Budgets:
    """The four budgets (ingest/read × tenant/token) and their Redis counters."""

    def __init__(self, settings: Settings, redis: aioredis.Redis, keys: Keys) -> None:
        storage = RedisStorage("async+redis://", implementation="redispy", key_prefix=keys.rate_prefix,
                               connection_pool=redis.connection_pool)
        self.limiter = SlidingWindowCounterRateLimiter(storage)
        window = settings.rate_window_s

        def item(amount: int) -> RateLimitItem | None:
            return RateLimitItemPerSecond(amount, window) if amount > 0 else None

        self.items = {"ingest": (item(settings.rate_ingest_tenant), item(settings.rate_ingest_token)),
                      "read": (item(settings.rate_read_tenant), item(settings.rate_read_token))}
        self.unchecked_until = 0.0

    async def refused(self, kind: str, who: Principal, token: str) -> tuple[RateLimitItem, str, str] | None:
        """Charge the request; the budget it is past (item, scope, id), or None when it may go on."""
        if time.monotonic() < self.unchecked_until:
            return None
        tenant_item, token_item = self.items[kind]
        subject = who.sub or hashlib.sha256(token.encode()).hexdigest()[:24]
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_S):
                # The token first: a token past its own budget does not spend its tenant's.
                if token_item is not None and not await self.limiter.hit(token_item, kind, "token", who.tenant, subject):
                    return token_item, "token", subject
                if tenant_item is not None and not await self.limiter.hit(tenant_item, kind, "tenant", who.tenant):
                    return tenant_item, "tenant", ""
        except Exception as exc:  # noqa: BLE001 - Redis away or slow: fail open, once logged
            self.unchecked_until = time.monotonic() + FAIL_OPEN_S
            log.warning("budget.unchecked", extra={"error": f"{type(exc).__name__}: {exc}", "seconds": FAIL_OPEN_S})
        return None

    async def answer(self, refusal: tuple[RateLimitItem, str, str], kind: str, who: Principal) -> tuple[int, dict[str, str]]:
        """Seconds until the budget has room again, and the RateLimit-* headers."""
        item, scope, subject = refusal
        ids = (kind, scope, who.tenant, subject) if subject else (kind, scope, who.tenant)
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_S):
                stats = await self.limiter.get_window_stats(item, *ids)
            reset_s, remaining = max(1, math.ceil(stats.reset_time - time.time())), stats.remaining
        except Exception:  # noqa: BLE001 - the refusal stands; the hint is the whole window
            reset_s, remaining = item.get_expiry(), 0
        headers = {"Retry-After": str(reset_s), "RateLimit-Limit": str(item.amount),
                   "RateLimit-Remaining": str(remaining), "RateLimit-Reset": str(reset_s)}
        return reset_s, headers


class BudgetMiddleware:
    """Charges each verified ``/api/`` request to its tenant's and token's budget; 429 past either."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        svc = scope.get("state", {}).get("services") if scope["type"] == "http" else None
        budgets = getattr(svc, "budgets", None)
        if budgets is None or not path.startswith("/api/") or path in EXEMPT:
            await self.app(scope, receive, send)
            return
        token = who = None
        for key, value in scope["headers"]:
            if key == b"authorization":
                try:
                    token = bearer(value.decode("latin-1"))
                    who = svc.verifier.verify(token)
                except Unauthorized:
                    who = None  # the route answers 401; nobody is charged
                break
        if who is None or token is None:
            await self.app(scope, receive, send)
            return
        kind = "ingest" if (scope["method"], path) in INGEST else "read"
        refusal = await budgets.refused(kind, who, token)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        reset_s, headers = await budgets.answer(refusal, kind, who)
        whose = "this token" if refusal[1] == "token" else "this tenant"
        response = failure(429, "rate_limited", f"{whose} is past its {kind} budget of {refusal[0].amount} requests "
                                                f"per {svc.settings.rate_window_s} s; retry in {reset_s} s", headers=headers)
        await response(scope, receive, send)

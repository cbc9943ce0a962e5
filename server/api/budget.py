"""Request budgets (API.md "Operating it"): per tenant and per token, ingest and reads apart.

One ASGI middleware in front of the routes. It charges a request only after its token
verifies (the tenant comes from the token, never from the request; an unauthenticated
request is charged to nobody and gets its 401 from the route), counts it with the
``limits`` library's sliding-window counter in Redis (so the budget holds across every
process), and answers ``429 rate_limited`` with ``Retry-After`` and the ``RateLimit-*``
headers past it. ``/api/metrics/health`` is never charged. On a Redis Cluster the library's
cluster storage holds the counters (each budget's name is its hash tag, ``{p}:rate:{LIMITER/…}``,
so its two windows share a slot; budgets spread over the shards).

A budget found spent is remembered in the process until the reset Redis gave: a client
flooding at ten times its budget costs one Redis round trip per reset, not one per request.
While it is remembered, the app answers the client's requests before any other per-request
work (:func:`early_refusal`, for tokens the verifier already holds), with a 429 whose bytes
are built once per budget and second (:meth:`Budgets.answer`).

A budget with room is not asked for every request either: after each check the process may
admit a quarter of the room Redis reported, for at most ``SYNC_S``, counting them locally, and
charges them to Redis with the next check (see :class:`Allowance`). A connector posting one
event per request thus costs Redis a few commands per tenant every ``SYNC_S``, not two scripts per
request. The price: with P processes, a budget can be overrun by up to a quarter of its room
times P-1 within one ``SYNC_S``; a small budget (room under 4) is checked on every request, exactly.

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
from dataclasses import dataclass

import orjson
import redis.asyncio as aioredis
from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.storage import RedisClusterStorage, RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from starlette.types import ASGIApp, Receive, Scope, Send

from server.core.auth import Principal, bearer
from server.core.config import Settings
from server.core.errors import Unauthorized
from server.core.redis_client import cluster_nodes, is_cluster
from server.live.keys import Keys

log = logging.getLogger("wallboard.budget")

INGEST = frozenset({("POST", "/api/events"), ("POST", "/api/ingest/asterisk/queue-log")})
EXEMPT = frozenset({"/api/metrics/health"})
# Endpoints that charge their requests themselves (server/api/events.py: the app calls it past this middleware).
SELF_CHARGED = frozenset({("POST", "/api/events")})
CHECK_TIMEOUT_S = 1.0
FAIL_OPEN_S = 5.0
SPENT_KEPT = 10_000  # spent budgets remembered per process
ANSWERS_KEPT = 1024  # prebuilt 429 answers per process
SYNC_S = 0.1  # longest a process admits requests on a budget without asking Redis


@dataclass(slots=True)
class Allowance:
    """Requests this process may admit on one budget without asking Redis, and those admitted so far."""

    left: int  # still admissible locally
    until: float  # monotonic deadline of the local allowance
    pending: int = 0  # admitted locally, not yet charged to Redis


class Budgets:
    """The four budgets (ingest/read × tenant/token) and their Redis counters."""

    def __init__(self, settings: Settings, redis: aioredis.Redis, keys: Keys) -> None:
        storage: RedisStorage
        if is_cluster(redis) and settings.redis_url:  # the library's cluster storage, on the same nodes
            nodes, options = cluster_nodes(settings.redis_url)
            storage = RedisClusterStorage("async+redis+cluster://" + ",".join(f"{h}:{p}" for h, p in nodes),
                                          implementation="redispy", key_prefix=keys.rate_prefix, **options)
        else:
            storage = RedisStorage("async+redis://", implementation="redispy", key_prefix=keys.rate_prefix,
                                   connection_pool=redis.connection_pool)
        self.limiter = SlidingWindowCounterRateLimiter(storage)
        window = settings.rate_window_s

        def item(amount: int) -> RateLimitItem | None:
            return RateLimitItemPerSecond(amount, window) if amount > 0 else None

        self.items = {"ingest": (item(settings.rate_ingest_tenant), item(settings.rate_ingest_token)),
                      "read": (item(settings.rate_read_tenant), item(settings.rate_read_token))}
        self.unchecked_until = 0.0
        self.failing = False  # the last check failed (logged once, until one succeeds)
        self.spent: dict[tuple[str, ...], Refusal] = {}  # budgets known spent, until their reset
        self.allowances: dict[tuple[str, ...], Allowance] = {}  # budgets known to have room, for a moment
        self.window_s = window
        self.answers: dict[tuple[str, str, int, int], Answer] = {}  # prebuilt 429s (see answer())

    async def refused(self, kind: str, who: Principal, token: str) -> Refusal | None:
        """Charge the request; the budget it is past, or None when it may go on.

        A budget found spent is remembered in this process until Redis said it has room again:
        a client flooding past its budget costs one Redis round trip per reset, not one per request.
        """
        known = self.known_spent(kind, who, token)
        if known is not None:
            return known
        token_key, tenant_key = self._keys(kind, who, token)
        clock = time.monotonic()
        if clock < self.unchecked_until:
            return None
        tenant_item, token_item = self.items[kind]
        if self._admit_locally([key for key, item in ((token_key, token_item), (tenant_key, tenant_item)) if item],
                               clock):
            return None
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_S):
                # The token first: a token past its own budget does not spend its tenant's.
                for key, item in ((token_key, token_item), (tenant_key, tenant_item)):
                    if item is not None and not await self._check(key, item):
                        return await self._refusal(key, item)
        except Exception as exc:  # noqa: BLE001 - Redis away or slow: fail open, logged once per outage
            self.unchecked_until = time.monotonic() + FAIL_OPEN_S
            if not self.failing:
                self.failing = True
                log.warning("budget.unchecked", extra={"error": f"{type(exc).__name__}: {exc}", "seconds": FAIL_OPEN_S})
            return None
        if self.failing:
            self.failing = False
            log.info("budget.checked")
        return None

    def known_spent(self, kind: str, who: Principal, token: str) -> Refusal | None:
        """The request's budget this process knows spent (remembered from Redis until its reset), or None.

        Asks nothing of Redis and awaits nothing: the app refuses a flooding client with it before
        any other per-request work (:func:`early_refusal`)."""
        if not self.spent:
            return None
        now = time.time()
        for key in self._keys(kind, who, token):
            known = self.spent.get(key)
            if known is not None:
                if known.reset_at > now:
                    return known
                del self.spent[key]
        return None

    @staticmethod
    def _keys(kind: str, who: Principal, token: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The request's two budgets: its token's (by ``sub``, else a digest of the token), its tenant's."""
        subject = who.sub or hashlib.sha256(token.encode()).hexdigest()[:24]
        return (kind, "token", who.tenant, subject), (kind, "tenant", who.tenant)

    def answer(self, refusal: Refusal, kind: str) -> Answer:
        """The 429 of a refusal: headers and body bytes, built once per budget and seconds to its reset.

        A flooding client gets the same few answers thousands of times; building each (the message,
        orjson, the header list) cost more than the rest of the refusal."""
        reset_s = max(1, math.ceil(refusal.reset_at - time.time()))
        key = (kind, refusal.scope, refusal.item.amount, reset_s)
        built = self.answers.get(key)
        if built is None:
            whose = "this token" if refusal.scope == "token" else "this tenant"
            body = orjson.dumps({"success": False, "error": {
                "code": "rate_limited",
                "message": f"{whose} is past its {kind} budget of {refusal.item.amount} requests per "
                           f"{self.window_s} s; retry in {reset_s} s"}})
            seconds = str(reset_s).encode()
            headers = ((b"retry-after", seconds), (b"ratelimit-limit", str(refusal.item.amount).encode()),
                       (b"ratelimit-remaining", b"0"), (b"ratelimit-reset", seconds),
                       (b"content-length", str(len(body)).encode()), (b"content-type", b"application/json"))
            if len(self.answers) >= ANSWERS_KEPT:
                self.answers.clear()
            built = self.answers[key] = Answer(headers, body)
        return built

    def _admit_locally(self, keys: list[tuple[str, ...]], clock: float) -> bool:
        """Admit the request on the local allowances of all its budgets, when each has one left."""
        rooms = [self.allowances.get(key) for key in keys]
        if not all(room is not None and room.left > 0 and clock < room.until for room in rooms):
            return False
        for room in rooms:
            assert room is not None
            room.left -= 1
            room.pending += 1
        return True

    async def _check(self, key: tuple[str, ...], item: RateLimitItem) -> bool:
        """Charge what was admitted locally and this request to Redis; True when the budget had room.

        With room left, a local allowance of a quarter of it opens for ``SYNC_S``."""
        room = self.allowances.pop(key, None)
        if room is not None and room.pending:
            await self.limiter.hit(item, *key, cost=room.pending)  # admitted already: charged, whatever it says
        if not await self.limiter.hit(item, *key):
            return False
        left = (await self.limiter.get_window_stats(item, *key)).remaining // 4
        # A concurrent check may have opened an allowance meanwhile: what it admitted is carried over.
        carried = self.allowances.pop(key, None)
        pending = carried.pending if carried is not None else 0
        if left > 0 or pending:
            if len(self.allowances) >= SPENT_KEPT:
                clock = time.monotonic()
                self.allowances = {k: v for k, v in self.allowances.items() if v.until > clock or v.pending}
            if len(self.allowances) < SPENT_KEPT:  # else not kept: at worst, a few requests go uncharged
                self.allowances[key] = Allowance(max(0, left - pending), time.monotonic() + SYNC_S, pending)
        return True

    async def _refusal(self, key: tuple[str, ...], item: RateLimitItem) -> Refusal:
        stats = await self.limiter.get_window_stats(item, *key)
        refusal = Refusal(item, key[1], max(stats.reset_time, time.time() + 0.05))
        if len(self.spent) >= SPENT_KEPT:
            now = time.time()
            self.spent = {k: v for k, v in self.spent.items() if v.reset_at > now}
        if len(self.spent) < SPENT_KEPT:
            self.spent[key] = refusal
        return refusal


@dataclass(frozen=True, slots=True)
class Answer:
    """A prebuilt 429: its headers (raw ASGI pairs) and its JSON body."""

    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes


@dataclass(frozen=True, slots=True)
class Refusal:
    """A spent budget: which one, and when it has room again (epoch seconds)."""

    item: RateLimitItem
    scope: str  # "token" or "tenant"
    reset_at: float


class BudgetMiddleware:
    """Charges each verified ``/api/`` request to its tenant's and token's budget; 429 past either."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        svc = scope.get("state", {}).get("services") if scope["type"] == "http" else None
        budgets = getattr(svc, "budgets", None)
        if (budgets is None or not path.startswith("/api/") or path in EXEMPT
                or (scope["method"], path) in SELF_CHARGED):
            await self.app(scope, receive, send)
            return
        try:
            token = bearer_of(scope)
            who = svc.verifier.verify(token) if token is not None else None
        except Unauthorized:
            who = None  # the route answers 401; nobody is charged
        if who is None or token is None:
            await self.app(scope, receive, send)
            return
        kind = kind_of(scope)
        refusal = await budgets.refused(kind, who, token)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        answer = budgets.answer(refusal, kind)
        await send({"type": "http.response.start", "status": 429, "headers": list(answer.headers)})
        await send({"type": "http.response.body", "body": answer.body})


def early_refusal(scope: Scope) -> tuple[Answer, str] | None:
    """The 429 of a request whose budget this process already knows spent, and the tenant; None otherwise.

    Decided without awaiting anything, before the app's per-request work (request id, log
    context, Starlette's middleware stack): only a token verified before (the verifier's cache,
    no decoding) and a budget remembered spent qualify. Anything else (a new token, a budget not
    known spent, a failing Redis) is left to :class:`BudgetMiddleware`, which answers the same.
    A refusal so costs a flooding tenant's process a few microseconds instead of tens, which
    is what keeps the other tenants' requests from queueing behind a burst of them.
    """
    svc = scope["state"].get("services") if "state" in scope else None
    budgets = getattr(svc, "budgets", None)
    if budgets is None or not budgets.spent:
        return None
    path = scope["path"]
    if not path.startswith("/api/") or path in EXEMPT:
        return None
    try:
        token = bearer_of(scope)
    except Unauthorized:
        return None
    who = svc.verifier.known(token) if token is not None else None
    if who is None or token is None:
        return None
    kind = kind_of(scope)
    refusal = budgets.known_spent(kind, who, token)
    return (budgets.answer(refusal, kind), who.tenant) if refusal is not None else None


def bearer_of(scope: Scope) -> str | None:
    """The bearer token of an HTTP request's Authorization header (None without one); Unauthorized when malformed."""
    for key, value in scope["headers"]:
        if key == b"authorization":
            return bearer(value.decode("latin-1"))
    return None


def kind_of(scope: Scope) -> str:
    """The budget a request is charged to: ``ingest`` (events, queue_log) or ``read`` (the rest)."""
    return "ingest" if (scope["method"], scope["path"]) in INGEST else "read"

"""Request budgets (429 rate_limited) and each tenant's share of the PostgreSQL and Redis pools."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable

import pytest

from server.api.budget import Budgets
from server.core.auth import Principal, Role, mint
from server.core.config import Settings
from server.core.db import Database
from server.core.errors import ConfigError, ServiceUnavailable
from server.core.redis_client import redis_client
from server.live.keys import Keys

from .conftest import RunningServer
from .test_metrics import scrape, value

Factory = Callable[[Settings], Awaitable[RunningServer]]


def tenant(label: str = "bud") -> str:
    return f"{label}-{secrets.token_hex(4)}"


async def test_tenant_past_read_budget_gets_429_with_headers(server_factory: Factory, settings: Settings) -> None:
    """A tenant past its read budget gets 429 rate_limited with Retry-After and RateLimit-*; another tenant does not."""
    server = await server_factory(settings.replace(rate_read_tenant=5, rate_read_token=0, rate_window_s=30))
    a, b = tenant(), tenant()
    async with server.client(server.token(a)) as ca, server.client(server.token(b)) as cb:
        statuses = [(await ca.get("/api/auth/whoami")).status_code for _ in range(5)]
        assert statuses == [200] * 5
        refused = await ca.get("/api/auth/whoami")
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(refused.headers["Retry-After"]) <= 30
        assert refused.headers["RateLimit-Limit"] == "5"
        assert refused.headers["RateLimit-Remaining"] == "0"
        assert int(refused.headers["RateLimit-Reset"]) == int(refused.headers["Retry-After"])
        # Another token of A shares the tenant budget; B has its own; health is never charged.
        async with server.client(server.token(a, sub="other")) as ca2:
            assert (await ca2.get("/api/auth/whoami")).status_code == 429
        assert (await cb.get("/api/auth/whoami")).status_code == 200
        assert (await ca.get("/api/metrics/health")).status_code == 200


async def test_a_flood_of_refusals_keeps_ids_headers_and_metrics(server_factory: Factory, settings: Settings) -> None:
    """Every refusal of a flood has the same 429 body, its request id and security headers, and is counted in /metrics."""
    server = await server_factory(settings.replace(rate_read_tenant=2, rate_read_token=0, rate_window_s=30))
    before = await scrape(server)
    async with server.client(server.token(tenant())) as client:
        answers = [await client.get("/api/auth/whoami", headers={"X-Request-Id": f"flood.{i}"}) for i in range(40)]
    assert [a.status_code for a in answers] == [200] * 2 + [429] * 38
    bodies = {a.content for a in answers[2:] if a.headers["Retry-After"] == answers[2].headers["Retry-After"]}
    assert len(bodies) == 1 and answers[2].json()["error"]["code"] == "rate_limited"
    for i, refused in enumerate(answers[2:], start=2):
        assert refused.headers["X-Request-Id"] == f"flood.{i}"
        assert refused.headers["X-Content-Type-Options"] == "nosniff"
        assert refused.headers["Content-Type"] == "application/json"
        assert refused.headers["RateLimit-Limit"] == "2" and refused.headers["RateLimit-Remaining"] == "0"
        assert refused.headers["RateLimit-Reset"] == refused.headers["Retry-After"]
    after = await scrape(server)
    labels = {"route": "/api/auth/whoami", "method": "GET"}
    assert value(after, "wallboard_http_requests_total", **labels, status="429") - \
        value(before, "wallboard_http_requests_total", **labels, status="429") == 38
    assert value(after, "wallboard_http_request_duration_seconds_count", **labels) - \
        value(before, "wallboard_http_request_duration_seconds_count", **labels) == 40


async def test_a_larger_budget_admits_exactly_its_amount(server_factory: Factory, settings: Settings) -> None:
    """Admitted partly on the process's local allowance, a budget of 60 still admits exactly 60 of 100 requests."""
    server = await server_factory(settings.replace(rate_read_tenant=60, rate_read_token=0, rate_window_s=60))
    async with server.client(server.token(tenant())) as client:
        statuses = await asyncio.gather(*(client.get("/api/auth/whoami") for _ in range(100)))
    assert sorted(r.status_code for r in statuses) == [200] * 60 + [429] * 40


async def test_token_budget_and_ingest_budget_are_separate(server_factory: Factory, settings: Settings) -> None:
    """A token past its own budget is refused while its tenant's other tokens go on; ingest has its own budget."""
    server = await server_factory(settings.replace(rate_read_tenant=100, rate_read_token=3, rate_ingest_tenant=2,
                                                   rate_ingest_token=0, rate_window_s=30))
    a = tenant()
    async with server.client(server.token(a, role="admin", sub="u1")) as one, \
            server.client(server.token(a, role="admin", sub="u2")) as two:
        assert [(await one.get("/api/auth/whoami")).status_code for _ in range(4)] == [200, 200, 200, 429]
        assert (await two.get("/api/auth/whoami")).status_code == 200
        posts = [(await one.post("/api/events", content=b"[]")).status_code for _ in range(3)]
        assert posts[2] == 429 and 429 not in posts[:2]


async def test_unauthenticated_requests_charge_no_tenant(server_factory: Factory, settings: Settings) -> None:
    """Requests with a missing or forged token get 401 and spend nobody's budget."""
    server = await server_factory(settings.replace(rate_read_tenant=2, rate_read_token=0, rate_window_s=30))
    a = tenant()
    forged = mint(settings.replace(jwt_secret="another-secret-" + "y" * 40), tenant=a, role="supervisor")
    async with server.client(forged) as bad, server.client() as anonymous:
        for _ in range(5):
            assert (await bad.get("/api/auth/whoami")).status_code == 401
            assert (await anonymous.get("/api/auth/whoami")).status_code == 401
    async with server.client(server.token(a)) as good:
        assert [(await good.get("/api/auth/whoami")).status_code for _ in range(3)] == [200, 200, 429]


async def test_budgets_fail_open_when_redis_is_down(settings: Settings) -> None:
    """With Redis unreachable a request is let through within the check's time box, and the next ones at once."""
    dead = redis_client("redis://127.0.0.1:1/0")
    try:
        budgets = Budgets(settings.replace(rate_read_tenant=1), dead, Keys("wbdead"))
        who = Principal(tenant="t", role=Role.SUPERVISOR, sub="s", exp=time.time() + 60)
        started = time.monotonic()
        assert await budgets.refused("read", who, "tok") is None
        assert time.monotonic() - started < 1.5
        started = time.monotonic()
        for _ in range(100):
            assert await budgets.refused("read", who, "tok") is None
        assert time.monotonic() - started < 0.1
    finally:
        await dead.aclose()


async def test_tenant_share_of_pool_bounds_its_connections(database: str) -> None:
    """A tenant holding its share of the pool waits, then gets 503 database_busy; another tenant gets a connection at once."""
    db = await Database.connect(database, min_size=1, max_size=4, tenant_max=2, tenant_wait_s=1)
    try:
        release = asyncio.Event()
        held = asyncio.Event()
        count = 0

        async def hold() -> None:
            nonlocal count
            async with db.tenant("greedy"):
                count += 1
                if count == 2:
                    held.set()
                await release.wait()

        holders = [asyncio.create_task(hold()) for _ in range(2)]
        await asyncio.wait_for(held.wait(), 5)
        started = time.monotonic()
        with pytest.raises(ServiceUnavailable) as refused:
            async with db.tenant("greedy"):
                pass
        assert refused.value.code == "database_busy"
        assert 0.9 < time.monotonic() - started < 2.0
        started = time.monotonic()
        async with db.tenant("modest") as conn:
            assert await conn.fetchval("SELECT current_setting('wallboard.tenant')") == "modest"
        assert time.monotonic() - started < 0.5
        release.set()
        await asyncio.gather(*holders)
        assert db.slots.held("greedy") == 0
        async with db.tenant("greedy"):
            pass
    finally:
        await db.close()


def test_budget_settings_are_validated() -> None:
    """The tenant share of the pool may not exceed the pool; budget settings name themselves when malformed."""
    env = {"WALLBOARD_DB_POOL_MAX": "4", "WALLBOARD_DB_TENANT_MAX": "5"}
    with pytest.raises(ConfigError, match="WALLBOARD_DB_TENANT_MAX"):
        Settings.from_env(env)
    with pytest.raises(ConfigError, match="WALLBOARD_RATE_READ_TOKEN"):
        Settings.from_env({"WALLBOARD_RATE_READ_TOKEN": "lots"})
    parsed = Settings.from_env({"WALLBOARD_DB_POOL_MAX": "4", "WALLBOARD_RATE_WINDOW_S": "10"})
    assert parsed.db_tenant_max == 4 and parsed.rate_window_s == 10

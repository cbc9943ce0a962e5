"""The services a running server owns, built once from Settings by the app's lifespan.

Route handlers reach them as ``services(request)`` and their caller as
``principal(request, roles)``; nothing is module-level.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import redis.asyncio as aioredis
from starlette.requests import HTTPConnection

from .auth import Principal, Role, bearer
from .config import Settings

if TYPE_CHECKING:  # the types only: app.py builds the services, route modules import this one
    from .analytics import Analytics
    from .auth import TokenVerifier
    from .db import Database
    from .hub import Hub
    from .ingest import Ingestor
    from .live.keys import Keys
    from .live.state import LiveState
    from .scorecards import ScorecardRefresher
    from .tenant_settings import SettingsStore


@dataclass
class Services:
    """What the lifespan builds from Settings and hands to every request as ``request.state.services``."""

    settings: Settings
    db: Database
    redis: aioredis.Redis
    verifier: TokenVerifier
    keys: Keys
    settings_store: SettingsStore
    live: LiveState
    ingestor: Ingestor
    hub: Hub
    scorecards: ScorecardRefresher
    analytics: Analytics | None = None  # forecasts, anomalies, threshold alerts (server/analytics.py)


def services(conn: HTTPConnection) -> Services:
    return conn.state.services  # type: ignore[no-any-return]


def principal(conn: HTTPConnection, allowed: frozenset[Role]) -> Principal:
    """The verified caller of this request, checked against the roles the route allows."""
    token = bearer(conn.headers.get("authorization"))
    return services(conn).verifier.verify(token).require(allowed)


REDIS_WAIT_S = 5.0  # how long a command waits for a free pooled connection before Redis counts as down


def redis_client(url: str, max_connections: int = Settings.redis_pool_max) -> aioredis.Redis:
    """A redis-py asyncio client on a bounded pool; ``valkey://`` URLs are accepted as ``redis://``.

    The pool blocks: past ``max_connections`` commands in flight, the next one waits (up to
    ``REDIS_WAIT_S``) for a connection to come back. redis-py's default pool raises at once
    instead, which a burst of publishes and ingests turned into a false "Redis is down".
    """
    if url.startswith("valkey"):
        url = "redis" + url[len("valkey"):]
    pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=REDIS_WAIT_S,
                                                    socket_timeout=5, socket_connect_timeout=5,
                                                    health_check_interval=30)
    return aioredis.Redis.from_pool(pool)

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

if TYPE_CHECKING:  # the types only: app.py builds the services, route modules import this one
    from .analytics import Analytics
    from .auth import TokenVerifier
    from .config import Settings
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


def redis_client(url: str) -> aioredis.Redis:
    """A redis-py asyncio client; ``valkey://`` URLs are accepted as ``redis://``."""
    if url.startswith("valkey"):
        url = "redis" + url[len("valkey"):]
    return aioredis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=30)

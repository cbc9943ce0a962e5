"""The Redis client every service shares: redis-py asyncio on a bounded, blocking pool."""

from __future__ import annotations

import redis.asyncio as aioredis

from server.core.config import Settings

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

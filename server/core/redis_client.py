"""The Redis client every service shares: redis-py asyncio on a bounded, blocking pool, or a Redis Cluster client."""

from __future__ import annotations

from functools import cache
from typing import Any
from urllib.parse import unquote, urlsplit

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import Connection

from server.core.config import Settings
from server.core.errors import ConfigError

REDIS_WAIT_S = 5.0  # how long a command waits for a free pooled connection before Redis counts as down
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster", "valkey+cluster", "valkeys+cluster")


def is_cluster(client: Any) -> bool:
    """True for a Redis Cluster client (sharded pub/sub, per-node SCAN, per-primary run_ids)."""
    return isinstance(client, RedisCluster)


@cache
def packed_by_hiredis(base: type[Connection]) -> type[Connection]:
    """``base`` with each command packed by hiredis (C) rather than redis-py's asyncio loop in Python.

    The Lua scripts name every key they touch (a tenant's read: some 200 arguments), and redis-py's
    asyncio connection packs argument by argument (about 15 times slower than ``hiredis.pack_command``,
    which its synchronous connection already uses). The bytes on the wire are the same: values other
    than str, bytes and int go through redis-py's own encoder first (a float keeps its ``repr``, a bool is
    refused), and a command with a memoryview argument is left to redis-py. A Redis Cluster client
    keeps redis-py's packing (its nodes build their connections from a class fixed inside redis-py).
    """

    def pack_command(self: Connection, *args: Any) -> list[bytes]:
        if any(isinstance(a, memoryview) for a in args):
            return base.pack_command(self, *args)
        head = args[0]
        if isinstance(head, str):
            head = head.encode()
        # redis-py names some commands in one string ("CLIENT SETNAME"): one argument per word
        words = tuple(head.split()) if b" " in head else (head,)
        encode = self.encoder.encode
        rest = tuple(a if type(a) in (str, bytes, int) else encode(a) for a in args[1:])
        return [hiredis.pack_command(words + rest)]

    return type(f"HiredisPacked{base.__name__}", (base,), {"pack_command": pack_command})


def redis_client(url: str, max_connections: int = Settings.redis_pool_max) -> aioredis.Redis:
    """A redis-py asyncio client on a bounded pool; ``valkey://`` URLs are accepted as ``redis://``.

    The pool blocks: past ``max_connections`` commands in flight, the next one waits (up to
    ``REDIS_WAIT_S``) for a connection to come back. redis-py's default pool raises at once
    instead, which a burst of publishes and ingests turned into a false "Redis is down".

    ``redis+cluster://host:port[,host:port]`` (or ``valkey+cluster://``, ``rediss+cluster://``)
    gives a :class:`RedisCluster` that learns the slot map from any of the listed nodes; it has
    the same commands, so the services take either (``max_connections`` is then per node).
    """
    if url.split("://", 1)[0] in CLUSTER_SCHEMES:
        return cluster_client(url, max_connections)  # type: ignore[return-value]
    if url.startswith("valkey"):
        url = "redis" + url[len("valkey"):]
    pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=REDIS_WAIT_S,
                                                    socket_timeout=5, socket_connect_timeout=5,
                                                    health_check_interval=30)
    pool.connection_class = packed_by_hiredis(pool.connection_class)
    return aioredis.Redis.from_pool(pool)


def cluster_nodes(url: str) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """The ``host:port`` list of a ``redis+cluster://`` URL and its credentials / TLS options."""
    scheme, rest = url.split("://", 1)
    netloc = rest.split("/", 1)[0].split("?", 1)[0]
    auth, _, hosts = netloc.rpartition("@")
    options: dict[str, Any] = {"ssl": scheme.split("+")[0] in ("rediss", "valkeys")}
    if auth:
        user, _, password = auth.partition(":")
        options.update(username=unquote(user) or None, password=unquote(password) or None)
    nodes = []
    for item in hosts.split(","):
        parts = urlsplit(f"//{item.strip()}")
        try:
            port = parts.port or 6379
        except ValueError:
            port = -1
        if not parts.hostname or port <= 0:
            raise ConfigError(f"REDIS_URL: {item!r} is not a host:port: expected redis+cluster://host:port[,host:port]")
        nodes.append((parts.hostname, port))
    return nodes, options


def cluster_client(url: str, max_connections: int) -> RedisCluster:
    """A redis-py :class:`RedisCluster` on the URL's startup nodes (any of them may be down)."""
    nodes, options = cluster_nodes(url)
    return RedisCluster(startup_nodes=[ClusterNode(host, port) for host, port in nodes],
                        max_connections=max_connections, socket_timeout=5, socket_connect_timeout=5,
                        health_check_interval=30, **options)


async def run_id(client: Any) -> str:
    """The Redis ``run_id`` (new on every start); on a cluster every primary's, sorted and joined,
    so a restarted node or a replica promoted by a failover changes it too."""
    if is_cluster(client):
        infos = await client.info("server", target_nodes=RedisCluster.PRIMARIES)
        return ",".join(sorted(str(info["run_id"]) for info in infos.values()))
    return str((await client.info("server"))["run_id"])

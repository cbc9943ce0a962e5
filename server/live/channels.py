"""How changes and alerts travel between processes: Redis pub/sub, plain or sharded.

On a single Redis (or Valkey) every process subscribes to two channels, ``{p}:changes`` and
``{p}:alerts`` (see keys.py), and apply.lua publishes a tenant's change inside its script.

On a Redis Cluster a plain PUBLISH goes to every node of the cluster, so the cluster's
pub/sub traffic would grow with its size. Changes and alerts use sharded pub/sub instead
(``SPUBLISH``/``SSUBSCRIBE``, Redis 7+): a tenant's messages go to the channel of its slot
range (:meth:`Keys.changes_shard`), held by the shard that holds the tenant's keys, and each
process subscribes to every such channel through redis-py's cluster pub/sub, which keeps one
connection per shard node (its ``node_pubsub_mapping``); one reader per node hands messages on
as they come. A channel whose slot migrated (``sunsubscribe`` from its old node) ends the
subscription like a lost node does, and the hub subscribes afresh. A sharded channel cannot be published from a script that touches keys of another
slot, so on a cluster apply.lua publishes nothing and :meth:`Channels.changed` follows the script.

A node lost (killed, failed over) breaks :meth:`Channels.listen`; the hub then says ``stale``
and subscribes afresh after re-reading the cluster's slot map.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from server.core import background
from server.core.redis_client import is_cluster
from server.live.keys import Keys

# Before a tenant id on the changes channel: its settings changed (a tenant id never holds "~").
SETTINGS_MARK = "~"


class Channels:
    """Publishes a tenant's changes and alerts and listens to every tenant's, on one Redis or a cluster."""

    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self.sharded = is_cluster(redis)

    @property
    def in_script(self) -> str:
        """The channel apply.lua publishes a change on ("" on a cluster: :meth:`changed` does it)."""
        return "" if self.sharded else self.keys.changes

    async def changed(self, tenant: str, *, settings: bool = False) -> None:
        """Announce that the tenant's live state changed (``settings``: its settings did: every process reads them again)."""
        message = SETTINGS_MARK + tenant if settings else tenant
        if self.sharded:
            await self.redis.spublish(self.keys.changes_shard(tenant), message)
        else:
            await self.redis.publish(self.keys.changes, message)

    async def alert(self, tenant: str, payload: bytes) -> None:
        """Send an encoded alert of the tenant (alert_feed.encode) to every process."""
        if self.sharded:
            await self.redis.spublish(self.keys.alerts_shard(tenant), payload)
        else:
            await self.redis.publish(self.keys.alerts, payload)

    async def listen(self, on_change: Callable[[str], None], on_alert: Callable[[bytes], None],
                     subscribed: Callable[[], None]) -> None:
        """Subscribe, call ``subscribed``, then hand every message on until the subscription fails or ends (raises)."""
        if self.sharded:
            await self._listen_sharded(on_change, on_alert, subscribed)
            return
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(self.keys.changes, self.keys.alerts)
            subscribed()
            changes = self.keys.changes.encode()
            async for message in pubsub.listen():
                if message["type"] != "message":
                    continue
                if message["channel"] == changes:
                    on_change(message["data"].decode())
                else:
                    on_alert(message["data"])
            raise ConnectionError("the subscription ended")
        finally:
            await close(pubsub)

    async def refresh(self) -> None:
        """After a lost subscription on a cluster: read the slot map again (a failover moved a shard)."""
        if self.sharded:
            with contextlib.suppress(RedisError, OSError):
                await self.redis.nodes_manager.initialize()  # type: ignore[attr-defined]

    async def _listen_sharded(self, on_change: Callable[[str], None], on_alert: Callable[[bytes], None],
                              subscribed: Callable[[], None]) -> None:
        pubsub: Any = self.redis.pubsub()  # a redis-py ClusterPubSub (sharded)
        readers: list[asyncio.Task[None]] = []
        try:
            await pubsub.ssubscribe(*self.keys.shard_channels())
            changes = f"{self.keys.prefix}:changes:".encode()

            async def read(node: str, node_pubsub: PubSub) -> None:
                async for message in node_pubsub.listen():
                    kind = message["type"]
                    if kind == b"smessage" or kind == "smessage":
                        if message["channel"].startswith(changes):
                            on_change(message["data"].decode())
                        else:
                            on_alert(message["data"])
                    elif kind in (b"sunsubscribe", "sunsubscribe"):  # its slot moved: subscribe afresh
                        raise ConnectionError(f"shard channel {message['channel']!r} left node {node}")
                raise ConnectionError(f"the subscription on node {node} ended")

            # One reader per shard node, all at once: a message waits for no other node's.
            readers = [asyncio.create_task(read(node, p), name=f"hub-shard-{node}")
                       for node, p in pubsub.node_pubsub_mapping.items()]
            subscribed()
            done, _ = await asyncio.wait(readers, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # raises what ended it
        finally:
            await background.stop(readers)
            await close(pubsub)


async def close(pubsub: Any) -> None:
    """Close a subscription whose connection may be gone already."""
    with contextlib.suppress(RedisError, OSError):
        await pubsub.aclose()

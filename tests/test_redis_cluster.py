"""A Redis Cluster (REDIS_URL=redis+cluster://…): exact live figures, one slot per tenant, sharded delivery, failover.

The cluster is real: three primaries and a replica started from the machine's redis-server
(tests/cluster_rig.py). Skipped, with the reason, when redis-server or redis-cli is absent.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from redis.crc import key_slot

from server.core.config import Settings
from server.core.errors import ConfigError
from server.core.redis_client import cluster_nodes, redis_client
from server.live.keys import Keys

from . import test_heal as heal
from . import test_live_exact as exact
from .cluster_rig import REDIS_CLI, REDIS_SERVER, Cluster
from .conftest import RunningServer
from .live_reference import recompute
from .test_heal import calls, ingest, offered, until
from .test_ws import board
from .test_ws_load import hub_of

pytestmark = pytest.mark.skipif(REDIS_SERVER is None or REDIS_CLI is None,
                                reason="needs redis-server and redis-cli (Debian package redis-server) for a real cluster")

Factory = Callable[[Settings], Awaitable[RunningServer]]


@pytest.fixture(scope="module")
async def cluster() -> AsyncIterator[Cluster]:
    """Three primaries and one replica of the first, for this module."""
    with tempfile.TemporaryDirectory(prefix="wb-cluster-") as directory:
        rig = Cluster(Path(directory))
        try:
            await rig.start()
            yield rig
        finally:
            rig.stop()


async def serve(factory: Factory, settings: Settings, cluster: Cluster, prefix: str | None = None,
                **changes: Any) -> RunningServer:
    """A server on the cluster, of its own key prefix (or the one given), whose first generation check is done."""
    return await heal.serve(factory, settings.replace(redis_url=cluster.url),
                            key_prefix=prefix or f"wbc{secrets.token_hex(3)}", **changes)


async def node_keys(cluster: Cluster, prefix: str) -> dict[int, list[str]]:
    """Every key of the prefix on each primary (by port): a per-node SCAN, as an operator would."""
    out = {}
    for node in cluster.primaries:
        if node.proc is None or node.proc.poll() is not None:
            continue
        async with node.client() as client:
            out[node.port] = [k.decode() async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
    return out


async def test_live_figures_are_exact_on_a_cluster(server_factory: Factory, settings: Settings, cluster: Cluster) -> None:
    """Thousands of simulated events, duplicated and out of order, equal a hand count on a cluster; the live-exact cases hold."""
    server = await serve(server_factory, settings, cluster)
    tenant = await cluster.tenant_on(cluster.primaries[1], "exact")
    starts_at, day_start = exact.day_started_hours_ago(3)
    await exact.put_settings(server, tenant, day_starts_at=starts_at, timezone="UTC")
    now = datetime.now(UTC)
    events = exact.simulated(now, hours=2.5, at_least=2000, calls_per_hour=400.0, queues=3, seed=5)
    batches = exact.delivery(events, random.Random(3), dup_share=0.05, disorder_share=0.10)
    async with server.client(server.token(tenant, "ingest")) as client:
        totals = await exact.post_all(client, batches)
    assert totals["accepted"] == len(events)
    overview, agents = await exact.live_documents(server, tenant)
    exact.assert_matches(overview, agents, recompute(events, day_start, day_start + 86_400_000, now=int(time.time() * 1000)))
    # The live-exact module's cases, their bodies run against the cluster-backed server.
    await exact.test_answered_before_queued_is_reconciled(server)
    await exact.test_older_agent_state_never_overwrites_newer(server)


async def test_tenant_keys_share_one_slot_and_each_shard_has_one_subscription(
        server_factory: Factory, settings: Settings, cluster: Cluster) -> None:
    """Every key of a tenant sits on the node of its slot, and each server holds one sharded subscription per primary."""
    prefix = f"wbc{secrets.token_hex(3)}"
    servers = [await serve(server_factory, settings, cluster, prefix), await serve(server_factory, settings, cluster, prefix)]
    tenants = [await cluster.tenant_on(node, "slot") for node in cluster.primaries]
    for tenant in tenants:
        await ingest(servers[0], tenant, calls(2))
        assert await offered(servers[1], tenant) == 2
    found = await node_keys(cluster, prefix)
    assert any(k.startswith(f"{prefix}:rate:{{LIMITER/") for keys in found.values() for k in keys)  # budgets counted
    for tenant in tenants:
        slot = key_slot(tenant.encode())
        homes = {port for port, keys in found.items() for k in keys if f"{{{tenant}}}" in k}
        owner = [n.port for n in cluster.primaries if any(lo <= slot <= hi for lo, hi in await cluster.slots_of(n))]
        assert homes == set(owner), (tenant, homes, owner)
        tenant_keys = [k for keys in found.values() for k in keys if f"{{{tenant}}}" in k]
        assert {key_slot(k.encode()) for k in tenant_keys} == {slot}
        assert len(tenant_keys) >= 4
    for node in cluster.primaries:
        async with node.client() as client:
            listing = await client.client_list()
        sharded = [c for c in listing if int(c.get("ssub", 0)) > 0]
        assert len(sharded) == len(servers), (node.port, sharded)  # one per server process, on every shard
    assert len(Keys(prefix).shard_channels()) == 128


async def test_board_on_one_server_sees_events_posted_to_another(
        server_factory: Factory, settings: Settings, cluster: Cluster) -> None:
    """Two servers on the cluster: a board on one gets the update of events posted to, and the alerts raised at, the other."""
    prefix = f"wbc{secrets.token_hex(3)}"
    a, b = await serve(server_factory, settings, cluster, prefix), await serve(server_factory, settings, cluster, prefix)
    for node in cluster.primaries:
        tenant = await cluster.tenant_on(node, "xproc")
        async with board(a.url, a.token(tenant)) as wall:
            await wall.subscribe(["overview"])
            await wall.next(lambda m: m["type"] == "snapshot")
            posted = time.monotonic()
            await ingest(b, tenant, calls(3))
            await wall.next(lambda m: m["type"] in ("update", "snapshot") and m["data"]["today"]["offered"] == 3, timeout=5)
            assert time.monotonic() - posted < 3
            posted = time.monotonic()
            await hub_of(b).publish_alert(tenant, {"kind": "sl_breach", "message": f"alert via {node.port}", "level": "warn"})
            alert = await wall.next(lambda m: m["type"] == "alert", timeout=5)
            assert alert["message"] == f"alert via {node.port}" and time.monotonic() - posted < 1


async def test_heal_rebuilds_and_reconciles_on_a_cluster(server_factory: Factory, settings: Settings, cluster: Cluster) -> None:
    """On a cluster, a changed generation rebuilds (stale, then exact) and a drifted counter is reconciled back."""
    server = await serve(server_factory, settings, cluster, live_reconcile_s=1)
    tenant = await cluster.tenant_on(cluster.primaries[2], "heal")
    keys = Keys(server.settings.key_prefix)
    await ingest(server, tenant, calls(3))
    assert await offered(server, tenant) == 3
    client = redis_client(cluster.url, 4)
    try:
        async with board(server.url, server.token(tenant)) as wall:
            await wall.subscribe(["overview"])
            await wall.next(lambda m: m["type"] == "snapshot")
            mark = len(wall.bodies)
            await client.set(keys.generation, "an-older-cluster")
            await wall.next(lambda m: m["type"] == "status" and m["live"] == "stale", after=mark, timeout=10)
            await wall.next(lambda m: m["type"] == "status" and m["live"] == "ok", after=mark, timeout=10)
        node = client.get_node_from_key(keys.ready(tenant))
        drifted = [k async for k in client.scan_iter(match=keys.tenant_prefix(tenant) + "qd:*", target_nodes=node)]
        assert drifted
        await client.hincrby(drifted[0], "offered", 2)
    finally:
        await client.aclose()

    async def healed() -> bool:
        return await offered(server, tenant) == 3
    await until(healed, 10)


async def test_primary_failover_shows_stale_then_correct_figures(
        server_factory: Factory, settings: Settings, cluster: Cluster) -> None:
    """A primary killed and replaced by its replica: boards of its tenants see `stale`, then exact figures and `ok` again."""
    server = await serve(server_factory, settings, cluster)
    first = cluster.primaries[0]
    tenant = await cluster.tenant_on(first, "failover")
    await ingest(server, tenant, calls(2))
    async with board(server.url, server.token(tenant)) as wall:
        await wall.subscribe(["overview"])
        await wall.next(lambda m: m["type"] == "snapshot" and m["data"]["today"]["offered"] == 2)
        mark = len(wall.bodies)
        first.kill()
        await wall.next(lambda m: m["type"] == "status" and m["live"] == "stale", after=mark, timeout=15)
        more = calls(3)
        async with server.client(server.token(tenant, "ingest")) as client:
            for _ in range(100):  # a connector retries until the batch is acknowledged
                if (await client.post("/api/events", json=more)).status_code == 200:
                    break
                await asyncio.sleep(0.2)
            else:
                raise AssertionError("ingest never recovered after the failover")
        await wall.next(lambda m: m["type"] in ("update", "snapshot") and m["data"]["today"]["offered"] == 5,
                        after=mark, timeout=20)
        await wall.next(lambda m: m["type"] == "status" and m["live"] == "ok", after=mark, timeout=15)
        # Subscribed again, on the promoted replica: a new batch reaches the board at once, not at a refresh.
        posted = time.monotonic()
        await ingest(server, tenant, calls(1))
        await wall.next(lambda m: m["type"] in ("update", "snapshot") and m["data"]["today"]["offered"] == 6,
                        after=mark, timeout=5)
        assert time.monotonic() - posted < 3
    assert await offered(server, tenant) == 6
    async with cluster.replica.client() as replica:
        assert (await replica.info("replication"))["role"] == "master"


def test_cluster_url_lists_nodes_and_a_bad_one_is_named() -> None:
    """redis+cluster:// takes a comma list of host:port (credentials, TLS); a bad entry is a ConfigError naming it."""
    assert cluster_nodes("redis+cluster://a:7000,b:7001") == ([("a", 7000), ("b", 7001)], {"ssl": False})
    assert cluster_nodes("rediss+cluster://u:p%40ss@a:7000") == ([("a", 7000)], {"ssl": True, "username": "u", "password": "p@ss"})
    env = {"DATABASE_URL": "postgresql://h/db", "REDIS_URL": "valkey+cluster://a:7000,b:7001", "WALLBOARD_JWT_SECRET": "s" * 32}
    assert Settings.from_env(env).redis_url == "valkey+cluster://a:7000,b:7001"
    with pytest.raises(ConfigError, match="'a:x' is not a host:port"):
        cluster_nodes("redis+cluster://a:x,b:7001")

"""A real Redis Cluster of the tests' own: three primaries and one replica, from the machine's redis-server.

Each node is a ``redis-server --cluster-enabled yes`` on a free port under its own directory;
``redis-cli --cluster create`` joins the three primaries, ``--cluster add-node --cluster-slave``
gives the first one a replica. A short ``cluster-node-timeout`` makes a failover take about a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis.asyncio as aioredis
from redis.crc import key_slot

from .conftest import free_socket

REDIS_SERVER = shutil.which("redis-server") or shutil.which("valkey-server")
REDIS_CLI = shutil.which("redis-cli") or shutil.which("valkey-cli")
NODE_TIMEOUT_MS = 1000


BUS_OFFSET = 10_000  # a cluster node also listens on its port + 10000 (the cluster bus)


def free_ports(count: int) -> list[int]:
    """Distinct free ports whose cluster-bus ports are free too, all held open until every one is chosen.

    Closing each probe socket before taking the next can hand the same port out twice.
    """
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            sock = free_socket()
            held.append(sock)
            port = int(sock.getsockname()[1])
            if port + BUS_OFFSET > 65_535:
                continue
            bus = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            bus.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                bus.bind(("127.0.0.1", port + BUS_OFFSET))
            except OSError:
                bus.close()
                continue
            held.append(bus)
            ports.append(port)
    finally:
        for sock in held:
            sock.close()
    return ports


class Node:
    """One cluster node: a redis-server process on its own port and directory."""

    def __init__(self, directory: Path, port: int) -> None:
        self.port = port
        self.dir = directory / str(self.port)
        self.dir.mkdir(parents=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self.id = ""

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        assert REDIS_SERVER is not None
        with open(self.dir / "redis.log", "ab") as out:
            self.proc = subprocess.Popen(
                [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
                 "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                 "--cluster-node-timeout", str(NODE_TIMEOUT_MS), "--save", "", "--appendonly", "no",
                 # A replica of an idle primary may have heard from it 10 s ago (the replication ping
                 # period): without these it may refuse to take over ("disconnected for too long").
                 "--cluster-replica-validity-factor", "0", "--repl-ping-replica-period", "1"],
                stdout=out, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def client(self) -> aioredis.Redis:
        return aioredis.Redis(port=self.port)


class Cluster:
    """Three primaries (``primaries``) and a replica of the first (``replica``)."""

    def __init__(self, directory: Path) -> None:
        ports = free_ports(4)
        self.primaries = [Node(directory, port) for port in ports[:3]]
        self.replica = Node(directory, ports[3])

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(n.address for n in self.primaries)

    async def start(self) -> None:
        nodes = [*self.primaries, self.replica]
        for node in nodes:
            node.start()
        for node in nodes:
            await wait_ping(node)
        assert REDIS_CLI is not None
        await run([REDIS_CLI, "--cluster", "create", *(n.address for n in self.primaries), "--cluster-yes"])
        for node in self.primaries:
            async with node.client() as client:
                node.id = (await client.execute_command("CLUSTER", "MYID")).decode()
        first = self.primaries[0]
        await run([REDIS_CLI, "--cluster", "add-node", self.replica.address, first.address,
                   "--cluster-slave", "--cluster-master-id", first.id])
        await self.wait_ok(expect_replica=True)

    async def wait_ok(self, *, expect_replica: bool = False, timeout: float = 30) -> None:
        """Until every live node says ``cluster_state:ok`` (and the replica is attached, when asked)."""
        deadline = time.monotonic() + timeout
        while True:
            ok = True
            for node in (*self.primaries, self.replica):
                if node.proc is None or node.proc.poll() is not None:
                    continue
                async with node.client() as client:
                    with contextlib.suppress(aioredis.RedisError, OSError):
                        info = (await client.execute_command("CLUSTER", "INFO")).decode()
                        ok = ok and "cluster_state:ok" in info
                        continue
                    ok = False
            if ok and expect_replica:
                async with self.primaries[0].client() as client:
                    ok = (await client.info("replication")).get("connected_slaves", 0) >= 1
            if ok:
                return
            assert time.monotonic() < deadline, "the test Redis Cluster did not reach cluster_state:ok"
            await asyncio.sleep(0.1)

    async def slots_of(self, node: Node) -> list[tuple[int, int]]:
        """The slot ranges the node serves as a primary."""
        async with node.client() as client:
            ranges = await client.execute_command("CLUSTER", "SLOTS")
        return [(int(r[0]), int(r[1])) for r in ranges if int(r[2][1]) == node.port]

    async def tenant_on(self, node: Node, label: str) -> str:
        """A fresh tenant id whose hash slot the node serves."""
        ranges = await self.slots_of(node)
        for i in range(100_000):
            tenant = f"{label}-{i}-{time.time_ns() % 1_000_000}"
            slot = key_slot(tenant.encode())
            if any(lo <= slot <= hi for lo, hi in ranges):
                return tenant
        raise AssertionError("no tenant id found for the node's slots")

    def stop(self) -> None:
        for node in (*self.primaries, self.replica):
            node.kill()


async def wait_ping(node: Node) -> None:
    async with node.client() as client:
        for _ in range(200):
            with contextlib.suppress(aioredis.RedisError, OSError):
                if await client.ping():
                    return
            await asyncio.sleep(0.05)
    raise RuntimeError(f"redis-server on {node.address} did not start; see {node.dir / 'redis.log'}")


async def run(argv: list[str]) -> None:
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    assert proc.returncode == 0, f"{' '.join(argv)} failed: {out.decode(errors='replace')[-2000:]}"

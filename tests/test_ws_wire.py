"""How frames reach a socket (server/api/wire.py): the direct path on the pinned uvicorn, the ASGI send when off."""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import tomllib
from importlib.metadata import version

import pytest
from websockets.datastructures import Headers

from server.api.wire import AsgiWire, DirectWire, Flag, Inbox
from server.core.config import Settings
from server.core.errors import ConfigError

from .conftest import ROOT, RunningServer
from .test_ws import Factory, assert_consecutive, board, new_tenant, post, queued, update_offered


def boxes(server: RunningServer, tenant: str) -> list[object]:
    return list(server.server.lifespan.state["services"].hub.clients[tenant])


def pinned(name: str) -> tuple[str, str]:
    """The lower and upper bounds pyproject.toml gives a dependency, e.g. ("0.54", "0.55")."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    [spec] = [d for d in deps if re.match(rf"{name}\b", d)]
    low, high = re.fullmatch(rf"{name}>=([\d.]+),<([\d.]+)", spec.replace(" ", "")).groups()  # type: ignore[union-attr]
    return low, high


def minor(text: str) -> tuple[int, int]:
    major, minor_, *_ = (int(part) for part in text.split("."))
    return major, minor_


@pytest.mark.parametrize("name", ["uvicorn", "starlette"])
def test_server_libraries_are_pinned_to_one_minor_version(name: str) -> None:
    """uvicorn and Starlette are pinned to the minor version wire.py was checked against, and that one is installed."""
    low, high = pinned(name)
    assert minor(high) == (minor(low)[0], minor(low)[1] + 1), f"{name}: pin one minor version, e.g. >=0.54,<0.55"
    assert minor(version(name)) == minor(low), f"{name} {version(name)} installed, pinned {low}"


async def test_direct_writes_are_used_on_the_pinned_versions(server_factory: Factory, settings: Settings,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    """On the pinned uvicorn the start-up check passes once and every connection's frames go straight to its socket."""
    caplog.set_level(logging.INFO, logger="wallboard.ws")
    server = await server_factory(settings)
    tenant = new_tenant("direct")
    async with board(server.url, server.token(tenant)) as first, board(server.url, server.token(tenant)) as second:
        for client in (first, second):
            await client.subscribe(["overview"])
            await client.next(lambda m: m["type"] == "snapshot")
        assert all(isinstance(box.wire, DirectWire) for box in boxes(server, tenant))  # type: ignore[attr-defined]
        await post(server, tenant, queued("sales"))
        await asyncio.gather(first.next(update_offered(1)), second.next(update_offered(1)))
    checks = [r for r in caplog.records if r.getMessage().startswith("ws.direct_writes")]
    assert [r.getMessage() for r in checks] == ["ws.direct_writes_on"]
    assert checks[0].uvicorn == version("uvicorn")  # type: ignore[attr-defined]


async def test_an_accepted_connection_keeps_no_handshake_and_still_talks(server_factory: Factory,
                                                                       settings: Settings) -> None:
    """Once accepted, no handshake headers (they carry the bearer token) stay in memory and the connection holds
    no asyncio queue or event; messages still flow both ways, updates included."""
    server = await server_factory(settings)
    tenant = new_tenant("trim")
    token = server.token(tenant)
    async with board(server.url, token) as client:
        await client.subscribe(["overview"])
        await client.next(lambda m: m["type"] == "snapshot")
        [box] = boxes(server, tenant)
        proto = box.wire.proto  # type: ignore[attr-defined]
        assert isinstance(proto.queue, Inbox) and isinstance(proto.writable, Flag) and proto.writable.is_set()
        gc.collect()
        ours = client.ws.request.headers if client.ws.request is not None else None  # the test client's own
        kept = [h for h in gc.get_objects() if isinstance(h, Headers) and h is not ours and token in str(h)]
        assert kept == []
        await client.send({"type": "ping", "ts": 7})
        assert (await client.next(lambda m: m["type"] == "pong"))["ts"] == 7
        await post(server, tenant, queued("sales"))
        await client.next(update_offered(1))


async def test_direct_writes_off_delivers_everything_through_the_asgi_send(server_factory: Factory,
                                                                          settings: Settings) -> None:
    """With WALLBOARD_WS_DIRECT_WRITES=off every message goes through the ASGI send: snapshot, updates, pong, errors."""
    server = await server_factory(settings.replace(ws_direct_writes=False, ws_tick_ms=20))
    tenant = new_tenant("public")
    async with board(server.url, server.token(tenant)) as overview, board(server.url, server.token(tenant)) as agents:
        await overview.subscribe(["overview"], queues=["sales"])
        await agents.subscribe(["agents"])
        await overview.next(lambda m: m["type"] == "snapshot")
        await agents.next(lambda m: m["type"] == "snapshot")
        assert all(isinstance(box.wire, AsgiWire) for box in boxes(server, tenant))  # type: ignore[attr-defined]
        for n in range(1, 11):
            await post(server, tenant, queued("sales"))
            await overview.next(update_offered(n))
        await overview.send({"type": "ping", "ts": 3})
        assert (await overview.next(lambda m: m["type"] == "pong"))["ts"] == 3
        await overview.send({"type": "nonsense"})
        assert (await overview.next(lambda m: m["type"] == "error"))["code"] == "unknown_type"
        await overview.send({"type": "resync"})
        last = overview.of("update")[-1]["seq"]
        resynced = await overview.next(lambda m: m["type"] == "snapshot" and m["seq"] >= last, after=1)
        assert resynced["data"]["today"]["offered"] == 10
    assert overview.bodies[0]["type"] == "status"
    assert_consecutive([m for m in overview.bodies if m.get("view") == "overview" and m["type"] == "update"])
    assert [m["type"] for m in agents.bodies][:2] == ["status", "snapshot"]


def test_direct_writes_setting_is_checked() -> None:
    """WALLBOARD_WS_DIRECT_WRITES takes on or off; anything else is refused with the setting's name."""
    assert Settings.from_env({"WALLBOARD_WS_DIRECT_WRITES": "off"}).ws_direct_writes is False
    assert Settings.from_env({}).ws_direct_writes is True
    with pytest.raises(ConfigError, match="WALLBOARD_WS_DIRECT_WRITES"):
        Settings.from_env({"WALLBOARD_WS_DIRECT_WRITES": "maybe"})


@pytest.mark.parametrize("direct", [True, False])
async def test_a_client_that_stops_answering_pings_is_closed(server_factory: Factory, settings: Settings,
                                                            direct: bool) -> None:
    """A client that answers no keepalive ping is closed with 1011 within about two ping intervals, on both paths."""
    server = await server_factory(settings.replace(ws_ping_interval_s=1, ws_direct_writes=direct))
    tenant = new_tenant("deaf")
    async with board(server.url, server.token(tenant), ping_interval=None) as client:
        await client.subscribe(["overview"])
        await client.next(lambda m: m["type"] == "snapshot")
        assert isinstance(boxes(server, tenant)[0].wire, DirectWire if direct else AsgiWire)  # type: ignore[attr-defined]
        client.ws.transport.pause_reading()  # deaf: it neither reads the pings nor answers them
        hub = server.server.lifespan.state["services"].hub
        began = asyncio.get_running_loop().time()
        while hub.clients.get(tenant) and asyncio.get_running_loop().time() - began < 10:
            await asyncio.sleep(0.1)
        waited = asyncio.get_running_loop().time() - began
        client.ws.transport.resume_reading()
        await asyncio.wait_for(client.ws.wait_closed(), 5)
    assert not hub.clients.get(tenant) and waited < 2 * 1 + 2 + 2  # two intervals, the sweep's grid, slack
    assert client.ws.close_code == 1011


async def test_a_client_that_answers_pings_stays_connected(server_factory: Factory, settings: Settings) -> None:
    """A quiet client whose socket answers the keepalive pings outlives several intervals and still talks."""
    server = await server_factory(settings.replace(ws_ping_interval_s=1))
    tenant = new_tenant("awake")
    async with board(server.url, server.token(tenant), ping_interval=None) as client:
        await client.subscribe(["overview"])
        await client.next(lambda m: m["type"] == "snapshot")
        await asyncio.sleep(5)
        await client.send({"type": "ping", "ts": 9})
        assert (await client.next(lambda m: m["type"] == "pong"))["ts"] == 9
        assert len(boxes(server, tenant)) == 1

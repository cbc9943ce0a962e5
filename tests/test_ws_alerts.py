"""Alerts over /ws with real clients: across processes, never across tenants, through queue filters, in order."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import pytest

from server.core.config import Settings

from .conftest import RunningServer
from .test_ws import Board, board, new_tenant, second_process
from .test_ws_load import hub_of


def alerts(client: Board) -> list[dict[str, Any]]:
    return client.of("alert")


@pytest.mark.timeout(90)
async def test_alert_published_at_one_process_reaches_client_of_another(server: RunningServer,
                                                                       settings: Settings) -> None:
    """An alert published at server A reaches, well within a second, the tenant's wallboards at A and at B, in order."""
    tenant, other = new_tenant("al"), new_tenant("al")
    hub = hub_of(server)
    async with (second_process(settings) as b_url,
                board(b_url, server.token(tenant)) as at_b,
                board(server.url, server.token(tenant)) as at_a,
                board(b_url, server.token(other)) as other_at_b,
                board(server.url, server.token(other)) as other_at_a):
        for client in (at_b, at_a, other_at_b, other_at_a):
            await client.next(lambda m: m["type"] == "status", timeout=10)
        await at_b.subscribe(["overview"])
        await at_b.next(lambda m: m["type"] == "snapshot")
        posted = time.monotonic()
        await hub.publish_alert(tenant, {"kind": "sl_breach", "message": "service level 61% < 80%", "level": "warn"})
        await hub.publish_alert(tenant, {"kind": "sl_breach", "message": "service level 55% < 80%", "level": "crit"})
        second = await at_b.next(lambda m: m["type"] == "alert" and m["level"] == "crit")
        assert time.monotonic() - posted < 1
        assert [a["message"] for a in alerts(at_b)] == ["service level 61% < 80%", "service level 55% < 80%"]
        assert second == {"type": "alert", "kind": "sl_breach", "message": "service level 55% < 80%", "level": "crit"}
        await at_a.next(lambda m: m["type"] == "alert" and m["level"] == "crit")
        assert [a["level"] for a in alerts(at_a)] == ["warn", "crit"]
        await asyncio.sleep(0.5)
    assert not alerts(other_at_a) and not alerts(other_at_b)
    assert all(tenant not in raw and "service level" not in raw for c in (other_at_a, other_at_b) for raw in c.raw)


async def test_alert_respects_queue_filter(server: RunningServer) -> None:
    """An alert for a queue skips wallboards filtered to other queues; an alert without queue_id reaches every one;
    an agent's wallboard, which may not see the queues' figures, gets none."""
    tenant = new_tenant("alq")
    hub = hub_of(server)
    async with contextlib.AsyncExitStack() as stack:
        sales = await stack.enter_async_context(board(server.url, server.token(tenant)))
        support = await stack.enter_async_context(board(server.url, server.token(tenant)))
        everything = await stack.enter_async_context(board(server.url, server.token(tenant)))
        unsubscribed = await stack.enter_async_context(board(server.url, server.token(tenant)))
        agent = await stack.enter_async_context(board(server.url, server.token(tenant, "agent", sub="ann")))
        await sales.subscribe(["overview", "agents"], queues=["sales"])
        await support.subscribe(["agents"], queues=["support", "backoffice"])
        await everything.subscribe(["overview"])
        await agent.subscribe(["agents"])
        for client in (sales, support, everything, agent):
            await client.next(lambda m: m["type"] == "snapshot")
        await unsubscribed.next(lambda m: m["type"] == "status")

        await hub.publish_alert(tenant, {"kind": "waiting", "queue_id": "sales", "n": 1})
        await hub.publish_alert(tenant, {"kind": "waiting", "queue_id": "support", "n": 2})
        await hub.publish_alert(tenant, {"kind": "agents_low", "n": 3})
        for client in (sales, support, everything, unsubscribed):
            await client.next(lambda m: m["type"] == "alert" and m["n"] == 3)
        await asyncio.sleep(0.3)
        got = {name: [a["n"] for a in alerts(c)] for name, c in
               [("sales", sales), ("support", support), ("everything", everything), ("unsubscribed", unsubscribed),
                ("agent", agent)]}
    assert got == {"sales": [1, 3], "support": [2, 3], "everything": [1, 2, 3], "unsubscribed": [1, 2, 3],
                   "agent": []}


async def test_many_alerts_in_one_tick_all_arrive_in_order(server: RunningServer) -> None:
    """Alerts are never coalesced: thirty published within one tick all arrive, in publish order."""
    tenant = new_tenant("alm")
    hub = hub_of(server)
    async with board(server.url, server.token(tenant)) as client:
        await client.subscribe(["overview"])
        await client.next(lambda m: m["type"] == "snapshot")
        started = time.monotonic()
        for n in range(30):
            await hub.publish_alert(tenant, {"kind": "burst", "n": n})
        assert time.monotonic() - started < 0.25, "all within one tick"
        await client.next(lambda m: m["type"] == "alert" and m["n"] == 29)
        assert [a["n"] for a in alerts(client)] == list(range(30))
        assert client.open


async def test_alert_with_its_own_type_is_refused(server: RunningServer) -> None:
    """publish_alert refuses an alert that would overwrite the message type, naming the fix."""
    with pytest.raises(ValueError, match="kind"):
        await hub_of(server).publish_alert(new_tenant(), {"type": "update", "view": "overview"})

"""The `calls` view: waiting calls and pending callbacks by REST (ETag) and WebSocket, per tenant and role."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

from server.live.view import iso_ms

from .conftest import RunningServer
from .pages import event, new_tenant, now_ms, post_events
from .test_ws import board

PATH = "/api/metrics/calls/waiting"


async def seed(server: RunningServer, tenant: str) -> dict[str, int]:
    """Three calls waiting in `sales`, one in `support`, one answered; the queued ts (ms) of each waiting call."""
    queued = {"s1": now_ms(-90), "s2": now_ms(-60), "s3": now_ms(-30), "p1": now_ms(-45), "gone": now_ms(-80)}
    events = [event("call.queued", ts, call_id=c, queue_id="support" if c == "p1" else "sales")
              for c, ts in queued.items()]
    events.append(event("call.answered", now_ms(-5), call_id="gone", queue_id="sales", agent_id="a1"))
    await post_events(server, tenant, events)
    del queued["gone"]
    return queued


async def add_callbacks(server: RunningServer, tenant: str, *callbacks: dict[str, Any]) -> None:
    """Pending callbacks, from the callback.requested events that make them (stored, so the live state's
    consistency check, which compares it with PostgreSQL, keeps them)."""
    await post_events(server, tenant, [
        event("callback.requested", round(datetime.fromisoformat(c["requested_at"]).timestamp() * 1000),
              callback_id=c["callback_id"], queue_id=c["queue_id"], due_ts=c["due_ts"]) for c in callbacks])


def two_callbacks() -> tuple[dict[str, Any], dict[str, Any]]:
    """Two callbacks as the calls view lists them, requested a minute or two before now (in or next to the
    interval of the test's calls): cb1 in `sales`, and cb2 in `support`, which is due first."""
    return ({"callback_id": "cb1", "queue_id": "sales", "requested_at": iso_ms(now_ms(-120)),
             "due_ts": iso_ms(now_ms(2400))},
            {"callback_id": "cb2", "queue_id": "support", "requested_at": iso_ms(now_ms(-90)),
             "due_ts": iso_ms(now_ms(600))})


async def test_rest_lists_waiting_calls_with_positions_and_callbacks(server: RunningServer) -> None:
    """GET /api/metrics/calls/waiting lists each waiting call oldest first with its place in its queue, and each callback."""
    tenant = new_tenant("calls")
    queued = await seed(server, tenant)
    callback, other_callback = two_callbacks()
    await add_callbacks(server, tenant, callback, other_callback)
    async with server.client(server.token(tenant, "supervisor")) as client:
        first = await client.get(PATH)
        assert first.status_code == 200, first.text
        data = first.json()["data"]
        assert data["waiting"] == [
            {"call_id": "s1", "queue_id": "sales", "queued_at": iso_ms(queued["s1"]), "position": 1},
            {"call_id": "s2", "queue_id": "sales", "queued_at": iso_ms(queued["s2"]), "position": 2},
            {"call_id": "p1", "queue_id": "support", "queued_at": iso_ms(queued["p1"]), "position": 1},
            {"call_id": "s3", "queue_id": "sales", "queued_at": iso_ms(queued["s3"]), "position": 3},
        ]
        assert data["callbacks"] == [other_callback, callback]  # soonest due first
        again = await client.get(PATH, headers={"If-None-Match": first.headers["ETag"]})
        assert again.status_code == 304
        only = (await client.get(PATH, params={"queue_id": "support"})).json()["data"]
        assert [c["call_id"] for c in only["waiting"]] == ["p1"] and only["callbacks"] == [other_callback]
        bad = await client.get(PATH, params={"queue_id": "x" * 129})
        assert bad.status_code == 400 and "queue_id" in bad.json()["error"]["message"]
    await post_events(server, tenant, [event("call.abandoned", now_ms(), call_id="s1", queue_id="sales")])
    async with server.client(server.token(tenant, "supervisor")) as client:
        after = await client.get(PATH, headers={"If-None-Match": first.headers["ETag"]})
    assert after.status_code == 200
    assert [(c["call_id"], c["position"]) for c in after.json()["data"]["waiting"]] == [("s2", 1), ("p1", 1), ("s3", 2)]


async def test_rest_is_per_tenant_and_refuses_agents(server: RunningServer) -> None:
    """Another tenant sees none of a tenant's waiting calls or callbacks; an agent token is refused (403)."""
    tenant, other = new_tenant("calls"), new_tenant("calls")
    await seed(server, tenant)
    await add_callbacks(server, tenant, two_callbacks()[0])
    await post_events(server, other, [event("call.queued", now_ms(-3), call_id="o1", queue_id="sales")])
    async with server.client(server.token(other, "supervisor")) as client:
        data = (await client.get(PATH)).json()["data"]
    assert [c["call_id"] for c in data["waiting"]] == ["o1"] and data["callbacks"] == []
    async with server.client(server.token(tenant, "agent", sub="a1")) as client:
        refused = await client.get(PATH)
    assert refused.status_code == 403


async def test_ws_calls_view_snapshot_update_and_roles(server: RunningServer) -> None:
    """The WebSocket `calls` view sends the list, then an update when a call queues; other tenants see none; agents may not follow it."""
    tenant = new_tenant("calls")
    queued = await seed(server, tenant)
    other = new_tenant("calls")
    async with (board(server.url, server.token(tenant, "supervisor")) as ws,
                board(server.url, server.token(other, "supervisor")) as stranger):
        await stranger.subscribe(["calls"])
        empty = await stranger.next(lambda b: b["type"] == "snapshot" and b["view"] == "calls")
        assert empty["data"]["waiting"] == [] and empty["data"]["callbacks"] == []
        await ws.subscribe(["calls"], ["sales"])
        snap = await ws.next(lambda b: b["type"] == "snapshot" and b["view"] == "calls")
        assert [(c["call_id"], c["position"]) for c in snap["data"]["waiting"]] == [("s1", 1), ("s2", 2), ("s3", 3)]
        assert snap["data"]["waiting"][0]["queued_at"] == iso_ms(queued["s1"])
        mark = len(ws.messages)
        began = time.monotonic()
        await post_events(server, tenant, [event("call.queued", now_ms(), call_id="s4", queue_id="sales"),
                                           event("call.queued", now_ms(), call_id="p2", queue_id="support")])
        update = await ws.next(lambda b: b["type"] == "update" and b["view"] == "calls"
                               and any(c["call_id"] == "s4" for c in b["data"]["waiting"]), after=mark)
        assert time.monotonic() - began < 2
        assert [c["call_id"] for c in update["data"]["waiting"]] == ["s1", "s2", "s3", "s4"]  # filter: sales only
        await asyncio.sleep(0.5)
        assert all(not b["data"]["waiting"] for b in stranger.bodies if b.get("view") == "calls")  # another tenant's
    async with board(server.url, server.token(tenant, "agent", sub="a1")) as ws:
        await ws.subscribe(["calls"])
        refused = await ws.next(lambda b: b["type"] == "error")
        assert refused["code"] == "view_forbidden"

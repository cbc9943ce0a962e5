"""Boards (named wallboard layouts) and alert acknowledgements over HTTP, against a real server and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import asyncpg

from .conftest import RunningServer
from .test_ws import new_tenant

SALES = {"title": "Sales", "queues": ["sales", "renewals"], "locale": "de", "sound": True, "rotate_s": 20,
         "tiles": [{"metric": "waiting", "label": "Waiting"}, {"metric": "service_level", "queue_ids": ["sales"]},
                   {"metric": "agents_available"}]}


async def call(server: RunningServer, tenant: str, method: str, path: str, role: str = "admin",
               body: Any = None) -> Any:
    async with server.client(server.token(tenant, role, sub=f"{role}-1")) as client:
        response = await client.request(method, path, json=body)
    return response.status_code, response.json()


async def test_board_round_trip_roles_and_audit(server: RunningServer) -> None:
    """An admin creates, lists, replaces and deletes boards; a supervisor reads but may not write; each write is audited."""
    tenant = new_tenant("boards")
    status, body = await call(server, tenant, "PUT", "/api/boards/sales", body=SALES)
    assert status == 200, body
    assert body["data"]["name"] == "sales" and body["data"]["tiles"][1] == {
        "metric": "service_level", "queue_ids": ["sales"], "label": ""}
    assert body["data"]["updated_by"] == "admin-1"
    status, body = await call(server, tenant, "GET", "/api/boards/sales", role="supervisor")
    assert status == 200 and body["data"]["queues"] == ["sales", "renewals"] and body["data"]["sound"] is True
    status, body = await call(server, tenant, "PUT", "/api/boards/sales", role="supervisor", body=SALES)
    assert status == 403
    assert (await call(server, new_tenant("other"), "GET", "/api/boards/sales", role="supervisor"))[0] == 404
    status, body = await call(server, tenant, "PUT", "/api/boards",
                              body={"support": {"title": "Support", "tiles": [{"metric": "asa"}]}})
    assert status == 200 and [b["name"] for b in body["data"]] == ["support"]
    assert body["data"][0]["rotate_s"] == 30 and body["data"][0]["queues"] == []
    status, body = await call(server, tenant, "DELETE", "/api/boards/support")
    assert status == 200
    status, body = await call(server, tenant, "GET", "/api/boards", role="supervisor")
    assert status == 200 and body["count"] == 0
    assert (await call(server, tenant, "DELETE", "/api/boards/support"))[0] == 404
    status, body = await call(server, tenant, "GET", "/api/analytics/audit")
    actions = sorted(entry["action"] for entry in body["data"])
    assert actions == ["boards.delete", "boards.put", "boards.replace"], actions


async def test_bad_boards_are_400_naming_the_field(server: RunningServer) -> None:
    """Each malformed board is refused with 400 and details.field naming what is wrong."""
    tenant = new_tenant("boards-bad")
    cases = {
        "tiles[1].metric": {**SALES, "tiles": [{"metric": "waiting"}, {"metric": "mood"}]},
        "tiles": {**SALES, "tiles": []},
        "title": {**SALES, "title": "  "},
        "locale": {**SALES, "locale": "it"},
        "sound": {**SALES, "sound": "yes"},
        "rotate_s": {**SALES, "rotate_s": 1},
        "queues[0]": {**SALES, "queues": [""]},
        "colour": {**SALES, "colour": "red"},
        "board": ["not", "an", "object"],
    }
    for field, board in cases.items():
        status, body = await call(server, tenant, "PUT", "/api/boards/sales", body=board)
        assert status == 400, (field, body)
        assert body["error"]["details"]["field"] == field, (field, body)
        assert field.split("[")[0] in body["error"]["message"]
    status, body = await call(server, tenant, "PUT", "/api/boards/bad%20name", body=SALES)
    assert status == 400 and body["error"]["details"]["field"] == "name"
    status, body = await call(server, tenant, "PUT", "/api/boards", body={"ok": SALES, "x": {**SALES, "sound": 1}})
    assert status == 400 and body["error"]["details"]["field"] == "x.sound"


async def test_alerts_listed_and_acknowledged_once(server: RunningServer, settings: Any) -> None:
    """GET /api/alerts lists open and recent threshold alerts; an ack records who and when, keeps the first, is audited."""
    tenant = new_tenant("acks")
    owner = await asyncpg.connect(settings.migrate_database_url or settings.database_url)
    now = datetime.now(UTC)
    try:
        ids = [await owner.fetchval(
            "INSERT INTO anomaly_detection (client_id, queue_id, interval_start, metric, observed, expected, score, kind, "
            "raised_at, cleared_at) VALUES ($1, 'sales', $2, 'waiting', 7, 5, $3, 'threshold', $2, $4) RETURNING anomaly_id",
            tenant, now, score, cleared) for score, cleared in ((1, None), (2, now))]
    finally:
        await owner.close()
    status, body = await call(server, tenant, "GET", "/api/alerts", role="supervisor")
    assert status == 200 and body["count"] == 2 and body["statistics"] == {"active": 1, "unacknowledged": 1}
    active = next(a for a in body["data"] if a["active"])
    assert active["alert_id"] == ids[0] and active["level"] == "amber" and active["acked_by"] is None
    before = time.time()
    status, body = await call(server, tenant, "POST", f"/api/alerts/{ids[0]}/ack", role="supervisor")
    assert status == 200 and body["data"]["acked_by"] == "supervisor-1"
    assert datetime.fromisoformat(body["data"]["acked_at"]).timestamp() >= before - 1
    status, again = await call(server, tenant, "POST", f"/api/alerts/{ids[0]}/ack", role="admin")
    assert again["data"]["acked_by"] == "supervisor-1" and again["data"]["acked_at"] == body["data"]["acked_at"]
    assert (await call(server, tenant, "POST", "/api/alerts/abc/ack", role="supervisor"))[0] == 400
    assert (await call(server, new_tenant("x"), "POST", f"/api/alerts/{ids[0]}/ack", role="supervisor"))[0] == 404
    assert (await call(server, tenant, "POST", f"/api/alerts/{ids[0]}/ack", role="agent"))[0] == 403
    status, audit = await call(server, tenant, "GET", "/api/analytics/audit")
    assert [e["action"] for e in audit["data"]].count("alerts.ack") == 2


async def test_a_settings_change_reaches_a_board_served_by_another_process(
        server: RunningServer, server_factory: Any) -> None:
    """Thresholds changed through one process are in the overview another process serves within a second
    (every process drops its cached settings of the tenant when told), not after its 5 s cache."""
    other = await server_factory(server.settings)
    tenant = new_tenant("thresholds")
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    async with server.client(server.token(tenant, "ingest")) as client:
        await client.post("/api/events", json=[{"event_id": "q1", "type": "call.queued", "ts": now, "call_id": "c1",
                                                 "queue_id": "sales"}])
    async with other.client(other.token(tenant)) as board:
        async def waiting_levels() -> Any:
            return (await board.get("/api/metrics/live")).json()["data"]["queues"][0]["thresholds"]["waiting"]

        before = await waiting_levels()  # the other process has the tenant's settings cached now
        status, body = await call(server, tenant, "PUT", "/api/settings", body={"alerts": {"waiting": {"amber": 2, "red": 7}}})
        assert status == 200, body
        changed = time.monotonic()
        while (levels := await waiting_levels()) == before and time.monotonic() - changed < 5:
            await asyncio.sleep(0.05)
    assert levels == {"amber": 2, "red": 7} and time.monotonic() - changed < 1.0

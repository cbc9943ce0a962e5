"""DELETE /api/tenant erases every row and key of the caller's tenant, only with a matching confirm, and no other's."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from .conftest import RunningServer
from .test_live_exact import new_tenant


def call_events(tenant: str) -> list[dict[str, Any]]:
    now = int(time.time() * 1000) - 60_000
    return [
        {"event_id": f"{tenant}-1", "type": "agent.state", "ts": now, "agent_id": "ann", "state": "available",
         "name": "Ann", "team": "red", "queues": ["sales"]},
        {"event_id": f"{tenant}-2", "type": "call.queued", "ts": now + 1000, "call_id": "c1", "queue_id": "sales"},
        {"event_id": f"{tenant}-3", "type": "call.answered", "ts": now + 5000, "call_id": "c1", "queue_id": "sales",
         "agent_id": "ann"},
        {"event_id": f"{tenant}-4", "type": "call.completed", "ts": now + 30_000, "call_id": "c1", "queue_id": "sales",
         "agent_id": "ann", "talk_s": 20, "hold_s": 0, "wrap_s": 5},
        {"event_id": f"{tenant}-5", "type": "csat.response", "ts": now + 31_000, "call_id": "c1", "agent_id": "ann",
         "csat": 5},
        {"event_id": f"{tenant}-6", "type": "quality.scored", "ts": now + 32_000, "call_id": "c1", "agent_id": "ann",
         "score": 4},
    ]


async def fill(server: RunningServer, tenant: str) -> None:
    """Events, settings and an audited write: rows in most tables and live keys in Redis."""
    async with server.client(server.token(tenant, "ingest")) as client:
        assert (await client.post("/api/events", json=call_events(tenant))).status_code == 200
    async with server.client(server.token(tenant, "admin", sub="ada")) as client:
        assert (await client.put("/api/settings", json={"sl_threshold_s": 30})).status_code == 200
        for _ in range(100):
            live = (await client.get("/api/metrics/live")).json()["data"]
            if live["today"].get("answered") == 1:
                break
            await asyncio.sleep(0.05)


async def tenant_rows(dsn: str, tenant: str) -> dict[str, int]:
    """Rows of ``tenant`` in every table of the schema that has a client_id column (partitions counted in their
    parent; the superuser sees every row)."""
    conn = await asyncpg.connect(dsn)
    try:
        tables = [r[0] for r in await conn.fetch(
            "SELECT c.table_name FROM information_schema.columns c JOIN information_schema.tables t "
            "ON t.table_schema = c.table_schema AND t.table_name = c.table_name "
            "WHERE c.column_name = 'client_id' AND c.table_schema = current_schema() AND t.table_type = 'BASE TABLE' "
            "AND c.table_name NOT IN (SELECT inhrelid::regclass::text FROM pg_inherits)")]
        assert len(tables) >= 15, tables
        return {t: await conn.fetchval(f'SELECT count(*) FROM "{t}" WHERE client_id = $1', tenant) for t in tables}
    finally:
        await conn.close()


async def tenant_keys(server: RunningServer, tenant: str) -> list[bytes]:
    """Every Redis key of the run that names the tenant, hash-tagged or not, and its registry entries."""
    client = aioredis.Redis.from_url(server.settings.redis_url or "")
    try:
        found = [key async for key in client.scan_iter(match=f"{server.settings.key_prefix}*{tenant}*", count=1000)]
        if await client.zscore(f"{server.settings.key_prefix}:analytics:tenants", tenant) is not None:
            found.append(b"analytics:tenants member")
        return found
    finally:
        await client.aclose()


async def test_erasure_leaves_no_row_and_no_key_of_the_tenant(server: RunningServer,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    """After DELETE /api/tenant?confirm=<id>, no table with a client_id has a row of the tenant and Redis no key;
    another tenant's rows and keys are untouched; the erasure is logged as the audit record that outlives it."""
    gone, kept = new_tenant("erase"), new_tenant("stay")
    await fill(server, gone)
    await fill(server, kept)
    assert database_url(server)
    before = await tenant_rows(database_url(server), gone)
    assert sum(before.values()) >= 10 and before["events"] == 6 and before["tenants"] == 1, before
    assert await tenant_keys(server, gone)
    kept_rows, kept_keys = await tenant_rows(database_url(server), kept), await tenant_keys(server, kept)

    with caplog.at_level(logging.INFO, logger="wallboard.audit"):
        async with server.client(server.token(gone, "admin", sub="ada")) as client:
            answer = await client.delete("/api/tenant", params={"confirm": gone})
    assert answer.status_code == 200, answer.text
    logged = [r for r in caplog.records if r.getMessage() == "tenant.erased" and getattr(r, "tenant", None) == gone]
    assert [(r.sub, r.role, r.rows) for r in logged] == [("ada", "admin", answer.json()["data"]["rows"])]
    transient = {"live_pending", "live_active"}  # the live repair's markers, written and cleared after each apply
    assert answer.json()["data"]["rows"] >= sum(n for t, n in before.items() if t not in transient)
    after = await tenant_rows(database_url(server), gone)
    assert {t: n for t, n in after.items() if n} == {}
    assert await tenant_keys(server, gone) == []
    assert {t: n for t, n in (await tenant_rows(database_url(server), kept)).items() if t not in transient} \
        == {t: n for t, n in kept_rows.items() if t not in transient}
    # The other tenant keeps every key; only its short-lived locks and markers may have come and gone meanwhile.
    lost = set(kept_keys) - set(await tenant_keys(server, kept))
    assert all(any(part in key for part in (b":heal:", b":rebuild", b":rate", b":checked:")) for key in lost), lost


async def test_erasure_needs_the_matching_confirm_and_an_admin(server: RunningServer) -> None:
    """Without confirm, with another tenant's id, or with a supervisor token nothing is erased (400, 400, 403)."""
    tenant = new_tenant("noerase")
    await fill(server, tenant)
    async with server.client(server.token(tenant, "admin")) as client:
        missing = await client.delete("/api/tenant")
        other = await client.delete("/api/tenant", params={"confirm": "someone-else"})
    async with server.client(server.token(tenant, "supervisor")) as client:
        supervisor = await client.delete("/api/tenant", params={"confirm": tenant})
    assert (missing.status_code, missing.json()["error"]["code"]) == (400, "confirmation_required")
    assert (other.status_code, other.json()["error"]["code"]) == (400, "confirmation_mismatch")
    assert "confirm" in other.json()["error"]["message"] and supervisor.status_code == 403
    assert (await tenant_rows(database_url(server), tenant))["events"] == 6


def database_url(server: RunningServer) -> str:
    assert server.settings.database_url is not None
    return server.settings.database_url

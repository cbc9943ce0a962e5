"""Bad input costs at most its own answer: body caps, the ingest window, small flat extras, queue_log caps."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import orjson
import pytest

from server.core.config import Settings

from .conftest import RunningServer


def new_tenant(label: str) -> str:
    return f"{label}-{secrets.token_hex(4)}"


def queued(event_id: str, ts_ms: int) -> dict[str, object]:
    return {"event_id": event_id, "type": "call.queued", "ts": ts_ms, "call_id": f"c-{event_id}", "queue_id": "sales"}


async def stored_ids(dsn: str, tenant: str) -> set[str]:
    conn = await asyncpg.connect(dsn)
    try:
        return {r["event_id"] for r in await conn.fetch("SELECT event_id FROM events WHERE client_id = $1", tenant)}
    finally:
        await conn.close()


async def test_an_event_nested_300_deep_beside_a_valid_one_gives_207(server: RunningServer) -> None:
    """A batch of one event with an extra field nested 300 deep and one valid event: 207, the valid one stored."""
    tenant = new_tenant("deep")
    now = int(time.time() * 1000)
    deep = b'{"a":' * 300 + b"1" + b"}" * 300
    bad = orjson.dumps(queued("deep", now))[:-1] + b',"meta":' + deep + b"}"
    body = b"[" + bad + b"," + orjson.dumps(queued("fine", now)) + b"]"
    async with server.client(server.token(tenant, "ingest")) as client:
        response = await client.post("/api/events", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 207, response.text
    data = response.json()["data"]
    assert data["accepted"] == 1 and [r["index"] for r in data["rejected"]] == [0]
    assert data["rejected"][0]["field"] == "meta" and data["rejected"][0]["code"] == "extra_field_too_large"
    assert await stored_ids(server.settings.database_url, tenant) == {"fine"}


PARTITION_DAY = re.compile(r"FROM \('(\d{4}-\d{2}-\d{2})")


@pytest.mark.slow
async def test_ten_thousand_events_over_twenty_years_make_no_partition_outside_the_window(
        server_factory: Callable[[Settings], Awaitable[RunningServer]], settings: Settings,
        database_factory: Callable[..., Awaitable[str]]) -> None:
    """10,000 events over 20 years: the in-window ones stored, each other rejected with ts_out_of_window, no partition outside the window."""
    dsn = await database_factory()
    server = await server_factory(settings.replace(database_url=dsn))
    tenant = new_tenant("years")
    now = int(time.time() * 1000)
    step = 20 * 365 * 86_400_000 // 10_000
    stamps = [now - 18 * 365 * 86_400_000 + i * step for i in range(10_000)]  # 18 years back to 2 ahead
    inside = {f"y{i}" for i, ts in enumerate(stamps) if now - 35 * 86_400_000 + 60_000 <= ts <= now + 240_000}
    edge = {f"y{i}" for i, ts in enumerate(stamps) if abs(ts - (now - 35 * 86_400_000)) < 60_000}
    async with server.client(server.token(tenant, "ingest")) as client:
        response = await client.post("/api/events", content=orjson.dumps([queued(f"y{i}", ts) for i, ts in enumerate(stamps)]),
                                      headers={"Content-Type": "application/json"})
    assert response.status_code == 207, response.text[:300]
    data = response.json()["data"]
    rejected = {r["event_id"] for r in data["rejected"]}
    assert all(r["code"] == "ts_out_of_window" and r["field"] == "ts" for r in data["rejected"])
    assert len(inside) > 30 and data["accepted"] + len(rejected) == 10_000
    assert inside <= await stored_ids(dsn, tenant) <= inside | edge
    conn = await asyncpg.connect(dsn)
    try:
        bounds = [r["bound"] for r in await conn.fetch(
            """SELECT pg_get_expr(c.relpartbound, c.oid) AS bound FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
               WHERE i.inhparent = 'events'::regclass""")]
        history = [r["relname"] for r in await conn.fetch(
            """SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
               WHERE i.inhparent IN ('agent_metrics'::regclass, 'customer_satisfaction'::regclass)""")]
    finally:
        await conn.close()
    today = datetime.now(UTC).date()
    days = [date.fromisoformat(PARTITION_DAY.search(b).group(1)) for b in bounds]  # type: ignore[union-attr]
    assert days and all(today - timedelta(days=36) <= d <= today + timedelta(days=8) for d in days), sorted(days)
    months = {(today - timedelta(days=n)).strftime("%Y%m") for n in range(-8, 37)}
    assert {name.rsplit("_", 1)[1] for name in history} <= months, sorted(history)
    print(f"\n20 years of events: {data['accepted']} stored, {len(rejected)} rejected, {len(days)} event partitions")


@pytest.fixture
async def health_probe(server: RunningServer) -> AsyncIterator[list[float]]:
    """GET /api/metrics/health every 20 ms while the test runs; yields the list of waits (seconds)."""
    waits: list[float] = []
    stop = asyncio.Event()

    async def probe() -> None:
        async with server.client() as client:
            while not stop.is_set():
                started = time.perf_counter()
                response = await client.get("/api/metrics/health")
                waits.append(time.perf_counter() - started)
                assert response.status_code == 200, response.text
                await asyncio.sleep(0.02)

    task = asyncio.create_task(probe())
    await asyncio.sleep(0.2)
    try:
        yield waits
    finally:
        stop.set()
        await task


@pytest.mark.skipif(shutil.which("curl") is None, reason="the garbage is posted with curl")
@pytest.mark.parametrize("garbage", ["random", "lines"])
async def test_five_mib_of_garbage_to_queue_log_costs_only_its_answer(server: RunningServer, health_probe: list[float],
                                                                      garbage: str, tmp_path: Path) -> None:
    """5 MiB of garbage to the queue_log endpoint: 413 or 422 within 2 s; a health probe every 20 ms waits < 100 ms."""
    size = 5 * 1024 * 1024
    body = os.urandom(size) if garbage == "random" else b"x|\n" * (size // 3)
    tenant = new_tenant("qlg")
    (tmp_path / "body").write_bytes(body)
    # Posted by curl, another process: the probe measures the server's event loop, not this client's 5 MiB write.
    # The shell waits for a line before it runs curl, so forking this process is not inside the measurement.
    curl = await asyncio.create_subprocess_exec(
        "sh", "-c", 'read go; exec curl -s -o "$1" -w "%{http_code}" --data-binary "@$2" -H "Content-Type: text/plain" '
        '-H "Authorization: Bearer $3" "$4"', "sh", str(tmp_path / "reply"), str(tmp_path / "body"),
        server.token(tenant, "ingest"), f"{server.url}/api/ingest/asterisk/queue-log",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    await asyncio.sleep(0.3)
    before = len(health_probe)
    started = time.perf_counter()
    status = int((await curl.communicate(b"go\n"))[0])
    took = time.perf_counter() - started
    response = httpx.Response(status, content=(tmp_path / "reply").read_bytes())
    await asyncio.sleep(0.3)
    assert response.status_code in (413, 422), response.text[:300]
    assert took < 2, took
    assert len(response.content) < 64 * 1024
    if response.status_code == 422:
        data = response.json()["data"]
        assert len(data["rejected"]) == 100 and 10_000 < data["rejected_total"] <= data["lines"]
    during = health_probe[before:]
    print(f"\nqueue_log {garbage} 5 MiB: {response.status_code} in {took * 1000:.0f} ms; health probes "
          f"{len(during)}, longest {max(during) * 1000:.1f} ms")
    assert len(during) >= 3 and max(during) < 0.1, max(during)


async def test_bodies_past_the_cap_are_refused_before_they_are_read(server: RunningServer) -> None:
    """60 MiB to POST /api/analytics/calls/quality and 2 MiB chunked to PUT /api/settings: 413 at once, never a 5xx."""
    tenant = new_tenant("cap")
    async with server.client(server.token(tenant, "admin")) as client:
        started = time.perf_counter()
        big = await client.post("/api/analytics/calls/quality", content=b" " * (60 * 1024 * 1024),
                                headers={"Content-Type": "application/json"})
        took = time.perf_counter() - started

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(32):
                yield b" " * 65536

        chunked = await client.put("/api/settings", content=chunks(), headers={"Content-Type": "application/json"})
        nested = await client.post("/api/analytics/calls/quality", content=b"[" * 100_000 + b"]" * 100_000)
        deep_setting = await client.put("/api/settings", content=b'{"queues": {"q": {"sl_threshold_s": '
                                        + b"[" * 500 + b"]" * 500 + b"}}}")
        ok = await client.put("/api/settings", json={"ingest_window_days": 60})
    assert big.status_code == 413 and big.json()["error"]["code"] == "body_too_large"
    assert chunked.status_code == 413 and chunked.json()["error"]["code"] == "body_too_large"
    assert nested.status_code == 400 and nested.json()["error"]["code"] == "invalid_json"
    assert deep_setting.status_code == 400 and deep_setting.json()["error"]["details"]["field"] == "queues"
    assert ok.status_code == 200 and ok.json()["data"]["ingest_window_days"] == 60
    print(f"\n60 MiB body to calls/quality: 413 in {took * 1000:.0f} ms")

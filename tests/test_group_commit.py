"""Group commit: concurrent one-event requests share commits, and each is answered for itself."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest

from server.core.config import Settings
from server.ingest.events import Event, parse_event
from server.live.committer import GroupCommit
from tests.conftest import RunningServer


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def queued(event_id: str, call_id: str, queue: str = "sales") -> dict[str, str]:
    return {"event_id": event_id, "type": "call.queued", "ts": now_iso(), "call_id": call_id, "queue_id": queue}


@pytest.fixture
async def grouped(server_factory: Callable[[Settings], Awaitable[RunningServer]], settings: Settings) -> RunningServer:
    """A server with request budgets off (the test posts hundreds of one-event requests at once)."""
    return await server_factory(settings.replace(rate_ingest_tenant=0, rate_ingest_token=0, rate_read_tenant=0,
                                                 rate_read_token=0))


async def post_one_by_one(server: RunningServer, tenant: str, events: Sequence[dict[str, str]],
                          connections: int = 32) -> list[dict[str, object]]:
    """Each event in its own POST, from ``connections`` concurrent keep-alive connections; the replies' data."""
    replies: list[dict[str, object]] = []
    pending = list(events)
    async with server.client(server.token(tenant, role="ingest")) as client:
        async def worker() -> None:
            while pending:
                event = pending.pop()
                response = await client.post("/api/events", json=[event])
                assert response.status_code == 200, response.text
                replies.append(response.json()["data"])

        await asyncio.gather(*(worker() for _ in range(connections)))
    return replies


async def two_tenants_one_by_one(server: RunningServer, prefix: str, n_a: int, n_b: int,
                                 b_connections: int) -> list[tuple[str, int, int]]:
    """Tenants ``<prefix>-a`` (n_a events on queue sales) and ``<prefix>-b`` (n_b on support, over ``b_connections``)
    post one event per request at once; each request must be accepted. Per tenant: (tenant, stored events, ids)."""
    a = [queued(f"{prefix}-a-{i}", f"{prefix}a{i}") for i in range(n_a)]
    b = [queued(f"{prefix}-b-{i}", f"{prefix}b{i}", queue="support") for i in range(n_b)]
    replies_a, replies_b = await asyncio.gather(post_one_by_one(server, f"{prefix}-a", a),
                                                post_one_by_one(server, f"{prefix}-b", b, connections=b_connections))
    assert all(r == {"accepted": 1, "duplicates": 0, "rejected": []} for r in replies_a + replies_b)
    conn = await asyncpg.connect(server.settings.database_url)
    try:
        rows = await conn.fetch("SELECT client_id, count(*) AS n, count(DISTINCT event_id) AS ids FROM events "
                                "WHERE client_id = ANY ($1) GROUP BY client_id ORDER BY client_id",
                                [f"{prefix}-a", f"{prefix}-b"])
    finally:
        await conn.close()
    return [(r["client_id"], r["n"], r["ids"]) for r in rows]


async def test_concurrent_one_event_posts_are_stored_once_each_in_their_tenant(grouped: RunningServer) -> None:
    """Hundreds of one-event POSTs of two tenants at once: each accepted once, stored once, counted live in its tenant."""
    assert await two_tenants_one_by_one(grouped, "gc", 240, 120, 16) == [("gc-a", 240, 240), ("gc-b", 120, 120)]
    for tenant, queue, n in (("gc-a", "sales", 240), ("gc-b", "support", 120)):
        async with grouped.client(grouped.token(tenant)) as client:
            overview = (await client.get("/api/metrics/live")).json()["data"]
        assert [(q["queue_id"], q["waiting"]) for q in overview["queues"]] == [(queue, n)]


async def test_one_event_sent_by_concurrent_requests_is_accepted_by_exactly_one(grouped: RunningServer) -> None:
    """The same event_id in 40 concurrent requests: one reply says accepted, the 39 others say duplicate."""
    event = queued("gc-same", "c-same")
    replies = await post_one_by_one(grouped, "gc-dup", [dict(event) for _ in range(40)], connections=40)
    assert sorted((r["accepted"], r["duplicates"]) for r in replies) == [(0, 1)] * 39 + [(1, 0)]
    async with grouped.client(grouped.token("gc-dup")) as client:
        overview = (await client.get("/api/metrics/live")).json()["data"]
    assert overview["queues"][0]["waiting"] == 1


def waiting(reply: httpx.Response) -> list[tuple[str, int]]:
    """Calls waiting per queue in a ``/api/metrics/live`` answer."""
    return [(q["queue_id"], q["waiting"]) for q in reply.json()["data"]["queues"]]


def parsed(event_id: str) -> Event:
    return parse_event(queued(event_id, "c-" + event_id))


async def test_a_request_whose_commit_fails_fails_alone() -> None:
    """When a shared commit fails on one request's events, the other requests of the group are still stored."""
    committed: list[list[str]] = []
    attempts: list[list[str]] = []
    release = asyncio.Event()

    async def commit(tenant: str, events: Sequence[Event], stored: Callable[[set[str]], None] | None) -> set[str]:
        await release.wait()
        ids = [e.event_id for e in events]
        attempts.append(ids)
        if "bad" in ids:
            raise ValueError("this batch cannot be stored")
        committed.append(ids)
        return set(ids)

    groups = GroupCommit(commit, inflight=1, apply_ahead=0)
    first = asyncio.create_task(groups.store("t", [parsed("first")]))
    await asyncio.sleep(0)  # the first commit is in flight: the next three wait and share one
    rest = [asyncio.create_task(groups.store("t", [parsed(i)])) for i in ("a", "bad", "b")]
    await asyncio.sleep(0)
    release.set()
    assert await first == {"first"}
    assert await rest[0] == {"a"} and await rest[2] == {"b"}
    with pytest.raises(ValueError, match="cannot be stored"):
        await rest[1]
    assert attempts[1] == ["a", "bad", "b"]  # they did share a commit first
    assert committed == [["first"], ["a"], ["b"]]
    await groups.close()


async def test_the_next_group_stores_while_the_last_one_is_applied() -> None:
    """With one commit in flight, a group stored but still applying does not hold back the next group's store."""
    stores: list[list[str]] = []
    applying = asyncio.Event()

    async def commit(tenant: str, events: Sequence[Event], stored: Callable[[set[str]], None] | None) -> set[str]:
        ids = [e.event_id for e in events]
        stores.append(ids)
        if stored is not None:
            stored(set(ids))
        if ids == ["first"]:
            await applying.wait()  # the first group's apply to the live state is slow
        return set(ids)

    groups = GroupCommit(commit, inflight=1, apply_ahead=0)
    first = asyncio.create_task(groups.store("t", [parsed("first")]))
    await asyncio.sleep(0.01)
    assert stores == [["first"]] and not first.done()
    second = await asyncio.wait_for(groups.store("t", [parsed("second")]), 5)  # stored and answered meanwhile
    assert second == {"second"} and not first.done()
    applying.set()
    assert await first == {"first"}
    assert stores == [["first"], ["second"]]
    await groups.close()


async def test_requests_are_answered_once_committed_and_at_most_apply_ahead_groups_before_their_apply() -> None:
    """A committed group is answered while its apply runs; past ``apply_ahead`` such groups, the next waits for it."""
    applies: dict[str, asyncio.Event] = {}

    async def commit(tenant: str, events: Sequence[Event], stored: Callable[[set[str]], None] | None) -> set[str]:
        ids = [e.event_id for e in events]
        if stored is not None:
            stored(set(ids))
        await applies.setdefault(ids[0], asyncio.Event()).wait()  # each apply to the live state is slow
        return set(ids)

    groups = GroupCommit(commit, inflight=1, apply_ahead=1)
    first = await asyncio.wait_for(groups.store("t", [parsed("first")]), 5)  # answered, its apply still running
    assert first == {"first"} and not applies["first"].is_set()
    second = asyncio.create_task(groups.store("t", [parsed("second")]))
    await asyncio.sleep(0.01)
    assert "second" in applies and not second.done()  # committed, but one group is ahead of its apply already
    applies["second"].set()
    assert await asyncio.wait_for(second, 5) == {"second"}
    applies["first"].set()
    third = asyncio.create_task(groups.store("t", [parsed("third")]))
    assert await asyncio.wait_for(third, 5) == {"third"}  # the first's apply ended: ahead again
    assert not applies["third"].is_set()
    applies["third"].set()
    await groups.close()


async def test_closing_lets_a_group_answered_ahead_of_its_apply_finish_the_apply() -> None:
    """A server stopping right after answering a group still applies it: close() does not cut the apply short."""
    applied: list[str] = []

    async def commit(tenant: str, events: Sequence[Event], stored: Callable[[set[str]], None] | None) -> set[str]:
        ids = [e.event_id for e in events]
        if stored is not None:
            stored(set(ids))
        await asyncio.sleep(0.2)  # the apply to the live state takes a while
        applied.extend(ids)
        return set(ids)

    groups = GroupCommit(commit, inflight=1, apply_ahead=1)
    assert await asyncio.wait_for(groups.store("t", [parsed("first")]), 5) == {"first"}
    assert applied == []
    await groups.close()
    assert applied == ["first"]


@pytest.mark.parametrize("ahead", [4, 0])
async def test_a_post_is_answered_while_redis_holds_writes_and_the_posters_read_still_sees_it(
        server_factory: Callable[[Settings], Awaitable[RunningServer]], settings: Settings, ahead: int) -> None:
    """Redis paused for writes: the POST is answered once its event is committed (not with WALLBOARD_INGEST_APPLY_AHEAD
    0), and the poster's read of the live view through the same process waits for the apply and shows the event."""
    import redis.asyncio as aioredis

    server = await server_factory(settings.replace(ingest_apply_ahead=ahead))
    tenant = f"ahead-{ahead}"

    admin = aioredis.from_url(settings.redis_url)
    async with server.client(server.token(tenant, role="ingest")) as poster, server.client(server.token(tenant)) as board:
        assert (await poster.post("/api/events", json=[queued(f"{tenant}-0", "c0")])).status_code == 200
        for _ in range(100):  # the tenant's live state is built (its first event) before the pause
            if waiting(await board.get("/api/metrics/live")) == [("sales", 1)]:
                break
            await asyncio.sleep(0.1)
        await admin.execute_command("CLIENT", "PAUSE", "4000", "WRITE")
        try:
            post = asyncio.create_task(poster.post("/api/events", json=[queued(f"{tenant}-1", "c1")]))
            done, _ = await asyncio.wait([post], timeout=1.5)
            assert bool(done) == (ahead > 0)  # answered while its apply waits for Redis, or not
            read = asyncio.create_task(board.get("/api/metrics/live"))
            await asyncio.sleep(0.3)
        finally:
            await admin.execute_command("CLIENT", "UNPAUSE")
            await admin.aclose()
        assert (await asyncio.wait_for(post, 10)).json()["data"]["accepted"] == 1
        assert waiting(await asyncio.wait_for(read, 10)) == [("sales", 2)]


async def test_two_tenants_posting_one_by_one_on_a_one_connection_pool_both_get_everything_stored(
        server_factory: Callable[[Settings], Awaitable[RunningServer]], settings: Settings) -> None:
    """On a pool of one connection, a busy tenant's commits do not keep it from another tenant: both are stored."""
    server = await server_factory(settings.replace(db_pool_min=1, db_pool_max=1, rate_ingest_tenant=0,
                                                   rate_ingest_token=0, rate_read_tenant=0, rate_read_token=0))
    assert await two_tenants_one_by_one(server, "gp", 200, 100, 8) == [("gp-a", 200, 200), ("gp-b", 100, 100)]


async def test_a_read_after_the_answer_waits_for_the_apply_still_on_its_way_to_redis(
        server_factory: Callable[[Settings], Awaitable[RunningServer]], settings: Settings) -> None:
    """The answer comes once the event is committed; its apply is held back before it reaches Redis (as when it waits
    for a pooled connection, or makes a second round trip). The poster's next read through this process waits for that
    apply (at most a second) and shows the event, instead of the state before it."""
    server = await server_factory(settings)
    tenant = "read-barrier"
    live = server.services.live
    gate = asyncio.Event()
    run_apply = live._run_apply

    async def held(*args: Any, **kw: Any) -> list[int]:
        await gate.wait()
        return await run_apply(*args, **kw)

    async with server.client(server.token(tenant, role="ingest")) as poster, server.client(server.token(tenant)) as board:
        assert (await poster.post("/api/events", json=[queued(f"{tenant}-0", "c0")])).status_code == 200
        for _ in range(100):  # the tenant's live state is built (its first event) before the apply is held
            if waiting(await board.get("/api/metrics/live")) == [("sales", 1)]:
                break
            await asyncio.sleep(0.1)
        live._run_apply = held  # type: ignore[method-assign]
        try:
            reply = await asyncio.wait_for(poster.post("/api/events", json=[queued(f"{tenant}-1", "c1")]), 5)
            assert reply.json()["data"]["accepted"] == 1  # answered while its apply is held
            read = asyncio.create_task(board.get("/api/metrics/live"))
            await asyncio.sleep(0.4)
            assert not read.done()  # the read waits for the apply…
            gate.set()
            assert waiting(await asyncio.wait_for(read, 5)) == [("sales", 2)]  # …and then shows the event
        finally:
            gate.set()
            live._run_apply = run_apply  # type: ignore[method-assign]

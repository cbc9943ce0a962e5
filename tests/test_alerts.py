"""Threshold alerts over /ws with real clients: raised once and cleared once across two server processes, and stored."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import pytest

from server.analytics.alerts import breaches
from server.core.config import Settings
from server.core.tenant_settings import DEFAULT_ALERTS

from .conftest import RunningServer
from .test_forecast import api, z
from .test_live_exact import put_settings
from .test_ws import agent_state, board, new_tenant, post

QUIET = {"service_level": {"amber": 0, "red": 0}, "abandon_rate": {"amber": 1, "red": 1},
         "waiting": {"amber": 100, "red": 100}}


def test_breaches_follow_each_metrics_direction() -> None:
    """Waits, queue length and abandons breach above a level, service level below it; amber and red separately."""
    queue = {"queue_id": "sales", "waiting": 7, "longest_wait_s": 45.0,
             "today": {"service_level": 0.82, "abandon_rate": None}}
    found = {(metric, level) for metric, level, _, _ in breaches(queue, DEFAULT_ALERTS)}
    assert found == {("waiting", "amber"), ("longest_wait_s", "amber"), ("service_level", "amber")}
    queue["today"]["service_level"] = 0.8  # exactly at red: not past it
    assert ("service_level", "red") not in {(m, lv) for m, lv, _, _ in breaches(queue, DEFAULT_ALERTS)}


@pytest.mark.timeout(120)
async def test_breach_raised_once_and_cleared_once_across_processes(
        server: RunningServer, server_factory: Any, settings: Settings) -> None:
    """A call waiting past a 2 s red threshold reaches the wallboard within 5 s, once per level though two processes
    evaluate; answering it clears each level once; both are stored with cleared_at."""
    second = await server_factory(settings)  # another process's evaluator on the same PostgreSQL and Redis
    tenant = new_tenant("alerts")
    await put_settings(server, tenant, alerts={"longest_wait_s": {"amber": 1, "red": 2}, **QUIET})
    call = secrets.token_hex(6)
    async with board(server.url, server.token(tenant)) as client, board(second.url, server.token(tenant)) as other:
        for c in (client, other):
            await c.next(lambda m: m["type"] == "status")
            await c.subscribe(["overview"])
            await c.next(lambda m: m["type"] == "snapshot")
        queued_at = time.time()
        await post(server, tenant, [{"event_id": f"q-{call}", "type": "call.queued", "ts": int(queued_at * 1000),
                                     "call_id": call, "queue_id": "sales"}])

        def alert(state: str, level: str) -> Any:
            return lambda m: m["type"] == "alert" and m["state"] == state and m["level"] == level

        red = await client.next(alert("raised", "red"), timeout=10)
        assert time.time() - (queued_at + 2) < 5, "the red breach reached the wallboard more than 5 s after it began"
        assert red["kind"] == "threshold" and red["metric"] == "longest_wait_s" and red["queue_id"] == "sales"
        assert red["threshold"] == 2 and red["value"] > 2 and red["at"].endswith("Z")
        await other.next(alert("raised", "red"))
        await asyncio.sleep(2.5)  # every evaluator of both processes has looked several times since
        answered = time.time()
        await post(server, tenant, [agent_state("a1", "on_call", ["sales"]),
                                    {"event_id": f"a-{call}", "type": "call.answered", "ts": int(answered * 1000),
                                     "call_id": call, "queue_id": "sales", "agent_id": "a1"}])
        cleared = await client.next(alert("cleared", "red"))
        assert time.time() - answered < 5
        assert cleared["metric"] == "longest_wait_s" and cleared["threshold"] == 2
        await client.next(alert("cleared", "amber"))
        await asyncio.sleep(2.5)
        for c in (client, other):
            seen = [(m["state"], m["level"]) for m in c.of("alert")]
            assert sorted(seen) == [("cleared", "amber"), ("cleared", "red"), ("raised", "amber"), ("raised", "red")], seen
    now = int(time.time() * 1000)
    listed = await api(server, tenant, "GET", "/api/analytics/anomalies", kind="threshold",
                       **{"from": z(int(queued_at * 1000) - 900_000), "to": z(now + 900_000)})
    rows = {row["level"]: row for row in listed["data"]}
    assert listed["count"] == 2 and set(rows) == {"amber", "red"} and listed["statistics"]["open"] == 0
    assert rows["red"]["metric"] == "longest_wait_s" and rows["red"]["threshold"] == 2 and rows["red"]["observed"] > 2
    assert rows["red"]["raised_at"] <= rows["red"]["cleared_at"]

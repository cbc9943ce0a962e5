"""Every Lua script receives in KEYS each key it touches (the EVAL contract Redis Cluster and proxies rely on).

The scripts run here as written, except that each Redis command they call first checks its key
arguments against KEYS and raises on any other: a test-only text substitution of the source
(Redis 7 forbids rebinding ``redis.call`` itself), loaded in place of the shipped scripts.
"""

from __future__ import annotations

import asyncio
import random
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from server.app import close_services, open_services
from server.core.config import Settings
from server.live import state
from server.tools.simulate import SimulationConfig, generate

from .conftest import RunningServer
from .live_reference import recompute
from .test_live_exact import assert_matches, day_started_hours_ago, delivery, live_documents, post_all, put_settings

Factory = Callable[[Settings], Awaitable[RunningServer]]

CHECK = """
local __declared = {}
for _, k in ipairs(KEYS) do __declared[k] = true end
local __channels = {PUBLISH = true, SPUBLISH = true}  -- a channel is not a key
local __every = {EXISTS = true, DEL = true, UNLINK = true, MGET = true, TOUCH = true}
local __call, __pcall = redis.call, redis.pcall
local function __check(cmd, ...)
  local name, args = string.upper(cmd), {...}
  if __channels[name] then return end
  for i = 1, (__every[name] and #args or 1) do
    if not __declared[args[i]] then
      error("undeclared key " .. tostring(args[i]) .. " in " .. name .. " (KEYS has " .. #KEYS .. ")")
    end
  end
end
local function __checked_call(cmd, ...) __check(cmd, ...); return __call(cmd, ...) end
local function __checked_pcall(cmd, ...) __check(cmd, ...); return __pcall(cmd, ...) end
"""


def checked(source: str) -> str:
    """The script with every ``redis.call``/``redis.pcall`` going through the KEYS check first."""
    body = re.sub(r"\bredis\.call\(", "__checked_call(", source)
    return CHECK + re.sub(r"\bredis\.pcall\(", "__checked_pcall(", body)


@pytest.fixture
def checked_scripts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shipped scripts with the KEYS check, loaded by every service built while the test runs."""
    for script in state.SCRIPTS.glob("*.lua"):
        (tmp_path / script.name).write_text(checked(script.read_text()))
    monkeypatch.setattr(state, "SCRIPTS", tmp_path)
    return tmp_path


def tenant_of(label: str) -> str:
    return f"{label}-{secrets.token_hex(3)}"


async def test_the_check_refuses_an_undeclared_key(checked_scripts: Path, settings: Settings) -> None:
    """The checking substitution itself: a script touching a key it was not given fails, one declared passes."""
    client = aioredis.Redis.from_url(settings.redis_url)
    prefix = f"{settings.key_prefix}:{{lua}}:"
    try:
        script = client.register_script(checked('return redis.call("GET", KEYS[1] .. "x") or 0'))
        with pytest.raises(aioredis.ResponseError, match="undeclared key"):
            await script(keys=[prefix + "a"])
        assert await client.register_script(checked('return redis.call("GET", KEYS[1]) or 0'))(keys=[prefix + "a"]) == 0
    finally:
        await client.aclose()


@pytest.mark.timeout(600)
async def test_every_script_touches_only_declared_keys(checked_scripts: Path, server_factory: Factory,
                                                      settings: Settings) -> None:
    """A simulated morning with duplicates and disorder (apply, read), the calls view, a reconciliation, a rebuild
    and alerts raised and cleared by two evaluators, all through the checked scripts: the figures are exact."""
    server = await server_factory(settings.replace(key_prefix=f"wbl{secrets.token_hex(3)}", live_reconcile_s=0,
                                                   alerts_every_s=3600))
    tenant = tenant_of("declared")
    starts_at, day_start = day_started_hours_ago(3)
    await put_settings(server, tenant, day_starts_at=starts_at, timezone="UTC",
                       alerts={"waiting": {"amber": 0, "red": 1000}})
    now = datetime.now(UTC)
    config = SimulationConfig(agents=40, queues=3, calls_per_hour=900, seed=5)
    events = generate(config, now - timedelta(hours=2), timedelta(hours=2) - timedelta(seconds=5))
    # An answer that comes before its queued event, in the next interval: the queued event counts the
    # wait in the answer's interval, a key only the stored leg names.
    boundary = int(time.time() * 1000) // 900_000 * 900_000 - 900_000
    late_queued = {"event_id": "late-q", "type": "call.queued", "ts": boundary - 2_000, "call_id": "late",
                   "queue_id": "q-late"}
    early_answer = {"event_id": "late-a", "type": "call.answered", "ts": boundary + 1_000, "call_id": "late",
                    "queue_id": "q-late", "agent_id": "agent-late"}
    batches = [[early_answer], *delivery(events, random.Random(3), dup_share=0.05, disorder_share=0.10), [late_queued]]
    async with server.client(server.token(tenant, "ingest")) as client:
        await post_all(client, batches[:1], workers=1)
        await post_all(client, batches[1:-1])
        await post_all(client, batches[-1:], workers=1)
    ref = recompute([*events, early_answer, late_queued], day_start, day_start + 86_400_000, now=int(time.time() * 1000))
    overview, agents = await live_documents(server, tenant)
    assert_matches(overview, agents, ref)
    async with server.client(server.token(tenant, "supervisor")) as client:
        calls = await client.get("/api/metrics/calls/waiting")
    assert calls.status_code == 200, calls.text
    assert len(calls.json()["data"]["waiting"]) == sum(n for n, _ in ref["waiting"].values())

    svc = await open_services(server.settings, background=False)
    other = await open_services(server.settings, background=False)
    try:
        check = await svc.healer.reconcile(tenant, repair=False)
        assert (check.ready, check.differences) == ("1", {}), check.line()
        await svc.live.rebuild(tenant, reset=True)
        overview, agents = await live_documents(server, tenant)
        assert_matches(overview, agents, ref)
        # A call waiting breaches `waiting` amber; the second evaluator first learns of the open condition.
        queued = {"event_id": "wait-q", "type": "call.queued", "ts": int(time.time() * 1000) - 1000,
                  "call_id": "wait", "queue_id": "q-wait"}
        async with server.client(server.token(tenant, "ingest")) as client:
            await post_all(client, [[queued]], workers=1)
        tick = server.settings.ws_tick_ms / 1000  # an evaluator sees another process's change within a tick
        await asyncio.sleep(tick)
        raised = await svc.analytics.alerts.evaluate(tenant)
        assert ("q-wait", "waiting", "raised") in {(a["queue_id"], a["metric"], a["state"]) for a in raised}
        assert await other.analytics.alerts.evaluate(tenant) == []
        answered = {"event_id": "wait-a", "type": "call.answered", "ts": int(time.time() * 1000), "call_id": "wait",
                    "queue_id": "q-wait", "agent_id": "agent-late"}
        async with server.client(server.token(tenant, "ingest")) as client:
            await post_all(client, [[answered]], workers=1)
        await asyncio.sleep(tick)
        cleared = await other.analytics.alerts.evaluate(tenant)
        assert ("q-wait", "waiting", "cleared") in {(a["queue_id"], a["metric"], a["state"]) for a in cleared}
    finally:
        await close_services(other)
        await close_services(svc)

"""The role matrix of API.md over every route, tenant isolation, and ETag / If-None-Match on the live routes."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from .conftest import RunningServer

ROLES = ("agent", "supervisor", "admin", "ingest")
EVERYONE = frozenset(ROLES)
READERS = frozenset({"agent", "supervisor", "admin"})
SUPERVISORS = frozenset({"supervisor", "admin"})
OWN_AGENT = "ann"  # the agent token's sub


def new_tenant(label: str) -> str:
    return f"{label}-{secrets.token_hex(4)}"


def seed_events(prefix: str = "") -> list[dict[str, Any]]:
    """Two agents (ann available, bob on break) and one waiting call in queue ``sales``."""
    now = int(time.time() * 1000) - 1000
    return [
        {"event_id": f"{prefix}s1", "type": "agent.state", "ts": now, "agent_id": f"{prefix}ann", "state": "available",
         "name": "Ann", "team": "red", "queues": [f"{prefix}sales"]},
        {"event_id": f"{prefix}s2", "type": "agent.state", "ts": now, "agent_id": f"{prefix}bob", "state": "break",
         "reason": "lunch", "queues": [f"{prefix}sales"]},
        {"event_id": f"{prefix}q1", "type": "call.queued", "ts": now, "call_id": f"{prefix}c1",
         "queue_id": f"{prefix}sales"},
    ]


async def seed(server: RunningServer, tenant: str, prefix: str = "") -> None:
    async with server.client(server.token(tenant, "ingest")) as client:
        response = await client.post("/api/events", json=seed_events(prefix))
    assert response.status_code == 200, response.text


def token_for(server: RunningServer, tenant: str, role: str) -> str:
    return server.token(tenant, role, sub=OWN_AGENT if role == "agent" else f"{role}-user")


@dataclass(frozen=True)
class Call:
    """One (method, path) of the API, who may use it, and what success looks like."""

    method: str
    path: str
    allowed: frozenset[str]
    ok: int = 200
    json: Any = None

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def new_event() -> list[dict[str, Any]]:
    return [{"event_id": secrets.token_hex(6), "type": "call.queued", "ts": int(time.time() * 1000),
             "call_id": "c2", "queue_id": "sales"}]


CALLS = [
    Call("POST", "/api/events", frozenset({"ingest", "admin"}), json=new_event()),
    Call("GET", "/api/metrics/live", SUPERVISORS),
    Call("GET", "/api/metrics/queue/status", SUPERVISORS),
    Call("GET", "/api/metrics/agents/status", READERS),
    Call("GET", f"/api/metrics/agents/{OWN_AGENT}/status", READERS),
    Call("GET", "/api/metrics/agents/bob/status", SUPERVISORS),
    Call("GET", "/api/metrics/agents/nobody/status", SUPERVISORS, ok=404),
    Call("GET", "/api/settings", frozenset({"admin"})),
    Call("PUT", "/api/settings", frozenset({"admin"}), json={"sl_threshold_s": 30}),
    Call("GET", "/api/auth/whoami", EVERYONE),
    Call("GET", "/api/metrics/health", EVERYONE),
]


async def send(client: httpx.AsyncClient, call: Call) -> httpx.Response:
    return await client.request(call.method, call.path, json=call.json)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("call", CALLS, ids=str)
async def test_role_matrix(server: RunningServer, call: Call, role: str) -> None:
    """Each role gets the route's success status when API.md allows it, else 403 with the error envelope."""
    tenant = new_tenant("roles")
    await seed(server, tenant)
    async with server.client(token_for(server, tenant, role)) as client:
        response = await send(client, call)
    body = response.json()
    if role in call.allowed:
        assert response.status_code == call.ok, response.text
        assert body.get("success", True) is (call.ok < 400), body
    else:
        assert response.status_code == 403, response.text
        assert body["success"] is False and body["error"]["code"] in ("role_forbidden", "agent_forbidden"), body
        assert body["error"]["message"]
        assert "data" not in body


@pytest.mark.parametrize("call", [c for c in CALLS if c.path != "/api/metrics/health"], ids=str)
async def test_no_token_is_401(server: RunningServer, call: Call) -> None:
    """Every route but health answers 401 token_missing without a token."""
    async with server.client() as client:
        response = await send(client, call)
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "token_missing"


async def test_health_needs_no_token(server: RunningServer) -> None:
    """/api/metrics/health answers 200 without a token, with both backends up."""
    async with server.client() as client:
        response = await client.get("/api/metrics/health")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["status"], body["postgres"], body["redis"]) == ("ok", "ok", "ok"), body


@pytest.mark.parametrize("role", ROLES)
async def test_whoami_names_the_token(server: RunningServer, role: str) -> None:
    """whoami echoes the token's tenant, role and sub for every role."""
    tenant = new_tenant("who")
    async with server.client(token_for(server, tenant, role)) as client:
        response = await client.get("/api/auth/whoami")
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert (data["client_id"], data["role"], data["sub"]) == (
        tenant, role, OWN_AGENT if role == "agent" else f"{role}-user")


async def test_agent_sees_only_itself_in_the_agent_list(server: RunningServer) -> None:
    """With two agents live, an agent token's list holds exactly its own entry; a supervisor's holds both."""
    tenant = new_tenant("own")
    await seed(server, tenant)
    async with server.client(token_for(server, tenant, "agent")) as client:
        mine = (await client.get("/api/metrics/agents/status")).json()
    async with server.client(token_for(server, tenant, "supervisor")) as client:
        everyone = (await client.get("/api/metrics/agents/status")).json()
    assert [a["agent_id"] for a in mine["data"]] == [OWN_AGENT] and mine["count"] == 1
    assert mine["data"][0]["state"] == "available"
    assert sorted(a["agent_id"] for a in everyone["data"]) == ["ann", "bob"] and everyone["count"] == 2


@pytest.mark.parametrize("query", ["?state=break", "?team=red", "?queue_id=sales"])
async def test_agent_filters_never_widen_an_agent_view(server: RunningServer, query: str) -> None:
    """Query filters on the agent list narrow an agent token's view, never reveal other agents."""
    tenant = new_tenant("filt")
    await seed(server, tenant)
    async with server.client(token_for(server, tenant, "agent")) as client:
        response = await client.get("/api/metrics/agents/status" + query)
    assert response.status_code == 200, response.text
    assert {a["agent_id"] for a in response.json()["data"]} <= {OWN_AGENT}


async def test_agent_own_unknown_id_is_404(server: RunningServer) -> None:
    """An agent asking for its own status before any event of it is 404 agent_not_found, not 403."""
    tenant = new_tenant("ghost")
    await seed(server, tenant)
    async with server.client(server.token(tenant, "agent", sub="ghost")) as client:
        response = await client.get("/api/metrics/agents/ghost/status")
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "agent_not_found"


async def test_tenants_never_see_each_other(server: RunningServer) -> None:
    """Tenant B's agents and queues are absent from every live read of tenant A's supervisor and admin."""
    tenant_a, tenant_b = new_tenant("ta"), new_tenant("tb")
    await seed(server, tenant_a, prefix="a-")
    await seed(server, tenant_b, prefix="b-")
    for role in ("supervisor", "admin"):
        async with server.client(token_for(server, tenant_a, role)) as client:
            live = (await client.get("/api/metrics/live")).json()["data"]
            queues = (await client.get("/api/metrics/queue/status")).json()["data"]
            agents = (await client.get("/api/metrics/agents/status")).json()["data"]
            other = await client.get("/api/metrics/agents/b-ann/status")
        assert [q["queue_id"] for q in live["queues"]] == ["a-sales"]
        assert [q["queue_id"] for q in queues] == ["a-sales"]
        assert sorted(a["agent_id"] for a in agents) == ["a-ann", "a-bob"]
        assert live["today"]["offered"] == 1 and live["agents"]["logged_in"] == 2
        assert other.status_code == 404, other.text
        assert "b-" not in str(live) + str(queues) + str(agents)


@pytest.mark.parametrize("path", ["/api/metrics/live", "/api/metrics/queue/status", "/api/metrics/agents/status",
                                  "/api/metrics/agents/ann/status"])
async def test_etag_304_until_something_happens(server: RunningServer, path: str) -> None:
    """A repeat read with If-None-Match is 304 with no body; after a new event it is 200 with a new ETag."""
    tenant = new_tenant("etag")
    await seed(server, tenant)
    async with server.client(token_for(server, tenant, "supervisor")) as client:
        first = await client.get(path)
        assert first.status_code == 200, first.text
        tag = first.headers["ETag"]
        second = await client.get(path, headers={"If-None-Match": tag})
        assert second.status_code == 304, second.text
        assert second.content == b""
        assert second.headers["ETag"] == tag
        async with server.client(server.token(tenant, "ingest")) as ingest:
            change = [{"event_id": "s3", "type": "agent.state", "ts": int(time.time() * 1000), "agent_id": "ann",
                       "state": "on_call"},
                      {"event_id": "a1", "type": "call.answered", "ts": int(time.time() * 1000), "call_id": "c1",
                       "queue_id": "sales", "agent_id": "ann"}]
            assert (await ingest.post("/api/events", json=change)).status_code == 200
        third = await client.get(path, headers={"If-None-Match": tag})
    assert third.status_code == 200, third.text
    assert third.headers["ETag"] != tag
    assert third.json()["success"] is True

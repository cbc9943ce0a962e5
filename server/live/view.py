"""The live documents of API.md (overview, queues, agents; the calls view's raw material) from what read.lua returns."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Any

import orjson

from server.core.tenant_settings import TenantSettings
from server.history import formulas as metrics
from server.ingest import schema

# The states the overview counts: every logged-in one.
AGENT_STATES = tuple(state for state in schema.AGENT_STATES if state != "logged_out")
# The forecast's Erlang C staffing of the interval, written into its counters hash by server/analytics/predictions.py.
FORECAST_FIELD = "fc_required_agents"
# The fields of a document that move with the clock (see etag), as they appear in its JSON: a key of JSON
# text cannot hold an unescaped quote, so no string value can look like one.
_CLOCK_FIELDS = re.compile(rb'"(?:as_of|state_duration_s|longest_wait_s|occupancy|utilization)":[^,}\]]*,?'
                           rb'|"time_in_state_s":\{[^}]*\},?')


def iso_ms(ms: float) -> str:
    """Epoch ms → ISO-8601 UTC with milliseconds and Z."""
    # isoformat truncates to the millisecond as strftime's %f cut to three digits did, in two thirds of its time.
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def _text(value: Any) -> str:
    # A damaged value (bytes that are not UTF-8) renders as U+FFFD rather than failing the whole view.
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _strings(flat: list[Any] | None) -> dict[str, str]:
    if not flat:
        return {}
    it = iter(flat)
    return {_text(k): _text(v) for k, v in zip(it, it, strict=True)}


def _pairs(flat: list[Any] | None) -> list[tuple[str, float]]:
    if not flat:
        return []
    it = iter(flat)
    return [(_text(k), float(v)) for k, v in zip(it, it, strict=True)]


def _counters(flat: list[Any] | None) -> dict[str, int]:
    if not flat:
        return {}
    it = iter(flat)
    return {_text(k): int(v) for k, v in zip(it, it, strict=True)}


class Snapshot:
    """One read of a tenant's live state, turned into API documents."""

    def __init__(self, raw: list[Any], settings: TenantSettings, now_ms: int) -> None:
        _, queues, tenant_day, agents, *rest = raw
        self.settings = settings
        self.now_ms = now_ms
        self.day = settings.local_day(now_ms)
        self.interval_start = settings.interval_start(now_ms)
        self.tenant_day = _counters(tenant_day)
        self.queues = sorted(
            ((_text(q), _counters(day), _counters(iv), int(waiting), float(oldest) if oldest else None)
             for q, day, iv, waiting, oldest, *_ in queues),
            key=lambda row: row[0],
        )
        self.callbacks_pending = {_text(row[0]): int(row[5]) for row in queues if len(row) > 5}
        # The `calls` view's raw material (server/live/calls.py): each queue's waiting calls, oldest first,
        # as (call_id, queued ms), and the pending callbacks' JSON.
        self.waiting_calls = {_text(row[0]): _pairs(row[6]) for row in queues if len(row) > 6}
        self.callbacks = [_text(v) for v in _strings(rest[0]).values()] if rest else []
        self.agents = sorted(
            ((_text(a), _strings(hash_), _counters(day), [_text(m) for m in changes] if changes else [])
             for a, hash_, day, changes in agents),
            key=lambda row: row[0],
        )

    # -- overview --------------------------------------------------------

    def overview(self, only: set[str] | None = None) -> dict[str, Any]:
        """The tenant overview document (REST ``/api/metrics/live`` and the WebSocket ``overview`` view).

        With ``only``, the queues, totals and agent counts cover just those queues (and the agents serving them).
        """
        by_state = dict.fromkeys(AGENT_STATES, 0)
        available_in: dict[str, int] = {}
        logged_in_in: dict[str, int] = {}
        on_hold: dict[str, int] = {}
        for _, agent, _, _ in self.agents:
            state = agent.get("state", "logged_out")
            if agent.get("hold") and agent.get("queue_id"):
                on_hold[agent["queue_id"]] = on_hold.get(agent["queue_id"], 0) + 1
            serves = orjson.loads(agent.get("queues", "[]"))
            if only is not None and not only.intersection(serves):
                continue
            if state in by_state:
                by_state[state] += 1
                for q in serves:
                    logged_in_in[q] = logged_in_in.get(q, 0) + 1
            if state == "available":
                for q in serves:
                    available_in[q] = available_in.get(q, 0) + 1
        queues = []
        rows = self.queues if only is None else [row for row in self.queues if row[0] in only]
        for q, day, iv, waiting, oldest in rows:
            formula = self.settings.for_queue(q).sl_formula
            queues.append({
                "queue_id": q,
                "waiting": waiting,
                "longest_wait_s": round(max(0.0, (self.now_ms - oldest) / 1000), 3) if waiting and oldest else 0,
                "oldest_queued_at": iso_ms(oldest) if waiting and oldest else None,
                "agents_available": available_in.get(q, 0),
                "on_hold": on_hold.get(q, 0),
                "callbacks_pending": self.callbacks_pending.get(q, 0),
                "today": metrics.queue_figures(day, formula),
                "interval": metrics.queue_figures(iv, formula),
                # Erlang C on this interval's forecast; the gap counts every logged-in agent serving the queue.
                "required_agents": iv.get(FORECAST_FIELD),
                "agents_gap": logged_in_in.get(q, 0) - iv[FORECAST_FIELD] if FORECAST_FIELD in iv else None,
                # The tenant's amber/red levels (settings `alerts`) that colour this queue on every board.
                "thresholds": self.settings.alerts,
            })
        today = metrics.queue_figures(metrics.total(day for _, day, _, _, _ in rows), self.settings.sl_formula)
        if only is None:
            today.update(metrics.feedback_figures(self.tenant_day))
        today["waiting"] = sum(row["waiting"] for row in queues)
        today["on_hold"] = sum(row["on_hold"] for row in queues)
        today["callbacks_pending"] = sum(row["callbacks_pending"] for row in queues)
        today["longest_wait_s"] = max((row["longest_wait_s"] for row in queues), default=0)
        return {
            "as_of": iso_ms(self.now_ms),
            "day": self.day,
            "timezone": self.settings.timezone,  # the zone of `day` (read by every role, unlike /api/settings)
            "interval_start": iso_ms(self.interval_start),
            "agents": {"logged_in": sum(by_state.values()), "by_state": by_state},
            "queues": queues,
            "today": today,
        }

    # -- agents ----------------------------------------------------------

    def agents_list(self) -> list[dict[str, Any]]:
        """Every known agent with state, time in state and today's figures."""
        day_start = self.settings.day_bounds(self.day)[0]
        return [self._agent(a, hash_, day, changes, day_start) for a, hash_, day, changes in self.agents]

    def _agent(self, agent_id: str, h: dict[str, str], day: dict[str, int], changes: list[str],
               day_start: int) -> dict[str, Any]:
        since = int(h["since"]) if "since" in h else None
        seconds = time_in_states(changes, day_start, self.now_ms)
        state = h.get("state", "logged_out")
        on_call = state in ("on_call", "wrap_up")
        return {
            "agent_id": agent_id,
            "name": h.get("name"),
            "team": h.get("team"),
            "state": state,
            "reason": h.get("reason"),
            "since": iso_ms(since) if since is not None else None,
            "state_duration_s": round(max(0, self.now_ms - since) / 1000, 3) if since is not None else None,
            "call_id": h.get("call_id") if on_call else None,
            "on_hold": on_call and "hold" in h,
            "on_hold_since": iso_ms(int(h["hold"])) if on_call and "hold" in h else None,
            "queue_id": h.get("queue_id") if on_call else None,
            "queues": orjson.loads(h.get("queues", "[]")),
            "today": {
                "handled": day.get("handled", 0),
                "missed": day.get("missed", 0),
                "offers": day.get("rings", 0),
                "aht_s": metrics.aht_s(day),
                "occupancy": metrics.occupancy(seconds),
                "utilization": metrics.utilization(seconds),
                "time_in_state_s": {k: round(v, 3) for k, v in seconds.items()},
                **metrics.feedback_figures(day),
            },
        }


def time_in_states(changes: list[str], start_ms: int, end_ms: int) -> dict[str, float]:
    """Seconds in each state between start and end, from "ts|state|reason" changes in ts order.

    The first change may be before ``start_ms`` (where the agent stood when the day began).
    """
    seconds: dict[str, float] = {}
    points = []
    for member in changes:
        ts, state, _ = member.split("|", 2)
        points.append((int(ts), state))
    points.sort()
    for index, (ts, state) in enumerate(points):
        begin = max(ts, start_ms)
        finish = points[index + 1][0] if index + 1 < len(points) else end_ms
        finish = min(finish, end_ms)
        if finish > begin:
            seconds[state] = seconds.get(state, 0.0) + (finish - begin) / 1000
    return seconds


def state_digest(body: bytes) -> bytes:
    """A digest of a document's JSON (as :func:`orjson.dumps` wrote it) without the fields that move with the clock.

    What :func:`etag` compares, for a caller that serialises the document anyway (the hub): one
    ``orjson.dumps`` serves both the digest and the message. Keys are not sorted: two renderings of
    the same state by this code write them in the same order, which is all a comparison needs.
    """
    return hashlib.blake2b(_CLOCK_FIELDS.sub(b"", body), digest_size=12).digest()


def etag(document: Any) -> str:
    """A weak ETag over the document's state, ignoring the fields that only move with the clock.

    ``as_of``, ``state_duration_s``, ``longest_wait_s``, ``time_in_state_s``, ``occupancy`` and
    ``utilization`` change every instant while nothing happens; clients derive them from ``since`` /
    ``oldest_queued_at``. So a 304 means "nothing happened since your copy". They are cut from the
    document's JSON by one regular expression (their values are numbers, null, a timestamp, or an object
    of numbers): a walk over the document in Python cost more than rendering it.
    """
    return f'W/"{state_digest(orjson.dumps(document, option=orjson.OPT_SORT_KEYS)).hex()}"'

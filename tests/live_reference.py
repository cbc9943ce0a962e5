"""An independent recomputation of the live figures from raw events, written plainly from METRICS.md.

Nothing here imports the server's code: it is the supervisor counting by hand.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from functools import lru_cache
from typing import Any


def ms(ts: Any) -> int:
    if isinstance(ts, int):
        return ts
    return _parsed_ms(ts)


@lru_cache(maxsize=1 << 18)
def _parsed_ms(ts: str) -> int:
    """An ISO timestamp in epoch ms. A recount reads each event's time many times, and a scenario is recounted
    per bucket: parsed once each, a day's recount per hour takes seconds instead of half a minute."""
    return int(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000 + 0.5)


def div(a: float, b: float) -> float | None:
    return a / b if b else None


HOLD_MARKS = 64  # the hold/unhold marks a leg keeps (sql/016_hold_marks_cap.sql, apply.lua)


def hold_ms_of(events: list[dict[str, Any]]) -> dict[str, int]:
    """Hold time in ms of each completion (by event id), as README says: the agent's hold spans on that leg.

    The hold and unhold events of the completion's call that name its queue and its agent, walked in event
    time (ts, then event id) up to the completion: on hold from a hold (a second hold changes nothing) to
    the next unhold or the completion; later ones do not count. No such hold at all, or more than HOLD_MARKS
    hold and unhold events on the leg: the completion's hold_s.
    ``events`` unique by event id.
    """
    marks: dict[tuple[str, str, str], list[tuple[int, str, bool]]] = defaultdict(list)
    for e in events:
        if e["type"] in ("call.hold", "call.unhold") and e.get("queue_id"):
            marks[(e["call_id"], e["queue_id"], e["agent_id"])].append((ms(e["ts"]), e["event_id"],
                                                                           e["type"] == "call.hold"))
    per_leg: dict[tuple[str, str], int] = defaultdict(int)  # a leg with more than HOLD_MARKS marks counts hold_s
    for (call, queue, _), found in marks.items():
        per_leg[(call, queue)] += len(found)
    out: dict[str, int] = {}
    for e in events:
        if e["type"] != "call.completed":
            continue
        mine = sorted(marks.get((e["call_id"], e["queue_id"], e["agent_id"]), []))
        if per_leg[(e["call_id"], e["queue_id"])] > HOLD_MARKS or not any(on for _, _, on in mine):
            out[e["event_id"]] = round(e["hold_s"] * 1000)
            continue
        done, total, since = ms(e["ts"]), 0, None
        for ts, _, on in mine:
            if ts > done:
                break
            if on and since is None:
                since = ts
            elif not on and since is not None:
                total += ts - since
                since = None
        out[e["event_id"]] = total + (done - since if since is not None else 0)
    return out


def recompute(events: list[dict[str, Any]], day_start: int, day_end: int, *, sl_s: float = 20,
              short_s: float = 5, now: int | None = None) -> dict[str, Any]:
    """Per-queue counters and rates for [day_start, day_end), waiting calls, agent states and today's agent figures."""
    unique: dict[str, dict[str, Any]] = {}
    for e in events:
        unique.setdefault(e["event_id"], e)
    evs = sorted(unique.values(), key=lambda e: ms(e["ts"]))
    held = hold_ms_of(evs)
    today = lambda e: day_start <= ms(e["ts"]) < day_end  # noqa: E731
    queued: dict[tuple[str, str], int] = {}
    ended: set[tuple[str, str]] = set()
    for e in evs:
        leg = (e.get("queue_id"), e.get("call_id"))
        if e["type"] == "call.queued":
            queued.setdefault(leg, ms(e["ts"]))
        elif e["type"] in ("call.answered", "call.abandoned"):
            ended.add(leg)
    q: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    agents_day: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    tenant: dict[str, float] = defaultdict(float)
    for e in evs:
        if not today(e):
            continue
        t = e["type"]
        if t == "call.queued":
            q[e["queue_id"]]["offered"] += 1
        elif t in ("call.answered", "call.abandoned"):
            c = q[e["queue_id"]]
            leg = (e["queue_id"], e["call_id"])
            wait = (ms(e["ts"]) - queued[leg]) / 1000 if leg in queued else None
            if t == "call.answered":
                c["answered"] += 1
                if wait is not None:
                    c["wait_answered"] += max(wait, 0)
                    c["answered_within_sl"] += max(wait, 0) <= sl_s
            else:
                c["abandoned"] += 1
                if wait is not None:
                    c["short_abandoned"] += max(wait, 0) < short_s
                    c["abandoned_within_sl"] += max(wait, 0) <= sl_s
        elif t == "call.completed":
            c = q[e["queue_id"]]
            handle = e["talk_s"] + held[e["event_id"]] / 1000 + e["wrap_s"]
            c["handled"] += 1
            c["handle"] += handle
            if isinstance(e.get("resolved"), bool):
                c["resolved_given"] += 1
                c["resolved"] += e["resolved"]
            c["transferred"] += bool(e.get("transferred"))
            agents_day[e["agent_id"]]["handled"] += 1
            agents_day[e["agent_id"]]["handle"] += handle
        elif t == "csat.response":
            if e.get("csat") is not None:
                tenant["csat_n"] += 1
                tenant["csat_sum"] += e["csat"]
            if e.get("nps") is not None:
                tenant["nps_n"] += 1
                tenant["nps_pro"] += e["nps"] >= 9
                tenant["nps_det"] += e["nps"] <= 6
        elif t == "quality.scored":
            tenant["quality_n"] += 1
            tenant["quality_sum"] += e["score"]
    queues = {}
    for name, c in q.items():
        answered, abandoned, short = c["answered"], c["abandoned"], c["short_abandoned"]
        queues[name] = {
            "offered": int(c["offered"]), "answered": int(answered), "abandoned": int(abandoned),
            "short_abandoned": int(short), "answered_within_sl": int(c["answered_within_sl"]),
            "abandoned_within_sl": int(c["abandoned_within_sl"]), "handled": int(c["handled"]),
            "service_level": div(c["answered_within_sl"], answered + abandoned - short),
            "asa_s": div(c["wait_answered"], answered),
            "aht_s": div(c["handle"], c["handled"]),
            "abandon_rate": div(abandoned - short, answered + abandoned - short),
            "fcr": div(c["resolved"], c["resolved_given"]),
            "transfer_rate": div(c["transferred"], c["handled"]),
        }
    waiting: dict[str, list[int]] = defaultdict(list)
    horizon = (now or day_end) - 86_400_000
    for leg, ts in queued.items():
        if leg not in ended and ts >= horizon:
            waiting[leg[0]].append(ts)
    state: dict[str, tuple[int, str, dict[str, Any]]] = {}
    for e in evs:
        if e["type"] == "agent.state":
            key = (ms(e["ts"]), e["event_id"])
            if e["agent_id"] not in state or key > state[e["agent_id"]][:2]:
                state[e["agent_id"]] = (key[0], key[1], e)
    agents = {a: {"state": e["state"], "reason": e.get("reason"), "since": ts,
                  "handled": int(agents_day[a]["handled"]),
                  "aht_s": div(agents_day[a]["handle"], agents_day[a]["handled"])}
              for a, (ts, _, e) in state.items()}
    for a, figures in agents_day.items():
        agents.setdefault(a, {"state": None, "handled": int(figures["handled"]),
                              "aht_s": div(figures["handle"], figures["handled"])})
    feedback = {
        "csat": div(tenant["csat_sum"], tenant["csat_n"]),
        "nps": div(100 * (tenant["nps_pro"] - tenant["nps_det"]), tenant["nps_n"]),
        "quality_score": div(tenant["quality_sum"], tenant["quality_n"]),
    }
    return {"queues": queues, "waiting": {k: (len(v), min(v)) for k, v in waiting.items()}, "agents": agents,
            "feedback": feedback}

"""The short form of an event that apply.lua reads, with its tenant day, interval and thresholds resolved."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import orjson

from server.core.tenant_settings import TenantSettings
from server.ingest.events import Event
from server.live.keys import TenantKeys
from server.live.view import iso_ms

CALL_KINDS = {"call.queued": "q", "call.answered": "a", "call.abandoned": "b"}
ACTIVITY_KINDS = {"call.offered": "o", "call.missed": "m", "call.hold": "h", "call.unhold": "u",
                  "callback.requested": "k", "callback.completed": "x"}


class Calendar:
    """A tenant's day and queue rules for a batch, remembering the last day's bounds.

    Nearly every event of a batch falls on the same tenant day; checking the
    cached bounds costs a comparison instead of a time-zone computation.
    """

    __slots__ = ("settings", "_start", "_end", "_day", "_queues")

    def __init__(self, settings: TenantSettings) -> None:
        self.settings = settings
        self._start = self._end = 0
        self._day = ""
        self._queues: dict[str, tuple[int, int]] = {}

    def day(self, ts_ms: int) -> str:
        if not self._start <= ts_ms < self._end:
            self._day = self.settings.local_day(ts_ms)
            self._start, self._end = self.settings.day_bounds(self._day)
        return self._day

    def thresholds_ms(self, queue_id: str) -> tuple[int, int]:
        """(service-level threshold, short-abandon threshold) of the queue, in ms."""
        found = self._queues.get(queue_id)
        if found is None:
            rules = self.settings.for_queue(queue_id)
            found = self._queues[queue_id] = (round(rules.sl_threshold_s * 1000), round(rules.short_abandon_s * 1000))
        return found


def compact(event: Event, cal: Calendar) -> dict[str, Any]:
    """The event in the short form apply.lua reads, with its day, interval and thresholds resolved."""
    body = event.body
    ts = event.ts_ms
    # Every UTC offset in use is a multiple of 15 minutes: the local 15-minute grid is the UTC one.
    out: dict[str, Any] = {"ts": ts, "d": cal.day(ts), "i": ts - ts % 900_000}
    kind = event.type
    if kind == "agent.state":
        out.update(k="s", id=event.event_id, a=event.agent_id, st=body["state"])
        if body.get("reason"):
            out["rn"] = body["reason"]
        if body.get("name"):
            out["nm"] = body["name"]
        if body.get("team"):
            out["tm"] = body["team"]
        if body.get("queues") is not None:
            out["qs"] = orjson.dumps(body["queues"]).decode()
        if event.call_id and event.queue_id:
            out.update(c=event.call_id, q=event.queue_id)
        return out
    if kind in ("call.queued", "call.answered", "call.abandoned"):
        assert event.queue_id is not None
        sl, sa = cal.thresholds_ms(event.queue_id)
        out.update(k=CALL_KINDS[kind], q=event.queue_id, c=event.call_id, sl=sl, sa=sa)
        if event.agent_id:
            out["a"] = event.agent_id
        return out
    if kind == "call.completed":
        talk, hold, wrap = (round(float(body[f]) * 1000) for f in ("talk_s", "hold_s", "wrap_s"))
        out.update(k="c", q=event.queue_id, c=event.call_id, a=event.agent_id,
                   h=talk + hold + wrap, tk=talk, hd=hold, wr=wrap, tr=1 if body.get("transferred") else 0)
        if isinstance(body.get("resolved"), bool):
            out["rs"] = 1 if body["resolved"] else 0
        if body.get("revenue") is not None:
            out["rv"] = cents(body["revenue"])
        return out
    if kind in ACTIVITY_KINDS:
        return _activity(out, event)
    if kind == "csat.response":
        out.update(k="y", id=event.event_id)
        if event.agent_id:
            out["a"] = event.agent_id
        if body.get("csat") is not None:
            out["cs"] = int(body["csat"])
        if body.get("nps") is not None:
            out["np"] = int(body["nps"])
        return out
    if kind == "quality.scored":
        out.update(k="r", id=event.event_id, a=event.agent_id, sc=round(float(body["score"]) * 1000))
        return out
    raise ValueError(f"unknown event type {kind!r}")


def cents(amount: float) -> int:
    """An amount in hundredths, rounded half away from zero as PostgreSQL's round(numeric) does."""
    return int((Decimal(str(amount)) * 100).quantize(Decimal(1), ROUND_HALF_UP))


def _activity(out: dict[str, Any], event: Event) -> dict[str, Any]:
    """The short form of a ring, miss, hold, unhold or callback event (counted once per event id)."""
    body = event.body
    out.update(k=ACTIVITY_KINDS[event.type], id=event.event_id)
    if event.queue_id:
        out["q"] = event.queue_id
    if event.agent_id:
        out["a"] = event.agent_id
    if event.call_id:
        out["c"] = event.call_id
    if event.type == "call.missed":
        out["rg"] = round(float(body.get("ring_s") or 0) * 1000)
    elif event.type.startswith("callback."):
        out["cb"] = body["callback_id"]
        if event.type == "callback.completed":
            out["oc"] = body["outcome"]
        else:
            out["ra"] = iso_ms(event.ts_ms)
            if body.get("due_ts"):
                out["du"] = body["due_ts"]
    return out


class Declared:
    """The keys one apply.lua call touches, each once, in KEYS order; and where each short event finds its own.

    :meth:`add` gives a short event the KEYS index of every key its handler touches (``l`` its call leg,
    ``w`` the waiting zset, ``qd``/``qi`` the queue's day and interval hashes, ``ag`` the agent record,
    ``ad`` the agent's day, ``at`` its state changes, ``td`` the tenant day, ``ho`` the call's hold state,
    ``sn`` the day's seen ids, ``cl`` the callback; a hold or unhold naming a queue: ``l`` that leg). The queue
    hashes are also listed by ``day|queue`` and ``interval|queue``, the agent days by ``day|agent`` (:meth:`maps`):
    a queued event that comes after its answer counts the wait in the answer's day and interval, and a hold or
    unhold that comes after the leg's completion corrects its hold time in the completion's day, interval and
    agent day, which only the stored leg knows; apply.lua looks them up there and, when one was not declared,
    names it and changes nothing (:meth:`queue` and :meth:`agent_day` declare it, the call is repeated).
    """

    __slots__ = ("t", "names", "index", "days", "intervals", "agent_days")

    def __init__(self, t: TenantKeys) -> None:
        self.t = t
        self.names = [t.ready, t.queues, t.agents, t.callbacks, t.callbacks_pending]  # KEYS[1..5], fixed
        self.index = {name: i for i, name in enumerate(self.names, 1)}
        self.days: dict[str, int] = {}
        self.intervals: dict[str, int] = {}
        self.agent_days: dict[str, int] = {}

    def key(self, name: str) -> int:
        found = self.index.get(name)
        if found is None:
            self.names.append(name)
            found = self.index[name] = len(self.names)
        return found

    def queue(self, day: str, interval: int | str, queue_id: str) -> tuple[int, int]:
        """KEYS indexes of the queue's day and interval hashes."""
        d, i = f"{day}|{queue_id}", f"{interval}|{queue_id}"
        kd, ki = self.days.get(d), self.intervals.get(i)
        if kd is None:
            kd = self.days[d] = self.key(self.t.queue_day(day, queue_id))
        if ki is None:
            ki = self.intervals[i] = self.key(self.t.queue_interval(interval, queue_id))
        return kd, ki

    def agent_day(self, day: str, agent_id: str) -> int:
        """KEYS index of the agent's day hash."""
        d = f"{day}|{agent_id}"
        found = self.agent_days.get(d)
        if found is None:
            found = self.agent_days[d] = self.key(self.t.agent_day(day, agent_id))
        return found

    def maps(self) -> bytes:
        return orjson.dumps({"qd": self.days, "qi": self.intervals, "ad": self.agent_days})

    def add(self, e: dict[str, Any]) -> dict[str, Any]:
        """The short event with the KEYS index of each key its handler in apply.lua touches."""
        kind, t, key = e["k"], self.t, self.key
        q, a, c = e.get("q"), e.get("a"), e.get("c")
        if q is not None and kind not in "su":
            e["qd"], e["qi"] = self.queue(e["d"], e["i"], q)
        if kind in "qabc":
            e["l"] = key(t.leg(q, c))  # type: ignore[arg-type]
            if kind != "c":
                e["w"] = key(t.waiting(q))  # type: ignore[arg-type]
        else:
            if kind in "hu" and q is not None and c is not None:
                e["l"] = key(t.leg(q, c))
            if kind in "yr":
                e["td"] = key(t.tenant_day(e["d"]))
            if kind != "s":
                e["sn"] = key(t.seen(e["d"]))
            if kind in "kx":
                e["cl"] = key(t.callback(e["cb"]))
        if a is not None:
            if kind in "acshu":
                e["ag"] = key(t.agent(a))
            if kind == "c":  # listed too: a late hold corrects the completion's agent day (apply.lua's AD)
                e["ad"] = self.agent_day(e["d"], a)
            elif kind in "yromhkx":
                e["ad"] = key(t.agent_day(e["d"], a))
            if kind == "s":
                e["at"] = key(t.agent_changes(a))
        if c is not None and (kind in "ahu" or (kind == "s" and q is not None)):
            e["ho"] = key(t.hold(c))
        return e

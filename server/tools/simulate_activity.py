"""What a simulated call brings besides queue, answer and completion (a mixin of :class:`ContactCenter`).

Rings an agent lets ring out (``call.missed``; the call then rings the next idle agent), holds inside the
talk time (``call.hold``/``call.unhold``), callbacks that abandoned callers ask for and that are worked
later (``callback.requested``/``callback.completed``), revenue of the first queue's completed calls, and
CSAT and quality feedback. Random draws for rings, holds, callbacks and revenue come from ``_extra`` (its
own seeded ``random.Random``), so they never shift the draws of the calls themselves.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

_CRITERIA = ("greeting", "empathy", "resolution", "compliance", "closing")
_REVIEWERS = ("qa-lead", "qa-1", "qa-2")
_COMMENTS = ("Quick and friendly.", "Had to wait too long.", "Problem solved, thanks!",
             "Agent was very helpful.", "Still not fixed.")
_OUTCOMES = (("reached", 0.7), ("no_answer", 0.2), ("cancelled", 0.1))


class Activity:
    """Rings, holds, callbacks, revenue and feedback; the host provides the clock, the queues and ``_emit``."""

    config: Any
    agents: list[Any]
    queue_ids: tuple[str, ...]
    _rng: random.Random
    _extra: random.Random
    _now: int
    _prefix: str
    _waiting: dict[str, Any]
    _emit: Callable[..., None]
    _at: Callable[..., None]
    _ring: Callable[..., None]
    _offer_work: Callable[..., None]
    _start_pause: Callable[..., None]
    _callbacks: int = 0

    # -- rings and holds --------------------------------------------------------

    def _miss(self, call: Any, agent: Any, ring_ms: int) -> None:
        """The agent let the call ring out: it waits again, first in line, and rings the next idle agent."""
        if call.state != "ringing" or call.agent is not agent:
            return
        self._emit("call.missed", call_id=call.call_id, queue_id=call.queue_id, agent_id=agent.agent_id,
                   ring_s=ring_ms / 1000)
        call.state, call.agent, agent.call = "waiting", None, None
        idle = [a for a in self.agents if a is not agent and a.state == "available" and a.call is None
                and call.queue_id in a.queues]
        if idle:
            self._ring(call, min(idle, key=lambda a: (a.idle_since, a.agent_id)))
        else:
            self._waiting[call.queue_id].appendleft(call)
        self._at(self._now + 20_000, self._back_from_miss, agent)  # the agent looks up after a while

    def _back_from_miss(self, agent: Any) -> None:
        if agent.state == "available" and agent.call is None:
            if agent.pause_due:
                self._start_pause(agent)
            else:
                self._offer_work(agent)

    def _hold(self, call: Any, agent: Any, kind: str) -> None:
        self._emit(kind, call_id=call.call_id, queue_id=call.queue_id, agent_id=agent.agent_id)

    # -- callbacks and revenue --------------------------------------------------

    def _maybe_callback(self, queue_id: str) -> None:
        if self._extra.random() >= self.config.callback_share:
            return
        self._callbacks += 1
        callback_id = f"{self._prefix}-cb{self._callbacks}"
        due = datetime.fromtimestamp(self._now / 1000 + 15 * 60, UTC).isoformat(timespec="milliseconds")
        self._emit("callback.requested", callback_id=callback_id, queue_id=queue_id, due_ts=due.replace("+00:00", "Z"))
        delay = int(self._extra.uniform(5, 45) * 60_000)
        self._at(self._now + delay, self._callback_done, callback_id, queue_id)

    def _callback_done(self, callback_id: str, queue_id: str) -> None:
        outcome = self._extra.choices([o for o, _ in _OUTCOMES], [w for _, w in _OUTCOMES])[0]
        serving = [a.agent_id for a in self.agents if queue_id in a.queues]
        who = {"agent_id": self._extra.choice(serving)} if serving and outcome != "cancelled" else {}
        self._emit("callback.completed", callback_id=callback_id, queue_id=queue_id, outcome=outcome, **who)

    def _revenue(self, queue_id: str) -> dict[str, float]:
        """The first queue (sales) earns: some calls convert, the others carry revenue 0."""
        if queue_id != self.queue_ids[0]:
            return {}
        if self._extra.random() < self.config.conversion_share:
            return {"revenue": round(self._extra.lognormvariate(4.0, 0.8), 2)}
        return {"revenue": 0}

    # -- feedback ---------------------------------------------------------------

    def _csat(self, call_id: str, agent_id: str, resolved: bool) -> None:
        rng = self._rng
        weights = (0.03, 0.04, 0.10, 0.33, 0.50) if resolved else (0.15, 0.18, 0.27, 0.25, 0.15)
        csat = rng.choices((1, 2, 3, 4, 5), weights)[0]
        fields: dict[str, Any] = {"call_id": call_id, "agent_id": agent_id, "csat": csat}
        if rng.random() < 0.8:
            fields["nps"] = max(0, min(10, round(csat * 2 + rng.gauss(0, 1.3))))
        if rng.random() < 0.15:
            fields["comment"] = rng.choice(_COMMENTS)
        self._emit("csat.response", **fields)

    def _quality(self, call_id: str, agent_id: str) -> None:
        rng = self._rng
        skill = rng.uniform(2.8, 4.8)
        criteria = {c: round(min(5.0, max(0.0, rng.gauss(skill, 0.6))), 1) for c in _CRITERIA}
        score = round(sum(criteria.values()) / len(criteria), 2)
        self._emit("quality.scored", call_id=call_id, agent_id=agent_id, score=score,
                   criteria=criteria, reviewer=rng.choice(_REVIEWERS))


ACTIVITY_KINDS = ("call.offered", "call.missed", "call.hold", "call.unhold", "callback.requested", "callback.completed")


def base_mix(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events without rings, holds, callbacks and revenue: what the simulator made before them (benches)."""
    return [e if "revenue" not in e else {k: v for k, v in e.items() if k != "revenue"}
            for e in events if e["type"] not in ACTIVITY_KINDS]

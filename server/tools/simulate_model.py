"""A simulated contact center: a discrete-event model on a virtual clock.

:class:`ContactCenter` turns a :class:`SimulationConfig` and a start time into
the ingest events of API.md (plain dicts, exactly as their JSON). It never
sleeps: :meth:`ContactCenter.advance` moves the virtual clock to a given time
and returns what happened up to it, in ``ts`` order, causes before effects.

The run is a pure function of (config, start): every random draw comes from one
``random.Random(seed)`` and the internal events are processed in a fixed
(time, sequence) order, so advancing in many small steps or in one big step
yields the same events. The model is deliberately simple: one FIFO per queue,
calls go to the longest-idle available agent with the skill, callers hang up
after an exponential-ish patience, agents take breaks between calls.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from server.tools.simulate_activity import Activity

__all__ = ["SimulationConfig", "ContactCenter", "arrival_rate", "generate", "format_ts"]

Event = dict[str, Any]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
QUEUE_NAMES = ("sales", "support", "billing", "retention", "technical",
               "returns", "onboarding", "vip", "collections", "general")
# Relative arrival intensity per local hour (00:00 … 23:00): quiet nights, a
# mid-morning peak, a lunch dip and a second, lower early-afternoon peak.
INTRADAY = (0.12, 0.08, 0.06, 0.05, 0.06, 0.12, 0.30, 0.65, 1.20, 1.70, 1.95, 1.80,
            1.40, 1.55, 1.70, 1.55, 1.30, 1.00, 0.75, 0.55, 0.42, 0.32, 0.24, 0.16)
_FIRST = ("Ana", "Ben", "Chloé", "David", "Elena", "Farid", "Grace", "Hugo", "Ines", "Jonas",
          "Kira", "Liam", "Maya", "Noah", "Olga", "Pedro", "Quinn", "Rosa", "Sami", "Tara",
          "Umar", "Vera", "Wei", "Xenia", "Yusuf", "Zoe", "Marta", "Tom", "Aisha", "Lukas")
_LAST = ("Silva", "Müller", "Nguyen", "Kowalski", "Okafor", "Rossi", "Jensen", "Garcia",
         "Novak", "Haddad", "Smith", "Tanaka", "Dubois", "Larsen", "Costa", "Fischer",
         "Ibrahim", "Moreau", "Patel", "Schmidt", "Berg", "Kim", "Lopez", "Weber")
# (state, reason, weight, mean duration in seconds)
_PAUSES = (("break", "coffee", 0.45, 600.0), ("break", "lunch", 0.22, 1800.0),
           ("break", "meeting", 0.12, 1200.0), ("break", "training", 0.09, 1800.0),
           ("other", "backoffice", 0.07, 420.0), ("other", "outbound", 0.05, 300.0))
_RESOLVED = ("resolved", "information_provided", "sale", "order_updated")
_UNRESOLVED = ("callback_scheduled", "escalated", "follow_up", "no_solution")


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate. Durations are means in seconds; rates are fractions 0..1.

    ``calls_per_hour`` is the average over a whole (local) day: the intraday
    curve puts roughly twice that at the mid-morning peak and a tenth at night.
    ``id_prefix`` defaults to one derived from seed and start time, so a
    restarted run gets fresh event ids instead of duplicates of the last run.
    """

    agents: int = 50
    queues: int = 3
    calls_per_hour: float = 600.0
    seed: int = 0
    agents_per_team: int = 10
    timezone: str = "UTC"
    login_spread_s: float = 60.0
    patience_mean_s: float = 90.0
    short_patience_share: float = 0.05
    ring_s: tuple[float, float] = (1.0, 4.0)
    talk_mean_s: float = 240.0
    hold_share: float = 0.25
    hold_mean_s: float = 45.0
    wrap_mean_s: float = 30.0
    resolved_share: float = 0.75
    transfer_share: float = 0.05
    csat_share: float = 0.30
    quality_share: float = 0.05
    pause_interval_mean_s: float = 5400.0
    miss_share: float = 0.08  # rings an agent lets ring out (ring-no-answer); the call rings the next agent
    callback_share: float = 0.2  # abandoned callers who ask to be called back
    conversion_share: float = 0.3  # completed calls of the first queue that earn revenue (the others earn 0)
    id_prefix: str | None = None

    def __post_init__(self) -> None:
        if self.agents < 1 or self.queues < 1:
            raise ValueError(f"Expected agents >= 1 and queues >= 1, got {self.agents} and {self.queues}.")
        if self.calls_per_hour <= 0 or self.agents_per_team < 1:
            raise ValueError("Expected calls_per_hour > 0 and agents_per_team >= 1.")
        ZoneInfo(self.timezone)  # fails early on an unknown zone


def format_ts(ms: int) -> str:
    """Epoch milliseconds as API.md's ISO-8601 UTC string (``2026-11-25T10:00:00.123Z``)."""
    dt = _EPOCH + timedelta(milliseconds=ms)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"


def _to_ms(when: datetime) -> int:
    if when.tzinfo is None:
        raise ValueError(f"Expected a timezone-aware datetime, got naive {when!r}; pass tzinfo=UTC.")
    return (when - _EPOCH) // timedelta(milliseconds=1)


def _profile(local_hour: float) -> float:
    # Linear interpolation between the hourly values, placed at the middle of each hour.
    x = (local_hour - 0.5) % 24.0
    lo = int(x)
    frac = x - lo
    return INTRADAY[lo] * (1 - frac) + INTRADAY[(lo + 1) % 24] * frac


_PROFILE_MEAN = sum(INTRADAY) / 24.0  # exact mean of the interpolated curve
_PROFILE_MAX = max(INTRADAY) / _PROFILE_MEAN


def arrival_rate(config: SimulationConfig, when: datetime) -> float:
    """Expected new calls per hour at ``when`` (all queues, transfers not included)."""
    local = when.astimezone(ZoneInfo(config.timezone))
    hour = local.hour + local.minute / 60 + local.second / 3600
    return config.calls_per_hour * _profile(hour) / _PROFILE_MEAN


@dataclass(eq=False)
class _Call:
    call_id: str
    queue_id: str
    queued_at: int
    state: str = "waiting"  # waiting, ringing, talking, done, abandoned
    agent: _Agent | None = None


@dataclass(eq=False)
class _Agent:
    agent_id: str
    name: str
    team: str
    queues: tuple[str, ...]
    state: str = "logged_out"
    idle_since: int = 0
    call: _Call | None = None
    pause_due: bool = False


class ContactCenter(Activity):
    """A contact center on a virtual clock; see the module docstring."""

    def __init__(self, config: SimulationConfig, start: datetime) -> None:
        self.config = config
        self._rng = random.Random(config.seed)
        self._extra = random.Random(config.seed + 1_000_003)  # rings, holds, callbacks, revenue
        self._tz = ZoneInfo(config.timezone)
        self._now = _to_ms(start)
        self._prefix = config.id_prefix or f"sim-{config.seed}-{self._now // 1000:x}"
        self._event_seq = itertools.count(1)
        self._call_seq = itertools.count(1)
        self._heap: list[tuple[int, int, Callable[..., None], tuple[Any, ...]]] = []
        self._heap_seq = itertools.count()
        self._out: list[Event] = []
        self.queue_ids = tuple(QUEUE_NAMES[i] if i < len(QUEUE_NAMES) else f"queue-{i + 1}"
                               for i in range(config.queues))
        self._queue_weights = [1.0 / (i + 1) for i in range(config.queues)]
        self._waiting: dict[str, deque[_Call]] = {q: deque() for q in self.queue_ids}
        self._calls: dict[str, _Call] = {}
        self.agents = self._make_agents()
        for agent in self.agents:
            self._at(self._now + int(self._rng.uniform(0, config.login_spread_s) * 1000),
                     self._login, agent)
        self._arrival_clock = float(self._now)
        self._schedule_arrival()

    # -- public -------------------------------------------------------------

    @property
    def now(self) -> datetime:
        """The virtual clock: every event up to here has been returned."""
        return _EPOCH + timedelta(milliseconds=self._now)

    def advance(self, until: datetime) -> list[Event]:
        """Run the model up to ``until`` and return its new events (``ts`` <= until), in ``ts`` order.

        Events with equal ``ts`` keep their causal order. Asking for a time at or
        before :attr:`now` returns an empty list.
        """
        limit = _to_ms(until)
        while self._heap and self._heap[0][0] <= limit:
            at, _, handler, args = heapq.heappop(self._heap)
            self._now = at
            handler(*args)
        self._now = max(self._now, limit)
        out, self._out = self._out, []
        return out

    def pending_legs(self) -> set[tuple[str, str]]:
        """The (queue_id, call_id) legs queued but neither answered nor abandoned yet."""
        return {(c.queue_id, c.call_id) for c in self._calls.values() if c.state in ("waiting", "ringing")}

    # -- plumbing -----------------------------------------------------------

    def _at(self, at: int, handler: Callable[..., None], *args: Any) -> None:
        heapq.heappush(self._heap, (at, next(self._heap_seq), handler, args))

    def _emit(self, type_: str, **fields: Any) -> None:
        event: Event = {"event_id": f"{self._prefix}-e{next(self._event_seq)}", "type": type_,
                        "ts": format_ts(self._now)}
        event.update(fields)
        self._out.append(event)

    def _lognormal_ms(self, mean_s: float, sigma: float = 0.6) -> int:
        mu = math.log(mean_s) - sigma * sigma / 2
        return max(1000, int(self._rng.lognormvariate(mu, sigma) * 1000))

    def _make_agents(self) -> list[_Agent]:
        cfg, rng = self.config, self._rng
        names = rng.sample([f"{f} {last}" for f in _FIRST for last in _LAST], k=min(cfg.agents, 720))
        agents = []
        for i in range(cfg.agents):
            primary = (self.queue_ids[i] if i < cfg.queues
                       else rng.choices(self.queue_ids, self._queue_weights)[0])
            skills = [primary]
            extra = rng.choices((0, 1, 2), (0.45, 0.40, 0.15))[0]
            others = [q for q in self.queue_ids if q != primary]
            skills += rng.sample(others, k=min(extra, len(others)))
            agents.append(_Agent(agent_id=f"a{i + 1:03d}", name=names[i % len(names)],
                                 team=f"team-{i // cfg.agents_per_team + 1}", queues=tuple(skills)))
        return agents

    def _agent_state(self, agent: _Agent, state: str, **extra: Any) -> None:
        agent.state = state
        self._emit("agent.state", agent_id=agent.agent_id, state=state, name=agent.name,
                   team=agent.team, queues=list(agent.queues), **extra)

    # -- agents ---------------------------------------------------------------

    def _login(self, agent: _Agent) -> None:
        agent.idle_since = self._now
        self._agent_state(agent, "available")
        self._schedule_pause(agent)
        self._offer_work(agent)

    def _schedule_pause(self, agent: _Agent) -> None:
        gap = self._rng.expovariate(1.0 / self.config.pause_interval_mean_s)
        self._at(self._now + int(gap * 1000), self._pause_due, agent)

    def _pause_due(self, agent: _Agent) -> None:
        if agent.state == "available" and agent.call is None:
            self._start_pause(agent)
        else:
            agent.pause_due = True  # taken after the current call's wrap-up

    def _start_pause(self, agent: _Agent) -> None:
        agent.pause_due = False
        state, reason, _, mean_s = self._rng.choices(_PAUSES, [p[2] for p in _PAUSES])[0]
        self._agent_state(agent, state, reason=reason)
        self._at(self._now + self._lognormal_ms(mean_s, 0.3), self._end_pause, agent)

    def _end_pause(self, agent: _Agent) -> None:
        self._become_available(agent)
        self._schedule_pause(agent)

    def _become_available(self, agent: _Agent) -> None:
        agent.idle_since = self._now
        self._agent_state(agent, "available")
        self._offer_work(agent)

    def _offer_work(self, agent: _Agent) -> None:
        """Give an idle agent the oldest waiting call among the queues it serves."""
        best: _Call | None = None
        for queue_id in agent.queues:
            waiting = self._waiting[queue_id]
            while waiting and waiting[0].state != "waiting":
                waiting.popleft()
            if waiting and (best is None or waiting[0].queued_at < best.queued_at):
                best = waiting[0]
        if best is not None:
            self._waiting[best.queue_id].popleft()
            self._ring(best, agent)

    # -- calls ------------------------------------------------------------------

    def _schedule_arrival(self) -> None:
        # Thinning (Lewis-Shedler): candidates at the peak rate, kept with rate(t)/peak.
        peak_per_ms = self.config.calls_per_hour * _PROFILE_MAX / 3_600_000
        self._arrival_clock += self._rng.expovariate(peak_per_ms)
        self._at(int(self._arrival_clock), self._arrival_candidate)

    def _arrival_candidate(self) -> None:
        rate = arrival_rate(self.config, self.now) / (self.config.calls_per_hour * _PROFILE_MAX)
        if self._rng.random() < rate:
            self._enqueue(self._rng.choices(self.queue_ids, self._queue_weights)[0])
        self._schedule_arrival()

    def _enqueue(self, queue_id: str) -> None:
        cfg, rng = self.config, self._rng
        call = _Call(call_id=f"{self._prefix}-c{next(self._call_seq)}", queue_id=queue_id,
                     queued_at=self._now)
        self._calls[call.call_id] = call
        self._emit("call.queued", call_id=call.call_id, queue_id=queue_id)
        if rng.random() < cfg.short_patience_share:
            patience_ms = int(rng.uniform(0.5, 5.0) * 1000)  # hangs up at the greeting
        else:
            patience_ms = int(rng.expovariate(1.0 / cfg.patience_mean_s) * 1000)
        self._at(self._now + max(patience_ms, 300), self._patience_out, call)
        idle = [a for a in self.agents
                if a.state == "available" and a.call is None and queue_id in a.queues]
        if idle:
            self._ring(call, min(idle, key=lambda a: (a.idle_since, a.agent_id)))
        else:
            self._waiting[queue_id].append(call)

    def _ring(self, call: _Call, agent: _Agent) -> None:
        call.state, call.agent, agent.call = "ringing", agent, call
        self._emit("call.offered", call_id=call.call_id, queue_id=call.queue_id, agent_id=agent.agent_id)
        ring_ms = int(self._rng.uniform(*self.config.ring_s) * 1000)
        if self._extra.random() < self.config.miss_share:
            self._at(self._now + 4 * ring_ms, self._miss, call, agent, 4 * ring_ms)
        else:
            self._at(self._now + ring_ms, self._answer, call)

    def _patience_out(self, call: _Call) -> None:
        if call.state not in ("waiting", "ringing"):
            return
        agent = call.agent
        call.state, call.agent = "abandoned", None
        del self._calls[call.call_id]
        self._emit("call.abandoned", call_id=call.call_id, queue_id=call.queue_id)
        self._maybe_callback(call.queue_id)
        if agent is not None:  # the caller hung up while the agent's phone rang
            agent.call = None
            if agent.pause_due:
                self._start_pause(agent)
            else:
                self._offer_work(agent)

    def _answer(self, call: _Call) -> None:
        if call.state != "ringing" or call.agent is None:
            return
        agent = call.agent
        call.state = "talking"
        del self._calls[call.call_id]
        self._emit("call.answered", call_id=call.call_id, queue_id=call.queue_id, agent_id=agent.agent_id)
        self._agent_state(agent, "on_call", call_id=call.call_id, queue_id=call.queue_id)
        talk = self._lognormal_ms(self.config.talk_mean_s)
        hold = (self._lognormal_ms(self.config.hold_mean_s)
                if self._rng.random() < self.config.hold_share else 0)
        self._at(self._now + talk + hold, self._wrap, call, agent, talk, hold)
        if hold:
            self._at(self._now + talk // 2, self._hold, call, agent, "call.hold")
            self._at(self._now + talk // 2 + hold, self._hold, call, agent, "call.unhold")

    def _wrap(self, call: _Call, agent: _Agent, talk: int, hold: int) -> None:
        self._agent_state(agent, "wrap_up", call_id=call.call_id, queue_id=call.queue_id)
        wrap = self._lognormal_ms(self.config.wrap_mean_s, 0.5)
        self._at(self._now + wrap, self._complete, call, agent, talk, hold, wrap)

    def _complete(self, call: _Call, agent: _Agent, talk: int, hold: int, wrap: int) -> None:
        cfg, rng = self.config, self._rng
        call.state, agent.call = "done", None
        transferred = cfg.queues > 1 and rng.random() < cfg.transfer_share
        resolved = not transferred and rng.random() < cfg.resolved_share
        disposition = ("transferred" if transferred
                       else rng.choice(_RESOLVED if resolved else _UNRESOLVED))
        self._emit("call.completed", call_id=call.call_id, queue_id=call.queue_id,
                   agent_id=agent.agent_id, talk_s=talk / 1000, hold_s=hold / 1000,
                   wrap_s=wrap / 1000, resolved=resolved, disposition=disposition,
                   transferred=transferred, **self._revenue(call.queue_id))
        if transferred:  # a new leg with a new call_id on another queue
            self._enqueue(rng.choice([q for q in self.queue_ids if q != call.queue_id]))
        if not transferred and rng.random() < cfg.csat_share:
            delay = int(rng.uniform(20, 900) * 1000)
            self._at(self._now + delay, self._csat, call.call_id, agent.agent_id, resolved)
        if rng.random() < cfg.quality_share:
            delay = int(rng.uniform(600, 7200) * 1000)
            self._at(self._now + delay, self._quality, call.call_id, agent.agent_id)
        if agent.pause_due:
            self._start_pause(agent)
        else:
            self._become_available(agent)


def generate(config: SimulationConfig, start: datetime, duration: timedelta) -> list[Event]:
    """Every event of a run from ``start`` for ``duration``, in ``ts`` order (for tests and seeding)."""
    return ContactCenter(config, start).advance(start + duration)

"""The statistical contact-center model behind ``wallboard seed-history``: rows, not events.

Per tenant day a volume from a weekly profile, a yearly season, a trend and noise; arrival
minutes from the simulator's intraday curve; per 15 minutes and queue the agents an Erlang C
plan for the forecast asks for, less the day's absence, serving one FIFO per queue. A caller
waits for the first agent free and hangs up when the wait passes its patience. Talk, hold and
wrap times are lognormal per queue and agent; agents work 8-hour shifts five days a week in
teams by primary skill, and join a queue's phones from those on shift with the skill.
Trade-offs, stated plainly: an agent serves one queue per 15 minutes (no call-by-call
blending), has no breaks beyond the plan's absence, and with fewer agents than the plan
needs, some take two lines at once. Everything comes from one ``random.Random(seed)``.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson

from server.analytics.staffing import required_agents
from server.core.errors import ConfigError
from server.core.tenant_settings import TenantSettings
from server.tools.simulate_activity import _COMMENTS, _CRITERIA, _REVIEWERS
from server.tools.simulate_model import _FIRST, _LAST, _RESOLVED, _UNRESOLVED, QUEUE_NAMES, _profile

TENANT_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
WEEKLY = (1.12, 1.06, 1.0, 0.98, 0.93, 0.45, 0.24)  # Monday … Sunday
TALK_MEAN_S = {"sales": 240, "support": 300, "billing": 210, "retention": 280, "technical": 360, "returns": 180,
               "onboarding": 260, "vip": 240, "collections": 220, "general": 180}
HOLD_SHARE, HOLD_MEAN_S, WRAP_MEAN_S = 0.25, 45.0, 30.0
PATIENCE_MEAN_S, SHORT_PATIENCE_SHARE = 180.0, 0.04
TRANSFER_SHARE, CSAT_SHARE, NPS_SHARE, QUALITY_SHARE = 0.05, 0.30, 0.8, 0.05
TARGET_SL, MAX_ON_PHONES, TEAM_SIZE = 0.85, 0.8, 12
CHUNK_LEGS = 60_000
PG_EPOCH_MS = 946_684_800_000  # 2000-01-01T00:00Z: the seed's timestamptz codec sends microseconds since then
TABLES = (  # name, COPY columns
    ("call_legs", ("client_id", "call_id", "queue_id", "queued_at", "answered_at", "answered_by", "abandoned_at",
                   "completed_at", "completed_by", "talk_ms", "hold_ms", "wrap_ms", "resolved", "transferred",
                   "disposition", "sl_ms", "short_abandon_ms")),
    ("agent_metrics", ("client_id", "call_id", "queue_id", "agent_id", "queued_at", "answered_at", "completed_at",
                       "talk_s", "hold_s", "wrap_s", "handle_s", "resolved", "transferred", "disposition")),
    ("customer_satisfaction", ("client_id", "event_id", "call_id", "agent_id", "csat", "nps", "comment", "responded_at")),
    ("call_quality_scores", ("client_id", "score_id", "call_id", "agent_id", "score", "criteria", "reviewer", "source",
                             "scored_at")),
)
HISTORY_TABLES = ("call_legs", "agent_metrics", "customer_satisfaction", "call_quality_scores", "performance_trends",
                  "performance_daily", "performance_monthly", "agents")


@dataclass(frozen=True)
class SeedConfig:
    """What to seed: ``calls`` customer calls over ``days`` tenant days ending with ``end`` (inclusive)."""

    tenant: str
    days: int = 365
    agents: int = 500
    calls: int = 10_000_000
    queues: int = 8
    seed: int = 1
    end: date = field(default_factory=lambda: datetime.now(UTC).date() - timedelta(days=1))

    def __post_init__(self) -> None:
        if not TENANT_RE.fullmatch(self.tenant):
            raise ConfigError(f"--tenant: expected 1-64 characters of [A-Za-z0-9_.-], got {self.tenant!r}")
        for name, value, high in (("days", self.days, 3660), ("agents", self.agents, 100_000),
                                  ("calls", self.calls, 1_000_000_000), ("queues", self.queues, 100)):
            if not 1 <= value <= high:
                raise ConfigError(f"--{name}: expected 1..{high:,}, got {value}")
        if not date(2010, 1, 1) <= self.end <= date(2999, 12, 1):
            raise ConfigError(f"--end: expected a day between 2010-01-01 and 2999-12-01, got {self.end}")

    @property
    def first(self) -> date:
        return self.end - timedelta(days=self.days - 1)


@dataclass
class Chunk:
    """Rows of consecutive days, one list per table, in COPY column order."""

    calls: int = 0
    rows: dict[str, list[tuple[Any, ...]]] = field(default_factory=lambda: {name: [] for name, _ in TABLES})


@dataclass
class SeedReport:
    calls: int = 0
    rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys([name for name, _ in TABLES] + ["agents"], 0))
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)  # seconds of copy and rollups

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())


def _us(ms: int) -> int:
    return (ms - PG_EPOCH_MS) * 1000


class HistoryModel:
    """The seeded contact center: queues, agents in teams with skills and shifts, and the calls of each day."""

    def __init__(self, config: SeedConfig, settings: TenantSettings) -> None:
        self.config, self.settings = config, settings
        self.rng = random.Random(config.seed)
        q = config.queues
        self.queue_ids = tuple(QUEUE_NAMES[i] if i < len(QUEUE_NAMES) else f"queue-{i + 1}" for i in range(q))
        weights = [1.0 / (i + 1) for i in range(q)]
        self.queue_share = [w / sum(weights) for w in weights]
        self.queue_cum = list(itertools.accumulate(weights))
        self.thresholds = [(round(settings.for_queue(n).sl_threshold_s * 1000), round(settings.for_queue(n).short_abandon_s * 1000))
                           for n in self.queue_ids]
        self.talk_mu = [math.log(TALK_MEAN_S.get(n, 240)) - 0.18 for n in self.queue_ids]  # σ = 0.6
        self.aht_s = [TALK_MEAN_S.get(n, 240) + HOLD_SHARE * HOLD_MEAN_S + WRAP_MEAN_S for n in self.queue_ids]
        day_start = settings.day_start_minutes  # minute m of a tenant day is clock minute day_start + m
        per_minute = [_profile(((day_start + m) % 1440 + 0.5) / 60) for m in range(1440)]
        self.minute_cum = list(itertools.accumulate(per_minute))
        self.bin_share = [sum(per_minute[b * 15:b * 15 + 15]) / self.minute_cum[-1] for b in range(96)]
        self.clock_hour = [((day_start + m) % 1440) // 60 for m in range(1440)]
        self._make_agents()
        self._plan_days()
        self._required: dict[tuple[int, int], int] = {}
        self._ids = itertools.count(1)
        self._pending: list[tuple[int, int, str]] = []  # transfer legs not queued yet: (ts, queue, call_id)
        self._free: list[list[tuple[int, int]]] = [[] for _ in range(q)]  # per queue: (free at, agent) on the phones
        self._on_phones: set[int] = set()
        self._bin = [-1] * q

    def _make_agents(self) -> None:
        cfg, rng, q = self.config, self.rng, self.config.queues
        primary = [i if i < q else rng.choices(range(q), cum_weights=self.queue_cum)[0] for i in range(cfg.agents)]
        names = [f"{f} {last}" for f in _FIRST for last in _LAST]
        rng.shuffle(names)
        self.agent_ids = [f"a{i + 1:03d}" for i in range(cfg.agents)]
        self.teams: list[str] = [""] * cfg.agents
        for k in range(q):
            members = [i for i in range(cfg.agents) if primary[i] == k]
            for j, i in enumerate(members):
                self.teams[i] = f"{self.queue_ids[k]}-{j // TEAM_SIZE + 1}"
        self.names = [names[i % len(names)] + (f" {i // len(names) + 1}" if i >= len(names) else "")
                      for i in range(cfg.agents)]
        skills = []
        for i in range(cfg.agents):
            others = [k for k in range(q) if k != primary[i]]
            extra = rng.choices((0, 1, 2), (0.45, 0.40, 0.15))[0]
            skills.append({primary[i], *rng.sample(others, k=min(extra, len(others)))})
        self.speed = [rng.gauss(0, 0.15) for _ in range(cfg.agents)]  # log-factor on talk and wrap times
        self.fcr = [min(0.95, max(0.4, rng.gauss(0.75, 0.07))) for _ in range(cfg.agents)]
        self.quality = [rng.uniform(2.8, 4.8) for _ in range(cfg.agents)]
        # Shifts: 8 hours from a start weighted by the demand they cover, two consecutive days off.
        starts = list(range(0, 17))
        cover = [sum(_profile(h + k + 0.5) for k in range(8)) ** 2 for h in starts]
        self.works = works = [[False] * 168 for _ in range(cfg.agents)]
        for i in range(cfg.agents):
            start = rng.choices(starts, cover)[0]
            off = rng.choices(range(7), (0.04, 0.04, 0.06, 0.08, 0.18, 0.55, 0.05))[0]
            for wd in range(7):
                if wd not in (off, (off + 1) % 7):
                    for h in range(start, start + 8):
                        works[i][wd * 24 + h] = True
        self.skilled = [[i for i in range(cfg.agents) if k in skills[i]] for k in range(q)]
        self.on_shift = [[i for i in self.skilled[k] if works[i][slot]] for slot in range(168) for k in range(q)]

    def _plan_days(self) -> None:
        cfg, rng = self.config, self.rng
        days = [cfg.first + timedelta(days=d) for d in range(cfg.days)]
        forecast = [WEEKLY[day.weekday()] * (1 + 0.08 * math.cos(2 * math.pi * (day.timetuple().tm_yday - 20) / 365.25))
                    * (1 + 0.06 * d / 365) for d, day in enumerate(days)]
        actual = [f * rng.lognormvariate(0, 0.07) for f in forecast]
        scale = cfg.calls / sum(actual)
        exact = [a * scale for a in actual]
        counts = [int(x) for x in exact]
        by_remainder = sorted(range(cfg.days), key=lambda d: exact[d] - counts[d], reverse=True)
        for d in by_remainder[:cfg.calls - sum(counts)]:
            counts[d] += 1
        self.days = days
        self.counts = counts
        self.forecast = [f * scale for f in forecast]
        self.attendance = [min(1.1, max(0.75, rng.gauss(0.97, 0.06))) for _ in days]

    def partition_days(self) -> list[date]:
        """Every day the rows can fall on: the seeded days and the next (late completions and feedback)."""
        return [*self.days, self.config.end + timedelta(days=1)]

    def chunks(self) -> Iterator[Chunk]:
        """The rows, a few days at a time."""
        chunk = Chunk()
        for index, day in enumerate(self.days):
            self._day(index, day, chunk)
            if len(chunk.rows["call_legs"]) >= CHUNK_LEGS:
                yield chunk
                chunk = Chunk()
        if chunk.calls:
            yield chunk

    def _staff(self, index: int) -> list[int]:
        """Agents on the phones per 15-minute bin × queue of a day: the Erlang C plan for the forecast, capped by
        the roster, times the day's attendance."""
        q, cap = self.config.queues, max(1, int(self.config.agents * MAX_ON_PHONES))
        out = []
        for b in range(96):
            plan = []
            for k in range(q):
                expected = self.forecast[index] * self.bin_share[b] * self.queue_share[k]
                key = (round(expected) if expected < 50 else round(expected / 5) * 5, k)
                if key not in self._required:
                    self._required[key] = required_agents(key[0], self.aht_s[k], 900, self.thresholds[k][0] / 1000,
                                                          TARGET_SL).agents
                plan.append(self._required[key])
            squeeze = min(1.0, cap / sum(plan)) * self.attendance[index]
            out.extend(max(1, round(n * squeeze)) for n in plan)
        return out

    def _staff_queue(self, heap: list[tuple[int, int]], want: int, slot: int, now: int) -> None:
        """Bring a queue's agents on the phones to ``want``: those off shift and the soonest free leave; those
        joining come from the agents on shift with the skill, then the others with it, then anyone free."""
        hour = slot // self.config.queues
        if any(not self.works[a][hour] for _, a in heap):
            for _, a in heap:
                self._on_phones.discard(a)
            heap[:] = [(t, a) for t, a in heap if self.works[a][hour]]
            heapq.heapify(heap)
            self._on_phones.update(a for _, a in heap)
        while len(heap) > want:
            self._on_phones.discard(heapq.heappop(heap)[1])
        need = want - len(heap)
        for pool in (self.on_shift[slot], self.skilled[slot % self.config.queues], range(self.config.agents)):
            if need <= 0:
                break
            idle = [a for a in pool if a not in self._on_phones]
            for a in self.rng.sample(idle, min(need, len(idle))):
                heapq.heappush(heap, (now, a))
                self._on_phones.add(a)
            need = want - len(heap)
        for _ in range(need):  # fewer agents than the plan asks for: someone takes two lines
            heapq.heappush(heap, (now, self.rng.randrange(self.config.agents)))

    def _day(self, index: int, day: date, chunk: Chunk) -> None:
        """The day's calls in time order through one FIFO per queue: waits, service level and abandons follow
        from the load against the staffing. Transfer legs join another queue when their first leg ends."""
        rng, q, n, tenant = self.rng, self.config.queues, self.counts[index], self.config.tenant
        rand, expo, logn, choice = rng.random, rng.expovariate, rng.lognormvariate, rng.choice
        start_ms, end_ms = self.settings.day_bounds(day.isoformat())
        last = index == len(self.days) - 1
        minutes = rng.choices(range(1440), cum_weights=self.minute_cum, k=n)
        queues = rng.choices(range(q), cum_weights=self.queue_cum, k=n)
        arrivals = sorted([(start_ms + m * 60_000 + int(rand() * 60_000), k) for m, k in zip(minutes, queues, strict=True)])
        arrivals.append((end_ms if not last else 1 << 62, -1))  # sentinel: transfers due before it still run
        staff, pending, free, at_bin = self._staff(index), self._pending, self._free, self._bin
        legs, handled = chunk.rows["call_legs"], chunk.rows["agent_metrics"]
        csat_rows, quality_rows = chunk.rows["customer_satisfaction"], chunk.rows["call_quality_scores"]
        ids, prefix, queue_ids, thresholds = self._ids, f"s{self.config.seed}-", self.queue_ids, self.thresholds
        agent_ids, speed, fcr, talk_mu = self.agent_ids, self.speed, self.fcr, self.talk_mu
        clock_hour, slot0, e = self.clock_hour, day.weekday() * 24, PG_EPOCH_MS
        transfer_share = TRANSFER_SHARE if q > 1 else 0.0
        i = 0
        while True:
            if pending and pending[0][0] <= arrivals[i][0]:
                queued, k, call_id = heapq.heappop(pending)
                is_transfer = True
            elif arrivals[i][1] < 0:
                break
            else:
                queued, k = arrivals[i]
                i += 1
                call_id, is_transfer = f"{prefix}c{next(ids):09d}", False
            minute = min(1439, max(0, (queued - start_ms) // 60_000))
            b = index * 96 + minute // 15
            heap = free[k]
            if at_bin[k] != b:  # a new staffing interval: agents join idle, or the soonest free leave
                at_bin[k] = b
                self._staff_queue(heap, staff[minute // 15 * q + k], (slot0 + clock_hour[minute]) * q + k, queued)
            free_at, a = heap[0]
            wait = max(0, free_at - queued) + 1000 + int(rand() * 3000)  # + ring
            patience = (500 + int(rand() * 4500)) if rand() < SHORT_PATIENCE_SHARE else int(expo(1 / PATIENCE_MEAN_S) * 1000)
            sl, sa = thresholds[k]
            if patience < wait:
                legs.append((tenant, call_id, queue_ids[k], (queued - e) * 1000, None, None,
                             (queued + max(patience, 300) - e) * 1000, None, None, None, None, None, None, False, None, sl, sa))
                continue
            agent = agent_ids[a]
            talk = min(10_800_000, max(1000, int(logn(talk_mu[k] + speed[a], 0.6) * 1000)))
            hold = int(logn(3.627, 0.6) * 1000) if rand() < HOLD_SHARE else 0  # mean 45 s
            wrap = min(3_600_000, max(1000, int(logn(3.276 + speed[a], 0.5) * 1000)))  # mean 30 s
            answered = queued + wait
            done = answered + talk + hold + wrap
            heapq.heapreplace(heap, (done, a))
            transferred = not is_transfer and rand() < transfer_share
            resolved = not transferred and rand() < fcr[a]
            disposition = "transferred" if transferred else choice(_RESOLVED if resolved else _UNRESOLVED)
            queued_us, answered_us, done_us = (queued - e) * 1000, (answered - e) * 1000, (done - e) * 1000
            legs.append((tenant, call_id, queue_ids[k], queued_us, answered_us, agent, None, done_us, agent,
                         talk, hold, wrap, resolved, transferred, disposition, sl, sa))
            handled.append((tenant, call_id, queue_ids[k], agent, queued_us, answered_us, done_us, talk / 1000.0,
                            hold / 1000.0, wrap / 1000.0, (talk + hold + wrap) / 1000.0, resolved, transferred,
                            disposition))
            if transferred:  # the same call on another queue
                heapq.heappush(pending, (done, (k + 1 + int(rand() * (q - 1))) % q, call_id))
            elif rand() < CSAT_SHARE:
                csat_rows.append(self._csat(tenant, call_id, agent, resolved, done))
            if rand() < QUALITY_SHARE:
                quality_rows.append(self._quality(tenant, call_id, a, done))
        chunk.calls += n

    def _csat(self, tenant: str, call_id: str, agent: str, resolved: bool, done: int) -> tuple[Any, ...]:
        rng = self.rng
        weights = (0.03, 0.04, 0.10, 0.33, 0.50) if resolved else (0.15, 0.18, 0.27, 0.25, 0.15)
        csat = rng.choices((1, 2, 3, 4, 5), weights)[0]
        nps = max(0, min(10, round(csat * 2 + rng.gauss(0, 1.3)))) if rng.random() < NPS_SHARE else None
        comment = rng.choice(_COMMENTS) if rng.random() < 0.15 else None
        at = done + int(rng.uniform(20, 900) * 1000)
        return (tenant, f"s{self.config.seed}-y{next(self._ids):09d}", call_id, agent, csat, nps, comment, _us(at))

    def _quality(self, tenant: str, call_id: str, a: int, done: int) -> tuple[Any, ...]:
        rng = self.rng
        criteria = {c: round(min(5.0, max(0.0, rng.gauss(self.quality[a], 0.6))), 1) for c in _CRITERIA}
        score = Decimal(f"{sum(criteria.values()) / len(criteria):.2f}")
        at = done + int(rng.uniform(600, 7200) * 1000)
        return (tenant, f"s{self.config.seed}-q{next(self._ids):09d}", call_id, self.agent_ids[a], score,
                orjson.dumps(criteria).decode(), rng.choice(_REVIEWERS), "event", _us(at))

    def agent_rows(self) -> list[tuple[Any, ...]]:
        seen = _us(self.settings.day_bounds(self.config.end.isoformat())[1])
        return [(self.config.tenant, a, n, t, seen) for a, n, t in zip(self.agent_ids, self.names, self.teams, strict=True)]

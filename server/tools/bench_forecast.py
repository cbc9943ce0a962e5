"""``wallboard bench forecast``: forecast accuracy and anomaly precision/recall on simulated seasonal traffic.

Eight weeks (by default) of 15-minute rollups per queue are drawn in memory: the
simulator's intraday curve (:func:`server.tools.simulate_model.arrival_rate`; weekends an
hour and a half later), a weekday factor, a small weekly trend, day-to-day noise and
Poisson counts per interval; abandons, service level and handle times around fixed
rates. The model of :mod:`server.analytics.forecast` (the one the server runs) is fitted on all
but the last two weeks and forecasts them; the command prints 1 − WAPE per queue over
the held-out intervals with traffic, next to the noise floor (what a perfect forecast
scores against Poisson counts, the best any model can do).

Then spikes are injected into the held-out weeks (volume × 3 or AHT × 2, each for two
intervals, in intervals the forecast expects at least 20 calls in) and the rule of
:mod:`server.analytics.anomaly` runs on every held-out interval. Recall: the spikes flagged in
their first interval. Precision: flagged intervals that were injected, of all flagged.
"""

from __future__ import annotations

import argparse
import math
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from server.analytics import anomaly, forecast
from server.history import formulas as metrics
from server.tools.simulate_model import QUEUE_NAMES, SimulationConfig, arrival_rate

WEEKDAY_FACTOR = (1.12, 1.06, 1.0, 0.98, 0.94, 0.52, 0.30)  # Monday … Sunday
WEEKEND_SHIFT = timedelta(minutes=90)
START = date(2026, 1, 5)  # a Monday: runs are reproducible whatever today is
INTERVAL_MS = forecast.INTERVAL_MS
MIN_EXPECTED = 20.0  # spikes go where the forecast expects at least this many calls


@dataclass(frozen=True)
class Traffic:
    """The simulated queues: ``calls_per_hour`` is the average over the week, all queues together."""

    queues: int = 4
    calls_per_hour: float = 1200.0
    weeks: int = 8
    held_out_weeks: int = 2
    seed: int = 1
    day_noise: float = 0.04
    trend_per_week: float = 0.01
    aht_s: float = 240.0
    aht_cv: float = 0.66
    abandon_share: float = 0.06
    short_share: float = 0.3
    within_sl_share: float = 0.85
    timezone: str = "UTC"

    def shares(self) -> list[float]:
        weights = [1.0 / (i + 1) for i in range(self.queues)]
        return [w / sum(weights) for w in weights]

    def queue_ids(self) -> list[str]:
        return [QUEUE_NAMES[i] if i < len(QUEUE_NAMES) else f"queue-{i + 1}" for i in range(self.queues)]


@dataclass
class Report:
    """What one run measured."""

    queues: list[dict[str, Any]] = field(default_factory=list)
    injected: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    detected: int = 0
    flagged: int = 0
    flagged_injected: int = 0

    @property
    def recall(self) -> float | None:
        return self.detected / self.injected if self.injected else None

    @property
    def precision(self) -> float | None:
        return self.flagged_injected / self.flagged if self.flagged else None


def poisson(rng: random.Random, lam: float) -> int:
    """A Poisson draw: multiplication below 10, Hörmann's PTRS rejection above (O(1))."""
    if lam <= 0:
        return 0
    if lam < 10:
        limit, k, p = math.exp(-lam), 0, rng.random()
        while p > limit:
            k += 1
            p *= rng.random()
        return k
    slam, loglam = math.sqrt(lam), math.log(lam)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    inv_alpha = 1.1239 + 1.1328 / (b - 3.4)
    vr = 0.9277 - 3.6224 / (b - 2)
    while True:
        u = rng.random() - 0.5
        v = rng.random()
        us = 0.5 - abs(u)
        k = math.floor((2 * a / us + b) * u + lam + 0.43)
        if us >= 0.07 and v <= vr:
            return k
        if k < 0 or (us < 0.013 and v > us):
            continue
        if math.log(v) + math.log(inv_alpha) - math.log(a / (us * us) + b) <= -lam + k * loglam - math.lgamma(k + 1):
            return k


def binomial(rng: random.Random, n: int, p: float) -> int:
    """A binomial draw: Bernoulli trials for small n·p·(1−p), a rounded normal above."""
    if n <= 0 or p <= 0:
        return 0
    if n * p * (1 - p) < 25:
        return sum(1 for _ in range(n) if rng.random() < p)
    return min(n, max(0, round(rng.gauss(n * p, math.sqrt(n * p * (1 - p))))))


class Simulated:
    """Counters per queue and interval, each interval drawn from its own seeded stream (injections stay local)."""

    def __init__(self, traffic: Traffic, first_day: date = START) -> None:
        self.traffic = traffic
        self.zone = ZoneInfo(traffic.timezone)
        self.clock = forecast.Clock(self.zone)
        first = self.first = first_day.toordinal()
        self.start_ms = self.clock.day_start_ms(first)  # local midnights, DST or not
        self.end_ms = self.clock.day_start_ms(first + traffic.weeks * 7)
        self.cut_ms = self.clock.day_start_ms(first + (traffic.weeks - traffic.held_out_weeks) * 7)
        unit = SimulationConfig(calls_per_hour=1.0, timezone="UTC")  # the curve by local slot
        self._curve = {(weekend, slot): arrival_rate(unit, datetime(2026, 1, 5, tzinfo=UTC) + timedelta(minutes=15 * slot + 7.5)
                                                     - (WEEKEND_SHIFT if weekend else timedelta(0)))
                       for weekend in (False, True) for slot in range(forecast.SLOTS)}

    def mean(self, q: int, ms: int) -> float:
        """Expected offered calls of queue ``q`` in the interval at ``ms`` (the day noise included)."""
        t = self.traffic
        ordinal, weekday, slot = self.clock.locate(ms)
        week = (ordinal - self.first) / 7
        day = random.Random(f"{t.seed}:day:{q}:{ordinal}").lognormvariate(-t.day_noise ** 2 / 2, t.day_noise)
        hourly = t.calls_per_hour * t.shares()[q] * self._curve[(weekday >= 5, slot)]
        return hourly / 4 * WEEKDAY_FACTOR[weekday] / (sum(WEEKDAY_FACTOR) / 7) * (1 + t.trend_per_week) ** week * day

    def interval(self, q: int, ms: int, spike: str | None = None) -> dict[str, int]:
        """One interval's counters; ``spike`` "volume" triples the calls (callers then wait and give up more),
        "aht" doubles the handle time."""
        t = self.traffic
        rng = random.Random(f"{t.seed}:iv:{q}:{ms}:{spike}")
        lam = self.mean(q, ms) * (3 if spike == "volume" else 1)
        offered = poisson(rng, lam)
        abandoned = binomial(rng, offered, 0.25 if spike == "volume" else t.abandon_share)
        short = binomial(rng, abandoned, t.short_share)
        answered = offered - abandoned
        within = binomial(rng, answered, 0.45 if spike == "volume" else t.within_sl_share)
        aht = t.aht_s * (2 if spike == "aht" else 1)
        shape = answered / t.aht_cv ** 2
        handle_ms = round(rng.gammavariate(shape, aht * 1000 * t.aht_cv ** 2)) if answered else 0
        return {"offered": offered, "answered": answered, "abandoned": abandoned, "short_abandoned": short,
                "answered_within_sl": within, "abandoned_within_sl": 0, "handled": answered, "handle_ms": handle_ms}

    def queue(self, q: int) -> dict[int, dict[str, int]]:
        return {ms: self.interval(q, ms) for ms in range(self.start_ms, self.end_ms, INTERVAL_MS)}


def run(traffic: Traffic, *, injections: int = 60) -> Report:
    """Fit, forecast the held-out weeks, score them; then inject spikes and score the anomaly rule."""
    sim = Simulated(traffic)
    report = Report()
    rng = random.Random(f"{traffic.seed}:spikes")
    expectations: dict[tuple[int, int], anomaly.Expected] = {}
    series: dict[int, dict[int, dict[str, int]]] = {}
    for q, queue_id in enumerate(traffic.queue_ids()):
        rows = sim.queue(q)
        series[q] = rows
        history = [forecast.Interval(ms, c["offered"], c["handled"], c["handle_ms"]) for ms, c in rows.items()]
        model = forecast.fit(history, sim.zone, sim.cut_ms)
        assert model is not None
        points = model.predict(sim.clock, sim.cut_ms, sim.end_ms)
        actual = [rows[p.start_ms]["offered"] for p in points]
        # Baseline: the seasonal naive forecast, the same slot in the last training week.
        week_ms = 7 * 86_400_000
        naive = [rows.get(p.start_ms - week_ms * (1 + (p.start_ms - sim.cut_ms) // week_ms), {}).get("offered", 0)
                 for p in points]
        report.queues.append({
            "queue_id": queue_id, "calls_per_hour": traffic.calls_per_hour * traffic.shares()[q], "model": model.name,
            "accuracy": forecast.accuracy(actual, [p.offered for p in points]),
            "naive": forecast.accuracy(actual, naive),
            "noise_floor": forecast.poisson_floor([sim.mean(q, p.start_ms) for p in points]),
            "backtest": forecast.backtest(history, sim.zone, sim.cut_ms)})
        week_start = sim.clock.day_start_ms(sim.clock.locate(sim.cut_ms)[0] - 7)
        week = metrics.total(c for ms, c in rows.items() if week_start <= ms < sim.cut_ms)
        for p in points:
            expectations[(q, p.start_ms)] = anomaly.baseline(week, [], "answered_plus_abandoned", (p.offered, p.aht_s))
    spikes = _choose(rng, expectations, injections)
    for (q, ms), kind in spikes.items():
        series[q][ms] = sim.interval(q, ms, kind)
        series[q][ms + INTERVAL_MS] = sim.interval(q, ms + INTERVAL_MS, kind)
        report.by_kind[kind] = report.by_kind.get(kind, 0) + 1
    report.injected = len(spikes)
    injected = {(q, ms + k * INTERVAL_MS) for (q, ms) in spikes for k in (0, 1)}
    flagged = set()
    for (q, ms), expected in expectations.items():
        if anomaly.detect(series[q][ms], expected):
            flagged.add((q, ms))
    report.flagged = len(flagged)
    report.flagged_injected = len(flagged & injected)
    report.detected = sum(1 for key in spikes if key in flagged)
    return report


def _choose(rng: random.Random, expectations: dict[tuple[int, int], anomaly.Expected], count: int) -> dict[tuple[int, int], str]:
    """``count`` two-interval spikes, alternately volume and AHT, apart from each other, where traffic is."""
    busy = []
    for (q, ms), e in sorted(expectations.items()):
        after = expectations.get((q, ms + INTERVAL_MS))
        if after is not None and (e.offered or 0) >= MIN_EXPECTED and (after.offered or 0) >= MIN_EXPECTED:
            busy.append((q, ms))
    rng.shuffle(busy)
    chosen: dict[tuple[int, int], str] = {}
    taken: set[tuple[int, int]] = set()
    for q, ms in busy:
        if len(chosen) >= count:
            break
        span = {(q, ms + k * INTERVAL_MS) for k in range(-2, 4)}
        if span & taken:
            continue
        taken |= span
        chosen[(q, ms)] = "volume" if len(chosen) % 2 == 0 else "aht"
    return chosen


def render(traffic: Traffic, report: Report, target: float) -> str:
    lines = [f"wallboard bench forecast: {traffic.queues} queues, {traffic.calls_per_hour:g} calls/h in all, "
             f"{traffic.weeks} weeks of 15-minute intervals (seed {traffic.seed}); fitted on the first "
             f"{traffic.weeks - traffic.held_out_weeks} weeks, forecasting the {traffic.held_out_weeks} held-out weeks",
             "", f"{'queue':<12}{'calls/h':>9}  {'model':<22}{'1-WAPE':>8}{'floor':>8}{'backtest':>10}"
                 f"{'naive':>8}{'ratio':>7}"]
    for row in report.queues:
        backtest = f"{row['backtest']:.3f}" if row["backtest"] is not None else "-"
        ratio = f"{row['accuracy'] / row['naive']:.2f}" if row["naive"] else "-"
        lines.append(f"{row['queue_id']:<12}{row['calls_per_hour']:>9.1f}  {row['model']:<22}{row['accuracy']:>8.3f}"
                     f"{row['noise_floor']:>8.3f}{backtest:>10}{row['naive'] or 0:>8.3f}{ratio:>7}")
    lines += ["", f"1-WAPE: offered calls per interval over held-out intervals with traffic (target >= {target:g}); "
                  "floor: a perfect forecast against Poisson counts; backtest: the server's own figure (last training week held out); "
                  "naive: the baseline, each slot of the last training week repeated; ratio: 1-WAPE / naive"]
    if report.injected:
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(report.by_kind.items()))
        lines += ["", f"anomalies: {report.injected} spikes injected for 30 minutes each ({kinds}; volume x3, AHT x2)",
                  f"  recall    {report.recall:.3f}  ({report.detected} of {report.injected} flagged in their first interval)",
                  f"  precision {report.precision or 0:.3f}  ({report.flagged_injected} of {report.flagged} flagged "
                  "intervals were injected)"]
    return "\n".join(lines)


def cmd_bench_forecast(args: argparse.Namespace) -> int:
    """Print accuracy per queue and the anomaly figures; exit 1 when a queue misses the target."""
    if args.weeks < 3:
        print(f"wallboard: error: --weeks {args.weeks}: expected at least 3 (two are held out)")
        return 2
    traffic = Traffic(queues=args.queues, calls_per_hour=args.calls_per_hour, weeks=args.weeks, seed=args.seed,
                      timezone=args.timezone)
    report = run(traffic, injections=args.injections)
    print(render(traffic, report, args.target))
    missed = [r for r in report.queues if (r["accuracy"] or 0) < args.target]
    return 1 if missed else 0

"""The forecast model: offered calls and handle time per queue and 15-minute interval.

Pure computation on a queue's 15-minute history (no I/O): :func:`fit` builds a
:class:`Model`, :meth:`Model.predict` gives the intervals of any future range,
:func:`backtest` measures 1 − WAPE on held-out days (METRICS.md).

The model is the classic contact-center decomposition, in the tenant's local calendar:

- daily totals follow Holt-Winters smoothing: a level, a damped additive trend
  and a multiplicative weekday season, the smoothing constants chosen from a
  small grid by the smallest one-step-ahead absolute error;
- each day is split over its 96 slots by a weekday intraday profile: the share
  of the day per slot, recency-weighted over the past weeks and smoothed over
  neighbouring slots (Poisson noise of single intervals would otherwise be
  learned as shape);
- AHT per weekday slot is a recency-weighted mean, shrunk toward the queue's
  mean where few calls were handled.

Trade-offs, stated plainly: days without any rollup row count as days without
calls (a closed Sunday), so an outage of the whole server reads as a quiet day;
the first day of history counts whole even when history began during it. With
less than two weeks the weekday season is not estimated ("intraday_mean").
Holidays are not modelled.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

INTERVAL_MS = 900_000
SLOTS = 96
RECENCY = 0.75  # weight of a week relative to the week after it (profiles and AHT)
KERNEL = (1.0, 2.0, 3.0, 2.0, 1.0)  # smoothing of the intraday profile over neighbouring slots
AHT_PRIOR_CALLS = 10.0  # calls' worth of weight pulling a slot's AHT toward the queue's mean
GRID_ALPHA = (0.05, 0.1, 0.2, 0.35, 0.5)
GRID_BETA = (0.0, 0.03, 0.1)
GRID_GAMMA = (0.05, 0.15, 0.3)
GRID_PHI = (0.85, 0.97)


@dataclass(frozen=True, slots=True)
class Interval:
    """One 15-minute rollup of a queue: its start (epoch ms) and the counters the model reads."""

    start_ms: int
    offered: int
    handled: int = 0
    handle_ms: int = 0


@dataclass(frozen=True, slots=True)
class Point:
    """One forecast interval."""

    start_ms: int
    offered: float
    aht_s: float | None


class Clock:
    """Local day and slot of instants in one time zone (cached per day: DST-safe, cheap)."""

    def __init__(self, zone: ZoneInfo) -> None:
        self.zone = zone
        self._days: dict[int, tuple[int, int, int]] = {}  # utc hour → (ordinal, weekday, slot of the hour)

    def locate(self, ms: int) -> tuple[int, int, int]:
        """(local date ordinal, weekday 0=Monday, slot 0..95) of the interval starting at ``ms``."""
        hour = ms // 3_600_000
        found = self._days.get(hour)
        if found is None:
            local = datetime.fromtimestamp(hour * 3600, self.zone)
            found = (local.toordinal(), local.weekday(), local.hour * 4 + local.minute // 15)
            self._days[hour] = found
        ordinal, weekday, slot = found
        slot += (ms % 3_600_000) // INTERVAL_MS
        if slot >= SLOTS:  # an offset with 15/30/45 minutes carried past midnight
            return ordinal + 1, (weekday + 1) % 7, slot - SLOTS
        return ordinal, weekday, slot

    def day_start_ms(self, ordinal: int) -> int:
        """Epoch ms of local midnight of a day (the first instant of the day across DST)."""
        d = date.fromordinal(ordinal)
        return int(datetime(d.year, d.month, d.day, tzinfo=self.zone).timestamp() * 1000)


@dataclass(frozen=True)
class Daily:
    """Holt-Winters state after the last fitted day."""

    level: float
    trend: float
    phi: float
    season: tuple[float, ...]  # per weekday, 0 = Monday
    last_day: int  # ordinal

    def total(self, ordinal: int, weekday: int) -> float:
        h = ordinal - self.last_day
        damp = sum(self.phi ** i for i in range(1, h + 1)) if h > 0 else 0.0
        return max(0.0, (self.level + damp * self.trend) * self.season[weekday])


@dataclass(frozen=True)
class Model:
    """A fitted forecast of one queue."""

    name: str
    daily: Daily
    profile: tuple[tuple[float, ...], ...]  # [weekday][slot] share of the day
    aht_s: tuple[tuple[float | None, ...], ...]  # [weekday][slot]
    days: int  # days of history it was fitted on

    def predict(self, clock: Clock, start_ms: int, end_ms: int) -> list[Point]:
        """Every interval in ``[start_ms, end_ms)`` (taken to the 15-minute grid)."""
        first = start_ms - start_ms % INTERVAL_MS
        out = []
        for ms in range(first, end_ms, INTERVAL_MS):
            ordinal, weekday, slot = clock.locate(ms)
            offered = self.daily.total(ordinal, weekday) * self.profile[weekday][slot]
            out.append(Point(ms, offered, self.aht_s[weekday][slot]))
        return out


class History:
    """A queue's history as local days × slots: offered, handled, handle ms."""

    def __init__(self, intervals: Iterable[Interval], clock: Clock, until_ms: int) -> None:
        self.clock = clock
        self.offered: dict[int, list[float]] = {}
        self.handled: dict[int, list[float]] = {}
        self.handle_ms: dict[int, list[float]] = {}
        self.weekday: dict[int, int] = {}
        for row in intervals:
            if row.start_ms >= until_ms:
                continue
            ordinal, weekday, slot = clock.locate(row.start_ms)
            if ordinal not in self.offered:
                self.offered[ordinal], self.handled[ordinal], self.handle_ms[ordinal] = \
                    [0.0] * SLOTS, [0.0] * SLOTS, [0.0] * SLOTS
                self.weekday[ordinal] = weekday
            self.offered[ordinal][slot] += row.offered
            self.handled[ordinal][slot] += row.handled
            self.handle_ms[ordinal][slot] += row.handle_ms
        last = clock.locate(until_ms - INTERVAL_MS)[0] if self.offered else 0
        if self.offered and clock.day_start_ms(last + 1) > until_ms:
            last -= 1  # the day ``until_ms`` falls in is not whole: leave it out
        first = min(self.offered, default=last + 1)
        self.ordinals = list(range(first, last + 1))
        for ordinal in self.ordinals:  # days without rows are days without calls
            if ordinal not in self.offered:
                self.offered[ordinal], self.handled[ordinal], self.handle_ms[ordinal] = \
                    [0.0] * SLOTS, [0.0] * SLOTS, [0.0] * SLOTS
                self.weekday[ordinal] = date.fromordinal(ordinal).weekday()

    def totals(self) -> list[float]:
        return [sum(self.offered[d]) for d in self.ordinals]


def fit(intervals: Iterable[Interval], zone: ZoneInfo, until_ms: int) -> Model | None:
    """Fit on the whole local days before ``until_ms`` (normally today's local midnight); None without history."""
    clock = Clock(zone)
    history = History(intervals, clock, until_ms)
    return _fit(history)


def _fit(history: History) -> Model | None:
    days = history.ordinals
    totals = history.totals()
    if not days or sum(totals) <= 0:
        return None
    weekdays = [history.weekday[d] for d in days]
    if len(days) >= 14:
        daily, name = _holt_winters(totals, weekdays, days[-1]), "holt_winters_weekly"
    else:
        recent = totals[-7:]
        daily = Daily(sum(recent) / len(recent), 0.0, 1.0, (1.0,) * 7, days[-1])
        name = "intraday_mean"
    profile = _profiles(history, weekly=len(days) >= 14)
    return Model(name, daily, profile, _aht(history), len(days))


def _holt_winters(y: Sequence[float], weekdays: Sequence[int], last_day: int) -> Daily:
    """Damped-trend, multiplicative-weekday Holt-Winters on daily totals, parameters from a grid."""
    n = len(y)
    weeks = n // 7
    level0 = sum(y[:7]) / 7
    trend0 = (sum(y[7:14]) - sum(y[:7])) / 49 if n >= 14 else 0.0
    ratios: list[list[float]] = [[] for _ in range(7)]
    for k in range(weeks):
        mean = sum(y[7 * k:7 * k + 7]) / 7
        if mean > 0:
            for i in range(7 * k, 7 * k + 7):
                ratios[weekdays[i]].append(y[i] / mean)
    season0 = tuple(sum(r) / len(r) if r else 1.0 for r in ratios)
    best: tuple[float, Daily] | None = None
    for alpha in GRID_ALPHA:
        for beta in GRID_BETA:
            for gamma in GRID_GAMMA:
                for phi in GRID_PHI:
                    error, state = _smooth(y, weekdays, level0, trend0, season0, alpha, beta, gamma, phi, last_day)
                    if best is None or error < best[0]:
                        best = (error, state)
    assert best is not None
    return best[1]


def _smooth(y: Sequence[float], weekdays: Sequence[int], level: float, trend: float, season0: tuple[float, ...],
            alpha: float, beta: float, gamma: float, phi: float, last_day: int) -> tuple[float, Daily]:
    season = list(season0)
    error = 0.0
    for t, (value, w) in enumerate(zip(y, weekdays, strict=True)):
        s = season[w]
        if t >= 7:
            error += abs(value - max(0.0, (level + phi * trend) * s))
        if s > 1e-6:
            new_level = alpha * value / s + (1 - alpha) * (level + phi * trend)
        else:
            new_level = level + phi * trend
        new_level = max(new_level, 0.0)
        trend = beta * (new_level - level) + (1 - beta) * phi * trend
        level = new_level
        if level > 1e-6:
            season[w] = gamma * value / level + (1 - gamma) * s
    return error, Daily(level, trend, phi, tuple(season), last_day)


def _weights(history: History, weekday: int | None) -> list[tuple[int, float]]:
    """(day, weight) of the days of a weekday (or all days), newer weeks weighing more."""
    last = history.ordinals[-1]
    return [(d, RECENCY ** ((last - d) // 7)) for d in history.ordinals
            if weekday is None or history.weekday[d] == weekday]


def _smooth_slots(values: list[float]) -> list[float]:
    """Each slot's value as the kernel-weighted sum of its neighbours' (normalised at the day's ends)."""
    half = len(KERNEL) // 2
    out = []
    for slot in range(SLOTS):
        acc = norm = 0.0
        for k, w in enumerate(KERNEL):
            j = slot + k - half
            if 0 <= j < SLOTS:
                acc += w * values[j]
                norm += w
        out.append(acc / norm)
    return out


def _sums(history: History, days: list[tuple[int, float]], table: dict[int, list[float]]) -> list[float]:
    """Recency-weighted sums per slot of one of the history's tables over the given days."""
    sums = [0.0] * SLOTS
    for d, weight in days:
        row = table[d]
        for slot in range(SLOTS):
            sums[slot] += weight * row[slot]
    return sums


def _share(history: History, days: list[tuple[int, float]]) -> list[float] | None:
    smoothed = _smooth_slots(_sums(history, days, history.offered))
    scale = sum(smoothed)
    return [v / scale for v in smoothed] if scale > 0 else None


def _profiles(history: History, *, weekly: bool) -> tuple[tuple[float, ...], ...]:
    pooled = _share(history, _weights(history, None)) or [1 / SLOTS] * SLOTS
    if not weekly:
        return (tuple(pooled),) * 7
    out = []
    for weekday in range(7):
        own = _share(history, _weights(history, weekday))
        out.append(tuple(own) if own is not None else tuple(pooled))
    return tuple(out)


def _aht(history: History) -> tuple[tuple[float | None, ...], ...]:
    """AHT per weekday slot: handle time over calls of the neighbouring slots, shrunk toward all days' slot,
    itself shrunk toward the queue's mean."""
    everything = _weights(history, None)
    all_ms, all_calls = _sums(history, everything, history.handle_ms), _sums(history, everything, history.handled)
    if sum(all_calls) <= 0:
        return ((None,) * SLOTS,) * 7
    mean = sum(all_ms) / sum(all_calls)
    pooled = [(m + AHT_PRIOR_CALLS * mean) / (c + AHT_PRIOR_CALLS)
              for m, c in zip(_smooth_slots(all_ms), _smooth_slots(all_calls), strict=True)]
    out = []
    for weekday in range(7):
        days = _weights(history, weekday)
        ms = _smooth_slots(_sums(history, days, history.handle_ms))
        calls = _smooth_slots(_sums(history, days, history.handled))
        out.append(tuple(round((m + AHT_PRIOR_CALLS * p) / (c + AHT_PRIOR_CALLS) / 1000, 3)
                         for m, c, p in zip(ms, calls, pooled, strict=True)))
    return tuple(out)


def wape(actual: Sequence[float], forecast: Sequence[float]) -> float | None:
    """Σ|forecast − actual| / Σ actual over the intervals with traffic (actual > 0); None without any."""
    pairs = [(a, f) for a, f in zip(actual, forecast, strict=True) if a > 0]
    total = sum(a for a, _ in pairs)
    return sum(abs(f - a) for a, f in pairs) / total if total else None


def accuracy(actual: Sequence[float], forecast: Sequence[float]) -> float | None:
    """1 − WAPE (METRICS.md), at least 0; None when the held-out days had no traffic."""
    error = wape(actual, forecast)
    return None if error is None else max(0.0, 1.0 - error)


def holdout_days(days: int) -> int:
    """How many of the newest days the backtest holds out: a week once there are three."""
    return 7 if days >= 21 else max(1, days // 3) if days >= 2 else 0


def backtest(intervals: Sequence[Interval], zone: ZoneInfo, until_ms: int, days: int | None = None) -> float | None:
    """1 − WAPE of a model fitted without the newest ``days`` whole days, on those days."""
    clock = Clock(zone)
    history = History(intervals, clock, until_ms)
    held = holdout_days(len(history.ordinals)) if days is None else days
    if held <= 0 or len(history.ordinals) <= held:
        return None
    cut = clock.day_start_ms(history.ordinals[-held])
    model = _fit(History(intervals, clock, cut))
    if model is None:
        return None
    actual: dict[int, float] = {}
    for row in intervals:
        if cut <= row.start_ms < until_ms:
            key = row.start_ms - row.start_ms % INTERVAL_MS
            actual[key] = actual.get(key, 0.0) + row.offered
    points = model.predict(clock, cut, until_ms)
    return accuracy([actual.get(p.start_ms, 0.0) for p in points], [p.offered for p in points])


def local_midnight(zone: ZoneInfo, ms: int) -> int:
    """Epoch ms of the local midnight starting the day of ``ms``."""
    clock = Clock(zone)
    return clock.day_start_ms(clock.locate(ms - ms % INTERVAL_MS)[0])


def days_after(zone: ZoneInfo, ms: int, days: int) -> int:
    """Epoch ms of local midnight ``days`` days after the day of ``ms``."""
    clock = Clock(zone)
    ordinal = clock.locate(ms - ms % INTERVAL_MS)[0]
    return clock.day_start_ms(ordinal + days)


def poisson_floor(means: Sequence[float]) -> float | None:
    """1 − the expected WAPE of a perfect forecast against Poisson counts: the best any model can score."""
    error = total = 0.0
    for lam in means:
        if lam <= 0:
            continue
        # E|X − λ| for X ~ Poisson(λ) = 2 e^−λ λ^(⌊λ⌋+1) / ⌊λ⌋!, less the X = 0 term (WAPE skips
        # intervals without traffic)
        k = math.floor(lam)
        error += 2 * math.exp(-lam + (k + 1) * math.log(lam) - math.lgamma(k + 1)) - lam * math.exp(-lam)
        total += lam
    return 1 - error / total if total else None


__all__ = ["Interval", "Point", "Model", "Clock", "fit", "backtest", "wape", "accuracy", "holdout_days",
           "local_midnight", "days_after", "poisson_floor"]

"""Anomalies: a queue's interval that deviates from its forecast, found, stored and pushed as an alert.

The rule (:func:`detect`) compares a closed 15-minute interval of a queue with
what was expected of it:

- offered calls and AHT with the forecast of that interval (``predictive_analytics``),
  or, where there is none yet (short history), with a rolling baseline: the mean of
  the same slot on the previous days, and the queue's AHT of the past week;
- abandon rate and service level with the queue's rates over the past week.

A deviation is flagged when it is both large (a ratio or an absolute gap, so that
a wallboard does not cry wolf over a 10% drift) and unlikely as noise: a z-score
against Poisson counts for volume, the standard error of a mean of handle times for
AHT, binomial proportions for the rates, each with an allowance for forecast error.
Thresholds were chosen with ``wallboard bench forecast``, which injects spikes
(volume × 3, AHT × 2, for 30 minutes) into simulated held-out weeks and prints
precision and recall.

:class:`AnomalyDetector` runs the rule for every tenant with recent activity once an
interval has closed (plus a grace for late events), stores each flag in
``anomaly_detection`` (kind ``forecast``) and pushes ``{"type": "alert", "kind":
"forecast", ...}`` through the hub. A Redis ``SET NX`` per tenant and interval makes
one process of many check it; a process down at that moment leaves the interval
unchecked (at most once, like the alerts themselves).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from server.core import background
from server.core.db import query
from server.history import formulas as metrics
from server.history.period import iso

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from server.core.db import Database
    from server.core.settings_store import SettingsStore
    from server.live.activity import TenantActivity
    from server.live.hub import Hub
    from server.live.keys import Keys

log = logging.getLogger("wallboard.anomaly")

INTERVAL_MS = 900_000
GRACE_MS = 60_000  # late events of a closed interval still counted before it is checked
CHECK_EVERY_S = 20.0
CATCH_UP = 4  # closed intervals looked at each pass (a restart misses none of the last hour)
Z_VOLUME = 4.0
Z_AHT = 3.5
Z_RATE = 4.0
FORECAST_SLACK = 0.12  # relative error a forecast is allowed before noise is even considered
AHT_CV = 0.7  # coefficient of variation of one call's handle time (lognormal, σ ≈ 0.6)
MIN_HANDLED = 5
MIN_ANSWERABLE = 10
KINDS = ("forecast", "threshold")


@dataclass(frozen=True, slots=True)
class Expected:
    """What a queue's interval was expected to be; None where nothing is known."""

    offered: float | None
    aht_s: float | None
    abandon_rate: float | None
    service_level: float | None
    source: str = "forecast"  # or "baseline"


@dataclass(frozen=True, slots=True)
class Flag:
    """One flagged deviation: the metric, what came, what was expected, and how unlikely (z-score)."""

    metric: str
    observed: float
    expected: float
    score: float


def detect(c: metrics.Counters, expected: Expected, sl_formula: str = "answered_plus_abandoned") -> list[Flag]:
    """The flagged deviations of one queue's interval counters from what was expected."""
    flags = []
    offered = c.get("offered", 0)
    if expected.offered is not None:
        e = expected.offered
        z = (offered - e) / math.sqrt(e + (FORECAST_SLACK * e) ** 2 + 1)
        if z >= Z_VOLUME and offered >= 1.6 * e and offered - e >= 6:
            flags.append(Flag("offered", offered, e, z))
        elif z <= -Z_VOLUME and offered <= 0.5 * e and e >= 12:
            flags.append(Flag("offered", offered, e, z))
    handled = c.get("handled", 0)
    aht = metrics.aht_s(c)
    if expected.aht_s and aht is not None and handled >= MIN_HANDLED:
        e = expected.aht_s
        z = (aht - e) / (e * math.sqrt(AHT_CV ** 2 / handled + FORECAST_SLACK ** 2 / 4))
        if (z >= Z_AHT and aht >= 1.4 * e) or (z <= -Z_AHT and aht <= 0.6 * e):
            flags.append(Flag("aht_s", aht, e, z))
    short = c.get("short_abandoned", 0)
    answerable = c.get("answered", 0) + c.get("abandoned", 0) - short
    rate = metrics.abandon_rate(c)
    if expected.abandon_rate is not None and rate is not None and answerable >= MIN_ANSWERABLE:
        p = min(max(expected.abandon_rate, 0.02), 0.98)
        z = (rate - p) / math.sqrt(p * (1 - p) / answerable)
        if z >= Z_RATE and rate - p >= 0.1:
            flags.append(Flag("abandon_rate", rate, expected.abandon_rate, z))
    level = metrics.service_level(c, sl_formula)
    if expected.service_level is not None and level is not None and answerable >= MIN_ANSWERABLE:
        p = min(max(expected.service_level, 0.02), 0.98)
        z = (level - p) / math.sqrt(p * (1 - p) / answerable)
        if z <= -Z_RATE and p - level >= 0.15:
            flags.append(Flag("service_level", level, expected.service_level, z))
    return flags


def baseline(week: metrics.Counters, same_slot: list[int], sl_formula: str,
             forecast: tuple[float, float | None] | None) -> Expected:
    """Expectations from the forecast when there is one, else from the past week (``same_slot``: offered
    in this slot on previous days; three at least make a volume baseline)."""
    rates = (metrics.abandon_rate(week), metrics.service_level(week, sl_formula))
    if forecast is not None:
        return Expected(forecast[0], forecast[1] or metrics.aht_s(week), *rates)
    offered = sum(same_slot) / len(same_slot) if len(same_slot) >= 3 else None
    return Expected(offered, metrics.aht_s(week), *rates, source="baseline")


class AnomalyDetector:
    """Checks each closed interval of the active tenants; owns its loop (``start``/``close``)."""

    def __init__(self, db: Database, redis: aioredis.Redis, keys: Keys, store: SettingsStore, hub: Hub,
                 activity: TenantActivity) -> None:
        self.db, self.redis, self.keys, self.store, self.hub, self.activity = db, redis, keys, store, hub, activity
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="anomaly-detector")

    async def close(self) -> None:
        await background.stop([self._task])

    async def _loop(self) -> None:
        failures = 0
        while True:
            await asyncio.sleep(CHECK_EVERY_S * random.uniform(0.8, 1.2) if failures == 0
                                else random.uniform(0, min(300.0, 2.0 ** failures)))
            try:
                now = int(time.time() * 1000)
                last = (now - GRACE_MS) - (now - GRACE_MS) % INTERVAL_MS - INTERVAL_MS
                for tenant in await self.activity.known(within_s=2 * 86_400):
                    for k in range(CATCH_UP):
                        start = last - k * INTERVAL_MS
                        if await self.redis.set(self._marker(tenant, start), "1", nx=True, ex=2 * 86_400):
                            await self.check(tenant, start)
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the loop outlives any one failure
                failures += 1
                log.warning("anomaly.check_failed", extra={"error": f"{type(exc).__name__}: {exc}"})

    def _marker(self, tenant: str, start_ms: int) -> str:
        return self.keys.tenant_prefix(tenant) + f"anomaly:{start_ms}"

    async def check(self, tenant: str, start_ms: int, *, publish: bool = True) -> list[dict[str, Any]]:
        """Run the rule on every queue of one closed interval; store and push what it flags; return the alerts."""
        settings = await self.store.get(tenant)
        start = datetime.fromtimestamp(start_ms / 1000, UTC)
        async with self.db.tenant(tenant) as conn:
            rows = await conn.fetch(query("anomaly_inputs"), tenant, start)
            alerts = []
            for row in rows:
                c = {k: int(row[k] or 0) for k in ("offered", "answered", "abandoned", "short_abandoned",
                                                   "answered_within_sl", "abandoned_within_sl", "handled", "handle_ms")}
                week = {k.removeprefix("week_"): int(row[k] or 0) for k in row.keys() if k.startswith("week_")}
                formula = settings.for_queue(row["queue_id"]).sl_formula
                forecast = (row["fc_offered"], row["fc_aht_s"]) if row["fc_offered"] is not None else None
                expected = baseline(week, list(row["same_slot"] or []), formula, forecast)
                for flag in detect(c, expected, formula):
                    stored = await conn.fetchrow(
                        query("anomaly_insert"), tenant, row["queue_id"], start, flag.metric, flag.observed,
                        flag.expected, round(flag.score, 3), "forecast", None)
                    assert stored is not None
                    anomaly_id, raised_at = stored["anomaly_id"], stored["raised_at"]
                    alerts.append({"kind": "forecast", "state": "raised", "anomaly_id": anomaly_id,
                                   "metric": flag.metric, "queue_id": row["queue_id"], "interval_start": iso(start_ms),
                                   "value": flag.observed, "expected": flag.expected, "score": round(flag.score, 3),
                                   "baseline": expected.source, "at": iso(int(raised_at.timestamp() * 1000))})
        if publish:
            for alert in alerts:
                await self.hub.publish_alert(tenant, alert)
        if alerts:
            log.info("anomaly.flagged", extra={"tenant": tenant, "interval": iso(start_ms), "flags": len(alerts)})
        return alerts

"""Stored forecasts: refreshed on a schedule, served by ``/api/analytics/predictions``, staffed by Erlang C.

:class:`Forecaster` owns two loops. Every ``forecast_every_s`` it refits each active
tenant's queues (:mod:`server.analytics.forecast`) on up to eight weeks of 15-minute rollups and
stores the rest of today and the next ``forecast_days`` days in ``predictive_analytics``:
offered calls, AHT, the agents Erlang C requires for the queue's service-level threshold
and ``forecast_target_sl`` (:func:`server.analytics.staffing.required_agents`, before shrinkage),
the model's name and its backtest accuracy. A PostgreSQL advisory lock held for the
refresh's transaction lets one process of many refresh a tenant at a time; a forecast
younger than the interval is left alone, so N processes do the work once. The fit takes
about 0.1 s of CPU per queue (eight weeks, backtest included) in a worker thread; it still
holds the GIL, so a tenant with hundreds of queues slows this process's requests meanwhile.

Every minute the other loop writes the current and the next interval's required agents
into those intervals' live counters in Redis (field ``fc_required_agents``): the live
overview reads them in the same round trip as everything else, at every process, and
shows ``required_agents`` and ``agents_gap`` per queue. A Redis ``SET NX`` marker lets
one process do it per tenant and five minutes. A rebuild of a tenant's live state (a repair, a
Redis that came back empty, ``wallboard rebuild-live``) replays events, which carry no forecast:
the rebuild has the staffing written again before it declares the state complete.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis

from server.analytics import forecast, staffing
from server.core import background
from server.core.db import Database, query
from server.core.errors import ServiceUnavailable
from server.core.settings_store import SettingsStore
from server.core.tenant_settings import TenantSettings
from server.live.keys import Keys
from server.live.state import KEY_TTL_S
from server.live.view import FORECAST_FIELD

if TYPE_CHECKING:
    from server.core.config import Settings
    from server.live.activity import TenantActivity
    from server.live.state import LiveState

log = logging.getLogger("wallboard.predictions")

HISTORY_DAYS = 56
RETENTION_DAYS = 92  # past intervals keep their forecast this long (anomalies, forecast-vs-actual)
ACTIVE_WITHIN_S = 35 * 86_400
STAFFING_EVERY_S = 60.0
INTERVAL_S = 900


@dataclass(frozen=True)
class QueueForecast:
    """One queue's new forecast, ready to store."""

    queue_id: str
    model: str
    accuracy: float | None
    days: int
    points: list[forecast.Point]
    required: list[int | None]

    def summary(self) -> dict[str, Any]:
        return {"queue_id": self.queue_id, "model": self.model, "accuracy": round_or_none(self.accuracy), "history_days": self.days,
                "intervals": len(self.points), "offered": round(sum(p.offered for p in self.points), 1)}


def plan(rows: list[Any], settings: TenantSettings, now_ms: int, days: int, target_sl: float) -> list[QueueForecast]:
    """Fit every queue of the history rows and forecast from the current interval to ``days`` days after today.

    CPU only (run it in a thread). Erlang C results are memoised by (calls to 0.1, AHT to the second).
    """
    zone = settings.zone
    clock = forecast.Clock(zone)
    until = forecast.local_midnight(zone, now_ms)
    start, end = now_ms - now_ms % forecast.INTERVAL_MS, forecast.days_after(zone, now_ms, days + 1)
    by_queue: dict[str, list[forecast.Interval]] = {}
    for row in rows:
        by_queue.setdefault(row["queue_id"], []).append(
            forecast.Interval(int(row["start_ms"]), int(row["offered"]), int(row["handled"]), int(row["handle_ms"])))
    memo: dict[tuple[float, int, float], int] = {}
    out = []
    for queue_id, intervals in sorted(by_queue.items()):
        model = forecast.fit(intervals, zone, until)
        if model is None:
            continue
        points = model.predict(clock, start, end)
        threshold = float(settings.for_queue(queue_id).sl_threshold_s)
        required = [_agents(memo, p.offered, p.aht_s, threshold, target_sl) for p in points]
        out.append(QueueForecast(queue_id, model.name, forecast.backtest(intervals, zone, until), model.days,
                                 points, required))
    return out


def _agents(memo: dict[tuple[float, int, float], int], offered: float, aht_s: float | None, threshold: float,
            target: float) -> int | None:
    if aht_s is None or aht_s <= 0:
        return None
    calls = round(offered, 1)
    if calls <= 0:
        return 0
    key = (calls, round(aht_s), threshold)
    found = memo.get(key)
    if found is None:
        found = memo[key] = staffing.required_agents(calls, float(round(aht_s)), INTERVAL_S, threshold, target).agents
    return found


def round_or_none(value: float | None, places: int = 4) -> float | None:
    return None if value is None else round(value, places)


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


class Forecaster:
    """Refreshes stored forecasts and publishes the live staffing; owns both loops (``start``/``close``)."""

    def __init__(self, db: Database, redis: aioredis.Redis, keys: Keys, store: SettingsStore, settings: Settings,
                 activity: TenantActivity, live: LiveState) -> None:
        self.db, self.redis, self.keys, self.store, self.activity = db, redis, keys, store, activity
        self.every_s = settings.forecast_every_s
        self.days = settings.forecast_days
        self.target_sl = settings.forecast_target_sl
        self._tasks: list[asyncio.Task[None]] = []
        live.restorers.append(self.restore_staffing)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._refresh_loop(), name="forecast-refresh"),
                       asyncio.create_task(self._staffing_loop(), name="forecast-staffing")]

    async def close(self) -> None:
        await background.stop(self._tasks)

    async def restore_staffing(self, tenant: str) -> None:
        """Write the tenant's staffing into its rebuilt live state (a rebuild awaits it before it completes)."""
        try:
            await self.publish_staffing(tenant, force=True)
        except Exception as exc:  # noqa: BLE001 - the staffing loop writes it within a minute
            log.warning("forecast.restore_failed", extra={"tenant": tenant, "error": f"{type(exc).__name__}: {exc}"})

    async def refresh(self, tenant: str, *, force: bool = False, now_ms: int | None = None) -> list[QueueForecast] | None:
        """Refit and store the tenant's forecast; None when another process holds the lock, or (unless
        ``force``) the stored forecast is younger than the refresh interval.

        ``now_ms`` refreshes as of an earlier time (history up to that day, forecast from that interval).
        """
        settings = await self.store.get(tenant)
        now = int(time.time() * 1000) if now_ms is None else now_ms
        current = now - now % forecast.INTERVAL_MS
        tries = 120 if force else 1
        for attempt in range(tries):
            if attempt:
                await asyncio.sleep(0.5)
            async with self.db.tenant(tenant) as conn:
                if not await conn.fetchval(query("forecast_lock"), tenant):
                    continue  # another process refreshes it now
                if not force:
                    made = await conn.fetchval(query("forecast_made"), tenant, _dt(current))
                    if made is not None and made.timestamp() > time.time() - 0.9 * self.every_s:
                        return None
                since = forecast.local_midnight(settings.zone, now) - HISTORY_DAYS * 86_400_000
                rows = await conn.fetch(query("forecast_history"), tenant, _dt(since), _dt(current))
                started = time.monotonic()
                queues = await asyncio.to_thread(plan, rows, settings, now, self.days, self.target_sl)
                await conn.execute(query("forecast_clear"), tenant, _dt(current), _dt(now - RETENTION_DAYS * 86_400_000))
                if queues:
                    await conn.execute(query("forecast_store"), tenant, *_columns(queues))
            log.info("forecast.refreshed", extra={"tenant": tenant, "queues": len(queues),
                                                  "seconds": round(time.monotonic() - started, 3)})
            await self.publish_staffing(tenant, force=True)
            return queues
        if force:
            raise ServiceUnavailable("another process is refreshing this tenant's forecast; retry shortly",
                                     code="forecast_busy")
        return None

    async def publish_staffing(self, tenant: str, *, force: bool = False) -> int:
        """Write the current and next interval's required agents into their live counters; how many queues."""
        now = int(time.time() * 1000)
        current = now - now % forecast.INTERVAL_MS
        if not force and not await self.redis.set(self.keys.staffing_written(tenant, current), "1", nx=True, ex=300):
            return 0
        starts = [current, current + forecast.INTERVAL_MS]
        async with self.db.tenant(tenant) as conn:
            rows = await conn.fetch(query("forecast_at"), tenant, [_dt(ms) for ms in starts])
        if rows:
            pipe = self.redis.pipeline(transaction=False)
            for row in rows:
                key = self.keys.queue_interval(tenant, int(row["start_ms"]), row["queue_id"])
                pipe.hset(key, FORECAST_FIELD, int(row["required_agents"]))
                pipe.expire(key, KEY_TTL_S)
            await pipe.execute()
        return sum(1 for row in rows if int(row["start_ms"]) == current)

    async def _refresh_loop(self) -> None:
        await asyncio.sleep(random.uniform(5, 30))  # let start-up settle; processes start apart
        while True:
            try:
                for tenant in await self.activity.known(ACTIVE_WITHIN_S):
                    try:
                        await self.refresh(tenant)
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:  # noqa: BLE001 - one tenant's failure must not stop the others
                        log.warning("forecast.refresh_failed", extra={"tenant": tenant, "error": f"{type(exc).__name__}: {exc}"})
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis away: try again next round
                log.warning("forecast.round_failed", extra={"error": f"{type(exc).__name__}: {exc}"})
            await asyncio.sleep(self.every_s * random.uniform(0.9, 1.1))

    async def _staffing_loop(self) -> None:
        while True:
            await asyncio.sleep(STAFFING_EVERY_S * random.uniform(0.8, 1.2))
            for tenant in self.activity.recent(3600):
                try:
                    await self.publish_staffing(tenant)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - the overview shows null until the next round
                    log.debug("forecast.staffing_failed", extra={"tenant": tenant, "error": f"{type(exc).__name__}: {exc}"})


def _columns(queues: list[QueueForecast]) -> list[list[Any]]:
    cols: list[list[Any]] = [[], [], [], [], [], [], []]
    for q in queues:
        for point, required in zip(q.points, q.required, strict=True):
            for col, value in zip(cols, (q.queue_id, point.start_ms, round(point.offered, 4), point.aht_s, required,
                                         q.model, q.accuracy), strict=True):
                col.append(value)
    return cols

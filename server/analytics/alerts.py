"""Threshold alerts: the tenant's amber/red levels checked on the live state, raised once and cleared once.

Each server process runs an :class:`AlertEvaluator`. Every ``alerts_every_s`` it takes the
live overview (from the process's latest rendering, :mod:`server.live.renderings`: the read
the hub made for the tenant's boards or a poller's within the last tick, or one read now and
shared with them) of each tenant that changed since it last looked (and of those with calls
waiting, whose ``longest_wait_s`` grows without any event, or with alerts open; and, every
``SWEEP_S``, of every tenant active lately, so a changed threshold takes effect) and
compares each queue with the tenant's ``alerts`` settings: ``longest_wait_s``, ``waiting``
and today's ``abandon_rate`` breach above a level, today's ``service_level`` below it.
Amber and red are separate conditions: a wait that passes both raises amber, then red.

Every process sees the same breaches; one Lua script (``alerts.lua``) turns them into
transitions atomically in Redis, so each breach is raised once and cleared once across
processes, and a slower process's stale read never re-raises a cleared one. The process
whose call made the transition publishes ``{"type": "alert", "kind": "threshold", "state":
"raised"|"cleared", "metric", "queue_id", "level", "value", "threshold", "at"}`` through the
hub and records it in ``anomaly_detection`` (kind ``threshold``; ``cleared_at`` on clear).

Trade-offs, stated plainly: every process reads every busy tenant once per cycle (the
work is repeated, the outcome is not); an alert is pushed before it is stored, so a
PostgreSQL outage loses the record, not the alert.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis

from server.core import background
from server.core.db import Database, query
from server.core.errors import ServiceUnavailable
from server.core.settings_store import SettingsStore
from server.live.keys import Keys
from server.live.state import load_script
from server.live.view import iso_ms

if TYPE_CHECKING:
    from server.live.activity import TenantActivity
    from server.live.hub import Hub

log = logging.getLogger("wallboard.alerts")

LEVELS = ("amber", "red")
SCORE = {"amber": 1, "red": 2}  # stored as anomaly_detection.score
LOWER_IS_WORSE = frozenset({"service_level"})
WATCH_S = 900.0  # tenants that changed this recently are swept every SWEEP_S
SWEEP_S = 15.0
STATE_TTL_S = 7 * 86_400


def queue_values(queue: dict[str, Any]) -> dict[str, float | None]:
    """The figures of an overview queue that alerts watch."""
    return {"longest_wait_s": queue["longest_wait_s"], "waiting": queue["waiting"],
            "service_level": queue["today"]["service_level"], "abandon_rate": queue["today"]["abandon_rate"]}


def breaches(queue: dict[str, Any], alerts: dict[str, dict[str, float]]) -> list[tuple[str, str, float, float]]:
    """(metric, level, value, threshold) of each condition the overview queue breaches.

    Past the threshold, strictly: above it, or below it for ``service_level``. A rate
    without calls (``None``) breaches nothing.
    """
    values = queue_values(queue)
    out = []
    for metric, levels in alerts.items():
        value = values.get(metric)
        if value is None:
            continue
        for level in LEVELS:
            threshold = levels.get(level)
            if threshold is None:
                continue
            if (value < threshold) if metric in LOWER_IS_WORSE else (value > threshold):
                out.append((metric, level, value, threshold))
    return out


class AlertEvaluator:
    """This process's threshold evaluator; owns its loop (``start``/``close``)."""

    def __init__(self, redis: aioredis.Redis, store: SettingsStore, db: Database, keys: Keys,
                 hub: Hub, activity: TenantActivity, *, every_s: float = 1.0,
                 on_alerts: Callable[[str, list[dict[str, Any]]], None] | None = None) -> None:
        self.redis, self.store, self.db, self.keys = redis, store, db, keys
        self.on_alerts = on_alerts  # told of every transition this process made, must not block (alert webhooks)
        self.hub, self.activity, self.every_s = hub, activity, every_s
        self._script = load_script(redis, "alerts")
        self._looked: dict[str, float] = {}  # tenant → time.time() of the last evaluation
        self._watch: set[str] = set()  # tenants with calls waiting or alerts open
        self._open: dict[str, set[str]] = {}  # tenant → its open conditions as this process last saw them
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="alert-evaluator")

    async def close(self) -> None:
        await background.stop([self._task])

    def due(self, now: float) -> set[str]:
        """Tenants to evaluate now: changed since last looked at, watched, or due for the sweep."""
        out = set(self._watch)
        for tenant in [t for t in self._looked if t not in self.activity.changed and t not in self._watch]:
            del self._looked[tenant]  # silent for days: forgotten by the activity too
        for tenant, changed in list(self.activity.changed.items()):
            looked = self._looked.get(tenant, 0.0)
            if changed >= looked or (now - changed < WATCH_S and now - looked >= SWEEP_S):
                out.add(tenant)
        return out

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.every_s)
            for tenant in sorted(self.due(time.time())):
                try:
                    await self.evaluate(tenant)
                except asyncio.CancelledError:
                    raise
                except ServiceUnavailable:
                    pass  # live state being rebuilt, or Redis away: next cycle
                except Exception as exc:  # noqa: BLE001 - one tenant's failure must not stop the others
                    log.warning("alerts.evaluate_failed", extra={"tenant": tenant, "error": f"{type(exc).__name__}: {exc}"})

    async def evaluate(self, tenant: str) -> list[dict[str, Any]]:
        """Check the tenant's live state against its thresholds; push and store the transitions; return them."""
        settings = await self.store.get(tenant)
        # The process's latest rendering (read less than a tick ago, by the hub for its boards or by a
        # poller; else read now and shared with them): no second read and render of a watched tenant.
        rendering = await self.hub.renderings.get(tenant, agents=False)
        now_ms, queues = rendering.snap.now_ms, rendering.queues().data
        # Looked at as of the read: a change after it (seen by another process) keeps the tenant due next cycle.
        self._looked[tenant] = now_ms / 1000
        breached: dict[str, tuple[float, float]] = {}
        for queue in queues:
            for metric, level, value, threshold in breaches(queue, settings.alerts):
                breached[f"{queue['queue_id']}|{metric}|{level}"] = (value, threshold)
        result = await self._transitions(tenant, now_ms, list(breached))
        open_count, changes = int(result[0]), result[1:]
        if open_count or any(q["waiting"] for q in queues):
            self._watch.add(tenant)
        else:
            self._watch.discard(tenant)
        if not changes:
            return []
        values = {q["queue_id"]: queue_values(q) for q in queues}
        alerts = []
        for raw_id, raw_state in zip(changes[::2], changes[1::2], strict=True):
            condition, state = _text(raw_id), _text(raw_state)
            queue_id, metric, level = condition.rsplit("|", 2)
            value, threshold = breached.get(condition) or (values.get(queue_id, {}).get(metric),
                                                           settings.alerts.get(metric, {}).get(level))
            alerts.append({"kind": "threshold", "state": state, "metric": metric, "queue_id": queue_id, "level": level,
                           "value": value, "threshold": threshold, "at": iso_ms(now_ms)})
        for alert in alerts:
            await self.hub.publish_alert(tenant, alert)
        if self.on_alerts is not None:
            self.on_alerts(tenant, alerts)
        try:
            await self._record(tenant, alerts, now_ms)
        except ServiceUnavailable as exc:
            log.warning("alerts.record_failed", extra={"tenant": tenant, "error": exc.message})
        log.info("alerts.changed", extra={"tenant": tenant, "alerts": [(a["queue_id"], a["metric"], a["level"], a["state"])
                                                                        for a in alerts]})
        return alerts

    async def _transitions(self, tenant: str, now_ms: int, breached: list[str]) -> list[Any]:
        """alerts.lua's answer, every condition it touches declared: the breached ones and those open.

        The open ones are those its previous answer left open, as far as this process knows; when
        another process opened one since, the script names them all and this calls once more.
        """
        known = self._open.get(tenant, set())
        for _ in range(3):
            ids = [*breached, *sorted(known.difference(breached))]
            result: list[Any] = await self._script(
                keys=[self.keys.alerts_open(tenant), *(self.keys.alert_condition(tenant, c) for c in ids)],
                args=[now_ms, STATE_TTL_S, len(breached), *ids])
            if int(result[0]) >= 0:
                break
            known = {_text(c) for c in result[1:]}
        else:
            raise ServiceUnavailable("the open alerts kept changing; retry shortly", code="alerts_busy")
        for raw_id, raw_state in zip(result[1::2], result[2::2], strict=True):
            (known.add if _text(raw_state) == "raised" else known.discard)(_text(raw_id))
        if known:
            self._open[tenant] = known
        else:
            self._open.pop(tenant, None)
        return result

    async def _record(self, tenant: str, alerts: list[dict[str, Any]], now_ms: int) -> None:
        at = datetime.fromtimestamp(now_ms / 1000, UTC)
        interval = datetime.fromtimestamp((now_ms - now_ms % 900_000) / 1000, UTC)
        async with self.db.tenant(tenant) as conn:
            for alert in alerts:
                if alert["state"] == "raised":
                    await conn.fetchrow(query("anomaly_insert"), tenant, alert["queue_id"], interval, alert["metric"],
                                        alert["value"], alert["threshold"], SCORE[alert["level"]], "threshold", at)
                else:
                    await conn.fetch(query("anomaly_clear"), tenant, alert["queue_id"], alert["metric"],
                                     SCORE[alert["level"]], at)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

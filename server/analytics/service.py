"""The analytics a server process runs in the background, built and owned as one.

Tenant activity (who changed lately), the forecast refresh and live staffing, the
anomaly checks of closed intervals, the threshold alerts and their webhooks, and the
report scheduler. ``open_services`` builds
an :class:`Analytics` and starts it; ``close_services`` cancels and awaits every task.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import redis.asyncio as aioredis

from server.analytics.alert_hooks import AlertHooks
from server.analytics.alerts import AlertEvaluator
from server.analytics.anomaly import AnomalyDetector
from server.analytics.predictions import Forecaster
from server.analytics.scheduler import Scheduler
from server.analytics.schedules import ScheduleBook
from server.core.outbound import Outbound
from server.live.activity import TenantActivity

if TYPE_CHECKING:
    from server.core.config import Settings
    from server.core.db import Database
    from server.core.settings_store import SettingsStore
    from server.live.hub import Hub
    from server.live.keys import Keys


class Analytics:
    """Activity, forecasts, anomalies and alerts of one process; ``start`` and ``close`` them together."""

    def __init__(self, settings: Settings, db: Database, redis: aioredis.Redis, keys: Keys, store: SettingsStore,
                 hub: Hub, turn: asyncio.Lock) -> None:
        self.activity = TenantActivity(redis, keys)
        self.forecaster = Forecaster(db, redis, keys, store, settings, self.activity, hub.live)
        self.detector = AnomalyDetector(db, redis, keys, store, hub, self.activity)
        self.outbound = Outbound(allow_private=settings.webhook_allow_private, timeout_s=settings.webhook_timeout_s,
                                 per_tenant=settings.webhook_per_tenant, attempts=settings.delivery_attempts,
                                 backoff_s=settings.delivery_backoff_s)
        self.alert_hooks = AlertHooks(db, store, self.outbound)
        self.alerts = AlertEvaluator(redis, store, db, keys, hub, self.activity, every_s=settings.alerts_every_s,
                                     on_alerts=self.alert_hooks.notify)
        self.schedules = ScheduleBook(db, store, settings)
        self.scheduler = Scheduler(settings, db, store, self.outbound, turn)

    def start(self) -> None:
        self.activity.start()
        self.forecaster.start()
        self.detector.start()
        self.alerts.start()
        self.scheduler.start()

    async def close(self) -> None:
        for part in (self.scheduler, self.alerts, self.alert_hooks, self.detector, self.forecaster, self.activity):
            await part.close()
        await self.outbound.close()

"""Alert webhooks: each threshold alert raised or cleared is POSTed to the tenant's ``alert_webhooks``.

The body is JSON with a Slack-compatible ``text`` (a Slack or Teams incoming webhook shows it
as it is) and the alert itself under ``alert``; it is signed like every webhook
(``X-Wallboard-Signature``) with the tenant's alert secret (``webhook_secrets``, made on first
use; ``POST /api/alert-webhooks/secret`` replaces it and shows the new one once).

:meth:`AlertHooks.notify` never waits: it starts one owned task per alert and URL and returns,
so the alert path (and its push to the wallboards) is never slowed by a receiver. Those tasks
retry with back-off through :class:`~server.core.outbound.Outbound`, which bounds each tenant's
deliveries in flight; past ``MAX_PENDING`` deliveries waiting in a process, further ones are
dropped and logged rather than piling up in memory.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any
from urllib.parse import urlsplit

import orjson

from server.core import background
from server.core.db import Database, query
from server.core.outbound import Outbound
from server.core.settings_store import SettingsStore

log = logging.getLogger("wallboard.alert_hooks")

MAX_PENDING = 1000
MARK = {"amber": ":large_orange_circle:", "red": ":red_circle:"}


def text_of(alert: dict[str, Any]) -> str:
    """The alert in one line a chat shows, e.g. ``:red_circle: RED raised: queue sales longest_wait_s 75 (threshold 60)``."""
    level = str(alert.get("level", ""))
    mark = ":white_check_mark:" if alert.get("state") == "cleared" else MARK.get(level, ":warning:")
    value, threshold = alert.get("value"), alert.get("threshold")
    shown = f"{value:g}" if isinstance(value, int | float) else str(value)
    limit = f"{threshold:g}" if isinstance(threshold, int | float) else str(threshold)
    return (f"{mark} {level.upper()} {alert.get('state')}: queue {alert.get('queue_id')} {alert.get('metric')} {shown} "
            f"(threshold {limit}) at {alert.get('at')}")


async def tenant_secret(db: Database, tenant: str, *, replace: bool = False) -> str:
    """The tenant's alert-webhook secret (made on first use); with ``replace``, a new one."""
    fresh = secrets.token_urlsafe(32)
    async with db.tenant(tenant) as conn:
        if replace:
            await conn.execute(query("webhook_secret_put"), tenant, fresh)
            return fresh
        return str(await conn.fetchval(query("webhook_secret_get"), tenant, fresh))


class AlertHooks:
    """Sends this process's alert transitions to the tenants' webhooks; owns the sending tasks."""

    def __init__(self, db: Database, store: SettingsStore, outbound: Outbound) -> None:
        self.db, self.store, self.outbound = db, store, outbound
        self._tasks: set[asyncio.Task[None]] = set()

    def notify(self, tenant: str, alerts: list[dict[str, Any]]) -> None:
        """Queue the alerts for the tenant's webhooks and return at once."""
        if len(self._tasks) >= MAX_PENDING:
            log.warning("alert_hooks.dropped", extra={"tenant": tenant, "alerts": len(alerts)})
            return
        task = asyncio.create_task(self._send(tenant, alerts), name=f"alert-webhooks-{tenant}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        await background.stop(self._tasks)

    async def _send(self, tenant: str, alerts: list[dict[str, Any]]) -> None:
        try:
            urls = (await self.store.get(tenant)).alert_webhooks
            if not urls:
                return
            secret = await tenant_secret(self.db, tenant)
            sends = []
            for alert in alerts:
                body = orjson.dumps({"text": text_of(alert), "tenant": tenant, "alert": alert})
                sends += [self._one(tenant, url, body, secret) for url in urls]
            await asyncio.gather(*sends)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a webhook must never take the alerts down
            log.warning("alert_hooks.failed", extra={"tenant": tenant, "error": f"{type(exc).__name__}: {exc}"})

    async def _one(self, tenant: str, url: str, body: bytes, secret: str) -> None:
        outcome = await self.outbound.post(tenant, url, body, secret, "application/json")
        if not outcome.ok:
            # The host only: a chat webhook's path is its secret.
            log.warning("alert_hooks.undelivered", extra={"tenant": tenant, "host": urlsplit(url).hostname,
                                                          "attempts": outcome.attempts, "error": outcome.error})

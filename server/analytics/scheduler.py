"""The report scheduler: each process looks for due schedules; each due run is taken by one process.

Every ``WALLBOARD_SCHEDULES_POLL_S`` (jittered) a process claims due rows of
``report_schedule_due`` across tenants in one statement (``FOR UPDATE SKIP LOCKED``, and a claim
``LEASE_S`` long that other processes respect), so however many processes run, one of them
runs a due schedule. The run reads the report as CSV in the tenant's own transactions (row-level
security applies), delivers it (a signed webhook POST, or an e-mail with the CSV attached)
with retries and back-off, records the outcome on the schedule (``last_status``, ``last_error``,
``last_attempts``: the console shows them), writes an audit entry, and moves ``next_run_at`` to
the next occurrence after now (runs missed while every process was down are not caught up:
the next one delivers).

Trade-off: the claim is a lease, not a transaction held open across the delivery. A process
that dies mid-run leaves the claim to expire; another process then runs the schedule again,
so a delivery the receiver already got may come twice after a crash (never in normal running).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from datetime import UTC, datetime
from typing import Any

import orjson

from server.analytics.schedules import Cadence, report_scope, scheduler_principal
from server.core import background
from server.core.audit import record
from server.core.config import Settings
from server.core.db import Database, query
from server.core.errors import ServiceUnavailable, WallboardError
from server.core.mail import send_attachment
from server.core.outbound import Delivery, Outbound, with_retries
from server.core.settings_store import SettingsStore
from server.history.reports import REPORTS, span, stream

log = logging.getLogger("wallboard.scheduler")

LEASE_S = 900  # a claim outlives the longest run: every try's timeout plus the back-off waits
RUNS_PER_PROCESS = 4  # schedules one process runs at once
MAX_REPORT_BYTES = 25 * 1024 * 1024  # a scheduled CSV larger than this is not sent (export it instead)


class Scheduler:
    """This process's share of the report schedules; owns its loop and its runs (``start``/``close``)."""

    def __init__(self, settings: Settings, db: Database, store: SettingsStore, outbound: Outbound,
                 turn: asyncio.Lock) -> None:
        self.settings, self.db, self.store, self.outbound = settings, db, store, outbound
        self.turn = turn  # the process's exports format in turns (ExportSlots.turn): so do scheduled reports
        self._task: asyncio.Task[None] | None = None
        self._runs: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="report-scheduler")

    async def close(self) -> None:
        await background.stop([self._task, *self._runs])

    async def _loop(self) -> None:
        poll = self.settings.schedules_poll_s
        while True:
            await asyncio.sleep(poll * random.uniform(0.8, 1.2))
            free = RUNS_PER_PROCESS - len(self._runs)
            if free <= 0:
                continue
            try:
                claimed = await self.claim(free)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - PostgreSQL away: look again next time
                log.warning("scheduler.claim_failed", extra={"error": f"{type(exc).__name__}: {exc}"})
                continue
            for tenant, schedule_id, due in claimed:
                task = asyncio.create_task(self._guarded(tenant, schedule_id, due), name=f"report-run-{schedule_id}")
                self._runs.add(task)
                task.add_done_callback(self._runs.discard)

    async def claim(self, most: int) -> list[tuple[str, Any, datetime]]:
        """Take at most ``most`` due schedules of any tenant for this process: (tenant, schedule id, due time)."""
        async with self.db.pool.acquire(timeout=5) as conn:
            rows = await conn.fetch(query("schedule_claim"), most, LEASE_S)
        return [(r["client_id"], r["schedule_id"], r["next_run_at"]) for r in rows]

    async def _guarded(self, tenant: str, schedule_id: Any, due: datetime) -> None:
        try:
            await self.run(tenant, schedule_id, due)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the claim expires and another process tries again
            log.warning("scheduler.run_failed", extra={"tenant": tenant, "schedule": str(schedule_id),
                                                       "error": f"{type(exc).__name__}: {exc}"})

    async def run(self, tenant: str, schedule_id: Any, due: datetime) -> Delivery | None:
        """Run one claimed schedule: render, deliver, record, audit, set its next run. None when it was deleted."""
        settings = await self.store.get(tenant)
        async with self.db.tenant(tenant) as conn:
            row = await conn.fetchrow(query("schedule_get"), tenant, schedule_id)
        if row is None:
            return None
        cadence = Cadence(row["frequency"], row["at_time"], row["weekday"], row["month_day"])
        parameters = orjson.loads(row["parameters"])
        due_ms = int(due.timestamp() * 1000)
        who = scheduler_principal(tenant)
        spec = REPORTS[row["report"]]
        filename, body, refused = f"{row['report']}.csv", None, None
        try:
            scope = report_scope(self.db, who, settings, parameters,
                                 cadence.period(due_ms, settings, parameters.get("period", "previous")),
                                 monthly=self.settings.history_monthly)
            filename = f"{row['report']}_{span(scope)}.csv"
            body = await self._render(scope, spec)
        except ServiceUnavailable:
            raise  # the lease expires; a later look runs it again
        except WallboardError as exc:  # the parameters no longer fit (say, the tenant's zone changed): say so
            refused = exc.message
        destination = orjson.loads(row["destination"])
        if refused is not None:
            outcome = Delivery(ok=False, attempts=0, error=f"the report could not be made: {refused}")
        elif body is None:
            outcome = Delivery(ok=False, attempts=0, error=f"the report is larger than {MAX_REPORT_BYTES} bytes: "
                                                            "narrow its parameters or export it by hand")
        elif destination["type"] == "webhook":
            outcome = await self.outbound.post(tenant, destination["url"], body, row["secret"], "text/csv; charset=utf-8",
                                               {"X-Wallboard-Schedule": str(schedule_id),
                                                "Content-Disposition": f'attachment; filename="{filename}"'})
        else:
            outcome = await self._mail(destination["to"], row["report"], filename, body)
        status = "delivered" if outcome.ok else "failed"
        next_ms = cadence.next_after(max(int(time.time() * 1000), due_ms), settings)
        async with self.db.tenant(tenant) as conn:
            await conn.execute(query("schedule_finish"), tenant, schedule_id, status, outcome.error, outcome.attempts)
            await conn.execute(query("schedule_due_set"), tenant, schedule_id, datetime.fromtimestamp(next_ms / 1000, UTC))
        await record(self.db, who, f"report.{status}", f"/api/report-schedules/{schedule_id}",
                     {"schedule": str(schedule_id), "report": row["report"], "destination": destination["type"],
                      "file": filename, "bytes": len(body or b""), "attempts": outcome.attempts, "error": outcome.error})
        log.info("scheduler.ran", extra={"tenant": tenant, "schedule": str(schedule_id), "status": status,
                                         "attempts": outcome.attempts})
        return outcome

    async def _render(self, scope: Any, spec: Any) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        async for chunk in stream(scope, spec, turn=self.turn):
            size += len(chunk)
            if size > MAX_REPORT_BYTES:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    async def _mail(self, to: str, report: str, filename: str, body: bytes) -> Delivery:
        smtp_url = self.settings.smtp_url
        if smtp_url is None:
            return Delivery(ok=False, attempts=0, error="e-mail delivery is off on this server: set WALLBOARD_SMTP_URL")

        async def attempt() -> Delivery:
            error = await send_attachment(smtp_url, self.settings.smtp_from, to, f"Wallboard report: {filename}",
                                          f"The scheduled report {report} is attached ({filename}).", filename, body,
                                          timeout_s=self.settings.webhook_timeout_s)
            return Delivery(ok=error is None, attempts=1 if error is None else 0, error=error)

        return await with_retries(attempt, self.settings.delivery_attempts, self.settings.delivery_backoff_s)

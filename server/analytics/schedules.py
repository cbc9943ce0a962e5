"""Report schedules: a report with its parameters, delivered every day, week or month at a local time.

Served by ``GET|POST /api/report-schedules`` and ``DELETE /api/report-schedules/{id}`` (admin);
run by :mod:`server.analytics.scheduler`. A schedule is stored in ``report_schedules`` (row-level
security, like every tenant table) with its own signing secret, which the creating request gets
back once and nobody after; ``report_schedule_due`` holds when it runs next.

Times follow the tenant's zone: ``at`` is a local wall time. On a spring-forward day a time in
the gap runs at the same offset as before it (02:30 that does not exist runs at 03:30); on a
fall-back day a repeated time runs at its first occurrence. A run delivers the *previous* whole
period by default (yesterday, the 7 days before the run's day, last month), or with
``parameters.period = "current"`` the current one so far (today, this week, this month).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import orjson

from server.core.auth import Principal, Role
from server.core.config import Settings
from server.core.db import Database, query
from server.core.errors import BadRequest, NotFound
from server.core.mail import ADDRESS
from server.core.outbound import check_url_syntax, resolve
from server.core.settings_store import SettingsStore
from server.core.tenant_settings import TenantSettings
from server.history.figures import Scope
from server.history.period import iso, parse
from server.history.reports import REPORTS

FREQUENCIES = ("daily", "weekly", "monthly")
PERIODS = ("previous", "current")
FIELDS = ("report", "parameters", "frequency", "at", "weekday", "month_day", "destination")
PARAMETERS = ("queue_id", "agent_id", "team", "granularity", "period")
MAX_BODY = 16 * 1024


def _bad(field: str, reason: str) -> BadRequest:
    return BadRequest(f"{field}: {reason}", code="invalid_schedule", details={"field": field, "reason": reason})


@dataclass(frozen=True)
class Cadence:
    """When a schedule runs: ``frequency``, the local ``at`` (seconds into the day), and the day of it."""

    frequency: str
    at: str
    weekday: int | None = None  # 1 = Monday … 7 = Sunday (weekly)
    month_day: int | None = None  # 1..28 (monthly)

    @property
    def seconds(self) -> tuple[int, int, int]:
        parts = [int(p) for p in self.at.split(":")]
        return parts[0], parts[1], parts[2] if len(parts) > 2 else 0

    def matches(self, day: date) -> bool:
        if self.frequency == "weekly":
            return day.isoweekday() == self.weekday
        if self.frequency == "monthly":
            return day.day == self.month_day
        return True

    def next_after(self, after_ms: int, settings: TenantSettings) -> int:
        """Epoch ms of the first run strictly after ``after_ms``, in the tenant's zone."""
        zone = settings.zone
        first = datetime.fromtimestamp(after_ms / 1000, zone).date() - timedelta(days=1)
        hour, minute, second = self.seconds
        for offset in range(0, 70):
            day = first + timedelta(days=offset)
            if not self.matches(day):
                continue
            ms = int(datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=zone).timestamp() * 1000)
            if ms > after_ms:
                return ms
        raise AssertionError("every cadence has a run within 70 days")

    def period(self, run_ms: int, settings: TenantSettings, which: str) -> tuple[str, str]:
        """(from, to) tenant days, both inclusive, of the report a run at ``run_ms`` delivers."""
        day = date.fromisoformat(settings.local_day(run_ms))
        if which == "current":
            start = {"daily": day, "weekly": day - timedelta(days=day.weekday()), "monthly": day.replace(day=1)}[self.frequency]
            return start.isoformat(), day.isoformat()
        if self.frequency == "daily":
            start = end = day - timedelta(days=1)
        elif self.frequency == "weekly":
            start, end = day - timedelta(days=7), day - timedelta(days=1)
        else:
            end = day.replace(day=1) - timedelta(days=1)
            start = end.replace(day=1)
        return start.isoformat(), end.isoformat()


def report_scope(db: Database, who: Principal, settings: TenantSettings, parameters: dict[str, str], span: tuple[str, str],
                 *, monthly: bool) -> Scope:
    """The history scope a run (or the check of a new schedule) reads the report with."""
    params = {k: v for k, v in parameters.items() if k not in ("period",)}
    params.update({"from": span[0], "to": span[1]})
    params.setdefault("granularity", "day")
    period = parse(params, settings, int(time.time() * 1000))
    return Scope(db, params, who, settings, period, monthly=monthly)


def validate(body: Any, settings: Settings, tenant_settings: TenantSettings, db: Database, who: Principal) -> dict[str, Any]:
    """The schedule a POST body describes, every field checked; BadRequest names the first bad one."""
    if not isinstance(body, dict):
        raise BadRequest("expected a JSON object describing the schedule", code="expected_object")
    for key in body:
        if key not in FIELDS:
            raise _bad(str(key)[:64], f"unknown field: expected {', '.join(FIELDS)}")
    report = body.get("report")
    if not isinstance(report, str) or report not in REPORTS:
        raise _bad("report", f"expected one of {', '.join(REPORTS)}, got {str(report)[:64]!r}")
    parameters = body.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise _bad("parameters", "expected an object of report parameters")
    for key, value in parameters.items():
        if key not in PARAMETERS:
            raise _bad(f"parameters.{str(key)[:64]}", f"unknown parameter: expected {', '.join(PARAMETERS)}")
        if not isinstance(value, str) or not 0 < len(value) <= 128:
            raise _bad(f"parameters.{key}", "expected text of 1..128 characters")
    if parameters.get("period", "previous") not in PERIODS:
        raise _bad("parameters.period", f"expected {' or '.join(PERIODS)}")
    frequency = body.get("frequency")
    if frequency not in FREQUENCIES:
        raise _bad("frequency", f"expected one of {', '.join(FREQUENCIES)}, got {str(frequency)[:32]!r}")
    at = body.get("at")
    if not isinstance(at, str) or not _valid_time(at):
        raise _bad("at", "expected a local time HH:MM or HH:MM:SS (00:00..23:59:59) in the tenant's time zone")
    weekday = body.get("weekday", 1 if frequency == "weekly" else None)
    if frequency == "weekly" and (type(weekday) is not int or not 1 <= weekday <= 7):
        raise _bad("weekday", "expected a whole number 1 (Monday) .. 7 (Sunday)")
    month_day = body.get("month_day", 1 if frequency == "monthly" else None)
    if frequency == "monthly" and (type(month_day) is not int or not 1 <= month_day <= 28):
        raise _bad("month_day", "expected a whole number 1..28 (every month has it)")
    cadence = Cadence(frequency, at, weekday if frequency == "weekly" else None,
                      month_day if frequency == "monthly" else None)
    try:  # the report parameters as the report route would take them, on the first run's period
        report_scope(db, who, tenant_settings, parameters, cadence.period(int(time.time() * 1000), tenant_settings,
                                                                          parameters.get("period", "previous")),
                     monthly=settings.history_monthly)
    except BadRequest as exc:
        raise _bad("parameters", exc.message) from None
    return {"report": report, "parameters": parameters, "cadence": cadence,
            "destination": _destination(body.get("destination"), settings)}


def _valid_time(at: str) -> bool:
    parts = at.split(":")
    if len(parts) not in (2, 3) or not all(len(p) == 2 and p.isdigit() for p in parts):
        return False
    limits = (23, 59, 59)
    return all(int(p) <= high for p, high in zip(parts, limits, strict=False))


def _destination(dest: Any, settings: Settings) -> dict[str, str]:
    if not isinstance(dest, dict) or dest.get("type") not in ("webhook", "email"):
        raise _bad("destination", 'expected {"type": "webhook", "url": …} or {"type": "email", "to": …}')
    if dest["type"] == "webhook":
        if set(dest) - {"type", "url"}:
            raise _bad("destination", "a webhook destination has type and url only")
        return {"type": "webhook", "url": check_url_syntax("destination.url", dest.get("url"))}
    if set(dest) - {"type", "to"}:
        raise _bad("destination", "an e-mail destination has type and to only")
    to = dest.get("to")
    if not isinstance(to, str) or not ADDRESS.fullmatch(to):
        raise _bad("destination.to", "expected one e-mail address such as ops@example.com")
    if settings.smtp_url is None:
        raise _bad("destination.type", "e-mail delivery is off on this server: set WALLBOARD_SMTP_URL, or use a webhook")
    return {"type": "email", "to": to}


def as_json(row: asyncpg.Record) -> dict[str, Any]:
    """A schedule as the API shows it (never its secret); ``last_status`` is ``running`` while a process holds it."""
    running = row["claimed_until"] is not None and row["claimed_until"].timestamp() > time.time()
    return {"id": str(row["schedule_id"]), "report": row["report"], "parameters": orjson.loads(row["parameters"]),
            "frequency": row["frequency"], "at": row["at_time"], "weekday": row["weekday"], "month_day": row["month_day"],
            "destination": orjson.loads(row["destination"]), "created_by": row["created_by"],
            "created_at": _iso(row["created_at"]), "next_run_at": _iso(row["next_run_at"]),
            "last_run_at": _iso(row["last_run_at"]), "last_status": "running" if running else row["last_status"],
            "last_error": row["last_error"], "last_attempts": row["last_attempts"]}


def _iso(value: datetime | None) -> str | None:
    return None if value is None else iso(int(value.timestamp() * 1000))


def schedule_id(raw: str) -> UUID:
    try:
        return UUID(raw)
    except ValueError:
        raise NotFound(f"no schedule {raw[:64]!r}: expected the id of one of GET /api/report-schedules",
                       code="unknown_schedule") from None


class ScheduleBook:
    """The tenant's schedules in PostgreSQL: list, create (with its secret), delete, run now."""

    def __init__(self, db: Database, store: SettingsStore, settings: Settings) -> None:
        self.db, self.store, self.settings = db, store, settings

    async def list(self, tenant: str) -> list[dict[str, Any]]:
        async with self.db.tenant(tenant) as conn:
            return [as_json(r) for r in await conn.fetch(query("schedule_list"), tenant)]

    async def create(self, who: Principal, body: Any) -> dict[str, Any]:
        """Store a validated schedule and its first run; the answer carries the secret, this once."""
        tenant_settings = await self.store.get(who.tenant)
        spec = validate(body, self.settings, tenant_settings, self.db, who)
        if spec["destination"]["type"] == "webhook":
            await resolve("destination.url", spec["destination"]["url"], allow_private=self.settings.webhook_allow_private)
        cadence: Cadence = spec["cadence"]
        secret = secrets.token_urlsafe(32)
        first = cadence.next_after(int(time.time() * 1000), tenant_settings)
        async with self.db.tenant(who.tenant) as conn:
            count = await conn.fetchval(query("schedule_count"), who.tenant)
            if count >= self.settings.schedules_max_per_tenant:
                raise BadRequest(f"the tenant has {count} schedules, the most this server keeps: delete one first",
                                 code="too_many_schedules")
            row = await conn.fetchrow(query("schedule_insert"), who.tenant, spec["report"],
                                      orjson.dumps(spec["parameters"]).decode(), cadence.frequency, cadence.at,
                                      cadence.weekday, cadence.month_day, orjson.dumps(spec["destination"]).decode(),
                                      secret, who.sub or "")
            await conn.execute(query("schedule_due_set"), who.tenant, row["schedule_id"],
                               datetime.fromtimestamp(first / 1000, UTC))
            listed = [r for r in await conn.fetch(query("schedule_list"), who.tenant)
                      if r["schedule_id"] == row["schedule_id"]]
        return {**as_json(listed[0]), "secret": secret}

    async def delete(self, tenant: str, raw_id: str) -> None:
        async with self.db.tenant(tenant) as conn:
            if await conn.fetchval(query("schedule_delete"), tenant, schedule_id(raw_id)) is None:
                raise schedule_missing(raw_id)

    async def run_now(self, tenant: str, raw_id: str) -> None:
        async with self.db.tenant(tenant) as conn:
            if await conn.fetchval(query("schedule_run_now"), tenant, schedule_id(raw_id)) is None:
                raise schedule_missing(raw_id)


def schedule_missing(raw_id: str) -> NotFound:
    return NotFound(f"no schedule {raw_id[:64]!r} in this tenant: expected the id of one of GET /api/report-schedules",
                    code="unknown_schedule")


def scheduler_principal(tenant: str) -> Principal:
    """Who a scheduled run reads as (and is audited as): the tenant's admin, subject ``scheduler``."""
    return Principal(tenant=tenant, role=Role.ADMIN, sub="scheduler", exp=float("inf"))

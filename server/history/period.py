"""The time range and buckets of a history query, in the tenant's own calendar.

``from`` and ``to`` are ISO dates (tenant days: ``to`` is inclusive) or ISO times (with an offset
or ``Z``; without one, tenant wall time; ``to`` exclusive). Times are taken to the 15-minute grid
the rollups are kept on (``from`` down, ``to`` up). Buckets follow the tenant's calendar: an hour,
a day starting at ``day_starts_at`` in its time zone (23 or 25 hours across DST), an ISO week
(Monday), a month. Their boundaries are computed here and handed to SQL as one array, so SQL
groups rows with ``width_bucket`` and never re-derives a calendar.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from server.core.errors import BadRequest
from server.core.tenant_settings import TenantSettings

GRID_MS = 900_000
GRANULARITIES = ("15m", "hour", "day", "week", "month")
# The longest range each granularity answers (days): enough buckets for a chart, never millions.
MAX_DAYS = {"15m": 31, "hour": 92, "day": 1098, "week": 3653, "month": 7305}
EARLIEST = date(2000, 1, 1)
DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
MAX_LIMIT = 10_000


def bad(parameter: str, reason: str) -> BadRequest:
    """400 naming the query parameter and what was expected of it."""
    return BadRequest(f"{parameter}: {reason}", code="invalid_parameter",
                      details={"parameter": parameter, "reason": reason})


def limit(params: Any, default: int = MAX_LIMIT) -> int:
    """The ``limit`` query parameter: a whole number from 1 to MAX_LIMIT."""
    raw = params.get("limit")
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise bad("limit", f'"{raw[:32]}" is not a whole number from 1 to {MAX_LIMIT}')
    return int(raw)


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Period:
    """``[start_ms, end_ms)`` split into buckets; ``bounds`` = every bucket start, then ``end_ms``."""

    start_ms: int
    end_ms: int
    granularity: str
    bounds: tuple[int, ...]
    days: tuple[date, ...] | None = None  # the bounds as tenant days, when every bound is a day start

    @property
    def params(self) -> list[datetime] | list[date]:
        """The bounds as SQL gets them: tenant days for the daily rollups, else instants."""
        return list(self.days) if self.days is not None else self.bounds_dt

    @property
    def bounds_dt(self) -> list[datetime]:
        return [datetime.fromtimestamp(ms / 1000, UTC) for ms in self.bounds]

    def month_span(self, *, ends_only: bool) -> tuple[date, date] | None:
        """``[first, stop)``: the whole tenant months of the period, as their first days, when there are any
        and no bucket bound cuts one (every bound between them is a month's first day; with ``ends_only``,
        for a query that sums the whole period, only its ends count). None otherwise."""
        if self.days is None:
            return None
        first, last = self.days[0], self.days[-1]
        lo = first if first.day == 1 else (first.replace(day=1) + timedelta(days=32)).replace(day=1)
        hi = last.replace(day=1)
        if lo >= hi or (not ends_only and any(lo < d < hi and d.day != 1 for d in self.days)):
            return None
        return lo, hi

    def bucket(self, i: int) -> dict[str, Any]:
        """The ``i``-th bucket (1-based, as ``width_bucket`` numbers them) as the API shows it."""
        return {"start": iso(self.bounds[i - 1]), "end": iso(self.bounds[i])}

    def describe(self) -> dict[str, Any]:
        return {"from": iso(self.start_ms), "to": iso(self.end_ms), "granularity": self.granularity}


def parse(params: Any, settings: TenantSettings, now_ms: int, *, granularity: str | None = None) -> Period:
    """The period of a request's ``from``, ``to`` and ``granularity``: today so far when absent."""
    today_start, today_end = settings.day_bounds(settings.local_day(now_ms))
    start = _instant("from", params.get("from"), settings, end=False) if params.get("from") else today_start
    end = _instant("to", params.get("to"), settings, end=True) if params.get("to") else max(
        today_end if not params.get("from") else _ceil(now_ms), start + GRID_MS)
    if start >= end:
        raise bad("from", f"{iso(start)} is not before to {iso(end)}: expected from < to")
    chosen = params.get("granularity") or granularity or _default(end - start)
    if chosen not in GRANULARITIES:
        raise bad("granularity", f'"{chosen}" is not one of {", ".join(GRANULARITIES)}')
    days = (end - start) / 86_400_000
    if days > MAX_DAYS[chosen]:
        raise bad("to", f"a range of {days:.0f} days is too long for granularity {chosen}: at most "
                        f"{MAX_DAYS[chosen]} days; choose a coarser granularity or a shorter range")
    inner = sorted(ms for ms in _starts(chosen, start, end, settings) if start < ms < end)
    bounds = (start, *inner, end)
    return Period(start, end, chosen, bounds, _as_days(bounds, settings) if chosen in ("day", "week", "month") else None)


def _as_days(bounds: tuple[int, ...], settings: TenantSettings) -> tuple[date, ...] | None:
    """Each bound's tenant day when every bound is the start of one, else None."""
    days = []
    for ms in bounds:
        day = settings.local_day(ms)
        if settings.day_bounds(day)[0] != ms:
            return None
        days.append(date.fromisoformat(day))
    return tuple(days)


def _default(span_ms: int) -> str:
    days = span_ms / 86_400_000
    return "hour" if days <= 2 else "day" if days <= 92 else "week" if days <= 731 else "month"


def _ceil(ms: int) -> int:
    return -(-ms // GRID_MS) * GRID_MS


def _instant(name: str, raw: str, settings: TenantSettings, *, end: bool) -> int:
    """Epoch ms of a ``from``/``to`` value on the 15-minute grid."""
    raw = raw.strip()
    if DATE_RE.fullmatch(raw):
        try:
            day = date.fromisoformat(raw)
        except ValueError:
            raise bad(name, f'"{raw}" is not a calendar date: expected YYYY-MM-DD') from None
        _check_year(name, day)
        start, stop = settings.day_bounds(day.isoformat())
        return stop if end else start
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00").replace(" ", "+", 1) if "T" in raw else raw)
    except ValueError:
        raise bad(name, f'"{raw[:64]}" is not an ISO-8601 date or time: expected e.g. 2026-11-25 or '
                        f"2026-11-25T08:00:00Z") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=settings.zone)
    _check_year(name, when.date())
    ms = int(when.timestamp() * 1000)
    return _ceil(ms) if end else ms - ms % GRID_MS


def _check_year(name: str, day: date) -> None:
    if not EARLIEST <= day <= date(2100, 1, 1):
        raise bad(name, f"{day.isoformat()} is outside the years history keeps: expected 2000-01-01 to 2100-01-01")


def _starts(granularity: str, start: int, end: int, settings: TenantSettings) -> list[int]:
    """Natural bucket starts of the granularity from before ``start`` to ``end``."""
    if granularity == "15m":
        return list(range(start - start % GRID_MS, end, GRID_MS))
    if granularity == "hour":
        zone = settings.zone
        return [ms for ms in range(start - start % GRID_MS, end, GRID_MS)
                if datetime.fromtimestamp(ms / 1000, zone).minute == 0]
    first = date.fromisoformat(settings.local_day(start))
    last = date.fromisoformat(settings.local_day(end - 1))
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    if granularity == "week":
        days = [d for d in days if d.weekday() == 0]
    elif granularity == "month":
        days = [d for d in days if d.day == 1]
    return [settings.day_bounds(d.isoformat())[0] for d in days]

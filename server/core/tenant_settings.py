"""A tenant's own settings: time zone and day start, service-level rules, alert thresholds, costs.

Stored as validated JSON in ``tenants.settings`` and served by ``GET|PUT /api/settings`` (role
``admin``). :class:`TenantSettings` also owns the tenant's calendar (METRICS.md: every event
counts on the tenant-local day and 15-minute interval of its ``ts``; the day begins at
``day_starts_at`` in ``timezone``), so live state and history cut days the same way.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from server.core.errors import BadRequest
from server.core.outbound import check_url_syntax

SETTING_KEYS = ("timezone", "day_starts_at", "sl_threshold_s", "short_abandon_s", "sl_formula",
                "queues", "alerts", "costs", "ingest_window_days", "alert_webhooks", "raw_event_retention_days",
                "history_retention_days")
SL_FORMULAS = ("answered_plus_abandoned", "answered_only", "all_abandons", "abandons_within_met")
QUEUE_KEYS = ("sl_threshold_s", "short_abandon_s", "sl_formula")
COST_KEYS = ("agent_cost_per_hour", "telephony_cost_per_minute")
DEFAULT_ALERTS: dict[str, dict[str, float]] = {
    "longest_wait_s": {"amber": 30, "red": 60},
    "service_level": {"amber": 0.85, "red": 0.8},  # lower is worse: amber >= red
    "abandon_rate": {"amber": 0.05, "red": 0.1},
    "waiting": {"amber": 5, "red": 10},
}
ALERT_RANGES: dict[str, tuple[float, float]] = {
    "longest_wait_s": (0, 86_400), "service_level": (0, 1), "abandon_rate": (0, 1), "waiting": (0, 1_000_000),
}
DEFAULT_COSTS: dict[str, Any] = {"agent_cost_per_hour": 0, "telephony_cost_per_minute": 0, "currency": "USD", "queues": {}}
MAX_QUEUES = 10_000
MAX_BODY = 1024 * 1024
MAX_DEPTH = 4  # costs.queues.<id>.<key> is the deepest setting
MAX_ALERT_WEBHOOKS = 10
MAX_WINDOW_DAYS = 400  # each day of the ingest window may become a partition of `events`
# Retention bounds in days; sql/010_retention.sql floors what it is given at the same minimums.
RETENTION_DAYS = {"raw_event_retention_days": (7, 3650), "history_retention_days": (31, 3650)}
HHMM = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")
CURRENCY = re.compile(r"[A-Z]{3}")


@dataclass(frozen=True)
class QueueSettings:
    """The service-level rules of one queue: its override, else the tenant's."""

    sl_threshold_s: float
    short_abandon_s: float
    sl_formula: str


@dataclass(frozen=True)
class TenantSettings:
    """One tenant's validated settings. Build changed ones with :func:`validate`, never by mutating the dicts."""

    timezone: str = "UTC"
    day_starts_at: str = "00:00"
    sl_threshold_s: float = 20
    short_abandon_s: float = 5
    sl_formula: str = "answered_plus_abandoned"
    queues: dict[str, dict[str, Any]] = field(default_factory=dict)
    alerts: dict[str, dict[str, float]] = field(default_factory=lambda: copy.deepcopy(DEFAULT_ALERTS))
    costs: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(DEFAULT_COSTS))
    ingest_window_days: int = 35  # events older than this are rejected (ts_out_of_window)
    alert_webhooks: list[str] = field(default_factory=list)  # URLs each alert raised or cleared is POSTed to
    raw_event_retention_days: int = 35  # raw events (and call legs) older than this (or the ingest window) are deleted
    history_retention_days: int = 400  # history rows and rollups older than this are deleted

    def for_queue(self, queue_id: str) -> QueueSettings:
        """The queue's override of each of the three rules, else the tenant default."""
        over = self.queues.get(queue_id, {})
        return QueueSettings(sl_threshold_s=over.get("sl_threshold_s", self.sl_threshold_s),
                             short_abandon_s=over.get("short_abandon_s", self.short_abandon_s),
                             sl_formula=over.get("sl_formula", self.sl_formula))

    def queue_costs(self, queue_id: str) -> tuple[float, float]:
        """(agent cost per hour, telephony cost per minute) of a queue: its override, else the tenant's."""
        over = self.costs.get("queues", {}).get(queue_id, {})
        return (over.get("agent_cost_per_hour", self.costs["agent_cost_per_hour"]),
                over.get("telephony_cost_per_minute", self.costs["telephony_cost_per_minute"]))

    def to_json(self) -> dict[str, Any]:
        """Every setting, defaults included, as a fresh JSON-ready dict (the API and the stored form)."""
        return asdict(self)  # asdict copies the nested dicts too

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TenantSettings:
        """Settings from their stored form: missing keys take defaults, unknown keys are dropped.

        A stored value that no longer validates (say, a zone withdrawn from tzdata) is reset to its
        default rather than failing every request of the tenant until an admin fixes it.
        """
        result = cls()
        for key in SETTING_KEYS:
            if key in data:
                try:
                    result = validate({key: data[key]}, result)
                except BadRequest:
                    pass
        return result

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)  # ZoneInfo caches its instances by key

    @property
    def day_start_minutes(self) -> int:
        hours, minutes = self.day_starts_at.split(":")
        return int(hours) * 60 + int(minutes)

    def local_day(self, ts_ms: int) -> str:
        """``YYYY-MM-DD`` of the tenant day containing ``ts_ms``: local wall time minus the day start, as a date.

        The wall-clock guess is checked against :meth:`day_bounds`, so the two always agree, also when
        the day start falls in a DST gap or in the hour that a fall-back repeats.
        """
        calendar = (self.timezone, self.day_starts_at)
        last = _LAST_DAY.get(calendar)
        if last is not None and last[0] <= ts_ms < last[1]:
            return last[2]  # most calls (every publish, every event) fall on the day asked for last time
        minutes = self.day_start_minutes
        wall = datetime.fromtimestamp(ts_ms // 1000, self.zone).replace(tzinfo=None)
        day = (wall - timedelta(minutes=minutes)).date()
        if ts_ms < _day_start_ms(self.timezone, minutes, day):
            day -= timedelta(days=1)
        elif ts_ms >= _day_start_ms(self.timezone, minutes, day + timedelta(days=1)):
            day += timedelta(days=1)
        found = day.isoformat()
        if len(_LAST_DAY) >= 4096:
            _LAST_DAY.clear()
        _LAST_DAY[calendar] = (_day_start_ms(self.timezone, minutes, day),
                               _day_start_ms(self.timezone, minutes, day + timedelta(days=1)), found)
        return found

    def day_bounds(self, day: str) -> tuple[int, int]:
        """Epoch ms of the start and (exclusive) end of a tenant day; DST days last 23 or 25 hours."""
        try:
            first = date.fromisoformat(day)
        except ValueError:
            raise BadRequest(f'day: expected YYYY-MM-DD, got "{day}"', code="invalid_day") from None
        return (_day_start_ms(self.timezone, self.day_start_minutes, first),
                _day_start_ms(self.timezone, self.day_start_minutes, first + timedelta(days=1)))

    def interval_start(self, ts_ms: int, minutes: int = 15) -> int:
        """Epoch ms of the start of the local ``minutes``-long interval containing ``ts_ms``."""
        step = minutes * 60_000
        if minutes <= 0 or 1440 % minutes:
            raise ValueError(f"interval of {minutes} minutes: expected a divisor of 1440")
        if 900_000 % step == 0:
            # Every UTC offset in use today is a whole multiple of 15 minutes (+05:45, +12:45, -03:30),
            # so a local grid of 15 minutes (or a divisor of it) is the UTC grid: no zone lookup.
            return ts_ms - ts_ms % step
        offset = datetime.fromtimestamp(ts_ms // 1000, self.zone).utcoffset() or timedelta(0)
        off_ms = int(offset.total_seconds() * 1000)
        local = ts_ms + off_ms
        return local - local % step - off_ms


# (time zone, day start) → (start ms, end ms, day) of the last tenant day local_day found for that calendar.
_LAST_DAY: dict[tuple[str, str], tuple[int, int, str]] = {}


@lru_cache(maxsize=4096)
def _day_start_ms(timezone: str, minutes: int, day: date) -> int:
    """The first instant whose local wall clock reads ``day`` + ``minutes`` or later.

    Usually that wall time itself; when it is repeated (fall-back), its first occurrence; when it
    does not exist (spring-forward gap), the transition instant, found by bisection over seconds.
    """
    zone = ZoneInfo(timezone)
    wall = datetime(day.year, day.month, day.day) + timedelta(minutes=minutes)
    early = int(wall.replace(tzinfo=zone, fold=0).timestamp())
    late = int(wall.replace(tzinfo=zone, fold=1).timestamp())
    if early <= late:
        return early * 1000
    low, high = late, early  # in a gap: the clock reads before `wall` at `low`, after it at `high`
    while high - low > 1:
        mid = (low + high) // 2
        if datetime.fromtimestamp(mid, zone).replace(tzinfo=None) >= wall:
            high = mid
        else:
            low = mid
    return high * 1000


def _bad(path: str, reason: str) -> BadRequest:
    return BadRequest(f"{path}: {reason}", code="invalid_setting", details={"field": path, "reason": reason})


def _show(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()[:80]
    except orjson.JSONEncodeError:  # nested too deep to write back, or not JSON at all
        return "an object" if isinstance(value, dict) else "a list" if isinstance(value, list) else type(value).__name__


def _too_deep(value: Any, limit: int) -> bool:
    """True when ``value`` nests objects or lists more than ``limit`` levels (iterative: any depth is safe)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth >= limit:
                return True
            stack.extend((inner, depth + 1) for inner in (item.values() if isinstance(item, dict) else item))
    return False


def _number(path: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or not low <= value <= high:
        raise _bad(path, f"expected a number {_show(low)}..{_show(high)}, got {_show(value)}")
    return value


def _object(path: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad(path, f"expected an object, got {_show(value)}")
    return value


def _merge(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """``current`` updated by ``patch``: objects merge per key, null removes the key."""
    merged = dict(current)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict):
            merged[key] = _merge(merged[key] if isinstance(merged.get(key), dict) else {}, value)
        else:
            merged[key] = value
    return merged


def _queue_ids(path: str, value: Any) -> dict[str, Any]:
    found = _object(path, value)
    if len(found) > MAX_QUEUES:
        raise _bad(path, f"at most {MAX_QUEUES} queues, got {len(found)}")
    for queue_id, over in found.items():
        if not 1 <= len(queue_id) <= 128:
            raise _bad(f"{path}.{queue_id[:40]}", "a queue id must have 1..128 characters")
        _object(f"{path}.{queue_id}", over)
    return found


def _check_rules(prefix: str, over: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """Check service-level rules or costs (of the tenant, or one queue's override); return them."""
    for key, value in over.items():
        where = prefix + key
        if key not in keys:
            raise _bad(where, f'unknown setting "{key}": expected one of {", ".join(keys)}')
        if key == "sl_threshold_s":
            _number(where, value, 1, 3600)
        elif key == "short_abandon_s":
            _number(where, value, 0, 3600)
        elif key == "sl_formula" and value not in SL_FORMULAS:
            raise _bad(where, f"expected one of {', '.join(SL_FORMULAS)}, got {_show(value)}")
        elif key in COST_KEYS:
            _number(where, value, 0, 1_000_000)
    return over


def validate(patch: dict[str, Any], current: TenantSettings) -> TenantSettings:
    """``current`` with a partial update applied, every value checked; BadRequest names the first bad field.

    Keys absent from ``patch`` keep their value; ``queues``, ``alerts`` and ``costs`` merge per key
    (and per field within a queue). Null removes: a queue override or one of its fields (the queue
    then follows the tenant), any other setting (it returns to its default).
    """
    if not isinstance(patch, dict):
        raise BadRequest(f"expected a JSON object of settings, got {_show(patch)}", code="expected_object")
    for key in patch:
        if key not in SETTING_KEYS:
            raise BadRequest(f'unknown setting "{key}": expected one of {", ".join(SETTING_KEYS)}',
                             code="invalid_setting", details={"field": key, "reason": "unknown setting"})
    for key, value in patch.items():
        if _too_deep(value, MAX_DEPTH - 1):
            raise _bad(key, f"nested deeper than any setting ({MAX_DEPTH} levels)")
    for key in ("queues", "alerts", "costs"):
        if patch.get(key) is not None:
            _object(key, patch[key])
    s = _merge(TenantSettings().to_json(), _merge(current.to_json(), patch))  # a removed key takes its default

    tz = s.get("timezone")
    try:
        if not isinstance(tz, str) or not 0 < len(tz) <= 64:
            raise ValueError
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise _bad("timezone", f"{_show(tz)} is not an IANA time zone (e.g. Europe/Berlin, UTC)") from None
    if not isinstance(s.get("day_starts_at"), str) or not HHMM.fullmatch(s["day_starts_at"]):
        raise _bad("day_starts_at", f"expected HH:MM (00:00..23:59), got {_show(s.get('day_starts_at'))}")
    _check_rules("", {key: s.get(key) for key in QUEUE_KEYS}, QUEUE_KEYS)
    queues = {qid: _check_rules(f"queues.{qid}.", over, QUEUE_KEYS)
              for qid, over in _queue_ids("queues", s.get("queues")).items() if over}

    alerts = _object("alerts", s.get("alerts"))
    for metric, levels in alerts.items():
        if metric not in DEFAULT_ALERTS:
            raise _bad(f"alerts.{metric}", f'unknown alert "{metric}": expected one of {", ".join(DEFAULT_ALERTS)}')
        low, high = ALERT_RANGES[metric]
        levels = _object(f"alerts.{metric}", levels)
        for level in levels:
            if level not in ("amber", "red"):
                raise _bad(f"alerts.{metric}.{level}", f'unknown level "{level}": expected amber and red')
        amber = _number(f"alerts.{metric}.amber", levels.get("amber"), low, high)
        red = _number(f"alerts.{metric}.red", levels.get("red"), low, high)
        if metric == "service_level" and amber < red:
            raise _bad(f"alerts.{metric}", f"amber ({_show(amber)}) must be >= red ({_show(red)}): a lower service level is worse")
        if metric != "service_level" and amber > red:
            raise _bad(f"alerts.{metric}", f"amber ({_show(amber)}) must be <= red ({_show(red)}): a higher value is worse")

    costs = _object("costs", s.get("costs"))
    for key in costs:
        if key not in (*COST_KEYS, "currency", "queues"):
            raise _bad(f"costs.{key}", f'unknown setting "{key}": expected {", ".join(DEFAULT_COSTS)}')
    _check_rules("costs.", {key: costs.get(key) for key in COST_KEYS}, COST_KEYS)
    if not isinstance(costs.get("currency"), str) or not CURRENCY.fullmatch(costs["currency"]):
        raise _bad("costs.currency", f"expected an ISO 4217 code such as USD, got {_show(costs.get('currency'))}")
    costs["queues"] = {qid: _check_rules(f"costs.queues.{qid}.", over, COST_KEYS)
                       for qid, over in _queue_ids("costs.queues", costs.get("queues", {})).items() if over}

    window = s.get("ingest_window_days")
    if type(window) is not int or not 1 <= window <= MAX_WINDOW_DAYS:
        raise _bad("ingest_window_days", f"expected a whole number of days 1..{MAX_WINDOW_DAYS}, got {_show(window)}")
    for key, (low, high) in RETENTION_DAYS.items():
        if type(s.get(key)) is not int or not low <= s[key] <= high:
            raise _bad(key, f"expected a whole number of days {low}..{high}, got {_show(s.get(key))}")

    hooks = s.get("alert_webhooks")
    if not isinstance(hooks, list) or len(hooks) > MAX_ALERT_WEBHOOKS:
        raise _bad("alert_webhooks", f"expected a list of at most {MAX_ALERT_WEBHOOKS} http(s) URLs")
    hooks = [check_url_syntax(f"alert_webhooks.{i}", url) for i, url in enumerate(hooks)]

    return TenantSettings(timezone=tz, day_starts_at=s["day_starts_at"], sl_threshold_s=s["sl_threshold_s"],
                          short_abandon_s=s["short_abandon_s"], sl_formula=s["sl_formula"], queues=queues,
                          alerts=alerts, costs=costs, ingest_window_days=window, alert_webhooks=hooks,
                          raw_event_retention_days=s["raw_event_retention_days"],
                          history_retention_days=s["history_retention_days"])

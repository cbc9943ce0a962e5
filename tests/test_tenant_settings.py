"""Tenant settings: validation, the tenant calendar, the store (real PostgreSQL, RLS) and /api/settings."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import secrets
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest

from server.api.context import Services
from server.app import create_app
from server.core.config import Settings
from server.core.db import Database
from server.core.errors import BadRequest
from server.core.settings_store import SettingsStore
from server.core.tenant_settings import TenantSettings, validate

from .conftest import RunningServer

# The HTTP tests need Services.settings_store and tenant_settings.routes mounted by create_app.
needs_wiring = pytest.mark.skipif(
    "settings_store" not in {f.name for f in dataclasses.fields(Services)}
    or not any(getattr(route, "path", None) == "/api/settings" for route in create_app(Settings()).routes),
    reason="create_app does not mount tenant_settings.routes (or Services lacks settings_store) yet",
)


def ms(text: str) -> int:
    """Epoch ms of an ISO-8601 time with offset."""
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def tenant() -> str:
    return f"ts-{secrets.token_hex(4)}"


def bad(patch: dict[str, Any], current: TenantSettings | None = None) -> BadRequest:
    with pytest.raises(BadRequest) as info:
        validate(patch, current or TenantSettings())
    assert info.value.code == "invalid_setting"
    return info.value


# --- validate --------------------------------------------------------------------------------

def test_defaults_follow_metrics_md() -> None:
    """With nothing stored, the settings are METRICS.md's defaults."""
    s = TenantSettings()
    assert (s.timezone, s.day_starts_at, s.sl_threshold_s, s.short_abandon_s, s.sl_formula) == \
        ("UTC", "00:00", 20, 5, "answered_plus_abandoned")
    assert s.alerts["service_level"] == {"amber": 0.85, "red": 0.8}
    assert s.costs == {"agent_cost_per_hour": 0, "telephony_cost_per_minute": 0, "currency": "USD", "queues": {}}
    assert TenantSettings.from_json(s.to_json()) == s


def test_partial_update_keeps_absent_keys_and_merges_maps() -> None:
    """A patch changes only its keys; queues, alerts and costs merge per key."""
    first = validate({"timezone": "Europe/Berlin", "queues": {"sales": {"sl_threshold_s": 30}},
                      "costs": {"queues": {"sales": {"agent_cost_per_hour": 25}}}}, TenantSettings())
    second = validate({"queues": {"support": {"sl_formula": "answered_only"}},
                       "alerts": {"waiting": {"amber": 3}}, "costs": {"currency": "EUR"}}, first)
    assert second.timezone == "Europe/Berlin"
    assert second.queues == {"sales": {"sl_threshold_s": 30}, "support": {"sl_formula": "answered_only"}}
    assert second.alerts["waiting"] == {"amber": 3, "red": 10}
    assert second.costs["currency"] == "EUR"
    assert second.queue_costs("sales") == (25, 0) and second.queue_costs("other") == (0, 0)


def test_for_queue_uses_override_else_tenant_default() -> None:
    """for_queue takes each rule from the queue's override, else from the tenant."""
    s = validate({"sl_threshold_s": 15, "queues": {"vip": {"sl_threshold_s": 10, "short_abandon_s": 3}}},
                 TenantSettings())
    vip, other = s.for_queue("vip"), s.for_queue("other")
    assert (vip.sl_threshold_s, vip.short_abandon_s, vip.sl_formula) == (10, 3, "answered_plus_abandoned")
    assert (other.sl_threshold_s, other.short_abandon_s) == (15, 5)


def test_null_removes_queue_override_and_resets_setting() -> None:
    """Null removes a queue override (or one field of it) and resets other settings to default."""
    s = validate({"timezone": "Asia/Tokyo", "queues": {"a": {"sl_threshold_s": 9, "short_abandon_s": 2},
                                                       "b": {"sl_threshold_s": 7}}}, TenantSettings())
    s = validate({"timezone": None, "queues": {"a": {"short_abandon_s": None}, "b": None}}, s)
    assert s.timezone == "UTC"
    assert s.queues == {"a": {"sl_threshold_s": 9}}


@pytest.mark.parametrize(("patch", "field", "words"), [
    ({"timezone": "Mars/Base"}, "timezone", '"Mars/Base" is not an IANA time zone'),
    ({"timezone": "../etc/passwd"}, "timezone", "is not an IANA time zone"),
    ({"day_starts_at": "6:00"}, "day_starts_at", "expected HH:MM"),
    ({"sl_threshold_s": 0}, "sl_threshold_s", "expected a number 1..3600"),
    ({"sl_threshold_s": True}, "sl_threshold_s", "expected a number 1..3600"),
    ({"short_abandon_s": "5"}, "short_abandon_s", "expected a number 0..3600"),
    ({"sl_formula": "magic"}, "sl_formula", "expected one of answered_plus_abandoned"),
    ({"queues": {"q": {"sl_threshold_s": 5000}}}, "queues.q.sl_threshold_s", "expected a number"),
    ({"queues": {"q": {"colour": "red"}}}, "queues.q.colour", 'unknown setting "colour"'),
    ({"queues": {"": {"sl_threshold_s": 5}}}, "queues.", "1..128 characters"),
    ({"queues": {"q" * 129: {"sl_threshold_s": 5}}}, "queues." + "q" * 40, "1..128 characters"),
    ({"queues": []}, "queues", "expected an object"),
    ({"alerts": {"service_level": {"amber": 0.7, "red": 0.8}}}, "alerts.service_level", "must be >= red"),
    ({"alerts": {"longest_wait_s": {"amber": 90}}}, "alerts.longest_wait_s", "must be <= red"),
    ({"alerts": {"abandon_rate": {"red": 1.5}}}, "alerts.abandon_rate.red", "expected a number 0..1"),
    ({"alerts": {"queue_depth": {"red": 1}}}, "alerts.queue_depth", 'unknown alert "queue_depth"'),
    ({"costs": {"agent_cost_per_hour": -1}}, "costs.agent_cost_per_hour", "expected a number 0.."),
    ({"costs": {"currency": "euro"}}, "costs.currency", "ISO 4217"),
    ({"costs": {"queues": {"q": {"telephony_cost_per_minute": -0.1}}}},
     "costs.queues.q.telephony_cost_per_minute", "expected a number 0.."),
])
def test_bad_values_name_the_field(patch: dict[str, Any], field: str, words: str) -> None:
    """Every bad value is a 400 invalid_setting whose message and details name the field."""
    error = bad(patch)
    assert error.details["field"] == field
    assert error.message.startswith(f"{field}: ") and words in error.message


def test_unknown_top_level_key_is_refused() -> None:
    """An unknown top-level key is refused by name."""
    error = bad({"foo": 1})
    assert 'unknown setting "foo"' in error.message and error.details["field"] == "foo"


def test_from_json_resets_stored_values_that_no_longer_validate() -> None:
    """A stored value that no longer validates falls back to its default, the rest is kept."""
    s = TenantSettings.from_json({"timezone": "Gone/Zone", "sl_threshold_s": 25, "legacy": True})
    assert (s.timezone, s.sl_threshold_s) == ("UTC", 25)


# --- the tenant calendar ---------------------------------------------------------------------

def test_local_day_with_day_start_at_six() -> None:
    """With the day starting at 06:00, 03:00 local belongs to the previous day."""
    s = TenantSettings(timezone="Europe/Berlin", day_starts_at="06:00")
    assert s.local_day(ms("2024-05-10T03:00:00+02:00")) == "2024-05-09"
    assert s.local_day(ms("2024-05-10T05:59:59.999+02:00")) == "2024-05-09"
    assert s.local_day(ms("2024-05-10T06:00:00+02:00")) == "2024-05-10"
    assert s.day_bounds("2024-05-10") == (ms("2024-05-10T06:00:00+02:00"), ms("2024-05-11T06:00:00+02:00"))


@pytest.mark.parametrize(("zone", "spring", "autumn"), [
    ("Europe/Berlin", "2024-03-31", "2024-10-27"),
    ("America/New_York", "2024-03-10", "2024-11-03"),
])
def test_dst_days_last_23_and_25_hours(zone: str, spring: str, autumn: str) -> None:
    """A tenant day over a DST change is 23 h (spring) or 25 h (autumn) long and starts at local midnight."""
    s = TenantSettings(timezone=zone)
    start, end = s.day_bounds(spring)
    assert end - start == 23 * 3_600_000
    assert datetime.fromtimestamp(start / 1000, s.zone).strftime("%Y-%m-%d %H:%M") == f"{spring} 00:00"
    start, end = s.day_bounds(autumn)
    assert end - start == 25 * 3_600_000
    assert s.local_day(start) == autumn and s.local_day(end - 1) == autumn and s.local_day(start - 1) != autumn


def test_berlin_local_day_across_the_utc_date_line() -> None:
    """23:30 UTC on a summer evening is already the next day in Berlin."""
    s = TenantSettings(timezone="Europe/Berlin")
    assert s.local_day(ms("2024-07-01T23:30:00+00:00")) == "2024-07-02"
    assert TenantSettings().local_day(ms("2024-07-01T23:30:00+00:00")) == "2024-07-01"


def test_day_start_in_a_dst_gap_begins_at_the_transition() -> None:
    """A day start that does not exist (02:30 on New York's spring day) begins at the 03:00 jump."""
    s = TenantSettings(timezone="America/New_York", day_starts_at="02:30")
    start, end = s.day_bounds("2024-03-10")
    assert start == ms("2024-03-10T03:00:00-04:00") and end == ms("2024-03-11T02:30:00-04:00")
    assert s.local_day(start - 1) == "2024-03-09" and s.local_day(start) == "2024-03-10"


def test_day_start_in_a_repeated_hour_keeps_days_contiguous() -> None:
    """With the day starting at 01:30, the repeated 01:00-01:30 after fall-back stays in the new day."""
    s = TenantSettings(timezone="America/New_York", day_starts_at="01:30")
    start, end = s.day_bounds("2024-11-03")
    assert start == ms("2024-11-03T01:30:00-04:00")
    assert s.local_day(ms("2024-11-03T01:10:00-05:00")) == "2024-11-03"
    assert end - start == 25 * 3_600_000


def test_local_day_agrees_with_day_bounds_in_any_order() -> None:
    """Every half hour around a DST change, asked in shuffled order for two calendars, falls in its day's bounds."""
    calendars = [TenantSettings(timezone="Europe/Berlin", day_starts_at="02:30"), TenantSettings(timezone="UTC")]
    first = ms("2024-03-29T00:00:00+00:00")
    asks = [(s, first + k * 1_800_000) for s in calendars for k in range(4 * 48)]
    random.Random(7).shuffle(asks)
    for s, ts in asks:
        start, end = s.day_bounds(s.local_day(ts))
        assert start <= ts < end, (s.timezone, ts)


def test_interval_start_on_local_grid() -> None:
    """Intervals start on the local 15-minute grid, also in zones with a 45-minute offset."""
    for zone in ("UTC", "Asia/Kathmandu", "Australia/Adelaide"):
        s = TenantSettings(timezone=zone)
        start = s.interval_start(ms("2024-05-10T10:52:31+00:00"))
        assert datetime.fromtimestamp(start / 1000, s.zone).minute % 15 == 0
        assert 0 <= ms("2024-05-10T10:52:31+00:00") - start < 900_000
    hour = TenantSettings(timezone="Asia/Kolkata").interval_start(ms("2024-05-10T10:52:00+00:00"), 60)
    assert hour == ms("2024-05-10T16:00:00+05:30")


# --- the store (PostgreSQL, row-level security) ------------------------------------------------

@pytest.fixture(scope="module")
async def db(database: str) -> AsyncIterator[Database]:
    """A pool on the run's database; tenant transactions run as the application role."""
    pool = await Database.connect(database, min_size=1, max_size=4)
    yield pool
    await pool.close()


async def test_store_get_defaults_then_put_round_trip(db: Database) -> None:
    """A tenant without a row reads defaults; a put is read back by a fresh store."""
    name = tenant()
    store = SettingsStore(db)
    assert await store.get(name) == TenantSettings()
    put = await store.put(name, {"timezone": "Europe/Berlin", "queues": {"q1": {"sl_threshold_s": 30}}})
    assert await store.get(name) == put
    again = await SettingsStore(db).get(name)
    assert again == put and again.for_queue("q1").sl_threshold_s == 30


async def test_store_put_merges_with_stored_value(db: Database) -> None:
    """Successive puts merge into what is stored, not into defaults."""
    name = tenant()
    await SettingsStore(db).put(name, {"sl_threshold_s": 45})
    merged = await SettingsStore(db).put(name, {"costs": {"agent_cost_per_hour": 30}})
    assert merged.sl_threshold_s == 45 and merged.costs["agent_cost_per_hour"] == 30


async def test_store_concurrent_puts_lose_no_update(db: Database) -> None:
    """Concurrent puts to a new tenant serialise on its row: every queue override survives."""
    name = tenant()
    await asyncio.gather(*(SettingsStore(db).put(name, {"queues": {f"q{i}": {"sl_threshold_s": 10 + i}}})
                           for i in range(8)))
    stored = await SettingsStore(db).get(name)
    assert stored.queues == {f"q{i}": {"sl_threshold_s": 10 + i} for i in range(8)}


async def test_store_rejected_put_changes_nothing(db: Database) -> None:
    """A put with a bad value raises and leaves the stored settings as they were."""
    name = tenant()
    store = SettingsStore(db)
    await store.put(name, {"sl_threshold_s": 30})
    with pytest.raises(BadRequest):
        await store.put(name, {"sl_threshold_s": 10, "timezone": "Mars/Base"})
    assert (await SettingsStore(db).get(name)).sl_threshold_s == 30


async def test_store_tenants_are_isolated(db: Database) -> None:
    """Tenant A's put is invisible to tenant B, and B's transaction sees no row of A."""
    a, b = tenant(), tenant()
    store = SettingsStore(db, ttl_s=0)
    await store.put(a, {"timezone": "Asia/Tokyo"})
    assert (await store.get(b)).timezone == "UTC"
    async with db.tenant(b) as conn:
        assert await conn.fetch("SELECT client_id FROM tenants WHERE client_id = $1", a) == []


async def test_store_cache_serves_within_ttl(db: Database) -> None:
    """Another process's change shows once the TTL has passed (here: after invalidate)."""
    name = tenant()
    reader, writer = SettingsStore(db, ttl_s=60), SettingsStore(db)
    assert (await reader.get(name)).sl_threshold_s == 20
    await writer.put(name, {"sl_threshold_s": 40})
    assert (await reader.get(name)).sl_threshold_s == 20
    reader.invalidate(name)
    assert (await reader.get(name)).sl_threshold_s == 40


async def test_store_concurrent_misses_share_one_read(db: Database) -> None:
    """Forty requests missing a tenant's cached settings at once wait for one read, and all get its settings."""
    name = tenant()
    await SettingsStore(db).put(name, {"sl_threshold_s": 33})
    store = SettingsStore(db, ttl_s=60)
    transactions: list[float] = []
    db.on_wait = transactions.append  # told once per tenant transaction
    try:
        got = await asyncio.gather(*(store.get(name) for _ in range(40)))
    finally:
        db.on_wait = None
    assert len(transactions) == 1
    assert {settings.sl_threshold_s for settings in got} == {33}


async def test_store_read_overtaken_by_invalidation_is_not_cached(database: str, db: Database) -> None:
    """A read that an announced change overtook is served but not cached: the next read sees the stored value."""
    name = tenant()
    one = await Database.connect(database, min_size=1, max_size=1)
    try:
        reader, writer = SettingsStore(one), SettingsStore(db)
        async with one.tenant(name):  # holds the reader's only connection: its read waits
            reading = asyncio.create_task(reader.get(name))
            await asyncio.sleep(0.05)
            await writer.put(name, {"sl_threshold_s": 40})
            reader.invalidate(name)
        assert (await reading).sl_threshold_s == 40
        await writer.put(name, {"sl_threshold_s": 50})  # not announced to the reader: only a cached read would miss it
        assert (await reader.get(name)).sl_threshold_s == 50
        reader.invalidate()
        assert (await reader.get(name)).sl_threshold_s == 50
    finally:
        await one.close()


# --- HTTP ------------------------------------------------------------------------------------

@needs_wiring
async def test_http_get_defaults(server: RunningServer) -> None:
    """GET /api/settings as admin returns every default."""
    async with server.client(server.token(tenant(), "admin")) as client:
        reply = await client.get("/api/settings")
    assert reply.status_code == 200
    body = reply.json()
    assert body["success"] is True and body["data"] == TenantSettings().to_json()


@needs_wiring
async def test_http_put_partial_update(server: RunningServer) -> None:
    """PUT changes only the keys sent; a later GET shows the merged settings."""
    async with server.client(server.token(tenant(), "admin")) as client:
        first = await client.put("/api/settings", json={"timezone": "Europe/Berlin", "day_starts_at": "06:00"})
        second = await client.put("/api/settings", json={"alerts": {"waiting": {"amber": 2}}})
        read = await client.get("/api/settings")
    assert first.status_code == 200 and first.json()["data"]["timezone"] == "Europe/Berlin"
    assert second.status_code == 200
    data = read.json()["data"]
    assert (data["timezone"], data["day_starts_at"], data["alerts"]["waiting"]) == \
        ("Europe/Berlin", "06:00", {"amber": 2, "red": 10})


@needs_wiring
@pytest.mark.parametrize(("body", "code", "field"), [
    ({"sl_threshold_s": -5}, "invalid_setting", "sl_threshold_s"),
    ({"timezone": "Mars/Base"}, "invalid_setting", "timezone"),
    ({"nope": 1}, "invalid_setting", "nope"),
    ([1, 2], "expected_object", None),
    (b"{not json", "invalid_json", None),
])
async def test_http_put_bad_values_are_400(server: RunningServer, body: Any, code: str, field: str | None) -> None:
    """A bad PUT is a 400 whose error names the field (or says the body is not a JSON object)."""
    async with server.client(server.token(tenant(), "admin")) as client:
        if isinstance(body, bytes):
            reply = await client.put("/api/settings", content=body, headers={"Content-Type": "application/json"})
        else:
            reply = await client.put("/api/settings", json=body)
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["code"] == code
    if field is not None:
        assert error["details"]["field"] == field and field in error["message"]


@needs_wiring
@pytest.mark.parametrize("role", ["supervisor", "ingest", "agent"])
async def test_http_non_admin_roles_are_403(server: RunningServer, role: str) -> None:
    """Only admins may read or change settings: other roles get 403 on GET and PUT."""
    async with server.client(server.token(tenant(), role, sub="a1")) as client:
        got = await client.get("/api/settings")
        put = await client.put("/api/settings", json={"sl_threshold_s": 30})
    assert got.status_code == 403 and put.status_code == 403
    assert got.json()["error"]["code"] == "role_forbidden"


@needs_wiring
async def test_http_tenants_are_isolated(server: RunningServer) -> None:
    """An admin of one tenant never sees another tenant's settings."""
    async with server.client(server.token(tenant(), "admin")) as a:
        assert (await a.put("/api/settings", json={"timezone": "Asia/Tokyo"})).status_code == 200
    async with server.client(server.token(tenant(), "admin")) as b:
        assert (await b.get("/api/settings")).json()["data"]["timezone"] == "UTC"


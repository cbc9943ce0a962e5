"""History over whole months: the monthly rollups answer exactly what the daily ones answer."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from server.core.config import Settings
from server.core.errors import ConfigError
from server.core.tenant_settings import TenantSettings
from server.history.period import parse
from server.ingest.schema import ROLLUP_COUNTERS
from server.tools.simulate import SimulationConfig, generate

from .conftest import RunningServer
from .test_live_exact import delivery, new_tenant, post_all, put_settings
from .test_seed_history import tenant_conn

ZONE = "America/St_Johns"  # UTC-3:30, -2:30 in summer; summer time ends on 2026-11-01 at 02:00
DAY_STARTS_AT = "04:30"
# Local windows of traffic: across the September/October and October/November tenant-day starts (the
# second with the end of summer time in it), and one inside October.
WINDOWS = ((datetime(2026, 9, 30, 21), 9), (datetime(2026, 10, 14, 8), 6), (datetime(2026, 10, 31, 20), 10),
           (datetime(2026, 11, 2, 9), 4))
RANGES = (
    {"from": "2026-09-28", "to": "2026-11-03"},  # by day: October read whole for the period's totals
    {"from": "2026-09-28", "to": "2026-11-03", "granularity": "month"},  # every month bucket from its row
    {"from": "2026-09-28", "to": "2026-11-03", "granularity": "week"},
    {"from": "2026-10-01", "to": "2026-10-31", "granularity": "month"},  # exactly one month
    {"from": "2026-09-01", "to": "2026-11-30", "granularity": "month"},
    {"from": "2026-10-01", "to": "2026-11-01", "granularity": "day"},  # one whole month and a day
)
ENDPOINTS = (
    ("performance/summary", {}), ("performance/summary", {"queue_id": "q1"}), ("performance/trends", {}),
    ("performance/agents", {}), ("performance/sectors", {}), ("performance/top-performers", {"metric": "aht_s"}),
    ("calls/completion", {}), ("calls/timeline", {}), ("calls/quality/summary", {}), ("satisfaction", {}),
    ("costs", {}), ("performance/summary", {"team": "team-1"}),
)


@pytest.fixture(scope="module")
async def months(server: RunningServer, module_server_factory: Any) -> dict[str, Any]:
    """Traffic across two month ends and a DST change in St. John's, days starting at 04:30; a days-only server."""
    tenant = new_tenant("months")
    # The windows are fixed 2026 dates: a 400-day ingest window holds them until October 2027.
    await put_settings(server, tenant, timezone=ZONE, day_starts_at=DAY_STARTS_AT, ingest_window_days=400)
    zone = ZoneInfo(ZONE)
    events: list[dict[str, Any]] = []
    for i, (local, hours) in enumerate(WINDOWS):
        config = SimulationConfig(agents=12, queues=2, calls_per_hour=90, seed=20 + i, timezone=ZONE,
                                  id_prefix=f"{tenant}-w{i}")
        events += generate(config, local.replace(tzinfo=zone), timedelta(hours=hours))
    batches = delivery(events, random.Random(4), dup_share=0.02, disorder_share=0.1)
    async with server.client(server.token(tenant, "ingest")) as client:
        totals = await post_all(client, batches)
    assert totals["accepted"] == len(events)
    days_only = await module_server_factory(server.settings.replace(history_monthly=False))
    return {"tenant": tenant, "days_only": days_only}


async def answers(server: RunningServer, tenant: str, path: str, params: dict[str, str]) -> Any:
    async with server.client(server.token(tenant, "admin")) as client:
        response = await client.get(f"/api/analytics/{path}", params=params)
    assert response.status_code == 200, (path, params, response.text)
    return response.json()


def test_the_setting_is_read_and_checked() -> None:
    """WALLBOARD_HISTORY_MONTHLY is on by default, 0 turns it off, anything else stops start-up naming it."""
    assert Settings.from_env({}).history_monthly is True
    assert Settings.from_env({"WALLBOARD_HISTORY_MONTHLY": "0"}).history_monthly is False
    with pytest.raises(ConfigError, match="WALLBOARD_HISTORY_MONTHLY"):
        Settings.from_env({"WALLBOARD_HISTORY_MONTHLY": "yes"})


def test_whole_months_are_found_in_the_tenant_calendar() -> None:
    """The months a range reads whole: only months it covers entirely, none a bucket cuts (period ends apart)."""
    settings = TenantSettings(timezone=ZONE, day_starts_at=DAY_STARTS_AT)
    now = int(datetime(2026, 11, 30).timestamp() * 1000)

    def span(ends_only: bool, **params: str) -> tuple[date, date] | None:
        return parse(params, settings, now).month_span(ends_only=ends_only)

    october, november = date(2026, 10, 1), date(2026, 11, 1)
    assert span(True, **{"from": "2026-09-28", "to": "2026-11-03"}) == (october, november)
    assert span(False, **{"from": "2026-09-28", "to": "2026-11-03"}) is None  # day buckets cut October
    assert span(False, **{"from": "2026-09-28", "to": "2026-11-03", "granularity": "month"}) == (october, november)
    assert span(False, **{"from": "2026-09-28", "to": "2026-11-03", "granularity": "week"}) is None
    assert span(True, **{"from": "2026-10-01", "to": "2026-10-31"}) == (october, november)
    assert span(True, **{"from": "2026-10-02", "to": "2026-10-31"}) is None
    assert span(True, **{"from": "2026-10-01", "to": "2026-10-30"}) is None
    assert span(True, **{"from": "2026-09-01T10:00:00Z", "to": "2026-11-03"}) is None  # not whole days: 15 minutes


@pytest.mark.parametrize("params", RANGES, ids=lambda p: "-".join(p.values()))
async def test_monthly_and_daily_rollups_answer_the_same(server: RunningServer, months: dict[str, Any],
                                                         params: dict[str, str]) -> None:
    """Every history endpoint answers to the byte what the days-only server answers, over whole months and edges."""
    tenant = months["tenant"]
    agents = await answers(server, tenant, "performance/agents", params)
    assert agents["data"], "no agent had calls in the range"
    agent = agents["data"][0]["agent_id"]
    checked = [*ENDPOINTS, (f"performance/agent/{agent}/detailed", {})]
    for path, extra in checked:
        query = {**params, **extra}
        monthly = await answers(server, tenant, path, query)
        daily = await answers(months["days_only"], tenant, path, query)
        assert monthly == daily, (path, query)
    summary = await answers(server, tenant, "performance/summary", params)
    assert summary["data"]["offered"] > 0


async def test_a_month_row_is_the_sum_of_its_day_rows(server: RunningServer, months: dict[str, Any]) -> None:
    """Ingest keeps, per key, one performance_monthly row per tenant month equal to the sum of its daily rows."""
    dsn = server.settings.database_url
    assert dsn is not None
    conn = await tenant_conn(dsn, months["tenant"])
    try:
        sums = ", ".join(f"sum({c})::bigint AS {c}" for c in ROLLUP_COUNTERS)
        by_days = await conn.fetch(f"SELECT dimension, key, date_trunc('month', day)::date AS month, {sums} "
                                   "FROM performance_daily WHERE client_id = $1 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
                                   months["tenant"])
        kept = await conn.fetch(f"SELECT dimension, key, month, {sums} FROM performance_monthly WHERE client_id = $1 "
                                "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3", months["tenant"])
    finally:
        await conn.close()
    assert {r["month"] for r in kept} == {date(2026, 9, 1), date(2026, 10, 1), date(2026, 11, 1)}
    assert [dict(r) for r in kept] == [dict(r) for r in by_days]


def test_the_bench_puts_each_endpoint_year_beside_its_month() -> None:
    """`bench history` prints each endpoint's 365-day p95 beside its 30-day p95 and their ratio, over 3x marked."""
    from server.tools.bench_history import year_against_month

    rows = [["costs", "30 days", "8.0", "10.0", "ok"], ["costs", "365 days", "20.0", "25.0", "ok"],
            ["performance/agents", "30 days", "5.0", "6.0", "ok"], ["performance/agents", "365 days", "19", "20.0", "ok"],
            ["predictions", "30 days", "-", "-", "not served"], ["predictions", "365 days", "-", "-", "not served"]]
    assert year_against_month(rows) == [["costs", "10.0", "25.0", "2.50x", "ok"],
                                        ["performance/agents", "6.0", "20.0", "3.33x", "OVER"]]

"""Anomalies: injected spikes are found (precision and recall), stored, pushed over /ws and listed."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import asyncpg

from server.analytics import anomaly, forecast
from server.tools.bench_forecast import Traffic, render, run

from .conftest import RunningServer
from .test_forecast import api, new_tenant, simulated_history, write_history, z
from .test_ws import board

NORMAL = {"offered": 40, "answered": 38, "abandoned": 2, "short_abandoned": 0, "answered_within_sl": 33,
          "abandoned_within_sl": 0, "handled": 38, "handle_ms": 38 * 240_000}



def test_injected_spikes_are_flagged_in_their_first_interval() -> None:
    """60 spikes (volume × 3 or AHT × 2, 30 minutes each) in two held-out weeks: recall ≥ 0.9 in the first interval, precision ≥ 0.8."""
    traffic = Traffic(queues=2, calls_per_hour=700, seed=11)
    report = run(traffic, injections=60)
    print("\n" + render(traffic, report, 0.85))
    assert report.injected == 60 and report.by_kind == {"volume": 30, "aht": 30}
    assert report.recall is not None and report.recall >= 0.9
    assert report.precision is not None and report.precision >= 0.8


def test_rule_flags_large_unlikely_deviations_only() -> None:
    """Triple volume and double AHT are flagged; ordinary noise, a 10% drift and thin intervals are not."""
    expected = anomaly.Expected(offered=40.0, aht_s=240.0, abandon_rate=0.05, service_level=0.87)
    assert anomaly.detect(NORMAL, expected) == []
    assert anomaly.detect({**NORMAL, "offered": 44}, expected) == []
    spike = anomaly.detect({**NORMAL, "offered": 120}, expected)
    assert [f.metric for f in spike] == ["offered"] and spike[0].score > 6
    slow = anomaly.detect({**NORMAL, "handle_ms": 38 * 480_000}, expected)
    assert [f.metric for f in slow] == ["aht_s"] and slow[0].observed == 480
    overloaded = anomaly.detect({**NORMAL, "answered": 20, "abandoned": 20, "answered_within_sl": 8}, expected)
    assert {f.metric for f in overloaded} == {"abandon_rate", "service_level"}
    thin = {**NORMAL, "offered": 3, "answered": 1, "abandoned": 2, "answered_within_sl": 0, "handled": 1,
            "handle_ms": 900_000}
    assert [f.metric for f in anomaly.detect(thin, expected)] == ["offered"]  # a drop to 3 of 40; too few calls for the rest
    short = anomaly.baseline({"answered": 90, "abandoned": 10, "handled": 90, "handle_ms": 90 * 200_000}, [20, 22, 18],
                             "answered_plus_abandoned", None)
    assert short.source == "baseline" and short.offered == 20 and short.aht_s == 200 and short.abandon_rate == 0.1
    assert anomaly.baseline({}, [20, 22], "answered_plus_abandoned", None).offered is None


async def test_spike_is_stored_pushed_and_listed(server: RunningServer) -> None:
    """A closed interval with triple the forecast volume (and a new queue's spike over its baseline) is stored, reaches /ws and is listed."""
    tenant = new_tenant("an")
    _, rows = simulated_history(21, queues=1, calls_per_hour=1000)
    assert server.settings.database_url
    await write_history(server.settings.database_url, tenant, rows)
    svc = server.services
    assert svc.analytics is not None
    now = int(time.time() * 1000)
    target = now - now % forecast.INTERVAL_MS - forecast.INTERVAL_MS
    quiet = target - forecast.INTERVAL_MS
    for start in (target, quiet):  # the server's own check of these intervals is not wanted here
        await svc.redis.set(svc.keys.anomaly_checked(tenant, start), "1", ex=3600)
    await svc.analytics.forecaster.refresh(tenant, force=True, now_ms=now - 2 * 3_600_000)
    conn = await asyncpg.connect(server.settings.database_url)
    try:
        expected = {row["interval_start"]: row["offered"] for row in await conn.fetch(
            "SELECT interval_start, offered FROM predictive_analytics WHERE client_id = $1 AND queue_id = 'sales' "
            "AND interval_start = ANY ($2)", tenant, [datetime.fromtimestamp(ms / 1000, UTC) for ms in (target, quiet)])}
    finally:
        await conn.close()
    fc_target = expected[datetime.fromtimestamp(target / 1000, UTC)]
    fc_quiet = round(expected[datetime.fromtimestamp(quiet / 1000, UTC)])
    spike = round(3 * fc_target) + 12
    ordinary = {**NORMAL, "offered": fc_quiet, "answered": fc_quiet, "abandoned": 0, "answered_within_sl": fc_quiet,
                "handled": fc_quiet, "handle_ms": fc_quiet * 240_000}
    walkins = {target - d * 86_400_000: {**NORMAL, "offered": 20} for d in range(1, 5)}
    await write_history(server.settings.database_url, tenant, {
        "sales": {target: {**NORMAL, "offered": spike}, quiet: ordinary},
        "walkins": {**walkins, target: {**NORMAL, "offered": 90}}})
    assert await svc.analytics.detector.check(tenant, quiet) == []
    async with board(server.url, server.token(tenant)) as client:
        await client.next(lambda m: m["type"] == "status")
        await client.subscribe(["overview"])
        await client.next(lambda m: m["type"] == "snapshot")
        flagged = await svc.analytics.detector.check(tenant, target)
        pushed = await client.next(lambda m: m["type"] == "alert" and m["queue_id"] == "sales")
    assert {(a["queue_id"], a["metric"], a["baseline"]) for a in flagged} == {("sales", "offered", "forecast"),
                                                                              ("walkins", "offered", "baseline")}
    assert pushed["kind"] == "forecast" and pushed["metric"] == "offered" and pushed["state"] == "raised"
    assert pushed["value"] == spike and pushed["expected"] == fc_target and pushed["interval_start"] == z(target)
    listed = await api(server, tenant, "GET", "/api/analytics/anomalies", kind="forecast",
                       **{"from": z(target - 3_600_000), "to": z(now + 60_000)})
    by_queue: dict[str, Any] = {row["queue_id"]: row for row in listed["data"]}
    assert set(by_queue) == {"sales", "walkins"} and listed["statistics"]["by_metric"] == {"offered": 2}
    assert by_queue["sales"]["observed"] == spike and by_queue["sales"]["cleared_at"] is None
    assert by_queue["walkins"]["expected"] == 20
    only = await api(server, tenant, "GET", "/api/analytics/anomalies", queue_id="walkins",
                     **{"from": z(target - 3_600_000), "to": z(now + 60_000)})
    assert [row["queue_id"] for row in only["data"]] == ["walkins"]
    for params, name in [({"kind": "bogus"}, "kind"), ({"limit": "0"}, "limit"), ({"to": "soon"}, "to")]:
        body = await api(server, tenant, "GET", "/api/analytics/anomalies", status=400, **params)
        assert body["error"]["details"]["parameter"] == name
    await api(server, tenant, "GET", "/api/analytics/anomalies", role="ingest", status=403)

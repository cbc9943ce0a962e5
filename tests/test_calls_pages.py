"""Waiting calls, staffing, forecast and the Erlang C calculator on the real pages in headless Chromium."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from .conftest import RunningServer
from .pages import ARTIFACTS, api_get, event, new_tenant, now_ms, playwright_or_skip, post_events, wait_for_badge
from .test_calls_view import add_callbacks, two_callbacks
from .test_forecast import simulated_history, write_history

playwright_or_skip()


@pytest.fixture
async def page(browser: Any) -> AsyncIterator[Any]:
    """A 1920×1080 page that fails the test on any script error."""
    context = await browser.new_context(viewport={"width": 1920, "height": 1080})
    tab = await context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    await context.close()
    assert not errors, errors


async def shown_waits(tab: Any) -> list[tuple[str, float, float]]:
    """Each listed call: id, the wait shown (s) and now − queued_at (s), read in the page as the next tick lands."""
    return await tab.evaluate("""() => new Promise(resolve => {
        const read = () => [...document.querySelectorAll('#wait-list li')].map(li => [
            li.dataset.callId, Number(li.querySelector('.wait-time').dataset.value),
            (Date.now() - Date.parse(li.dataset.queuedAt)) / 1000]);
        const seen = new MutationObserver(() => { seen.disconnect(); queueMicrotask(() => resolve(read())); });
        seen.observe(document.getElementById('wait-list'), {attributes: true, subtree: true, attributeFilter: ['data-value']});
    })""")


async def test_wallboard_lists_longest_waits_ticking_and_staffing(server: RunningServer, page: Any) -> None:
    """The wallboard lists the N oldest waiting calls with waits equal to now − queued_at (± 1 s), ticking, and staffing per queue."""
    tenant = new_tenant("wbcalls")
    queued = {f"c{i}": now_ms(-(100 - 10 * i)) for i in range(8)}
    await post_events(server, tenant, [event("call.queued", ts, call_id=c, queue_id="sales" if i % 2 else "support")
                                       for i, (c, ts) in enumerate(queued.items())])
    await add_callbacks(server, tenant, *two_callbacks())
    await page.goto(f"{server.url}/wallboard.html#token={server.token(tenant)}&top=5&lang=de")
    await wait_for_badge(page, "live")
    await page.wait_for_function("() => document.querySelectorAll('#wait-list li').length === 5", timeout=5000)
    first = await shown_waits(page)
    assert [c for c, _, _ in first] == ["c0", "c1", "c2", "c3", "c4"]  # oldest first, the top 5
    for call_id, shown, expected in first:
        assert abs(shown - expected) <= 1.0, (call_id, shown, expected)
        assert abs(expected - (time.time() * 1000 - queued[call_id]) / 1000) <= 1.0
    assert await page.text_content("#calls-more") and not await page.is_hidden("#calls-more")
    assert await page.get_attribute("#callbacks-pending", "data-value") == "2"
    await page.wait_for_function("() => document.querySelector('#calls-panel h2').textContent === 'Längste Wartezeiten'",
                                 timeout=5000)  # the panel's strings in the language of `#lang=`
    assert await page.text_content("#callbacks-pending") == "Offene Rückrufe: 2"
    await page.wait_for_timeout(2100)
    later = await shown_waits(page)
    assert all(b[1] - a[1] >= 1.0 for a, b in zip(first, later, strict=True))  # ticking
    assert all(abs(shown - expected) <= 1.0 for _, shown, expected in later)
    await post_events(server, tenant, [event("call.answered", now_ms(), call_id="c0", queue_id="support", agent_id="a1")])
    await page.wait_for_function("() => !document.querySelector('#wait-list li[data-call-id=\"c0\"]')", timeout=5000)
    # No forecast stored: each queue is listed, with nothing needed and "no forecast" said.
    assert await page.locator("#staffing-rows tr").count() == 2
    assert await page.is_visible("#staffing-empty")


async def test_console_calls_forecast_and_erlang(server: RunningServer, page: Any) -> None:
    """The console lists waiting calls and callbacks, anomalies, charts today's stored forecast; its calculator equals the API."""
    tenant = new_tenant("concalls")
    _, rows = simulated_history(28, calls_per_hour=200)
    assert server.settings.database_url
    await write_history(server.settings.database_url, tenant, rows)
    async with server.client(server.token(tenant, "admin")) as client:
        assert (await client.post("/api/analytics/predictions/refresh")).status_code == 200
    queued_at = now_ms(-42)
    await post_events(server, tenant, [event("call.queued", queued_at, call_id="w1", queue_id="sales")])
    requested = two_callbacks()[0]
    await add_callbacks(server, tenant, requested)
    await page.goto(f"{server.url}/supervisor.html#token={server.token(tenant)}&tab=calls")
    await wait_for_badge(page, "live")
    row = page.locator('#calls-rows tr[data-call-id="w1"]')
    await row.wait_for(timeout=5000)
    wait = float(await row.locator('[data-metric="wait"]').get_attribute("data-value") or "nan")
    assert abs(wait - (time.time() * 1000 - queued_at) / 1000) <= 1.0
    callback = page.locator('#callbacks-rows tr[data-callback-id="cb1"]')
    assert await callback.locator('[data-metric="queue_id"]').text_content() == "sales"
    assert await callback.locator('[data-metric="due_ts"]').get_attribute("data-value") == requested["due_ts"]

    # The call waiting past the longest-wait amber level (30 s) raises a threshold alert: the Anomalies tab lists it.
    day = (await api_get(server, tenant, "/api/metrics/live"))["data"]["day"]
    for _ in range(50):
        anomalies = (await api_get(server, tenant, "/api/analytics/anomalies", **{"from": day}))["data"]
        if anomalies:
            break
        await asyncio.sleep(0.1)
    await page.click("#tab-anomalies")
    await page.wait_for_function("() => document.getElementById('panel-anomalies').dataset.loaded", timeout=10_000)
    later = (await api_get(server, tenant, "/api/analytics/anomalies", **{"from": day}))["data"]
    # The tab lists what the API listed, and at most what it lists after the tab loaded (the detector may raise
    # another anomaly meanwhile, e.g. the forecast's for the interval).
    shown = set(await page.eval_on_selector_all("#anomalies-rows tr", "rows => rows.map(r => r.dataset.anomalyId)"))
    assert anomalies and {str(a["anomaly_id"]) for a in anomalies} <= shown <= {str(a["anomaly_id"]) for a in later}
    row = page.locator(f'#anomalies-rows tr[data-anomaly-id="{anomalies[0]["anomaly_id"]}"]')
    assert await row.locator('[data-metric="metric"]').text_content() == anomalies[0]["metric"]

    await page.click("#tab-forecast")
    await page.wait_for_function("() => document.getElementById('panel-forecast').dataset.loaded", timeout=10_000)
    stored = await api_get(server, tenant, "/api/analytics/predictions", **{"from": day, "to": day, "granularity": "15m"})
    expected: dict[str, float] = {}
    for item in stored["data"]:
        expected[item["start"]] = expected.get(item["start"], 0.0) + item["offered"]
    shown = await page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('#forecast-rows tr')]
        .map(tr => [tr.dataset.start, tr.querySelector('[data-metric="forecast"]').dataset.value]))""")
    assert expected and {k: float(v) for k, v in shown.items() if v} == pytest.approx(expected, abs=0.01)
    assert await page.locator("#forecast-chart canvas").count() == 1
    assert int(await page.get_attribute("#forecast-chart", "data-points") or 0) >= len(expected)
    assert float(await page.get_attribute("#forecast-accuracy", "data-value") or "nan") == pytest.approx(
        stored["statistics"]["accuracy"])
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "console-forecast-1920x1080.png"))

    await page.click("#tab-erlang")
    for field, value in (("calls", "137"), ("aht", "212"), ("interval", "900"), ("threshold", "15"), ("target", "85")):
        await page.fill(f"#erlang-{field}", value)
    await page.click("#erlang-compute")
    await page.wait_for_function("() => document.getElementById('panel-erlang').dataset.loaded", timeout=10_000)
    answer = (await api_get(server, tenant, "/api/analytics/staffing/erlang-c", calls=137, aht_s=212, interval_s=900,
                            sl_threshold_s=15, target_sl=0.85))["data"]
    assert int(await page.get_attribute("#erlang-required", "data-value") or -1) == answer["required_agents"]
    assert float(await page.get_attribute("#erlang-sl", "data-value") or "nan") == pytest.approx(answer["service_level"])
    agents = [int(a) for a in (await page.get_attribute("#erlang-chart", "data-agents") or "").split(",")]
    levels = [float(v) for v in (await page.get_attribute("#erlang-chart", "data-levels") or "").split(",")]
    assert answer["required_agents"] in agents and levels == sorted(levels)  # service level rises with agents
    assert levels[agents.index(answer["required_agents"])] >= 0.85 > levels[agents.index(answer["required_agents"]) - 1]
    await page.screenshot(path=str(ARTIFACTS / "console-erlang-1920x1080.png"))

    # The wallboard's staffing: the overview's agents needed now for the forecast queue, gap coloured.
    await page.goto(f"{server.url}/wallboard.html#token={server.token(tenant)}")
    overview = (await api_get(server, tenant, "/api/metrics/live"))["data"]
    sales = next(q for q in overview["queues"] if q["queue_id"] == "sales")
    cell = page.locator('#staffing-rows tr[data-staffing-queue="sales"] [data-metric="required_agents"]')
    await cell.wait_for(timeout=5000)
    assert sales["required_agents"] is not None and await cell.get_attribute("data-value") == str(sales["required_agents"])
    gap = page.locator('#staffing-rows tr[data-staffing-queue="sales"] [data-metric="agents_gap"]')
    assert await gap.get_attribute("data-level") == ("ok" if sales["agents_gap"] >= 0 else "amber" if sales["agents_gap"] == -1 else "red")
    await page.screenshot(path=str(ARTIFACTS / "wallboard-calls-staffing-1920x1080.png"))

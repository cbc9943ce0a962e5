"""The supervisor console in a real headless Chromium against the real server over real sockets.

Needs Debian's Chromium at /usr/bin/chromium and the ``playwright`` package (its bundled driver
only: no browser is downloaded). Every figure the page shows is compared with the API's own answer
for the same tenant and period, read here over HTTP with the same kind of token.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import jwt
import pytest

from server.core.config import Settings

from .conftest import ROOT, RunningServer
from .pages import (
    ARTIFACTS,
    agent,
    api_get,
    busy_center,
    call,
    day_started_hours_ago,
    event,
    handled,
    new_tenant,
    now_ms,
    opener,
    playwright_or_skip,
    port_of,
    post_events,
    same,
    server_on,
    wait_for_badge,
)

async_api = playwright_or_skip()

# The README's pictures: refreshed only when asked (WALLBOARD_README_SCREENSHOTS=1), so a test run leaves the tree clean.
SCREENSHOTS = ROOT / "static" / "screenshots"
README_SCREENSHOTS = os.environ.get("WALLBOARD_README_SCREENSHOTS") == "1"
REPORTS = ("agent-performance", "queue-intervals", "quality", "satisfaction")


# -- browser ---------------------------------------------------------------------------------


class Console:
    """A supervisor page with the URLs it requested, the headers of its API calls and the script errors it raised."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.urls: list[str] = []
        self.requests: list[Any] = []
        self.errors: list[str] = []
        page.on("request", self._request)
        page.on("websocket", lambda ws: self.urls.append(ws.url))
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def _request(self, request: Any) -> None:
        self.urls.append(request.url)
        self.requests.append(request)

    async def open(self, server: RunningServer, token: str | None, extra: str = "", path: str = "supervisor.html") -> None:
        fragment = f"#token={token}{extra}" if token else ""
        await self.page.goto(f"{server.url}/{path}{fragment}")

    async def ready(self) -> str:
        """Wait until the console knows its period (the tenant's today) and is live; return that day."""
        await self.page.wait_for_function("() => document.body.dataset.from", timeout=10_000)
        await wait_for_badge(self.page, "live")
        return await self.page.evaluate("document.body.dataset.from")

    async def tab(self, name: str) -> None:
        """Show a section and wait for its answer (a section shows ``data-loaded`` once it has one)."""
        panel = f"#panel-{name}"
        before = await self.page.get_attribute(panel, "data-loaded")
        await self.page.click(f'.tabs [data-tab="{name}"]')
        await self.page.wait_for_function(
            "([sel, before]) => { const v = document.querySelector(sel).dataset.loaded; return v && v !== before; }",
            arg=[panel, before], timeout=10_000)

    async def values(self, selector: str) -> list[str | None]:
        return await self.page.eval_on_selector_all(selector, "els => els.map(e => e.dataset.value ?? null)")


@pytest.fixture
async def open_console(browser: Any) -> AsyncIterator[Callable[..., Awaitable[Console]]]:
    """Fresh browser contexts (1920x1080 unless told, downloads allowed), closed after the test; no page may raise."""
    async with opener(browser, Console, accept_downloads=True) as make:
        yield make

# -- agents now ------------------------------------------------------------------------------------


async def test_agents_table_matches_the_api_and_filters_work(server: RunningServer,
                                                             open_console: Callable[..., Awaitable[Console]]) -> None:
    """The agents table lists the agents and states of /api/metrics/agents/status; team/queue/state filters match the API's."""
    tenant = new_tenant("sv-agents")
    await post_events(server, tenant, [
        agent("a1", "available", ["sales", "support"], name="Ada", team="blue"),
        agent("a2", "on_call", ["sales"], name="Bo", team="blue"),
        agent("a3", "wrap_up", ["support"], name="Cy", team="green"),
        agent("a4", "break", ["support"], ago_s=75, name="Di", team="green", reason="Lunch"),
        agent("a5", "other", ["billing"], name="Ed", team="green"),
        agent("a6", "logged_out", ["billing"], name="Flo", team="blue"),
    ])
    agents = (await api_get(server, tenant, "/api/metrics/agents/status"))["data"]
    console = await open_console()
    await console.open(server, server.token(tenant, "supervisor"))
    await console.ready()
    p = console.page
    await p.wait_for_function(f"() => document.querySelectorAll('#agent-rows tr').length === {len(agents)}")

    async def shown() -> set[tuple[str, str, str]]:
        rows = await p.eval_on_selector_all("#agent-rows tr", """els => els.map(tr => [
            tr.dataset.agentId, tr.dataset.state, tr.querySelector('[data-metric="team"]').dataset.value])""")
        return {tuple(r) for r in rows}

    assert await shown() == {(a["agent_id"], a["state"], a["team"]) for a in agents}
    assert "Lunch" in await p.text_content('#agent-rows tr[data-agent-id="a4"]')
    # Time in state ticks each second from `since` (a value read is up to a second old: the bounds allow for it).
    cell = '#agent-rows tr[data-agent-id="a4"] [data-metric="time_in_state"]'
    first = float(await p.get_attribute(cell, "data-value") or "nan")
    assert 74 <= first <= 90
    await asyncio.sleep(2.1)
    assert 1.0 <= float(await p.get_attribute(cell, "data-value") or "nan") - first <= 3.5

    for team, queue, state in (("blue", "", ""), ("", "support", ""), ("", "", "on_call"), ("green", "support", "break"),
                               ("", "", "")):
        await p.select_option("#filter-team", team)
        await p.select_option("#filter-queue", queue)
        await p.select_option("#filter-state", state)
        wanted = (await api_get(server, tenant, "/api/metrics/agents/status", team=team, queue_id=queue, state=state))["data"]
        assert await shown() == {(a["agent_id"], a["state"], a["team"]) for a in wanted}, (team, queue, state)
    await p.select_option("#filter-state", "available")
    await p.select_option("#filter-team", "green")
    assert await p.locator("#agent-rows tr").count() == 0
    assert await p.is_visible("#agents-empty")


async def test_agent_drill_down_shows_today_and_history(server: RunningServer,
                                                        open_console: Callable[..., Awaitable[Console]]) -> None:
    """A click on an agent shows its live figures for today and the period's summary and days from the history API."""
    tenant = new_tenant("sv-drill")
    await day_started_hours_ago(server, tenant, 3)
    events = [agent("a1", "available", ["sales"], ago_s=2 * 3600, name="Ada", team="blue")]
    for index in range(4):
        events += handled("sales", "a1", ago_s=6000 - index * 900, wait_s=8 + index, talk_s=120 + 30 * index, resolved=index != 2)
    events += [agent("a1", "on_call", ["sales"], ago_s=40, name="Ada", team="blue"), agent("a2", "available", ["sales"], name="Bo")]
    await post_events(server, tenant, events)
    console = await open_console()
    await console.open(server, server.token(tenant, "supervisor"))
    day = await console.ready()
    p = console.page
    await p.click('#agent-rows tr[data-agent-id="a1"]')
    await p.wait_for_selector(f'#drill[data-loaded="a1|{day}|{day}"]')

    live = (await api_get(server, tenant, "/api/metrics/agents/a1/status"))["data"]
    summary = (await api_get(server, tenant, "/api/analytics/performance/summary", agent_id="a1", **{"from": day, "to": day}))["data"]
    trends = await api_get(server, tenant, "/api/analytics/performance/trends", agent_id="a1", granularity="day", **{"from": day, "to": day})
    assert await p.text_content("#drill-name") == "Ada"
    assert await p.get_attribute('#drill-today [data-metric="handled"] dd', "data-value") == str(live["today"]["handled"]) == "4"
    assert same(await p.get_attribute('#drill-today [data-metric="aht_s"] dd', "data-value"), live["today"]["aht_s"])
    for metric in ("answered", "handled"):
        assert await p.get_attribute(f'#drill-summary [data-metric="{metric}"] dd', "data-value") == str(summary[metric]) == "4"
    assert same(await p.get_attribute('#drill-summary [data-metric="fcr"] dd', "data-value"), summary["fcr"])
    assert await p.locator("#drill-days tr").count() == len(trends["data"]) == 1
    assert await console.values('#drill-days [data-metric="handled"]') == [str(d["handled"]) for d in trends["data"]]
    # The drill-down's clock ticks too.
    first = float(await p.get_attribute("#drill-time", "data-value") or "nan")
    assert 39 <= first <= 55
    await asyncio.sleep(1.6)
    assert float(await p.get_attribute("#drill-time", "data-value") or "nan") > first


# -- history ---------------------------------------------------------------------------------------


async def test_queue_chart_shows_the_trends_numbers(server: RunningServer, open_console: Callable[..., Awaitable[Console]]) -> None:
    """The queue history chart, its table and its totals carry the trends endpoint's buckets and statistics."""
    tenant = new_tenant("sv-trends")
    await day_started_hours_ago(server, tenant, 5)
    await post_events(server, tenant, busy_center(hours=4))
    console = await open_console()
    await console.open(server, server.token(tenant, "supervisor"))
    day = await console.ready()
    p = console.page
    await console.tab("queues")

    async def agree(granularity: str, queue_id: str = "") -> None:
        doc = await api_get(server, tenant, "/api/analytics/performance/trends", granularity=granularity, queue_id=queue_id,
                        **{"from": day, "to": day})
        stats, data = doc["statistics"], doc["data"]
        assert await p.get_attribute("#panel-queues", "data-granularity") == granularity
        for metric in ("offered", "answered", "abandoned", "handled"):
            assert await p.get_attribute(f'#queue-totals [data-metric="{metric}"] dd', "data-value") == str(stats[metric]), metric
        for metric in ("service_level", "abandon_rate", "asa_s", "aht_s"):
            assert same(await p.get_attribute(f'#queue-totals [data-metric="{metric}"] dd', "data-value"), stats[metric]), metric
        assert await p.eval_on_selector_all("#queue-buckets tr", "els => els.map(e => e.dataset.start)") == [d["start"] for d in data]
        for metric in ("offered", "answered", "abandoned"):
            assert await console.values(f'#queue-buckets [data-metric="{metric}"]') == [str(d[metric]) for d in data], metric
        assert sum(int(v or 0) for v in await console.values('#queue-buckets [data-metric="offered"]')) == stats["offered"]
        # Both charts are drawn, one point per bucket.
        for chart in ("#chart-calls", "#chart-sl"):
            assert await p.get_attribute(chart, "data-points") == str(len(data))
            assert await p.locator(f"{chart} canvas").count() == 1

    await agree("hour")
    offered = int(await p.get_attribute('#queue-totals [data-metric="offered"] dd', "data-value") or 0)
    assert offered > 40
    loaded = await p.get_attribute("#panel-queues", "data-loaded")
    await p.select_option("#chart-queue", "support")
    await p.wait_for_function(f"() => document.querySelector('#panel-queues').dataset.loaded !== '{loaded}'")
    await agree("hour", "support")
    loaded = await p.get_attribute("#panel-queues", "data-loaded")
    await p.select_option("#chart-granularity", "15m")
    await p.wait_for_function(f"() => document.querySelector('#panel-queues').dataset.loaded !== '{loaded}'")
    await agree("15m", "support")


async def test_a_supervisor_sees_times_in_the_tenants_zone(server: RunningServer,
                                                           open_console: Callable[..., Awaitable[Console]]) -> None:
    """A supervisor (who may not read /api/settings) still sees history in the tenant's time zone, not the browser's:
    Kolkata's hours begin at :30 UTC, so each hourly bucket reads :00 there."""
    tenant = new_tenant("sv-zone")
    start = datetime.now(ZoneInfo("Asia/Kolkata")).replace(minute=0, second=0, microsecond=0) - timedelta(hours=5)
    async with server.client(server.token(tenant, "admin")) as client:
        response = await client.put("/api/settings", json={"timezone": "Asia/Kolkata",
                                                           "day_starts_at": start.strftime("%H:%M")})
    assert response.status_code == 200, response.text
    await post_events(server, tenant, busy_center(hours=4))
    console = await open_console()
    await console.open(server, server.token(tenant, "supervisor"))
    await console.ready()
    await console.tab("queues")
    p = console.page
    assert "times in Asia/Kolkata" in (await p.text_content("#chart-note") or "")
    labels = await p.eval_on_selector_all("#queue-buckets tr", "rows => rows.map(r => r.cells[0].textContent)")
    assert labels and all(label.endswith(":00") for label in labels), labels


async def test_sectors_satisfaction_and_costs(server: RunningServer, open_console: Callable[..., Awaitable[Console]]) -> None:
    """Sectors list the API's queues and teams; CSAT/NPS totals equal its statistics; costs show, or say quietly they are not served."""
    tenant = new_tenant("sv-sectors")
    await day_started_hours_ago(server, tenant, 3)
    async with server.client(server.token(tenant, "admin")) as client:
        response = await client.put("/api/settings", json={"costs": {"agent_cost_per_hour": 24, "telephony_cost_per_minute": 0.02,
                                                                     "currency": "EUR"}})
    assert response.status_code == 200, response.text
    await post_events(server, tenant, busy_center(hours=2))
    console = await open_console()
    await console.open(server, server.token(tenant, "supervisor"))
    day = await console.ready()
    p = console.page
    period = {"from": day, "to": day}

    await console.tab("sectors")
    sectors = (await api_get(server, tenant, "/api/analytics/performance/sectors", **period))["data"]
    for kind, body in (("queue", "#sector-queues"), ("team", "#sector-teams")):
        rows = [s for s in sectors if s["kind"] == kind]
        assert await p.eval_on_selector_all(f"{body} tr", "els => els.map(e => e.dataset.id)") == [s["id"] for s in rows]
        for metric in ("answered", "handled"):
            assert await console.values(f'{body} [data-metric="{metric}"]') == [str(s[metric]) for s in rows], (kind, metric)
    assert await console.values('#sector-queues [data-metric="offered"]') == [str(s["offered"]) for s in sectors if s["kind"] == "queue"]

    await console.tab("satisfaction")
    stats = (await api_get(server, tenant, "/api/analytics/satisfaction", granularity="day", **period))["statistics"]
    for metric in ("csat_responses", "nps_responses"):
        assert await p.get_attribute(f'#csat-totals [data-metric="{metric}"] dd', "data-value") == str(stats[metric]) == "12"
    for metric in ("csat", "csat_satisfied", "nps"):
        assert same(await p.get_attribute(f'#csat-totals [data-metric="{metric}"] dd', "data-value"), stats[metric]), metric
    assert await p.locator("#chart-csat canvas").count() == 1

    await console.tab("costs")
    async with server.client(server.token(tenant, "supervisor")) as client:
        response = await client.get("/api/analytics/costs", params=period)
    if response.status_code == 200:
        doc = response.json()
        assert await p.is_visible("#costs-body")
        stats = doc["statistics"]
        assert stats["total_cost"] > 0 and stats["currency"] == "EUR"
        for metric in ("handled", "agent_cost", "telephony_cost", "total_cost", "cost_per_call"):
            assert same(await p.get_attribute(f'#costs-totals [data-metric="{metric}"] dd', "data-value"), stats[metric]), metric
        assert "€" in (await p.text_content('#costs-totals [data-metric="total_cost"] dd') or "")
        assert await p.eval_on_selector_all("#costs-rows tr", "els => els.map(e => [e.dataset.start, e.dataset.queue])") \
            == [[d["start"], d["queue_id"]] for d in doc["data"]]
        assert await console.values('#costs-rows [data-metric="total_cost"]') == [str(d["total_cost"]) for d in doc["data"]]
        assert await p.locator("#costs-agents tr").count() == len(stats["by_agent"])
    else:
        # Not served (yet): a quiet note, not an error and not a blank section.
        assert await p.get_attribute("#costs-status", "data-kind") == "note"
        assert "not available" in (await p.text_content("#costs-status") or "")
        assert not await p.is_visible("#costs-body")


# -- quality ----------------------------------------------------------------------------------------


async def test_quality_form_saves_and_shows_field_errors(server: RunningServer,
                                                         open_console: Callable[..., Awaitable[Console]]) -> None:
    """A score out of range shows the server's message beside the score (and a criterion's beside it); a good one joins the list."""
    tenant = new_tenant("sv-quality")
    await post_events(server, tenant, [agent("a1", "on_call", ["sales"], name="Ada")])
    token = server.token(tenant, "supervisor")
    console = await open_console()
    await console.open(server, token)
    day = await console.ready()
    p = console.page
    await console.tab("quality")
    assert await p.locator("#quality-rows tr").count() == 0

    async with server.client(token) as client:  # the messages the server gives for the same mistakes
        bad_score = (await client.post("/api/analytics/calls/quality", json={"call_id": "c-1", "agent_id": "a1", "score": 7})).json()
        bad_criterion = (await client.post("/api/analytics/calls/quality", json={
            "call_id": "c-1", "agent_id": "a1", "score": 4, "criteria": {"Greeting": 9}})).json()
    await p.fill("#q-call", "c-1")
    await p.fill("#q-agent", "a1")
    await p.fill("#q-score", "7")
    await p.click('#quality-form button[type="submit"]')
    score_error = p.locator('.field-error[data-for="score"]')
    await score_error.wait_for(state="visible")
    assert await score_error.text_content() == bad_score["error"]["message"]
    assert "0 to 5" in bad_score["error"]["message"]
    assert await p.get_attribute("#q-score", "aria-invalid") == "true"

    await p.fill("#q-score", "4")
    await p.locator("#q-criteria .criterion").nth(0).locator(".c-score").fill("9")  # "Greeting"
    await p.click('#quality-form button[type="submit"]')
    criterion_error = p.locator("#q-criteria .criterion").nth(0).locator(".field-error")
    await criterion_error.wait_for(state="visible")
    assert await criterion_error.text_content() == bad_criterion["error"]["message"]
    assert not await score_error.is_visible()

    await p.locator("#q-criteria .criterion").nth(0).locator(".c-score").fill("4")
    await p.locator("#q-criteria .criterion").nth(1).locator(".c-score").fill("3.5")
    await p.click('#quality-form button[type="submit"]')
    await p.wait_for_selector('#q-result[data-kind="ok"]')
    await p.wait_for_selector('#quality-rows tr[data-call-id="c-1"]')
    reviews = (await api_get(server, tenant, "/api/analytics/calls/quality", **{"from": day, "to": day}))["data"]
    assert len(reviews) == 1 and reviews[0]["criteria"] == {"Greeting": 4, "Resolution": 3.5}
    assert await p.eval_on_selector_all("#quality-rows tr", "els => els.map(e => e.dataset.scoreId)") == [r["score_id"] for r in reviews]
    assert await console.values('#quality-rows [data-metric="score"]') == ["4"]
    summary = await api_get(server, tenant, "/api/analytics/calls/quality/summary", **{"from": day, "to": day})
    assert await p.get_attribute('#quality-totals [data-metric="quality_score"] dd', "data-value") == "4"
    assert summary["statistics"]["quality_score"] == 4 and summary["statistics"]["reviews"] == 1
    assert await console.values('#quality-agents [data-metric="reviews"]') == ["1"]


# -- CSV exports --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", REPORTS)
async def test_csv_export_downloads_the_report(server: RunningServer, open_console: Callable[..., Awaitable[Console]],
                                               tmp_path: Any, name: str) -> None:
    """An export button saves a CSV file whose header row and row count are the report's."""
    tenant = new_tenant("sv-csv")
    await day_started_hours_ago(server, tenant, 3)
    await post_events(server, tenant, busy_center(hours=2))
    token = server.token(tenant, "supervisor")
    console = await open_console()
    await console.open(server, token)
    day = await console.ready()
    async with server.client(token) as client:
        response = await client.get(f"/api/reports/{name}", params={"format": "csv", "from": day, "to": day})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    expected = list(csv.reader(io.StringIO(response.text)))
    await console.page.click('.tabs [data-tab="reports"]')
    async with console.page.expect_download() as info:
        await console.page.click(f'button[data-report="{name}"]')
    download = await info.value
    path = tmp_path / download.suggested_filename
    await download.save_as(path)
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    assert rows[0] == expected[0]
    assert len(rows) == len(expected) > 1
    assert await console.page.get_attribute(f'.report-status[data-report="{name}"]', "data-kind") == "ok"


# -- tokens and roles ------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["forged", "expired", "ingest", "agent", "missing"])
async def test_wrong_token_shows_a_clear_message(server: RunningServer, open_console: Callable[..., Awaitable[Console]],
                                                 case: str) -> None:
    """A forged, expired, ingest, agent or missing token shows a full-screen message saying why, not a blank console."""
    tenant = new_tenant("sv-bad")
    token = {
        "forged": jwt.encode({"client_id": tenant, "role": "supervisor", "aud": "wallboard", "exp": int(time.time()) + 600},
                             "not-the-secret-" + "y" * 40, algorithm="HS256"),
        "expired": server.token(tenant, "supervisor", ttl_s=-120),
        "ingest": server.token(tenant, "ingest"),
        "agent": server.token(tenant, "agent", sub="a1"),
        "missing": None,
    }[case]
    console = await open_console()
    await console.open(server, token)
    overlay = console.page.locator("#overlay")
    await overlay.wait_for(state="visible", timeout=10_000)
    text = await overlay.inner_text()
    assert "This console's token was refused" in text
    detail = {"forged": "signature", "expired": "expired", "ingest": "role is ingest", "agent": "role is agent",
              "missing": "no #token"}[case]
    assert detail in text
    assert await console.page.get_attribute("#badge", "data-state") == "unauthorized"
    if case == "expired":
        await console.page.screenshot(path=str(ARTIFACTS / "supervisor-token-refused.png"))
    # It stays refused: no retry loop against the server with the same token.
    before = len(console.urls)
    await asyncio.sleep(2.5)
    assert len(console.urls) == before


async def test_settings_only_for_admins(server: RunningServer, open_console: Callable[..., Awaitable[Console]]) -> None:
    """A supervisor has no settings section; an admin edits settings, sees the 400's message beside the field, and saves."""
    tenant = new_tenant("sv-settings")
    await post_events(server, tenant, [agent("a1", "available", ["sales"])])
    supervisor = await open_console(1280, 720)
    await supervisor.open(server, server.token(tenant, "supervisor"))
    await supervisor.ready()
    assert await supervisor.page.is_hidden("#tab-settings")
    assert await supervisor.page.locator("#panel-settings").count() == 0

    token = server.token(tenant, "admin")
    admin = await open_console(1280, 720)
    await admin.open(server, token)
    await admin.ready()
    p = admin.page
    assert await p.is_visible("#tab-settings")
    await p.click('.tabs [data-tab="settings"]')
    form = "#settings-form"
    assert await p.input_value(f'{form} [name="timezone"]') == "UTC"
    assert await p.input_value(f'{form} [name="sl_threshold_s"]') == "20"
    assert await p.input_value(f'{form} [name="alerts.service_level.amber"]') == "85"

    async with server.client(token) as client:
        zone_error = (await client.put("/api/settings", json={"timezone": "Mars/Olympus"})).json()["error"]["message"]
        order_error = (await client.put("/api/settings", json={"alerts": {"waiting": {"amber": 20, "red": 10}}})).json()["error"]["message"]
    await p.fill(f'{form} [name="timezone"]', "Mars/Olympus")
    await p.click(f'{form} button[type="submit"]')
    error = p.locator('.field-error[data-for="timezone"]')
    await error.wait_for(state="visible")
    assert await error.text_content() == zone_error

    await p.fill(f'{form} [name="timezone"]', "Europe/Berlin")
    await p.fill(f'{form} [name="sl_threshold_s"]', "30")
    await p.fill(f'{form} [name="alerts.waiting.amber"]', "20")
    await p.click(f'{form} button[type="submit"]')
    error = p.locator('.field-error[data-for="alerts.waiting"]')
    await error.wait_for(state="visible")
    assert await error.text_content() == order_error
    assert not await p.is_visible('.field-error[data-for="timezone"]')

    await p.fill(f'{form} [name="alerts.waiting.amber"]', "8")
    await p.click(f'{form} button[type="submit"]')
    await p.wait_for_selector('#settings-result[data-kind="ok"]')
    saved = (await api_get(server, tenant, "/api/settings", role="admin"))["data"]
    assert saved["timezone"] == "Europe/Berlin" and saved["sl_threshold_s"] == 30
    assert saved["alerts"]["waiting"] == {"amber": 8, "red": 10}
    assert saved["alerts"]["service_level"] == {"amber": 0.85, "red": 0.8}  # shown as percent, stored as fractions
    await p.screenshot(path=str(ARTIFACTS / "supervisor-settings-1280x720.png"))


async def test_another_tenants_data_never_shows(server: RunningServer, open_console: Callable[..., Awaitable[Console]]) -> None:
    """Opened with tenant B's token after tenant A's events, every table and total is empty: nothing of A appears."""
    a, b = new_tenant("sv-a"), new_tenant("sv-b")
    secrets_of_a = ["a-secret-queue", "a-secret-agent", "Alpha Secret", "a-secret-team", "a-secret-call"]
    await post_events(server, a, [
        agent("a-secret-agent", "on_call", ["a-secret-queue"], name="Alpha Secret", team="a-secret-team"),
        *handled("a-secret-queue", "a-secret-agent", ago_s=300, wait_s=4, talk_s=90),
        *call("a-secret-queue", wait_s=0, outcome=None, ago_s=5),
        event("quality.scored", now_ms(-60), call_id="a-secret-call", agent_id="a-secret-agent", score=5),
        event("csat.response", now_ms(-60), call_id="a-secret-call", agent_id="a-secret-agent", csat=5, nps=10),
    ])
    console = await open_console()
    await console.open(server, server.token(b, "supervisor"))
    await console.ready()
    p = console.page
    await asyncio.sleep(0.5)
    assert await p.locator("#agent-rows tr").count() == 0
    assert await p.is_visible("#agents-empty")
    await console.tab("queues")
    assert await p.get_attribute('#queue-totals [data-metric="offered"] dd', "data-value") == "0"
    assert await p.eval_on_selector_all("#chart-queue option", "els => els.map(e => e.value)") == [""]
    await console.tab("sectors")
    assert await p.locator("#sector-queues tr, #sector-teams tr").count() == 0
    await console.tab("quality")
    assert await p.locator("#quality-rows tr, #quality-agents tr").count() == 0
    await console.tab("satisfaction")
    assert await p.get_attribute('#csat-totals [data-metric="csat_responses"] dd', "data-value") == "0"
    html = await p.content()
    docs = await p.evaluate("JSON.stringify(window.supervisor.docs)")
    for secret in [*secrets_of_a, a]:
        assert secret not in html and secret not in docs, secret


# -- transport ---------------------------------------------------------------------------------------------


async def test_polls_with_if_none_match_when_websockets_are_blocked(server: RunningServer,
                                                                   open_console: Callable[..., Awaitable[Console]]) -> None:
    """Without WebSocket the agents table is polled with If-None-Match, the badge says so, and changes still show."""
    tenant = new_tenant("sv-poll")
    await post_events(server, tenant, [agent("a1", "available", ["sales"], name="Ada")])
    console = await open_console(init_script="window.WebSocket = function () { throw new Error('blocked by policy'); };")
    await console.open(server, server.token(tenant, "supervisor"))
    await console.page.wait_for_function("() => document.body.dataset.from")
    await wait_for_badge(console.page, "polling", timeout_s=5)
    p = console.page
    await p.wait_for_selector('#agent-rows tr[data-agent-id="a1"]')
    await post_events(server, tenant, [agent("a2", "on_call", ["sales"], name="Bo")])
    await p.wait_for_selector('#agent-rows tr[data-agent-id="a2"][data-state="on_call"]', timeout=6000)
    assert "Polling" in (await p.text_content("#badge") or "")
    polls = [r for r in console.requests if r.url.endswith("/api/metrics/agents/status")]
    assert len(polls) >= 2
    headers = [await r.all_headers() for r in polls]
    assert all(h.get("authorization", "").startswith("Bearer ") for h in headers)
    assert any("if-none-match" in h for h in headers[1:]), headers
    assert not [u for u in console.urls if u.startswith("ws")]


async def test_badge_says_reconnecting_and_recovers(server_factory: Callable[[Settings], Awaitable[RunningServer]],
                                                    settings: Settings,
                                                    open_console: Callable[..., Awaitable[Console]]) -> None:
    """When the server goes away the badge says reconnecting and the table dims; a server back on the port is followed again."""
    tenant = new_tenant("sv-restart")
    first = await server_factory(settings)
    await post_events(first, tenant, [agent("a1", "available", ["sales"], name="Ada")])
    console = await open_console()
    await console.open(first, first.token(tenant, "supervisor"))
    await console.ready()
    p = console.page
    await p.wait_for_selector('#agent-rows tr[data-agent-id="a1"]')
    await first.stop()
    await wait_for_badge(p, "reconnecting", timeout_s=5)
    assert "Reconnecting" in (await p.text_content("#badge") or "")
    assert await p.evaluate("document.body.classList.contains('old-data')")
    async with server_on(settings, port_of(first.url)) as second:
        await post_events(second, tenant, [agent("a2", "on_call", ["sales"], name="Bo")])
        await p.wait_for_selector('#agent-rows tr[data-agent-id="a2"]', timeout=15_000)
        await wait_for_badge(p, "live", timeout_s=15)
        assert not await p.evaluate("document.body.classList.contains('old-data')")


async def test_token_never_in_a_url(server: RunningServer, open_console: Callable[..., Awaitable[Console]]) -> None:
    """No request of the console (page, assets, WebSocket, API calls, a CSV export, a score) carries the token in its URL."""
    tenant = new_tenant("sv-url")
    token = server.token(tenant, "admin")
    await post_events(server, tenant, [agent("a1", "on_call", ["sales"], name="Ada")] + call("sales", wait_s=3, outcome="answered"))
    console = await open_console()
    await console.open(server, token)
    await console.ready()
    p = console.page
    for tab in ("queues", "sectors", "satisfaction", "costs", "quality"):
        await console.tab(tab)
    await p.fill("#q-call", "c-url")
    await p.fill("#q-agent", "a1")
    await p.fill("#q-score", "3")
    await p.click('#quality-form button[type="submit"]')
    await p.wait_for_selector('#q-result[data-kind="ok"]')
    await p.click('.tabs [data-tab="reports"]')
    await p.click('button[data-report="quality"]')
    await p.wait_for_function("() => document.querySelector('.report-status[data-report=\"quality\"]').dataset.kind !== undefined"
                              " && !document.querySelector('button[data-report=\"quality\"]').disabled")
    await p.click('.tabs [data-tab="settings"]')
    await p.click('#settings-form button[type="submit"]')
    await p.wait_for_selector('#settings-result[data-kind="ok"]')
    urls = console.urls
    assert any(u.startswith("ws://") and u.endswith("/ws") for u in urls), urls
    assert any("/api/reports/quality" in u for u in urls), urls
    sent = [u.split("#", 1)[0] for u in urls]
    signature = token.rsplit(".", 1)[1]
    assert not [u for u in sent if token in u or signature in u], sent
    api_calls = [r for r in console.requests if "/api/" in r.url and "/api/metrics/health" not in r.url]
    assert api_calls
    for request in api_calls:
        assert (await request.all_headers()).get("authorization") == f"Bearer {token}", request.url


# -- screenshots --------------------------------------------------------------------------------------------


async def test_screenshots(server: RunningServer, open_console: Callable[..., Awaitable[Console]]) -> None:
    """A busy contact center at 1920x1080 and 1280x720, supervisor console and wallboard, for people (and the README)."""
    tenant = new_tenant("sv-shot")
    await day_started_hours_ago(server, tenant, 5)
    await post_events(server, tenant, busy_center(hours=4))
    ARTIFACTS.mkdir(exist_ok=True)
    for width, height in ((1920, 1080), (1280, 720)):
        console = await open_console(width, height)
        await console.open(server, server.token(tenant, "admin"))
        await console.ready()
        p = console.page
        await p.wait_for_function("() => document.querySelectorAll('#agent-rows tr').length === 14")
        await p.click('#agent-rows tr[data-agent-id="ag03"]')
        await p.wait_for_selector('#drill[data-loaded^="ag03|"]')
        await asyncio.sleep(1.2)  # a tick or two
        # Usable at this size: nothing of the page is cut off sideways, the document itself does not scroll.
        assert await p.evaluate("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]") == [width, height]
        path = ARTIFACTS / f"supervisor-{width}x{height}.png"
        await p.screenshot(path=str(path))
        assert path.stat().st_size > 10_000
        if README_SCREENSHOTS:
            shutil.copyfile(path, SCREENSHOTS / path.name)
        for tab in ("queues", "quality"):
            await console.tab(tab)
            await asyncio.sleep(0.3)
            assert await p.evaluate("document.documentElement.scrollWidth") == width
            await p.screenshot(path=str(ARTIFACTS / f"supervisor-{tab}-{width}x{height}.png"))

        wallboard = await open_console(width, height)
        await wallboard.open(server, server.token(tenant, "supervisor"), path="wallboard.html")
        await wait_for_badge(wallboard.page, "live")
        await wallboard.page.wait_for_function("() => document.querySelectorAll('.agent').length === 14")
        await asyncio.sleep(1.2)
        path = ARTIFACTS / f"wallboard-busy-{width}x{height}.png"
        await wallboard.page.screenshot(path=str(path))
        assert path.stat().st_size > 10_000
        if README_SCREENSHOTS:
            shutil.copyfile(path, SCREENSHOTS / f"wallboard-{width}x{height}.png")

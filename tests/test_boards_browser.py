"""Alerts, the center's thresholds, boards, the first look and the languages, in Debian's Chromium against a real server.

One browser for the module, the session's server; each test its own tenant and pages.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from .conftest import ROOT, RunningServer
from .pages import (
    ARTIFACTS,
    agent,
    call,
    event,
    new_tenant,
    now_ms,
    opener,
    playwright_or_skip,
    post_events,
    wait_for_badge,
)

playwright_or_skip()

LANGS = ("en", "de", "fr", "es")
STRINGS = ROOT / "static" / "i18n"
RAW_KEY = re.compile(r"\b(?:board|console|common)\.[a-z0-9_]+(?:\.[a-z0-9_]+)*\b")
SCREENSHOTS = ROOT / "static" / "screenshots"


class Tab:
    """A page that records its script errors."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    async def open(self, server: RunningServer, path: str, token: str, extra: str = "") -> None:
        await self.page.goto(f"{server.url}/{path}#token={token}{extra}")


@pytest.fixture
async def open_tab(browser: Any) -> AsyncIterator[Callable[..., Awaitable[Tab]]]:
    """Fresh contexts (1920x1080 unless told), closed after the test; no page may raise."""
    async with opener(browser, Tab) as make:
        yield make

async def put(server: RunningServer, tenant: str, path: str, body: Any) -> Any:
    async with server.client(server.token(tenant, "admin", sub="boss")) as client:
        response = await client.put(path, json=body)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def waiting_calls(queue: str, n: int) -> tuple[list[str], list[dict[str, Any]]]:
    """``n`` calls queued a few seconds ago and still waiting: their ids and events."""
    events = [e for _ in range(n) for e in call(queue, wait_s=0, outcome=None, ago_s=3)]
    return [e["call_id"] for e in events], events


async def test_alert_banner_appears_once_and_clears_and_ack_reaches_another_console(
        server: RunningServer, open_tab: Callable[..., Awaitable[Tab]]) -> None:
    """A breach shows one role=alert banner on a connected wallboard within 5 s and goes within 5 s of its clear;
    one supervisor's acknowledgement shows in another supervisor's console."""
    tenant = new_tenant("bb-alert")
    await put(server, tenant, "/api/settings", {"alerts": {
        "waiting": {"amber": 1, "red": 100}, "longest_wait_s": {"amber": 3000, "red": 3600},
        "service_level": {"amber": 0, "red": 0}, "abandon_rate": {"amber": 1, "red": 1}}})
    await post_events(server, tenant, [agent("a1", "available", ["sales"])])
    board = await open_tab()
    await board.open(server, "wallboard.html", server.token(tenant, "supervisor"))
    await wait_for_badge(board.page, "live")
    consoles = []
    for sub in ("sue", "sam"):
        console = await open_tab()
        await console.open(server, "supervisor.html", server.token(tenant, "supervisor", sub=sub), "&tab=alerts")
        await wait_for_badge(console.page, "live")
        consoles.append(console)
    ids, events = waiting_calls("sales", 2)
    breach = time.time()
    await post_events(server, tenant, events)
    item = board.page.locator('#alerts[role="alert"] .alert-item')
    await item.first.wait_for(state="visible", timeout=5000)
    assert time.time() - breach < 5
    text = await item.first.inner_text()
    assert "calls waiting" in text and "sales" in text and "Amber" in text and " 2 " in f" {text} "
    await asyncio.sleep(2)  # evaluators look again: still one banner, never a second
    assert await item.count() == 1

    # Sue acknowledges; Sam's console shows who did.
    sue, sam = consoles
    button = sue.page.locator("#alerts-active button.ack")
    await button.wait_for(timeout=5000)
    await button.click()
    acked = sam.page.locator('#alerts-active .acked[data-by="sue"]')
    await acked.wait_for(timeout=5000)
    assert "sue" in await acked.inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    await sam.page.screenshot(path=str(ARTIFACTS / "supervisor-alerts-1920x1080.png"))

    # Answer one call: one waiting is no breach; the banner goes within 5 s.
    await post_events(server, tenant, [event("call.answered", now_ms(), call_id=ids[0], queue_id="sales", agent_id="a1")])
    cleared = time.time()
    await board.page.wait_for_function("() => document.querySelectorAll('#alerts .alert-item').length === 0",
                                       timeout=5000)
    assert time.time() - cleared < 5
    assert await board.page.locator("#alerts").is_hidden()


async def test_threshold_change_in_settings_reaches_the_tile(
        server: RunningServer, open_tab: Callable[..., Awaitable[Tab]]) -> None:
    """With calls-waiting amber set to 2 in Settings, the waiting tile turns amber at 2 waiting calls within 5 s."""
    tenant = new_tenant("bb-thr")
    await post_events(server, tenant, waiting_calls("sales", 2)[1])
    board = await open_tab()
    await board.open(server, "wallboard.html", server.token(tenant, "supervisor"))
    await wait_for_badge(board.page, "live")
    tile = '.tile[data-metric="waiting"]'
    await board.page.wait_for_function(f"() => document.querySelector('{tile}').dataset.value === '2'")
    assert await board.page.get_attribute(tile, "data-level") == "ok"  # the default amber is 5
    await put(server, tenant, "/api/settings", {"alerts": {"waiting": {"amber": 2, "red": 10}}})
    changed = time.time()
    await board.page.wait_for_function(f"() => document.querySelector('{tile}').dataset.level === 'amber'", timeout=5000)
    assert time.time() - changed < 5
    row = '#queue-rows tr[data-queue-id="sales"] [data-metric="waiting"]'
    assert await board.page.get_attribute(row, "data-level") == "amber"


async def test_board_shows_exactly_its_tiles_and_queues_and_rotation_shows_each(
        server: RunningServer, open_tab: Callable[..., Awaitable[Tab]]) -> None:
    """#board=sales shows its three tiles and two queues only; #boards=sales,support&rotate=5 shows each in turn."""
    tenant = new_tenant("bb-board")
    events = [agent("a1", "available", ["sales"]), agent("a2", "on_call", ["support"])]
    for queue, n in (("sales", 2), ("renewals", 1), ("support", 3), ("billing", 1)):
        events += waiting_calls(queue, n)[1]
    await post_events(server, tenant, events)
    await put(server, tenant, "/api/boards/sales", {
        "title": "Sales floor", "queues": ["sales", "renewals"], "rotate_s": 30,
        "tiles": [{"metric": "waiting"}, {"metric": "waiting", "queue_ids": ["renewals"], "label": "Renewals waiting"},
                  {"metric": "agents_available"}]})
    await put(server, tenant, "/api/boards/support", {
        "title": "Support", "queues": ["support"], "locale": "de", "tiles": [{"metric": "waiting"}, {"metric": "asa"}]})
    board = await open_tab()
    await board.open(server, "wallboard.html", server.token(tenant, "supervisor"), "&board=sales")
    await wait_for_badge(board.page, "live")
    p = board.page
    await p.wait_for_function("() => document.querySelectorAll('#queue-rows tr').length === 2")
    tiles = await p.eval_on_selector_all("#kpis .tile", "els => els.map(e => [e.dataset.metric, e.dataset.value, "
                                                        "e.querySelector('.label').textContent])")
    assert tiles == [["waiting", "3", "Calls waiting"], ["waiting", "1", "Renewals waiting"],
                     ["agents_available", "1", "Available"]]
    assert await p.locator("#agents-kpis").is_hidden()
    rows = await p.eval_on_selector_all("#queue-rows tr", "els => els.map(e => e.dataset.queueId)")
    assert rows == ["renewals", "sales"]
    assert await p.text_content("#board-title") == "Sales floor"

    rotating = await open_tab()
    await rotating.open(server, "wallboard.html", server.token(tenant, "supervisor"), "&boards=sales,support&rotate=5")
    seen: list[str] = []
    deadline = time.time() + 14
    while time.time() < deadline and len(seen) < 3:
        title = await rotating.page.text_content("#board-title")
        if title in ("Sales floor", "Support") and (not seen or seen[-1] != title):  # not the page's own before a board loads
            seen.append(title)
        await asyncio.sleep(0.25)
    assert seen == ["Sales floor", "Support", "Sales floor"], seen


async def test_empty_board_says_how_to_feed_it(server: RunningServer, open_tab: Callable[..., Awaitable[Tab]]) -> None:
    """A tenant without events sees how to feed the board: the POST /api/events example, simulate and the queue_log reader."""
    tenant = new_tenant("bb-empty")
    board = await open_tab()
    await board.open(server, "wallboard.html", server.token(tenant, "supervisor"))
    await wait_for_badge(board.page, "live")
    help_box = board.page.locator("#feed-help")
    await help_box.wait_for(state="visible", timeout=5000)
    text = await help_box.inner_text()
    assert "/api/events" in text and "wallboard simulate" in text and "ingest-queue-log" in text and tenant in text
    await post_events(server, tenant, waiting_calls("sales", 1)[1])
    await help_box.wait_for(state="hidden", timeout=5000)


def test_string_files_have_the_same_keys_and_placeholders() -> None:
    """en, de, fr and es carry the same keys, each translated (not empty) with the same {placeholders}."""
    files = {lang: json.loads((STRINGS / f"{lang}.json").read_text()) for lang in LANGS}
    assert len(files["en"]) > 200
    for lang, strings in files.items():
        assert set(strings) == set(files["en"]), (lang, set(strings) ^ set(files["en"]))
        for key, text in strings.items():
            assert text.strip(), (lang, key)
            assert set(re.findall(r"\{\w+\}", text)) == set(re.findall(r"\{\w+\}", files["en"][key])), (lang, key)
    # Each language differs from English in most strings (a copied file would not).
    for lang in LANGS[1:]:
        same = [k for k in files["en"] if files[lang][k] == files["en"][k]]
        assert len(same) < len(files["en"]) * 0.25, (lang, len(same))


def test_pages_use_only_declared_keys() -> None:
    """Every data-i18n key and every t("…") key in the pages and their scripts exists in the English file."""
    keys = set(json.loads((STRINGS / "en.json").read_text()))
    static = ROOT / "static"
    used: set[str] = set()
    for html in ("wallboard.html", "supervisor.html"):
        used |= set(re.findall(r'data-i18n(?:-title|-label|-placeholder)?="([^"]+)"', (static / html).read_text()))
    for script in (static / "js").glob("*.js"):
        used |= {k for k in re.findall(r'\bt\("([a-z0-9_.]+)"', script.read_text())}
    assert used and not (used - keys), sorted(used - keys)


async def visible_text(page: Any) -> str:
    return await page.evaluate("() => document.body.innerText + ' ' + [...document.querySelectorAll('[title],[aria-label],[placeholder]')]"
                               ".map(e => (e.title || '') + ' ' + (e.getAttribute('aria-label') || '') + ' ' + (e.placeholder || '')).join(' ')")


async def english_left(page: Any, lang: str) -> list[str]:
    """Visible texts of the page that are an English string which ``lang`` translates differently."""
    if lang == "en":
        return []
    en = json.loads((STRINGS / "en.json").read_text())
    other = json.loads((STRINGS / f"{lang}.json").read_text())
    english = {text for key, text in en.items() if other[key] != text and "{" not in text}
    texts = await page.evaluate("() => [...document.querySelectorAll('body *')].filter(e => e.offsetParent !== null)"
                                ".flatMap(e => [...e.childNodes].filter(n => n.nodeType === 3).map(n => n.textContent.trim()))"
                                ".filter(Boolean)")
    return sorted({text for text in texts if text in english})


async def test_each_language_renders_both_pages_without_raw_keys(
        server: RunningServer, open_tab: Callable[..., Awaitable[Tab]]) -> None:
    """#lang=en|de|fr|es: both pages show their strings in that language with its number formats, no raw key
    and no English string left;
    screenshots of each at 1920x1080 go to test-artifacts/."""
    tenant = new_tenant("bb-lang")
    events = [agent("a1", "available", ["sales"], name="Ada"), agent("a2", "on_call", ["sales"], name="Bo")]
    events += [e for i in range(7) for e in call("sales", wait_s=5 + i, outcome="answered", ago_s=900 + i * 30, agent_id="a2")]
    events += call("sales", wait_s=40, outcome="abandoned", ago_s=600) + waiting_calls("sales", 1)[1]
    await post_events(server, tenant, events)
    ARTIFACTS.mkdir(exist_ok=True)
    expected = {"en": ("Calls waiting", "Service level"), "de": ("Wartende Anrufe", "Servicelevel"),
                "fr": ("Appels en attente", "Niveau de service"), "es": ("Llamadas en espera", "Nivel de servicio")}
    loading = {lang: json.loads((STRINGS / f"{lang}.json").read_text())["common.loading"] for lang in LANGS}
    for lang in LANGS:
        board = await open_tab()
        await board.open(server, "wallboard.html", server.token(tenant, "supervisor"), f"&lang={lang}")
        await wait_for_badge(board.page, "live")
        await board.page.wait_for_function("() => document.querySelector('.tile[data-metric=\"abandon_rate\"]').dataset.value")
        text = await visible_text(board.page)
        assert await board.page.evaluate("document.documentElement.lang") == lang
        assert all(word in text for word in expected[lang]), (lang, text[:400])
        assert not RAW_KEY.findall(text), (lang, RAW_KEY.findall(text))
        assert not await english_left(board.page, lang), (lang, await english_left(board.page, lang))
        rate = (await board.page.text_content('.tile[data-metric="abandon_rate"] .value') or "").replace("\u202f", "\u00a0")
        # 1 of 8 calls abandoned: 12.5 %, written the locale's way (French's space is narrow in newer ICU).
        assert rate == {"en": "12.5%", "de": "12,5\u00a0%", "fr": "12,5\u00a0%", "es": "12,5\u00a0%"}[lang], (lang, rate)
        await board.page.screenshot(path=str(ARTIFACTS / f"wallboard-{lang}-1920x1080.png"))

        console = await open_tab()
        await console.open(server, "supervisor.html", server.token(tenant, "admin"), f"&lang={lang}")
        await wait_for_badge(console.page, "live")
        await console.page.wait_for_function("() => document.body.dataset.from")
        for tab in ("agents", "queues", "sectors", "quality", "satisfaction", "costs", "reports", "alerts", "boards", "settings"):
            await console.page.click(f'#tab-{tab}')
            await asyncio.sleep(0.1)  # the tab asks for its figures: wait until none says "Loading…"
            await console.page.wait_for_function(
                "loading => ![...document.querySelectorAll('.tabpanel:not([hidden]) .status:not([hidden])')]"
                ".some(e => e.textContent === loading)", arg=loading[lang])
            text = await visible_text(console.page)
            assert not RAW_KEY.findall(text), (lang, tab, RAW_KEY.findall(text))
            assert not await english_left(console.page, lang), (lang, tab, await english_left(console.page, lang))
        assert await console.page.evaluate("document.documentElement.lang") == lang
        assert expected[lang][1] in await console.page.inner_text("#panel-settings") or lang == "en"
        await console.page.click("#tab-agents")
        await console.page.screenshot(path=str(ARTIFACTS / f"supervisor-{lang}-1920x1080.png"))


@pytest.mark.slow
async def test_board_fits_a_small_and_a_4k_screen(server: RunningServer, open_tab: Callable[..., Awaitable[Tab]]) -> None:
    """A board at 1280x720 and 3840x2160 fits without scrolling; screenshots of both (README's with WALLBOARD_README_SCREENSHOTS=1)."""
    tenant = new_tenant("bb-fit")
    events = [agent(f"a{i}", ["available", "on_call", "wrap_up", "break"][i % 4], ["sales", "support"], name=f"Agent {i}")
              for i in range(12)]
    for queue in ("sales", "support", "renewals"):
        events += [e for i in range(12) for e in call(queue, wait_s=3 + i, outcome="answered", ago_s=900 + i * 40,
                                                      agent_id="a1")]
        events += waiting_calls(queue, 2)[1]
    events += call("support", wait_s=0, outcome=None, ago_s=45)  # past the default amber wait (30 s): one banner
    await post_events(server, tenant, events)
    await put(server, tenant, "/api/boards/floor", {
        "title": "Sales and support", "queues": ["sales", "support", "renewals"],
        "tiles": [{"metric": m} for m in ("waiting", "longest_wait", "service_level", "abandon_rate", "agents_available",
                                          "agents_on_call")]})
    ARTIFACTS.mkdir(exist_ok=True)
    for width, height in ((1280, 720), (3840, 2160)):
        board = await open_tab(width, height)
        await board.open(server, "wallboard.html", server.token(tenant, "supervisor"), "&board=floor")
        await wait_for_badge(board.page, "live")
        await board.page.wait_for_function("() => document.querySelectorAll('.agent').length === 12")
        await asyncio.sleep(1.2)
        scroll = await board.page.evaluate("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
        assert scroll == [width, height]
        name = f"wallboard-board-{width}x{height}.png"
        await board.page.screenshot(path=str(ARTIFACTS / name))
        if os.environ.get("WALLBOARD_README_SCREENSHOTS") == "1":
            await board.page.screenshot(path=str(SCREENSHOTS / name))


async def test_console_board_editor_saves_previews_and_names_a_bad_field(
        server: RunningServer, open_tab: Callable[..., Awaitable[Tab]]) -> None:
    """An admin builds a board in the console: the preview shows its tiles with live figures, Save stores it,
    a bad field is refused with the server's message and the field marked."""
    tenant = new_tenant("bb-edit")
    await post_events(server, tenant, waiting_calls("sales", 2)[1] + waiting_calls("support", 1)[1])
    console = await open_tab()
    await console.open(server, "supervisor.html", server.token(tenant, "admin"), "&tab=boards")
    await wait_for_badge(console.page, "live")
    p = console.page
    await p.fill("#b-name", "sales")
    await p.fill("#b-title", "Sales floor")
    await p.fill("#b-queues", "sales")
    await p.wait_for_function("() => document.querySelector('#preview-tiles .tile[data-metric=\"waiting\"]')?.dataset.value === '2'")
    assert await p.eval_on_selector_all("#preview-tiles .tile", "els => els.map(e => e.dataset.metric)") == [
        "waiting", "longest_wait", "service_level"]
    await p.fill("#b-rotate", "1")
    await p.click('#board-form button[type="submit"]')
    result = p.locator("#boards-result")
    await result.wait_for(state="visible")
    assert "rotate_s" in await result.inner_text()
    assert await p.get_attribute("#b-rotate", "aria-invalid") == "true"
    await p.fill("#b-rotate", "20")
    await p.click('#board-form button[type="submit"]')
    await p.locator('#boards-list [data-board="sales"]').wait_for()
    async with server.client(server.token(tenant, "supervisor")) as client:
        stored = (await client.get("/api/boards/sales")).json()["data"]
    assert stored["title"] == "Sales floor" and stored["queues"] == ["sales"] and stored["rotate_s"] == 20
    assert [tile["metric"] for tile in stored["tiles"]] == ["waiting", "longest_wait", "service_level"]
    assert await p.get_attribute("#b-open", "href") == "wallboard.html#board=sales"
    ARTIFACTS.mkdir(exist_ok=True)
    await p.screenshot(path=str(ARTIFACTS / "supervisor-boards-1920x1080.png"))

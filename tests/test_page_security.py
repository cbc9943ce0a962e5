"""Pages under a strict Content-Security-Policy, in real Chromium: they work, violate nothing, keep no token in the URL.

Every HTTP answer (pages, assets, API, errors) carries the CSP, ``nosniff``, ``no-referrer`` and
``frame-ancestors 'none'``; the pages take the token out of the fragment into sessionStorage.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from server.api.headers import CONTENT_SECURITY_POLICY

from .conftest import RunningServer
from .pages import (
    agent,
    busy_center,
    call,
    day_started_hours_ago,
    new_tenant,
    opener,
    playwright_or_skip,
    post_events,
    wait_for_badge,
    wait_for_tile,
)

async_api = playwright_or_skip()

# Installed before any page script: every CSP violation the document reports is kept. (Waits below are
# arrow functions: Playwright evaluates a bare expression with eval, which this CSP rightly refuses.)
WATCH_CSP = """
window.__csp = [];
document.addEventListener("securitypolicyviolation",
  (e) => window.__csp.push(`${e.violatedDirective} blocked ${e.blockedURI} at ${e.sourceFile}:${e.lineNumber}`));
"""


class Tab:
    """A page with its script errors, console messages and CSP violations."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.errors: list[str] = []
        self.console: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("console", lambda message: self.console.append(f"{message.type}: {message.text}"))

    async def violations(self) -> list[str]:
        reported = await self.page.evaluate("window.__csp")
        return reported + [m for m in self.console if "Content Security Policy" in m or "Content-Security-Policy" in m]

    async def location(self) -> dict[str, Any]:
        return await self.page.evaluate("({href: location.href, hash: location.hash, stored: sessionStorage.getItem("
                                        "'wallboard.token'), entries: history.length})")


@pytest.fixture
async def open_tab(browser: Any) -> AsyncIterator[Callable[[], Awaitable[Tab]]]:
    """A fresh context per tab, watching CSP violations; closed after the test; no page may raise."""
    async with opener(browser, Tab) as make:
        yield lambda: make(init_script=WATCH_CSP)

async def test_every_answer_carries_the_security_headers(server: RunningServer) -> None:
    """Pages, scripts, API answers (200, 401, 404) carry CSP, nosniff, no-referrer and frame-ancestors 'none'."""
    token = server.token(new_tenant("hdr"), "supervisor")
    async with server.client() as client:
        answers = [await client.get(path) for path in ("/", "/wallboard.html", "/supervisor.html", "/js/live.js",
                                                         "/api/metrics/health", "/api/metrics/live", "/nothing-here")]
        answers.append(await client.get("/api/metrics/live", headers={"Authorization": f"Bearer {token}"}))
        pages = {page: (await client.get(page)).text for page in ("/", "/wallboard.html", "/supervisor.html")}
    assert [a.status_code for a in answers] == [200, 200, 200, 200, 200, 401, 404, 200]
    for answer in answers:
        h = answer.headers
        assert h["content-security-policy"] == CONTENT_SECURITY_POLICY, answer.url
        assert "default-src 'self'" in h["content-security-policy"] and "unsafe-inline" not in h["content-security-policy"]
        assert "frame-ancestors 'none'" in h["content-security-policy"]
        assert (h["x-content-type-options"], h["referrer-policy"], h["x-frame-options"]) == ("nosniff", "no-referrer", "DENY")
    for page, html in pages.items():
        assert '<meta name="referrer" content="no-referrer">' in html, page
        assert "<style" not in html and "<script>" not in html and " style=" not in html and " onclick=" not in html, page


async def test_wallboard_and_start_page_under_the_csp(server: RunningServer, open_tab: Callable[[], Awaitable[Tab]]) -> None:
    """The start page and the wallboard show live data with no CSP violation; the address and history keep no token."""
    tenant = new_tenant("csp-wb")
    token = server.token(tenant, "supervisor")
    await post_events(server, tenant, [agent("a1", "available", ["sales"], name="Ada"),
                                       *call("sales", wait_s=0, outcome=None, ago_s=5)])
    tab = await open_tab()
    p = tab.page
    await p.goto(f"{server.url}/#token={token}")
    await p.wait_for_function("() => document.getElementById('state').textContent !== 'checking…'")
    assert (await p.text_content("#state") or "").startswith(("ok", "degraded"))
    where = await tab.location()
    assert (where["href"], where["stored"]) == (f"{server.url}/", token)
    await p.click("#wallboard")
    await wait_for_badge(p, "live")
    await wait_for_tile(p, "waiting", "1")
    where = await tab.location()
    assert where["href"] == f"{server.url}/wallboard.html" and token not in str(await p.evaluate("history.state"))
    # A reload finds the token in this tab's sessionStorage.
    await p.goto(f"{server.url}/wallboard.html#queues=sales")
    await wait_for_badge(p, "live")
    # A fresh token handed through the fragment (a kiosk manager) is taken and cleared at once.
    fresh = server.token(tenant, "supervisor", ttl_s=7200)
    await p.evaluate("t => { location.hash = 'token=' + t + '&queues=sales'; }", fresh)
    await p.wait_for_function("() => !location.hash.includes('token')")
    where = await tab.location()
    assert (where["hash"], where["stored"]) == ("#queues=sales", fresh)
    await post_events(server, tenant, call("sales", wait_s=0, outcome=None, ago_s=1))
    await wait_for_tile(p, "waiting", "2")
    assert await tab.violations() == []


async def test_supervisor_console_under_the_csp(server: RunningServer, open_tab: Callable[[], Awaitable[Tab]]) -> None:
    """Every section of the console (charts, forms, settings) works with no CSP violation; the URL keeps no token."""
    tenant = new_tenant("csp-sv")
    token = server.token(tenant, "admin")
    await day_started_hours_ago(server, tenant, 3)
    await post_events(server, tenant, busy_center(hours=2))
    tab = await open_tab()
    p = tab.page
    await p.goto(f"{server.url}/supervisor.html#token={token}&tab=agents")
    await p.wait_for_function("() => document.body.dataset.from", timeout=10_000)
    await wait_for_badge(p, "live")
    await p.wait_for_function("() => document.querySelectorAll('#agent-rows tr').length === 14")
    for name in ("queues", "sectors", "quality", "satisfaction", "costs"):
        await p.click(f'.tabs [data-tab="{name}"]')
        await p.wait_for_function("n => document.querySelector(`#panel-${n}`).dataset.loaded", arg=name)
    assert await p.locator("#chart-calls canvas").count() == 1
    await p.click('.tabs [data-tab="settings"]')
    await p.click('#settings-form button[type="submit"]')
    await p.wait_for_selector('#settings-result[data-kind="ok"]')
    await p.click('.tabs [data-tab="agents"]')
    await p.click('#agent-rows tr[data-agent-id="ag00"] td')  # the drill-down draws a state bar (CSSOM styles)
    await p.wait_for_function("() => document.getElementById('drill').dataset.loaded")
    where = await tab.location()
    assert token not in where["href"] and where["stored"] == token
    assert where["hash"] == "#tab=agents", where
    # A reload (the token now only in sessionStorage) starts the console again.
    await p.reload()
    await wait_for_badge(p, "live")
    assert await tab.violations() == []

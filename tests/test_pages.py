"""The TV wallboard in a real headless Chromium against the real server over real sockets.

Needs Debian's Chromium at /usr/bin/chromium (``.ci/run`` installs it) and the
``playwright`` package (its bundled driver only: no browser is downloaded).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import jwt
import pytest

from server.core.config import Settings

from .conftest import RunningServer
from .pages import (
    ARTIFACTS,
    agent,
    badge_state,
    call,
    event,
    live_overview,
    new_tenant,
    now_ms,
    number,
    opener,
    playwright_or_skip,
    port_of,
    post_events,
    server_on,
    tile,
    tile_number,
    tile_text,
    wait_for_badge,
    wait_for_tile,
)

async_api = playwright_or_skip()

Factory = Callable[[Settings], Awaitable[RunningServer]]


class Page:
    """A page with the URLs it requested and the script errors it raised."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.urls: list[str] = []
        self.errors: list[str] = []
        page.on("request", lambda request: self.urls.append(request.url))
        page.on("websocket", lambda ws: self.urls.append(ws.url))
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    async def open(self, server: RunningServer, token: str | None, extra: str = "") -> None:
        fragment = f"#token={token}{extra}" if token else ""
        await self.page.goto(f"{server.url}/wallboard.html{fragment}")


@pytest.fixture
async def open_page(browser: Any) -> AsyncIterator[Callable[..., Awaitable[Page]]]:
    """Fresh browser contexts (1920x1080 unless told), closed after the test; no page may raise."""
    async with opener(browser, Page) as make:
        yield make

def mmss(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    s = int(seconds)
    return f"{s // 60:02d}:{s % 60:02d}" if s < 3600 else f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def pct(fraction: float | None, digits: int = 0) -> str:
    return "–" if fraction is None else f"{fraction * 100:.{digits}f}%"


def contact_center(queues: Mapping[str, Sequence[tuple[float, str | None]]]) -> list[dict[str, Any]]:
    """Calls per queue as (wait_s, outcome); outcome None = still waiting since wait_s ago."""
    events = []
    for queue, calls in queues.items():
        for index, (wait_s, outcome) in enumerate(calls):
            if outcome is None:
                events += call(queue, wait_s=0, outcome=None, ago_s=wait_s)
            else:
                events += call(queue, wait_s=wait_s, outcome=outcome, ago_s=600 + index * 30)
    return events


async def test_wallboard_shows_the_rest_numbers(server: RunningServer, open_page: Callable[..., Awaitable[Page]]) -> None:
    """Tiles, the queue table and the agent grid show the same numbers as /api/metrics/live."""
    tenant = new_tenant("pg-same")
    events = [
        agent("a1", "available", ["sales", "support"], name="Ada"),
        agent("a2", "available", ["sales"], name="Bo"),
        agent("a3", "on_call", ["sales"], name="Cy"),
        agent("a4", "wrap_up", ["support"], name="Di"),
        agent("a5", "break", ["support"], ago_s=75, name="Ed", reason="Lunch"),
        agent("a6", "other", ["support"], name="Flo"),
    ]
    events += contact_center({
        "sales": [(10, "answered"), (12, "answered"), (35, "answered"), (40, "abandoned"), (2, "abandoned"), (20, None), (45, None)],
        "support": [(5, "answered"), (70, "abandoned"), (8, None)],
    })
    await post_events(server, tenant, events)
    doc = await live_overview(server, tenant)
    page = await open_page()
    await page.open(server, server.token(tenant, "supervisor"))
    await wait_for_badge(page.page, "live")
    await wait_for_tile(page.page, "waiting", str(doc["today"]["waiting"]))
    p = page.page

    today = doc["today"]
    assert await tile(p, "waiting") == "3" == str(today["waiting"])
    assert await tile_number(p, "service_level") == pytest.approx(today["service_level"])
    assert await tile_text(p, "service_level") == pct(today["service_level"])
    assert await tile(p, "offered") == str(today["offered"]) == "10"
    assert await tile_number(p, "abandon_rate") == pytest.approx(today["abandon_rate"])
    assert await tile_text(p, "abandon_rate") == pct(today["abandon_rate"], 1)
    assert await tile_number(p, "asa") == pytest.approx(today["asa_s"])
    assert await tile_text(p, "asa") == mmss(today["asa_s"])
    for state in ("available", "on_call", "wrap_up", "break"):
        assert await tile(p, f"agents_{state}") == str(doc["agents"]["by_state"][state]), state
    # Longest wait ticks on the client from oldest_queued_at: about 45 s, red past 60 s, amber past 30 s.
    assert 44 <= await tile_number(p, "longest_wait") <= 60
    assert await p.get_attribute('.tile[data-metric="longest_wait"]', "data-level") == "amber"

    for queue in doc["queues"]:
        row = f'tr[data-queue-id="{queue["queue_id"]}"]'
        for metric, value in (("waiting", queue["waiting"]), ("offered", queue["today"]["offered"]),
                              ("answered", queue["today"]["answered"]), ("abandoned", queue["today"]["abandoned"]),
                              ("agents_available", queue["agents_available"])):
            assert await p.get_attribute(f'{row} [data-metric="{metric}"]', "data-value") == str(value), (queue["queue_id"], metric)
        sl = await p.text_content(f'{row} [data-metric="service_level"]')
        assert sl == pct(queue["today"]["service_level"]), queue["queue_id"]

    # The agent grid: colours by state, the pause reason, time in state ticking from `since`.
    assert await p.locator(".agent").count() == 6
    card = '.agent[data-agent-id="a5"]'
    assert await p.get_attribute(card, "data-state") == "break"
    assert "Lunch" in await p.text_content(card)
    first = await number(p, f"{card} .agent-time")
    assert 74 <= first <= 90
    await asyncio.sleep(2.1)
    second = await number(p, f"{card} .agent-time")
    # Each reading is from the last render: a tick on the second, or a message in between.
    assert 2.1 - 1.1 <= second - first <= 2.1 + 1.1


async def test_a_late_document_never_turns_the_board_clock_back(server: RunningServer,
                                                                open_page: Callable[..., Awaitable[Page]]) -> None:
    """The boards learn the server clock from each overview's `as_of`; a document that was late (a snapshot
    a few seconds old) must not move the clocks back: time in state and longest wait only ever tick forward."""
    page = await open_page()
    await page.open(server, server.token(f"clock-{secrets.token_hex(3)}"))
    skew = await page.page.evaluate("""async () => {
        const { ServerClock } = await import("./js/live.js");
        const clock = new ServerClock();
        const at = (ms) => new Date(Date.now() + ms).toISOString();
        clock.learn(at(5000));   // on time: the server is 5 s ahead
        clock.learn(at(1000));   // a document 4 s late
        clock.learn("not a time");
        return clock.skewMs;
    }""")
    assert 4800 <= skew <= 5200


async def test_an_event_changes_the_page_within_5_s(server: RunningServer, open_page: Callable[..., Awaitable[Page]]) -> None:
    """A call entering a queue shows on an open wallboard within 5 s."""
    tenant = new_tenant("pg-event")
    await post_events(server, tenant, [agent("a1", "available", ["sales"])] + call("sales", wait_s=0, outcome=None, ago_s=5))
    page = await open_page()
    await page.open(server, server.token(tenant, "supervisor"))
    await wait_for_badge(page.page, "live")
    await wait_for_tile(page.page, "waiting", "1")
    started = time.monotonic()
    await post_events(server, tenant, call("sales", wait_s=0, outcome=None, ago_s=1) + [agent("a1", "on_call", ["sales"])])
    await wait_for_tile(page.page, "waiting", "2", timeout_s=5)
    await wait_for_tile(page.page, "agents_on_call", "1", timeout_s=5)
    assert time.monotonic() - started < 5


async def test_page_recovers_after_server_restart(server_factory: Factory, settings: Settings,
                                                  open_page: Callable[..., Awaitable[Page]]) -> None:
    """After the server stops the badge says reconnecting; a server back on the same port is followed again by itself."""
    tenant = new_tenant("pg-restart")
    first = await server_factory(settings)
    await post_events(first, tenant, call("sales", wait_s=0, outcome=None, ago_s=3))
    page = await open_page()
    await page.open(first, first.token(tenant, "supervisor"))
    await wait_for_badge(page.page, "live")
    await wait_for_tile(page.page, "waiting", "1")

    await first.stop()
    await wait_for_badge(page.page, "reconnecting", timeout_s=5)
    await asyncio.sleep(3)  # down for a while: several attempts fail
    assert await badge_state(page.page) == "reconnecting"

    async with server_on(settings, port_of(first.url)) as second:
        started = time.monotonic()
        await post_events(second, tenant, call("sales", wait_s=0, outcome=None, ago_s=1))
        await wait_for_tile(page.page, "waiting", "2", timeout_s=15)
        await wait_for_badge(page.page, "live", timeout_s=15)
        assert time.monotonic() - started < 15
        # Back on the WebSocket: a further event arrives promptly.
        await post_events(second, tenant, call("sales", wait_s=0, outcome=None, ago_s=1))
        await wait_for_tile(page.page, "waiting", "3", timeout_s=5)
        # The token left the address at load (it is in the tab's sessionStorage): a reloaded kiosk page keeps it.
        assert "token" not in page.page.url
        await page.page.reload()
        await wait_for_badge(page.page, "live", timeout_s=15)


async def test_polls_when_websockets_are_blocked(server: RunningServer, open_page: Callable[..., Awaitable[Page]]) -> None:
    """Without WebSocket the page polls REST (If-None-Match) every 2 s, says so, and still updates."""
    tenant = new_tenant("pg-poll")
    await post_events(server, tenant, call("support", wait_s=0, outcome=None, ago_s=2))
    page = await open_page(init_script="window.WebSocket = function () { throw new Error('blocked by policy'); };")
    await page.open(server, server.token(tenant, "supervisor"))
    await wait_for_badge(page.page, "polling", timeout_s=5)
    await wait_for_tile(page.page, "waiting", "1")
    await post_events(server, tenant, call("support", wait_s=0, outcome=None, ago_s=1))
    await wait_for_tile(page.page, "waiting", "2", timeout_s=6)
    assert await badge_state(page.page) == "polling"
    assert "Polling" in await page.page.text_content("#badge")
    polls = [u for u in page.urls if u.endswith("/api/metrics/live")]
    assert len(polls) >= 2
    assert not [u for u in page.urls if u.startswith("ws")]


@pytest.mark.parametrize("case", ["forged", "expired", "ingest", "missing"])
async def test_wrong_token_shows_a_clear_message(server: RunningServer, open_page: Callable[..., Awaitable[Page]],
                                                 case: str) -> None:
    """A forged, expired, read-nothing or missing token shows a full-screen message saying so, not a blank board."""
    tenant = new_tenant("pg-bad")
    token = {
        "forged": jwt.encode({"client_id": tenant, "role": "supervisor", "aud": "wallboard", "exp": int(time.time()) + 600},
                             "not-the-secret-" + "y" * 40, algorithm="HS256"),
        "expired": server.token(tenant, "supervisor", ttl_s=-120),
        "ingest": server.token(tenant, "ingest"),
        "missing": None,
    }[case]
    page = await open_page()
    await page.open(server, token)
    overlay = page.page.locator("#overlay")
    await overlay.wait_for(state="visible", timeout=10_000)
    text = await overlay.inner_text()
    assert "This wallboard's token was refused" in text
    detail = {"forged": "signature", "expired": "expired", "ingest": "ingest", "missing": "no #token"}[case]
    assert detail in text
    assert await badge_state(page.page) == "unauthorized"
    if case == "expired":
        await page.page.screenshot(path=str(ARTIFACTS / "wallboard-token-refused.png"))
    # It stays refused: no retry loop against the server with the same token.
    before = len(page.urls)
    await asyncio.sleep(2.5)
    assert len(page.urls) == before


async def test_token_never_in_a_url(server: RunningServer, open_page: Callable[..., Awaitable[Page]]) -> None:
    """No request the browser makes (page, assets, WebSocket, polling) carries the token in its URL."""
    tenant = new_tenant("pg-url")
    token = server.token(tenant, "supervisor")
    await post_events(server, tenant, call("sales", wait_s=0, outcome=None, ago_s=2))
    page = await open_page()
    await page.open(server, token, "&queues=sales")
    await wait_for_badge(page.page, "live")
    polled = await open_page(init_script="window.WebSocket = undefined;")
    await polled.open(server, token)
    await wait_for_badge(polled.page, "polling")
    await asyncio.sleep(2.5)
    urls = page.urls + polled.urls
    assert any(u.startswith("ws://") and u.endswith("/ws") for u in urls), urls
    assert any(u.endswith("/api/metrics/live") for u in urls), urls
    # A URL fragment is never sent by a browser; what goes on the wire is the URL without it.
    sent = [u.split("#", 1)[0] for u in urls]
    signature = token.rsplit(".", 1)[1]
    assert not [u for u in sent if token in u or signature in u], sent


async def test_screenshots(server: RunningServer, open_page: Callable[..., Awaitable[Page]]) -> None:
    """A busy contact center at 1920x1080 and 1280x720: written to test-artifacts/ for a person to look at."""
    tenant = new_tenant("pg-shot")
    names = ["Alice Martin", "Bruno Costa", "Chen Wei", "Dana Okafor", "Emil Novak", "Fatima Zahra", "Greta Lind",
             "Hugo Silva", "Ines Duarte", "Jonas Berg", "Kara Singh", "Liam O'Brien", "Maya Cohen", "Nils Dahl",
             "Olga Petrova", "Pablo Ruiz", "Qi Zhang", "Rosa Blanco", "Sami Haddad", "Tara Nolan", "Umar Farooq",
             "Vera Kim", "Will Turner", "Xenia Ivanova"]
    states = ["available"] * 6 + ["on_call"] * 10 + ["wrap_up"] * 3 + ["break"] * 4 + ["other"]
    reasons = {"break": ["Lunch", "Coffee", "Training", "Lunch"], "other": ["Meeting"]}
    queue_sets = [["sales"], ["support"], ["billing"], ["sales", "vip"], ["support", "billing"]]
    events = []
    for index, (name, state) in enumerate(zip(names, states, strict=True)):
        extra = {"reason": reasons[state].pop()} if state in reasons else {}
        events.append(agent(f"ag{index:02d}", state, queue_sets[index % 5], ago_s=17 + index * 53, name=name,
                            team="blue" if index % 2 else "green", **extra))
    events += contact_center({
        "sales": [(6 + i % 15, "answered") for i in range(40)] + [(30, "answered")] * 4 + [(25, "abandoned")] * 2 + [(12, None)],
        "support": [(8 + i % 30, "answered") for i in range(30)] + [(50, "abandoned")] * 4 + [(72, None), (41, None), (15, None)],
        "billing": [(5 + i % 10, "answered") for i in range(12)] + [(3, "abandoned")],
        "vip": [(4, "answered")] * 6 + [(34, None)],
        "collections": [(22, "answered")] * 5 + [(70, "abandoned")] * 2,
    })
    await post_events(server, tenant, events)
    ARTIFACTS.mkdir(exist_ok=True)
    for width, height in ((1920, 1080), (1280, 720)):
        page = await open_page(width, height)
        await page.open(server, server.token(tenant, "supervisor"))
        await wait_for_badge(page.page, "live")
        await page.page.wait_for_function("() => document.querySelectorAll('.agent').length === 24")
        await asyncio.sleep(1.2)  # a tick or two
        # Nothing of the board is cut off: the document does not scroll.
        scroll = await page.page.evaluate("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
        assert scroll == [width, height]
        path = ARTIFACTS / f"wallboard-{width}x{height}.png"
        await page.page.screenshot(path=str(path))
        assert path.stat().st_size > 10_000


async def test_tenant_isolation(server: RunningServer, open_page: Callable[..., Awaitable[Page]]) -> None:
    """A page opened with tenant A's token never shows tenant B's queues or agents, whatever B does."""
    a, b = new_tenant("pg-a"), new_tenant("pg-b")
    await post_events(server, a, call("a-queue", wait_s=0, outcome=None, ago_s=2) + [agent("a-agent", "available", ["a-queue"])])
    page = await open_page()
    await page.open(server, server.token(a, "supervisor"))
    await wait_for_badge(page.page, "live")
    await wait_for_tile(page.page, "waiting", "1")
    b_queue = f"bq-{b}"
    await post_events(server, b, call(b_queue, wait_s=0, outcome=None, ago_s=1) * 1
                      + call(b_queue, wait_s=3, outcome="answered")
                      + [agent("b-agent-x", "on_call", [b_queue], name="Bravo Secret")])
    # A's own later event arrives, so B's (earlier) events had every chance to leak.
    await post_events(server, a, [event("call.queued", now_ms(-1), call_id="a-second", queue_id="a-queue")])
    await wait_for_tile(page.page, "waiting", "2")
    await asyncio.sleep(1)
    html = await page.page.content()
    docs = await page.page.evaluate("JSON.stringify(window.wallboard.docs)")
    for secret in (b_queue, b, "b-agent-x", "Bravo Secret"):
        assert secret not in html and secret not in docs, secret
    assert await page.page.locator("tr[data-queue-id]").count() == 1
    assert await tile(page.page, "offered") == "2"


@pytest.mark.parametrize("transport", ["websocket", "polling"])
async def test_queue_filter_from_the_fragment(server: RunningServer, open_page: Callable[..., Awaitable[Page]],
                                              transport: str) -> None:
    """``#queues=sales`` shows only that queue, its totals and its agents, over WebSocket and polling alike."""
    tenant = new_tenant("pg-filter")
    await post_events(server, tenant, [
        agent("s1", "available", ["sales"], name="Sal"), agent("s2", "on_call", ["sales", "support"], name="Sue"),
        agent("u1", "break", ["support"], name="Uma", reason="Lunch"),
    ] + contact_center({"sales": [(5, "answered"), (30, "answered"), (12, None)],
                        "support": [(3, "answered"), (9, None), (14, None), (50, "abandoned")]}))
    page = await open_page(init_script="window.WebSocket = undefined;" if transport == "polling" else None)
    await page.open(server, server.token(tenant, "supervisor"), "&queues=sales")
    await wait_for_badge(page.page, "live" if transport == "websocket" else "polling")
    await wait_for_tile(page.page, "waiting", "1")
    p = page.page
    assert await p.locator("tr[data-queue-id]").count() == 1
    assert await tile(p, "offered") == "3"
    assert await tile_number(p, "service_level") == pytest.approx(0.5)
    assert await tile(p, "agents_available") == "1"
    assert await tile(p, "agents_on_call") == "1"
    assert await tile(p, "agents_break") == "0"
    assert sorted(await p.eval_on_selector_all(".agent", "els => els.map(e => e.dataset.agentId)")) == ["s1", "s2"]
    assert "sales" in await p.text_content("#filter")


async def test_fresh_token_goes_over_the_open_socket(server: RunningServer, open_page: Callable[..., Awaitable[Page]]) -> None:
    """A fresh token put in the fragment is sent as an auth message on the open socket, which stays open."""
    tenant = new_tenant("pg-refresh")
    await post_events(server, tenant, call("sales", wait_s=0, outcome=None, ago_s=2))
    page = await open_page()
    sent: list[str] = []
    received: list[str] = []
    sockets: list[Any] = []

    def watch(ws: Any) -> None:
        sockets.append(ws)
        ws.on("framesent", lambda payload: sent.append(payload))
        ws.on("framereceived", lambda payload: received.append(payload))

    page.page.on("websocket", watch)
    await page.open(server, server.token(tenant, "supervisor", ttl_s=120))
    await wait_for_badge(page.page, "live")
    fresh = server.token(tenant, "supervisor", ttl_s=3600)
    await page.page.evaluate("token => { location.hash = 'token=' + token; }", fresh)
    for _ in range(50):
        if any('"ok":true' in m for m in received):
            break
        await asyncio.sleep(0.1)
    assert any('"type":"auth"' in m and fresh in m for m in sent), sent
    assert any('"type":"auth"' in m and '"ok":true' in m for m in received), received
    assert len(sockets) == 1 and not sockets[0].is_closed()
    await post_events(server, tenant, call("sales", wait_s=0, outcome=None, ago_s=1))
    await wait_for_tile(page.page, "waiting", "2")

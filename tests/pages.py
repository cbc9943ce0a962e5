"""Helpers for the browser tests: Debian's Chromium through Playwright, events, a server on a chosen port.

The pages run under a CSP without 'unsafe-eval': a `wait_for_function` must be given a function
(`"() => …"`), since Playwright evaluates a bare expression with eval, which the page refuses.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvicorn

from server.app import create_app, uvicorn_options
from server.core.config import Settings

from .conftest import ROOT, RunningServer, _Server

CHROMIUM = Path("/usr/bin/chromium")
# Never download a browser: Playwright's bundled driver drives the system Chromium.
LAUNCH = {
    "executable_path": str(CHROMIUM),
    "headless": True,
    "args": ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"],
}
ARTIFACTS = ROOT / "test-artifacts"
P = TypeVar("P")  # a test's page wrapper: it holds ``errors``, the page's script errors


def playwright_or_skip() -> Any:
    """``playwright.async_api``, or skip the calling test module with the reason (call at its top level)."""
    if not CHROMIUM.exists():
        pytest.skip(f"browser tests need Chromium at {CHROMIUM} (apt-get install chromium); it is missing",
                    allow_module_level=True)
    return pytest.importorskip("playwright.async_api",
                               reason="browser tests need the playwright package (pip install -e '.[test]')")



_ids = itertools.count()


def new_tenant(label: str) -> str:
    return f"{label}-{secrets.token_hex(3)}"


def now_ms(offset_s: float = 0) -> int:
    return int((time.time() + offset_s) * 1000)


def event(kind: str, ts: int | None = None, **fields: Any) -> dict[str, Any]:
    """One event with a unique id, at ``ts`` (epoch ms; default a second ago)."""
    return {"event_id": f"pg-{secrets.token_hex(4)}-{next(_ids)}", "type": kind,
            "ts": now_ms(-1) if ts is None else ts, **fields}


def agent(agent_id: str, state: str, queues: list[str], ago_s: float = 1, **fields: Any) -> dict[str, Any]:
    return event("agent.state", now_ms(-ago_s), agent_id=agent_id, state=state, queues=queues, **fields)


def call(queue: str, *, wait_s: float, outcome: str | None, ago_s: float = 60, agent_id: str | None = None,
         ) -> list[dict[str, Any]]:
    """A call queued ``ago_s`` seconds ago, then answered/abandoned after ``wait_s`` (or still waiting)."""
    call_id = secrets.token_hex(6)
    start = now_ms(-ago_s)
    out = [event("call.queued", start, call_id=call_id, queue_id=queue)]
    if outcome == "answered":
        out.append(event("call.answered", start + int(wait_s * 1000), call_id=call_id, queue_id=queue,
                         agent_id=agent_id or "nobody"))
    elif outcome == "abandoned":
        out.append(event("call.abandoned", start + int(wait_s * 1000), call_id=call_id, queue_id=queue))
    return out


async def post_events(server: RunningServer, tenant: str, events: list[dict[str, Any]]) -> None:
    """POST the events with an ingest token; every one must be accepted."""
    async with server.client(server.token(tenant, "ingest")) as client:
        response = await client.post("/api/events", json=events)
    assert response.status_code == 200, response.text


async def live_overview(server: RunningServer, tenant: str) -> dict[str, Any]:
    async with server.client(server.token(tenant, "supervisor")) as client:
        response = await client.get("/api/metrics/live")
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def start_server_on(settings: Settings, port: int) -> RunningServer:
    """A real uvicorn server on 127.0.0.1:``port`` (the conftest ``server_factory`` pattern, with a chosen port).

    Used to bring a server back on the port a page is already connected to.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    config = uvicorn.Config(create_app(settings), log_level="warning", **uvicorn_options(settings))
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("server exited during start-up")
        await asyncio.sleep(0.01)
    return RunningServer(url=f"http://127.0.0.1:{port}", settings=settings, server=server, task=task)


@asynccontextmanager
async def server_on(settings: Settings, port: int) -> AsyncIterator[RunningServer]:
    handle = await start_server_on(settings, port)
    try:
        yield handle
    finally:
        if not handle.task.done():
            await handle.stop()


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


# -- reading the page -------------------------------------------------------------



async def tile(page: Any, metric: str) -> str | None:
    """The raw value (``data-value``) of a wallboard tile."""
    return await page.get_attribute(f'.tile[data-metric="{metric}"]', "data-value")


async def number(page: Any, selector: str) -> float:
    """The ``data-value`` of an element as a number (it must have one)."""
    value = await page.get_attribute(selector, "data-value")
    assert value, f"{selector} has no data-value"
    return float(value)


async def tile_number(page: Any, metric: str) -> float:
    return await number(page, f'.tile[data-metric="{metric}"]')


async def tile_text(page: Any, metric: str) -> str:
    return (await page.text_content(f'.tile[data-metric="{metric}"] .value') or "").strip()


async def badge_state(page: Any) -> str | None:
    return await page.get_attribute("#badge", "data-state")


async def wait_for_badge(page: Any, *states: str, timeout_s: float = 15) -> None:
    await page.wait_for_function(
        "states => states.includes(document.getElementById('badge').dataset.state)", arg=list(states),
        timeout=timeout_s * 1000)


async def wait_for_tile(page: Any, metric: str, value: str, timeout_s: float = 5) -> None:
    await page.wait_for_function(
        "([m, v]) => document.querySelector(`.tile[data-metric=\"${m}\"]`)?.dataset.value === v",
        arg=[metric, value], timeout=timeout_s * 1000)


# -- history data (the supervisor console's tests) -----------------------------------------


async def api_get(server: RunningServer, tenant: str, path: str, role: str = "supervisor", **params: Any) -> dict[str, Any]:
    """GET an API path with a token of the tenant; the whole success envelope."""
    async with server.client(server.token(tenant, role)) as client:
        response = await client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def same(shown: str | None, expected: float | None) -> bool:
    """A ``data-value`` equals an API figure (a rate or a duration; "" stands for null)."""
    if expected is None:
        return shown in ("", None)
    return shown not in ("", None) and float(shown) == pytest.approx(expected)


async def day_started_hours_ago(server: RunningServer, tenant: str, hours: int) -> None:
    """Make the tenant's day begin on the hour ``hours`` hours ago, so the events of the last hours are all today."""
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours)
    async with server.client(server.token(tenant, "admin")) as client:
        response = await client.put("/api/settings", json={"day_starts_at": start.strftime("%H:%M")})
    assert response.status_code == 200, response.text


def handled(queue: str, agent_id: str, *, ago_s: float, wait_s: float, talk_s: float, resolved: bool = True) -> list[dict[str, Any]]:
    """A call queued ``ago_s`` ago, answered by the agent after ``wait_s``, completed after ``talk_s``."""
    call_id = secrets.token_hex(6)
    start = now_ms(-ago_s)
    answered = start + int(wait_s * 1000)
    return [
        event("call.queued", start, call_id=call_id, queue_id=queue),
        event("call.answered", answered, call_id=call_id, queue_id=queue, agent_id=agent_id),
        event("call.completed", answered + int(talk_s * 1000) + 15_000, call_id=call_id, queue_id=queue, agent_id=agent_id,
              talk_s=talk_s, hold_s=5, wrap_s=15, resolved=resolved),
    ]


def busy_center(hours: int = 4) -> list[dict[str, Any]]:
    """Agents of two teams in every state, calls over the last ``hours`` hours in three queues, CSAT/NPS and quality reviews."""
    names = ["Alice Martin", "Bruno Costa", "Chen Wei", "Dana Okafor", "Emil Novak", "Fatima Zahra", "Greta Lind",
             "Hugo Silva", "Ines Duarte", "Jonas Berg", "Kara Singh", "Liam O'Brien", "Maya Cohen", "Nils Dahl"]
    states = ["available"] * 3 + ["on_call"] * 6 + ["wrap_up"] * 2 + ["break"] * 2 + ["other"]
    reasons = {"break": ["Lunch", "Coffee"], "other": ["Meeting"]}
    queue_sets = [["sales"], ["support"], ["billing"], ["sales", "support"], ["support", "billing"]]
    events = []
    for index, (name, state) in enumerate(zip(names, states, strict=True)):
        extra = {"reason": reasons[state].pop()} if state in reasons else {}
        events.append(agent(f"ag{index:02d}", state, queue_sets[index % 5], ago_s=17 + index * 41, name=name,
                            team="blue" if index % 2 else "green", **extra))
    rng = random.Random(7)
    for minute in range(10, hours * 60, 4):
        queue = rng.choice(["sales", "sales", "support", "billing"])
        ago = minute * 60 + rng.randint(0, 200)
        if rng.random() < 0.14:
            events += call(queue, wait_s=rng.randint(3, 90), outcome="abandoned", ago_s=ago)
        else:
            events += handled(queue, f"ag{rng.randrange(14):02d}", ago_s=ago, wait_s=rng.randint(2, 60),
                              talk_s=rng.randint(60, 420), resolved=rng.random() < 0.8)
    for index in range(12):
        events.append(event("csat.response", now_ms(-600 - index * 500), call_id=f"csat-{index}", agent_id=f"ag{index:02d}",
                            csat=[5, 4, 4, 3, 5, 2][index % 6], nps=[10, 9, 7, 4, 9, 10][index % 6]))
    for index in range(6):
        events.append(event("quality.scored", now_ms(-900 - index * 700), call_id=f"qa-{index}", agent_id=f"ag{index:02d}",
                            score=[4.5, 3.5, 5, 2.5, 4, 3][index], criteria={"greeting": 4, "resolution": 3 + index % 3},
                            reviewer="coach"))
    events += call("sales", wait_s=0, outcome=None, ago_s=25) + call("support", wait_s=0, outcome=None, ago_s=48)
    return events


@asynccontextmanager
async def opener(browser: Any, wrap: Callable[[Any], P], **options: Any) -> AsyncIterator[Callable[..., Awaitable[P]]]:
    """Open pages in fresh browser contexts (1920×1080 unless told, ``options`` for every context), each page
    wrapped by ``wrap``; all contexts closed at the end, and then no page may have raised a script error."""
    contexts: list[Any] = []
    opened: list[Any] = []

    async def make(width: int = 1920, height: int = 1080, init_script: str | None = None) -> P:
        context = await browser.new_context(viewport={"width": width, "height": height}, **options)
        contexts.append(context)
        if init_script:
            await context.add_init_script(init_script)
        page = wrap(await context.new_page())
        opened.append(page)
        return page

    yield make
    for context in contexts:
        await context.close()
    for page in opened:
        assert not page.errors, page.errors  # type: ignore[attr-defined]

"""Helpers for the browser tests: Debian's Chromium through Playwright, events, a server on a chosen port."""

from __future__ import annotations

import asyncio
import itertools
import secrets
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import uvicorn

from server.app import create_app, uvicorn_options
from server.config import Settings

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

"""The console's scheduled reports (Reports tab, admin) in a real headless Chromium against the real server."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

from server.core.config import Settings

from .pages import ARTIFACTS, playwright_or_skip
from .test_report_schedules import FAST, Receiver, schedules

async_api = playwright_or_skip()


async def test_the_console_lists_schedules_with_a_failed_delivery_and_adds_one(
        settings: Settings, server_factory: Any, browser: Any) -> None:
    """An admin sees each schedule with its last delivery (a failure with its tries and error), gets a 400's field
    and message beside the form, and adds a schedule whose signing secret is shown once."""
    broken = Receiver([500] * 10)
    async with broken.serving() as url:
        server = await server_factory(settings.replace(webhook_allow_private=True, delivery_attempts=2, **FAST))
        tenant = f"page-{secrets.token_hex(4)}"
        admin = server.token(tenant, "admin")
        async with server.client(admin) as client:
            created = (await client.post("/api/report-schedules", json={
                "report": "quality", "frequency": "daily", "at": "06:00",
                "destination": {"type": "webhook", "url": url}})).json()["data"]
            assert (await client.post(f"/api/report-schedules/{created['id']}/run")).status_code == 202
        deadline = time.monotonic() + 15
        while (await schedules(server.url, admin))[0]["last_status"] != "failed":
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        context = await browser.new_context(viewport={"width": 1920, "height": 1080})
        errors: list[str] = []
        try:
            page = await context.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(f"{server.url}/supervisor.html#token={admin}")
            await page.wait_for_function("() => document.body.dataset.from", timeout=10_000)  # the console is set up
            await page.click('.tabs [data-tab="reports"]')
            row = page.locator(f'#schedules tr[data-schedule="{created["id"]}"]')
            await row.wait_for(timeout=10_000)
            failed = await row.locator('[data-status="failed"]').inner_text()
            assert "2" in failed and "HTTP 500" in failed, failed
            assert await page.locator("#schedules h2").inner_text() == "Scheduled reports"
            assert "console.schedules" not in await page.locator("#schedules").inner_text(), "a string was not translated"
            form = page.locator("#schedules-form")
            await form.locator('[name="target"]').fill("not a url")
            await form.locator('button[type="submit"]').click()
            await page.wait_for_function("() => document.querySelector('#schedules-result').dataset.kind === 'error'")
            assert (await page.locator("#schedules-result").inner_text()).startswith("destination.url:")
            await form.locator('[name="frequency"]').select_option("weekly")
            await form.locator('[name="target"]').fill("https://93.184.215.14/hook")
            await form.locator('button[type="submit"]').click()
            await page.locator("#schedules tr[data-schedule]").nth(1).wait_for(timeout=10_000)
            secret_line = await page.locator("#schedules-secret").inner_text()
            await page.locator("#schedules tr[data-schedule]", has_text="Monday").wait_for(timeout=5_000)
            listed = await schedules(server.url, admin)
            assert len(listed) == 2 and listed[1]["frequency"] == "weekly" and listed[1]["weekday"] == 1
            assert "secret" in secret_line.lower() and len(secret_line.rsplit(" ", 1)[-1]) >= 40
            ARTIFACTS.mkdir(exist_ok=True)
            await page.locator("#schedules").screenshot(path=str(ARTIFACTS / "supervisor-schedules.png"))
        finally:
            await context.close()
        assert not errors, errors

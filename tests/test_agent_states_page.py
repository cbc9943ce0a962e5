"""The supervisor console's agent-states section in a real headless Chromium: timeline and table as the API has them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from .conftest import RunningServer
from .pages import agent, day_started_hours_ago, new_tenant, post_events
from .test_supervisor_page import Console, open_console  # noqa: F401  (the fixture)


async def test_states_section_shows_the_timeline_and_the_apis_seconds(
        server: RunningServer, open_console: Callable[..., Awaitable[Console]]) -> None:  # noqa: F811
    """One day: a timeline row per agent with on-call slots; the table's seconds per state are the API's."""
    tenant = new_tenant("sv-states")
    await day_started_hours_ago(server, tenant, 3)
    await post_events(server, tenant, [
        agent("a1", "available", ["q1"], ago_s=7200), agent("a1", "on_call", ["q1"], ago_s=5400),
        agent("a1", "break", ["q1"], ago_s=1800, reason="lunch"), agent("a1", "logged_out", ["q1"], ago_s=600),
        agent("a2", "available", ["q1"], ago_s=3600), agent("a2", "wrap_up", ["q1"], ago_s=1200),
        agent("a2", "logged_out", ["q1"], ago_s=300),
    ])
    token = server.token(tenant, "supervisor")
    console = await open_console()
    await console.open(server, token)
    day = await console.ready()
    await console.tab("states")
    async with server.client(token) as client:
        response = await client.get("/api/analytics/agents/states", params={"from": day, "to": day, "granularity": "day"})
    rows = {r["agent_id"]: r for r in response.json()["data"]}
    assert set(rows) == {"a1", "a2"}
    p = console.page
    assert await p.eval_on_selector_all("#states-rows tr", "els => els.map(e => e.dataset.agent)") == ["a1", "a2"]
    for agent_id, row in rows.items():
        for state in ("available", "on_call", "wrap_up", "break"):
            shown = await p.get_attribute(f'#states-rows tr[data-agent="{agent_id}"] td[data-metric="{state}"]',
                                          "data-value")
            assert float(shown or 0) == row["states"].get(state, 0), (agent_id, state)
    assert rows["a1"]["reasons"] == {"lunch": 1200.0}
    assert await p.locator('.timeline-row[data-agent="a1"] .slot[data-state="on_call"]').count() >= 3
    assert await p.locator('.timeline-row[data-agent="a2"] .slot[data-state="wrap_up"]').count() >= 1
    assert await p.text_content("#tab-states") == "Agent states"

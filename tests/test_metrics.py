"""GET /metrics (Prometheus text) and request ids in answers and log lines, against a real server."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from server.core import logs
from server.core.config import Settings

from .conftest import ROOT, RunningServer
from .test_ws import board, new_tenant, post, queued

Factory = Callable[[Settings], Awaitable[RunningServer]]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape by (name, sorted labels), parsed with prometheus_client's parser."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(scrape: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return scrape.get((name, tuple(sorted(labels.items()))), 0.0)


async def scrape(server: RunningServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with server.client() as client:
        response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return samples(response.text)


async def test_counters_move_as_events_are_ingested_and_boards_connect(server_factory: Factory,
                                                                       settings: Settings) -> None:
    """Ingesting events, a duplicate, a rejected one and connecting a board move /metrics; no tenant id shows."""
    server = await server_factory(settings)
    tenant = new_tenant("metrics")
    before = await scrape(server)
    events = queued("sales", 3)
    async with board(server.url, server.token(tenant)) as wallboard:
        await wallboard.subscribe(["overview"])
        await wallboard.next(lambda b: b["type"] == "snapshot")
        await post(server, tenant, events)
        await wallboard.next(lambda b: b["type"] == "update")
        async with server.client(server.token(tenant, "ingest")) as client:
            answer = await client.post("/api/events", json=[events[0], {"event_id": "bad", "type": "call.queued"}])
        assert answer.status_code == 207, answer.text
        async with server.client() as client:
            text = (await client.get("/metrics")).text
        after = samples(text)
    assert tenant not in text
    assert value(after, "wallboard_ingest_events_total", outcome="accepted") - \
        value(before, "wallboard_ingest_events_total", outcome="accepted") == 3
    assert value(after, "wallboard_ingest_events_total", outcome="duplicate") - \
        value(before, "wallboard_ingest_events_total", outcome="duplicate") == 1
    assert value(after, "wallboard_ingest_events_total", outcome="rejected") - \
        value(before, "wallboard_ingest_events_total", outcome="rejected") == 1
    assert value(after, "wallboard_ingest_batch_seconds_count") - value(before, "wallboard_ingest_batch_seconds_count") == 2
    assert value(after, "wallboard_ws_clients", view="overview") == 1
    assert value(after, "wallboard_ws_deliveries_total") > value(before, "wallboard_ws_deliveries_total")
    assert value(after, "wallboard_ws_delivered_bytes_total") > value(before, "wallboard_ws_delivered_bytes_total")
    assert value(after, "wallboard_http_requests_total", route="/api/events", method="POST", status="200") >= 1
    assert value(after, "wallboard_http_requests_total", route="/api/events", method="POST", status="207") >= 1
    assert value(after, "wallboard_db_pool_connections", state="max") == settings.db_pool_max
    assert value(after, "wallboard_redis_pool_connections", state="max") == settings.redis_pool_max
    assert ("wallboard_ws_tick_lag_seconds_count", ()) in after
    assert value(after, "wallboard_redis_pool_wait_seconds_count") > value(before, "wallboard_redis_pool_wait_seconds_count")
    assert value(after, "wallboard_db_pool_wait_seconds_count") > value(before, "wallboard_db_pool_wait_seconds_count")


async def test_route_label_is_the_template_never_the_path(server: RunningServer) -> None:
    """A request for an agent by id is counted under the route template; other paths under 'static' (the pages' mount)."""
    async with server.client(server.token(new_tenant("metrics"))) as client:
        await client.get("/api/metrics/agents/secret-agent-42/status")
        await client.get("/no/such/path/xyz-1")
        text = (await client.get("/metrics")).text
    assert "secret-agent-42" not in text and "xyz-1" not in text
    after = samples(text)
    assert value(after, "wallboard_http_requests_total", route="/api/metrics/agents/{agent_id}/status",
                 method="GET", status="404") >= 1
    assert value(after, "wallboard_http_requests_total", route="static", method="GET", status="404") >= 1


async def test_metrics_token_when_set(server_factory: Factory, settings: Settings) -> None:
    """With WALLBOARD_METRICS_TOKEN set, /metrics wants it as a bearer token (401 otherwise)."""
    server = await server_factory(settings.replace(metrics_token="scrape-secret-1234"))
    async with server.client() as client:
        assert (await client.get("/metrics")).status_code == 401
        assert (await client.get("/metrics", headers={"Authorization": "Bearer wrong"})).status_code == 401
        ok = await client.get("/metrics", headers={"Authorization": "Bearer scrape-secret-1234"})
    assert ok.status_code == 200
    assert any(f.name == "wallboard_http_requests" for f in text_string_to_metric_families(ok.text))


@pytest.mark.parametrize(("offered", "kept"), [("abc-123.X_y", True), ("bad id with spaces", False),
                                                ("x" * 129, False), ("", False)])
async def test_request_id_is_returned(server: RunningServer, offered: str, kept: bool) -> None:
    """A sane X-Request-Id comes back as sent; anything else is replaced by a new sane id."""
    async with server.client() as client:
        response = await client.get("/api/metrics/health", headers={"X-Request-Id": offered} if offered else {})
    rid = response.headers["x-request-id"]
    assert (rid == offered) is kept
    assert 1 <= len(rid) <= 128 and rid.replace("-", "").replace(".", "").replace("_", "").isalnum()


async def test_log_lines_of_a_request_carry_its_id_tenant_and_route(server: RunningServer) -> None:
    """Every line logged while a request runs carries request_id and route, and the tenant once verified."""
    tenant = new_tenant("logs")
    token = server.token(tenant)
    seen: list[dict[str, str]] = []

    class Grab(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append({**logs.context(), "line": logs.JsonFormatter().format(record)})

    handler = Grab(level=logging.INFO)
    access = logging.getLogger("uvicorn.access")  # uvicorn's access line is logged while the request runs
    level = access.level
    access.setLevel(logging.INFO)
    access.addHandler(handler)
    try:
        async with server.client(token) as client:
            response = await client.get("/api/reports/nope", headers={"X-Request-Id": "trace-77"})
            await client.get("/api/auth/whoami", headers={"X-Request-Id": "trace-78"})
    finally:
        access.removeHandler(handler)
        access.setLevel(level)
    assert response.headers["x-request-id"] == "trace-77"
    mine = [s for s in seen if s.get("request_id") in ("trace-77", "trace-78")]
    assert mine, "no log line carried the request id"
    for line in mine:
        assert line["tenant"] == tenant and line["route"] in ("/api/reports/{name}", "/api/auth/whoami")
        assert '"request_id":"trace-7' in line["line"] and token not in line["line"]


async def test_grafana_dashboard_queries_only_metrics_the_server_exports(server: RunningServer) -> None:
    """Every metric docs/grafana-dashboard.json queries is a family /metrics exports."""
    dashboard = orjson.loads((ROOT / "docs" / "grafana-dashboard.json").read_bytes())
    queried = {re.sub(r"_(total|bucket|count|sum)$", "", name)
               for panel in dashboard["panels"] for target in panel["targets"]
               for name in re.findall(r"\bwallboard_\w+", target["expr"])}
    async with server.client() as client:
        exported = {family.name for family in text_string_to_metric_families((await client.get("/metrics")).text)}
    assert len(queried) >= 15 and queried <= exported, sorted(queried - exported)

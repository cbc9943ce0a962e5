"""Reports that deliver themselves: a due schedule runs once across two server processes, to a signed webhook or
an SMTP server the test runs; private addresses are refused unless allowed; alert webhooks; validation."""

from __future__ import annotations

import asyncio
import contextlib
import email
import hashlib
import hmac
import secrets
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.message import Message
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.analytics.alert_hooks import text_of
from server.analytics.schedules import Cadence
from server.core.config import Settings
from server.core.outbound import Outbound, sign
from server.core.tenant_settings import TenantSettings

from .chaos_rig import ServerProcess
from .conftest import RunningServer, _Server, free_socket
from .test_live_exact import put_settings

FAST = {"schedules_poll_s": 0.2, "delivery_backoff_s": 0.05, "webhook_timeout_s": 3.0}


class Receiver:
    """A webhook endpoint served by the test on 127.0.0.1: records every POST; answers ``statuses`` in turn, then 200."""

    def __init__(self, statuses: list[int] | None = None, delay_s: float = 0) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.delay_s = delay_s
        self.statuses = list(statuses or [])
        self.arrived = asyncio.Event()

    async def hook(self, request: Request) -> Response:
        self.requests.append(({k.lower(): v for k, v in request.headers.items()}, await request.body()))
        self.arrived.set()
        await asyncio.sleep(self.delay_s)
        return Response(status_code=self.statuses.pop(0) if self.statuses else 200)

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[str]:
        sock = free_socket()
        server = _Server(uvicorn.Config(Starlette(routes=[Route("/hook", self.hook, methods=["POST"])]),
                                        log_level="warning", lifespan="off"))
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            await asyncio.sleep(0.01)
        try:
            yield f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
        finally:
            server.should_exit = True
            await task

    async def wait(self, count: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count:
            assert time.monotonic() < deadline, f"{len(self.requests)} deliveries arrived, expected {count}"
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), 0.5)


def verifies(secret: str, headers: dict[str, str], body: bytes) -> bool:
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers.get("x-wallboard-signature", ""), expected)


def call_events(tenant_call: str, ago_s: float = 20) -> list[dict[str, Any]]:
    """One answered and completed call in queue ``sales``, ending a few seconds ago."""
    t = int((time.time() - ago_s) * 1000)
    base = {"call_id": tenant_call, "queue_id": "sales"}
    return [{"event_id": f"q-{tenant_call}", "type": "call.queued", "ts": t, **base},
            {"event_id": f"a-{tenant_call}", "type": "call.answered", "ts": t + 2000, "agent_id": "ann", **base},
            {"event_id": f"c-{tenant_call}", "type": "call.completed", "ts": t + 9000, "agent_id": "ann", "talk_s": 6,
             "hold_s": 0, "wrap_s": 1, **base}]


def local_time_in(seconds: float, zone: str) -> str:
    return (datetime.now(ZoneInfo(zone)) + timedelta(seconds=seconds)).strftime("%H:%M:%S")


async def schedules(url: str, token: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}) as client:
        response = await client.get("/api/report-schedules")
    assert response.status_code == 200, response.text
    return response.json()["data"]


@pytest.mark.timeout(120)
async def test_a_due_schedule_delivers_once_across_two_processes(settings: Settings, tmp_path: Path) -> None:
    """A daily schedule due 3 s from now (tenant zone +05:45) reaches the test's webhook exactly once though two
    `wallboard serve` processes poll; the CSV holds today's call and its signature verifies with the secret
    returned at creation; the console's list shows it delivered and the audit log has the run."""
    assert settings.database_url and settings.redis_url
    prefix = f"{settings.key_prefix}s{secrets.token_hex(2)}"
    env = {"WALLBOARD_SCHEDULES_POLL_S": "0.2", "WALLBOARD_WEBHOOK_ALLOW_PRIVATE": "1", "WALLBOARD_DELIVERY_BACKOFF_S": "0.05",
           "WALLBOARD_LOG_FORMAT": "json"}
    procs = [ServerProcess(settings.database_url, settings.redis_url, prefix, tmp_path / f"server{i}.log") for i in range(2)]
    receiver = Receiver(delay_s=1.5)  # a slow receiver: the run lasts across several polls of both processes
    tenant, zone, call = f"sched-{secrets.token_hex(4)}", "Asia/Kathmandu", secrets.token_hex(6)
    try:
        for proc in procs:
            proc.env.update(env)
        await asyncio.gather(*(proc.start() for proc in procs))
        first = RunningServer(url=procs[0].url, settings=settings, server=None, task=None)  # type: ignore[arg-type]
        await put_settings(first, tenant, timezone=zone)
        async with first.client(first.token(tenant, "ingest")) as client:
            assert (await client.post("/api/events", json=call_events(call))).status_code == 200
        async with receiver.serving() as url:
            admin = first.token(tenant, "admin")
            async with first.client(admin) as client:
                response = await client.post("/api/report-schedules", json={
                    "report": "calls", "parameters": {"period": "current", "queue_id": "sales"}, "frequency": "daily",
                    "at": local_time_in(3, zone), "destination": {"type": "webhook", "url": url}})
            assert response.status_code == 201, response.text
            created = response.json()["data"]
            assert created["secret"] and created["next_run_at"].endswith("Z")
            await receiver.wait(1, timeout=20)
            await asyncio.sleep(2.5)  # both processes poll many more times, during the run and after: no second delivery
            assert len(receiver.requests) == 1, "the due run was delivered more than once"
        headers, body = receiver.requests[0]
        assert verifies(created["secret"], headers, body)
        assert not verifies("another-secret", headers, body)
        assert headers["content-type"].startswith("text/csv") and headers["x-wallboard-schedule"] == created["id"]
        lines = body.decode().splitlines()
        assert lines[0].startswith("call_id,queue_id,agent_id") and any(line.startswith(f"{call},sales,ann") for line in lines)
        listed = next(s for s in await schedules(first.url, admin) if s["id"] == created["id"])
        assert listed["last_status"] == "delivered" and listed["last_attempts"] == 1 and listed["last_error"] is None
        assert "secret" not in listed
        next_run = datetime.fromisoformat(listed["next_run_at"].replace("Z", "+00:00"))
        assert timedelta(hours=23) < next_run - datetime.now(UTC) < timedelta(hours=25)
        async with first.client(admin) as client:
            audit = (await client.get("/api/analytics/audit")).json()["data"]
        runs = [a for a in audit if a["action"] == "report.delivered"]
        assert len(runs) == 1 and runs[0]["sub"] == "scheduler" and runs[0]["parameters"]["schedule"] == created["id"]
    finally:
        await asyncio.gather(*(proc.stop() for proc in procs))


async def test_an_email_schedule_sends_the_csv_attached(settings: Settings, server_factory: Any) -> None:
    """With WALLBOARD_SMTP_URL at an SMTP server the test runs (aiosmtpd), "run now" e-mails the report with the
    CSV attached to the schedule's address."""
    from aiosmtpd.controller import Controller

    received: list[Message] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook name
            received.append(email.message_from_bytes(envelope.content))
            return "250 OK"

    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        server = await server_factory(settings.replace(smtp_url=f"smtp://127.0.0.1:{port}", **FAST))
        tenant, call = f"mail-{secrets.token_hex(4)}", secrets.token_hex(6)
        async with server.client(server.token(tenant, "ingest")) as client:
            assert (await client.post("/api/events", json=call_events(call))).status_code == 200
        async with server.client(server.token(tenant, "admin")) as client:
            response = await client.post("/api/report-schedules", json={
                "report": "calls", "parameters": {"period": "current"}, "frequency": "weekly", "weekday": 3,
                "at": "06:00", "destination": {"type": "email", "to": "ops@example.com"}})
            assert response.status_code == 201, response.text
            created = response.json()["data"]
            assert (await client.post(f"/api/report-schedules/{created['id']}/run")).status_code == 202
        deadline = time.monotonic() + 45  # a first attempt that times out on a loaded machine is retried after its back-off
        while not received:
            assert time.monotonic() < deadline, "no e-mail arrived"
            await asyncio.sleep(0.1)
        message = received[0]
        assert message["To"] == "ops@example.com" and "calls_" in message["Subject"]
        attachments = [part for part in message.walk() if part.get_filename()]
        assert len(attachments) == 1 and attachments[0].get_filename().endswith(".csv")
        assert attachments[0].get_content_type() == "text/csv"
        csv_text = attachments[0].get_payload(decode=True).decode()
        assert csv_text.startswith("call_id,") and call in csv_text
        listed = next(s for s in await schedules(server.url, server.token(tenant, "admin")) if s["id"] == created["id"])
        assert listed["last_status"] == "delivered" and listed["next_run_at"] is not None
    finally:
        controller.stop()


async def test_a_loopback_webhook_is_refused_unless_allowed(settings: Settings, server_factory: Any) -> None:
    """Without WALLBOARD_WEBHOOK_ALLOW_PRIVATE a schedule to 127.0.0.1 (or a name resolving to it) is a 400 naming
    destination.url, and a delivery to it is refused without a request reaching it; with the setting it arrives."""
    receiver = Receiver()
    async with receiver.serving() as url:
        server = await server_factory(settings.replace(**FAST))
        tenant = f"guard-{secrets.token_hex(4)}"
        async with server.client(server.token(tenant, "admin")) as client:
            for target in (url, url.replace("127.0.0.1", "localhost"), "http://169.254.169.254/latest/meta-data",
                           "http://[::1]:9/hook", "http://10.1.2.3/hook"):
                response = await client.post("/api/report-schedules", json={
                    "report": "calls", "frequency": "daily", "at": "07:00", "destination": {"type": "webhook", "url": target}})
                assert response.status_code == 400, (target, response.text)
                error = response.json()["error"]
                assert error["code"] == "webhook_address_refused" and error["details"]["field"] == "destination.url"
                assert "WALLBOARD_WEBHOOK_ALLOW_PRIVATE" in error["message"]
        closed = Outbound(allow_private=False, timeout_s=2, per_tenant=2, attempts=3, backoff_s=0.01)
        opened = Outbound(allow_private=True, timeout_s=2, per_tenant=2, attempts=3, backoff_s=0.01)
        try:
            refused = await closed.post(tenant, url, b"{}", "s3cret", "application/json")
            assert not refused.ok and refused.attempts == 1 and "private" in (refused.error or "")
            assert receiver.requests == []
            delivered = await opened.post(tenant, url, b"{}", "s3cret", "application/json")
            assert delivered.ok and len(receiver.requests) == 1
        finally:
            await closed.close()
            await opened.close()


async def test_a_failed_try_is_retried_and_a_failed_delivery_is_shown(settings: Settings, server_factory: Any) -> None:
    """A webhook that answers 503 once gets the report on the second try; one that keeps failing leaves the
    schedule's last_status "failed" with the error and the tries made, visible in the list."""
    flaky, broken = Receiver([503]), Receiver([500] * 10)
    async with flaky.serving() as flaky_url, broken.serving() as broken_url:
        server = await server_factory(settings.replace(webhook_allow_private=True, delivery_attempts=3, **FAST))
        tenant = f"retry-{secrets.token_hex(4)}"
        admin = server.token(tenant, "admin")
        ids = []
        async with server.client(admin) as client:
            for url in (flaky_url, broken_url):
                response = await client.post("/api/report-schedules", json={
                    "report": "queue-intervals", "frequency": "monthly", "month_day": 28, "at": "23:59",
                    "destination": {"type": "webhook", "url": url}})
                assert response.status_code == 201, response.text
                ids.append(response.json()["data"]["id"])
                assert (await client.post(f"/api/report-schedules/{ids[-1]}/run")).status_code == 202
        await flaky.wait(2)
        await broken.wait(3)
        deadline = time.monotonic() + 10
        while True:
            listed = {s["id"]: s for s in await schedules(server.url, admin)}
            if all(listed[i]["last_status"] in ("delivered", "failed") for i in ids):
                break
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        assert listed[ids[0]]["last_status"] == "delivered" and listed[ids[0]]["last_attempts"] == 2
        assert listed[ids[1]]["last_status"] == "failed" and listed[ids[1]]["last_attempts"] == 3
        assert "HTTP 500" in listed[ids[1]]["last_error"]
        assert len(broken.requests) == 3 and all(verifies_any(h, b) for h, b in broken.requests)


def verifies_any(headers: dict[str, str], body: bytes) -> bool:
    return headers.get("x-wallboard-signature", "").startswith("sha256=") and len(body) > 0


async def test_alerts_are_posted_to_the_alert_webhooks_signed(settings: Settings, server_factory: Any) -> None:
    """With alert_webhooks set, a queue past its waiting threshold POSTs JSON with a Slack-style text to the URL,
    signed with the tenant's alert secret; a settings value that is not a URL is a 400 naming it."""
    receiver = Receiver()
    async with receiver.serving() as url:
        server = await server_factory(settings.replace(webhook_allow_private=True, **FAST))
        tenant = f"hook-{secrets.token_hex(4)}"
        async with server.client(server.token(tenant, "admin")) as client:
            bad = await client.put("/api/settings", json={"alert_webhooks": ["ftp://example.com/x"]})
            assert bad.status_code == 400 and bad.json()["error"]["details"]["field"] == "alert_webhooks.0"
            secret = (await client.post("/api/alert-webhooks/secret")).json()["data"]["secret"]
        await put_settings(server, tenant, alert_webhooks=[url], alerts={
            "waiting": {"amber": 0, "red": 50}, "service_level": {"amber": 0, "red": 0},
            "abandon_rate": {"amber": 1, "red": 1}, "longest_wait_s": {"amber": 3600, "red": 7200}})
        call = secrets.token_hex(6)
        async with server.client(server.token(tenant, "ingest")) as client:
            response = await client.post("/api/events", json=[{"event_id": f"q-{call}", "type": "call.queued",
                                                                "ts": int(time.time() * 1000), "call_id": call,
                                                                "queue_id": "sales"}])
            assert response.status_code == 200
        await receiver.wait(1, timeout=15)
    headers, body = receiver.requests[0]
    assert verifies(secret, headers, body) and headers["content-type"] == "application/json"
    payload = httpx.Response(200, content=body).json()
    assert payload["alert"]["metric"] == "waiting" and payload["alert"]["state"] == "raised"
    assert payload["text"].startswith(":large_orange_circle: AMBER raised: queue sales waiting 1")


async def test_schedule_input_is_checked_and_admin_only(server: RunningServer) -> None:
    """Each bad field is a 400 naming it; e-mail without SMTP configured is refused; a supervisor gets 403;
    deleting removes the schedule and an unknown id is a 404."""
    tenant = f"val-{secrets.token_hex(4)}"
    good = {"report": "calls", "frequency": "daily", "at": "08:30", "destination": {"type": "webhook", "url": "https://93.184.215.14/h"}}
    cases = [({**good, "report": "nope"}, "report"), ({**good, "frequency": "hourly"}, "frequency"),
             ({**good, "at": "25:00"}, "at"), ({**good, "frequency": "weekly", "weekday": 8}, "weekday"),
             ({**good, "frequency": "monthly", "month_day": 31}, "month_day"),
             ({**good, "parameters": {"color": "red"}}, "parameters.color"),
             ({**good, "parameters": {"granularity": "year"}}, "parameters"),
             ({**good, "destination": {"type": "webhook", "url": "file:///etc/passwd"}}, "destination.url"),
             ({**good, "destination": {"type": "email", "to": "not an address"}}, "destination.to"),
             ({**good, "destination": {"type": "email", "to": "ops@example.com"}}, "destination.type"),
             ({**good, "extra": 1}, "extra")]
    async with server.client(server.token(tenant, "admin")) as client:
        for body, field in cases:
            response = await client.post("/api/report-schedules", json=body)
            assert response.status_code == 400, (body, response.text)
            assert response.json()["error"]["details"]["field"] == field, response.text
        assert (await client.post("/api/report-schedules", content=b"{nope")).status_code == 400
        created = await client.post("/api/report-schedules", json=good)
        assert created.status_code == 201, created.text
        schedule_id = created.json()["data"]["id"]
        assert (await client.delete(f"/api/report-schedules/{schedule_id}")).status_code == 200
        assert (await client.delete(f"/api/report-schedules/{schedule_id}")).status_code == 404
        assert (await client.delete("/api/report-schedules/not-a-uuid")).status_code == 404
        assert (await client.get("/api/report-schedules")).json()["data"] == []
    async with server.client(server.token(tenant, "supervisor")) as client:
        assert (await client.get("/api/report-schedules")).status_code == 403
    async with server.client(server.token("other-" + tenant, "admin")) as client:
        assert (await client.get("/api/report-schedules")).json()["data"] == []


def test_cadence_follows_the_tenant_zone_across_dst() -> None:
    """Runs are at the local wall time: across Berlin's spring-forward the UTC time moves an hour, a gap time runs
    after the gap; weekly runs land on their weekday, monthly on their day; the previous period is the one before."""
    berlin = TenantSettings(timezone="Europe/Berlin")
    ms = lambda text: int(datetime.fromisoformat(text).timestamp() * 1000)  # noqa: E731
    daily = Cadence("daily", "06:00")
    assert daily.next_after(ms("2026-03-28T06:00:00+01:00"), berlin) == ms("2026-03-29T06:00:00+02:00")
    assert Cadence("daily", "02:30").next_after(ms("2026-03-28T12:00:00+01:00"), berlin) == ms("2026-03-29T03:30:00+02:00")
    assert Cadence("weekly", "08:00", weekday=1).next_after(ms("2026-11-30T09:00:00+01:00"), berlin) == \
        ms("2026-12-07T08:00:00+01:00")
    assert Cadence("monthly", "00:00:30", month_day=1).next_after(ms("2026-11-30T09:00:00+01:00"), berlin) == \
        ms("2026-12-01T00:00:30+01:00")
    run = ms("2026-12-01T00:00:30+01:00")
    assert Cadence("monthly", "00:00:30", month_day=1).period(run, berlin, "previous") == ("2026-11-01", "2026-11-30")
    assert Cadence("weekly", "08:00", weekday=2).period(run, berlin, "previous") == ("2026-11-24", "2026-11-30")
    assert Cadence("weekly", "08:00", weekday=2).period(run, berlin, "current") == ("2026-11-30", "2026-12-01")
    assert daily.period(run, berlin, "previous") == ("2026-11-30", "2026-11-30")


def test_alert_text_and_signature_are_what_receivers_expect() -> None:
    """The Slack text names level, state, queue, metric, value and threshold; the signature is sha256=<hex HMAC>."""
    alert = {"state": "raised", "level": "red", "queue_id": "sales", "metric": "longest_wait_s", "value": 75.5,
             "threshold": 60, "at": "2026-11-30T10:00:00Z"}
    assert text_of(alert) == ":red_circle: RED raised: queue sales longest_wait_s 75.5 (threshold 60) at 2026-11-30T10:00:00Z"
    assert text_of({**alert, "state": "cleared"}).startswith(":white_check_mark: RED cleared")
    assert sign("k", b"body") == "sha256=" + hmac.new(b"k", b"body", hashlib.sha256).hexdigest()


async def test_the_login_role_runs_schedules_but_reads_no_other_tenants_secrets(
        settings: Settings, server_factory: Any, database_factory: Any) -> None:
    """Served by a login role that owns nothing, a schedule is claimed and delivered; outside a tenant transaction that
    role sees the due times of every tenant but no schedule row (destination, secret) of any."""
    import asyncpg

    from server.core.db_roles import login_role_sql

    from .test_db_roles import APP_ROLE, as_user

    owner_dsn = await database_factory()
    login, password = f"wbt_sched_{secrets.token_hex(3)}", secrets.token_urlsafe(18)
    owner = await asyncpg.connect(owner_dsn)
    await owner.execute(login_role_sql(login, APP_ROLE, password))
    receiver = Receiver()
    try:
        async with receiver.serving() as url:
            server = await server_factory(settings.replace(
                database_url=as_user(owner_dsn, login, password), migrate_database_url=owner_dsn, webhook_allow_private=True,
                key_prefix=f"{settings.key_prefix}l", **FAST))
            tenant = f"login-{secrets.token_hex(4)}"
            async with server.client(server.token(tenant, "admin")) as client:
                response = await client.post("/api/report-schedules", json={
                    "report": "satisfaction", "frequency": "daily", "at": "05:00", "destination": {"type": "webhook", "url": url}})
                assert response.status_code == 201, response.text
                created = response.json()["data"]
                assert (await client.post(f"/api/report-schedules/{created['id']}/run")).status_code == 202
            await receiver.wait(1)
            assert verifies(created["secret"], *receiver.requests[0])
            await server.stop()
        as_login = await asyncpg.connect(as_user(owner_dsn, login, password))
        try:
            assert await as_login.fetchval("SELECT count(*) FROM report_schedule_due") == 1
            assert await as_login.fetchval("SELECT count(*) FROM report_schedules") == 0
        finally:
            await as_login.close()
    finally:
        await owner.execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{login}'")
        await owner.execute(f"DROP ROLE IF EXISTS {login}")
        await owner.close()


async def test_one_tenants_slow_webhook_does_not_hold_up_another(settings: Settings) -> None:
    """With 2 slots per tenant, six deliveries of a tenant to a receiver that takes 1 s run 2 at a time, while another
    tenant's delivery goes through at once."""
    slow, fast = Receiver(delay_s=1.0), Receiver()
    outbound = Outbound(allow_private=True, timeout_s=5, per_tenant=2, attempts=1, backoff_s=0.01)

    async def one(url: str) -> None:
        assert (await outbound.post("slow-tenant", url, b"x", "k", "text/plain")).ok

    try:
        async with slow.serving() as slow_url, fast.serving() as fast_url:
            started = time.monotonic()
            backlog = asyncio.gather(*(one(slow_url) for _ in range(6)))
            await asyncio.sleep(0.2)
            assert (await outbound.post("fast-tenant", fast_url, b"y", "k", "text/plain")).ok
            assert time.monotonic() - started < 0.8, "the other tenant waited behind the slow one"
            assert len(slow.requests) == 2, "more than 2 of one tenant's deliveries were in flight"
            await backlog
            assert time.monotonic() - started >= 2.9 and len(slow.requests) == 6
    finally:
        await outbound.close()

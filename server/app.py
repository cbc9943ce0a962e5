"""create_app(settings): the routes and the lifespan that builds and owns every service."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from server.analytics.service import Analytics
from server.api import (
    agent_states,
    alerts,
    anomalies,
    audit,
    boards,
    costs,
    events,
    history,
    openapi,
    predictions,
    prometheus,
    queue_log,
    reports,
    schedules,
    scorecards,
    staffing,
    system,
    ws,
)
from server.api import (
    live as live_api,
)
from server.api import (
    settings as tenant_settings,
)
from server.api import (
    tenant as tenant_api,
)
from server.api.bodies import BodyLimit
from server.api.budget import BudgetMiddleware, Budgets, early_refusal
from server.api.context import Services
from server.api.observe import Observer
from server.api.responses import error_answer, failure
from server.api.wire import Wires
from server.core.auth import TokenVerifier
from server.core.config import Settings
from server.core.connections import protocol_class
from server.core.db import Database
from server.core.errors import ConfigError, WallboardError
from server.core.metrics import Metrics
from server.core.redis_client import redis_client
from server.core.resources import static_dir
from server.core.settings_store import SettingsStore
from server.history.reports import ExportSlots
from server.history.retention import Retention
from server.history.scorecards import ScorecardRefresher
from server.live.heal import Healer
from server.live.hub import Hub
from server.live.keys import Keys
from server.live.outbox import FanoutCounts
from server.live.recorder import Ingestor
from server.live.roster import Roster
from server.live.state import LiveState

log = logging.getLogger("wallboard.app")



async def open_services(settings: Settings, *, background: bool = True, metrics: Metrics | None = None) -> Services:
    """Connect to PostgreSQL and Redis and build every service; a ConfigError names the bad setting.

    With ``background`` the owned background tasks (live-state repair, metrics sampling) are
    started; ``close_services`` cancels and awaits them. ``metrics``: the app's (a new one when None).
    """
    metrics = metrics or Metrics()
    verifier = TokenVerifier(settings)
    if settings.database_url is None or settings.redis_url is None:
        missing = "DATABASE_URL" if settings.database_url is None else "REDIS_URL"
        raise ConfigError(f"{missing} is not set: set both DATABASE_URL and REDIS_URL, or neither for the embedded default")
    db = await Database.connect(settings.database_url, min_size=settings.db_pool_min,
                                max_size=settings.db_pool_max, app_role=settings.app_role,
                                tenant_max=settings.db_tenant_max, tenant_wait_s=settings.db_tenant_wait_s,
                                statement_timeout_s=settings.db_statement_timeout_s,
                                idle_timeout_s=settings.db_idle_in_transaction_timeout_s,
                                owner_dsn=settings.migrate_database_url)
    if settings.database_replica_url is not None:
        try:
            db.reader = await Database.connect(settings.database_replica_url, min_size=1, max_size=settings.db_pool_max,
                                               app_role=settings.app_role, tenant_max=settings.db_tenant_max,
                                               tenant_wait_s=settings.db_tenant_wait_s,
                                               statement_timeout_s=settings.db_statement_timeout_s,
                                               idle_timeout_s=settings.db_idle_in_transaction_timeout_s,
                                               owner_dsn=settings.migrate_database_url, setting="DATABASE_REPLICA_URL")
        except ConfigError:
            await db.close()
            raise
    client = redis_client(settings.redis_url, settings.redis_pool_max)
    try:
        await asyncio.wait_for(client.ping(), 5)
    except (aioredis.RedisError, OSError, TimeoutError) as exc:
        await client.aclose()
        await db.close()
        raise ConfigError(f"REDIS_URL: cannot reach Redis ({type(exc).__name__}: {exc}): "
                          "check the URL and that the server runs") from None
    keys = Keys(settings.key_prefix)
    store = SettingsStore(db, ttl_s=settings.settings_cache_s)
    live = LiveState(client, db, keys, store, tenant_max=settings.redis_tenant_max)
    hub = Hub(client, live, store, keys, settings)
    healer = Healer(live, settings)
    refresher = ScorecardRefresher(db, settings.scorecard_refresh_s)
    retention = Retention(db, every_s=settings.retention_every_s, batch_rows=settings.retention_batch_rows,
                          claim=lambda: _claim(client, keys.retention_claim, settings.retention_every_s))
    exports = ExportSlots(settings.export_max_per_tenant, settings.export_max_per_process)
    analytics = Analytics(settings, db, client, keys, store, hub, exports.turn)
    roster = Roster(client, keys, max_queues=settings.live_queues_max, max_agents=settings.live_agents_max)
    ingestor = Ingestor(db, live, store, analytics.activity.touch, healer, roster=roster,
                        group_max_events=settings.ingest_group_max_events, group_inflight=settings.ingest_group_inflight,
                        apply_ahead=settings.ingest_apply_ahead)
    instrument(metrics, db=db, redis=client, live=live, hub=hub, healer=healer, refresher=refresher,
               analytics=analytics, ingestor=ingestor)
    if background:
        metrics.start(settings.metrics_sample_s)
        live.start()
        hub.start()
        healer.start()
        refresher.start()
        analytics.start()
        if settings.retention_every_s:
            retention.start()
    return Services(settings=settings, db=db, redis=client, verifier=verifier, keys=keys,
                    settings_store=store, live=live, ingestor=ingestor, metrics=metrics,
                    hub=hub, scorecards=refresher, analytics=analytics, healer=healer, retention=retention,
                    budgets=Budgets(settings, client, keys),
                    exports=exports)


async def _claim(client: aioredis.Redis, key: str, every_s: int) -> bool:
    """True for the one process that set ``key`` (it expires after ``every_s``): its turn for a periodic job."""
    return bool(await client.set(key, "1", nx=True, ex=max(1, every_s)))


def instrument(metrics: Metrics, *, db: Database, redis: aioredis.Redis, live: LiveState, hub: Hub, healer: Healer,
               refresher: ScorecardRefresher, analytics: Analytics, ingestor: Ingestor) -> None:
    """Connect the services to the process's metrics: hot-path counters, sampled gauges, timed jobs, rebuilds.

    Background jobs are timed by wrapping the method each loop calls (before the loops start), so
    the job modules stay free of metrics code.
    """
    ingestor.metrics = metrics
    db.on_wait = metrics.db_wait.observe
    for owner, method, job in ((refresher, "refresh", "scorecards"), (analytics.forecaster, "refresh", "forecast"),
                               (analytics.alerts, "evaluate", "alerts"), (analytics.detector, "check", "anomalies"),
                               (healer, "reconcile", "reconcile"), (healer, "sweep", "heal_sweep")):
        metrics.time_job(owner, method, job)
    live.hooks.append(lambda tenant, done: None if done else metrics.rebuilds.inc())
    pool = getattr(redis, "connection_pool", None)
    if pool is not None:
        time_redis_waits(pool, metrics.redis_wait.observe)
    seen = FanoutCounts()  # the hub's counts already moved into the metrics

    def sample(m: Metrics) -> None:
        counts = hub.counts
        for counter, field in ((m.deliveries, "deliveries"), (m.delivered_bytes, "bytes"),
                               (m.coalesced, "coalesced"), (m.dropped, "dropped")):
            now = getattr(counts, field)
            counter.inc(now - getattr(seen, field))
            setattr(seen, field, now)
        for reason, total in counts.closes.items():
            m.slow_closes.labels(reason).inc(total - seen.closes.get(reason, 0))
            seen.closes[reason] = total
        lags, counts.tick_lags = counts.tick_lags, []
        for lag in lags:
            m.tick_lag.observe(max(0.0, lag))
        views = dict.fromkeys(("overview", "agents", "none"), 0)
        subscribed = 0
        for key, stream in hub.streams.items():
            views[key.view] = views.get(key.view, 0) + len(stream.subscribers)
            subscribed += len(stream.subscribers)
        views["none"] = max(0, sum(len(boxes) for boxes in hub.clients.values()) - subscribed)
        for view, count in views.items():
            m.ws_clients.labels(view).set(count)
        m.ws_streams.set(len(hub.streams))
        size, idle = db.pool.get_size(), db.pool.get_idle_size()
        m.db_pool.labels("in_use").set(size - idle)
        m.db_pool.labels("idle").set(idle)
        m.db_pool.labels("max").set(db.pool.get_max_size())
        m.redis_pool.labels("in_use").set(len(getattr(pool, "_in_use_connections", ())))
        m.redis_pool.labels("max").set(getattr(pool, "max_connections", 0))

    metrics.samplers.append(sample)


def time_redis_waits(pool: Any, observe: Callable[[float], None]) -> None:
    """Tell ``observe`` how long each Redis command waited for a pooled connection (the pool blocks when all are busy)."""
    get_connection = pool.get_connection

    async def timed(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return await get_connection(*args, **kwargs)
        finally:
            observe(time.perf_counter() - began)

    pool.get_connection = timed


async def close_services(svc: Services) -> None:
    if svc.metrics is not None:
        await svc.metrics.close()
    if svc.analytics is not None:
        await svc.analytics.close()
    await svc.scorecards.close()
    await svc.ingestor.close()
    if svc.retention is not None:
        await svc.retention.close()
    await svc.hub.close()
    if svc.healer is not None:
        await svc.healer.close()
    await svc.live.close()
    await svc.redis.aclose()
    await svc.db.close()


async def on_wallboard_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, WallboardError)
    return error_answer(exc, request.url.path)


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    message = {404: f"no such path: {request.url.path}", 405: f"{request.method} is not allowed on {request.url.path}"}
    return failure(exc.status_code, codes.get(exc.status_code, "http_error"),
                   message.get(exc.status_code, str(exc.detail)), headers=exc.headers)


async def on_unexpected(request: Request, exc: Exception) -> Response:
    return error_answer(exc, request.url.path)


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The uvicorn settings every way of serving the app shares (CLI, tests, benches)."""
    return {"ws": "websockets-sansio", "ws_per_message_deflate": False, "ws_max_size": settings.ws_max_message_bytes,
            "ws_ping_interval": settings.ws_ping_interval_s, "ws_ping_timeout": settings.ws_ping_interval_s,
            "lifespan": "on", "server_header": False,
            "http": protocol_class(settings.http_header_timeout_s, settings.http_send_timeout_s),
            "limit_concurrency": settings.http_limit_concurrency or None,
            "timeout_keep_alive": settings.http_keepalive_timeout_s,
            # uvicorn's access line is logged at INFO; below that level it would still build each line's arguments
            # (the quoted path, the client's address) for the logger to drop.
            "access_log": settings.log_level in ("DEBUG", "INFO")}


class WallboardApp(Starlette):
    """Starlette, with ``/ws`` served straight from the ASGI call.

    A wallboard's connection lives for months: skipping the middleware and router
    frames that would stay on its stack for all that time saves memory on every
    one of thousands of idle connections. ``ws.serve`` handles its own errors;
    ``wires`` chooses how its frames reach the socket (server/api/wire.py).

    ``POST /api/events`` goes straight to its endpoint, which does the budget charge, the body cap
    and the error answers itself (server/api/events.py).

    A request whose budget the process already knows spent gets its prebuilt 429 here too,
    before the observer's and Starlette's per-request work (``early_refusal``): a tenant
    flooding at many times its budget then costs the event loop a few microseconds per request,
    so the other tenants' requests do not queue behind its bursts.
    """

    def __init__(self, *, wires: Wires, observer: Observer, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.wires = wires
        self.observer = observer  # request ids, log context, request metrics (server/api/observe.py)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope["path"] == ws.PATH:
            await ws.serve(scope, receive, send, self.wires)
            return
        if scope["type"] == "http":
            refused = early_refusal(scope)  # a flooding client's 429, before any other per-request work
            if refused is not None:
                answer, tenant = refused
                await self.observer.answer(scope, send, 429, answer.headers, answer.body, tenant)
                return
            # The one-event ingest requests a connector sends by the thousand skip Starlette (events.py).
            app = events.post_events if scope["path"] == events.PATH and scope["method"] == "POST" else super().__call__
            await self.observer(scope, receive, send, app)
            return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings, *, routes: list[BaseRoute] | None = None) -> Starlette:
    """The ASGI app: API routes, static pages, error handlers; the lifespan owns every service."""

    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        svc = await open_services(settings, metrics=metrics)
        # What start-up allocated lives as long as the process: keep it out of every GC pass.
        gc.freeze()
        log.info("app.started", extra={"embedded": settings.embedded})
        try:
            yield {"services": svc}
        finally:
            await close_services(svc)
            log.info("app.stopped")

    api: list[BaseRoute] = []
    for module in (system, events, queue_log, tenant_settings, live_api, staffing, history, agent_states, costs,
                   reports, audit, scorecards, predictions, anomalies, schedules, alerts, boards, tenant_api, openapi,
                   prometheus):
        api += module.routes
    api += routes or []
    api.append(Mount("/", app=StaticFiles(directory=static_dir(), html=True), name="static"))
    ingest_paths = {route.path for route in (*events.routes, *queue_log.routes) if isinstance(route, Route)}
    body_limit = Middleware(BodyLimit, default=settings.max_request_bytes,
                            limits=dict.fromkeys(ingest_paths, settings.max_body_bytes))
    return WallboardApp(
        wires=Wires(direct=settings.ws_direct_writes),
        observer=Observer(api, metrics, settings),
        routes=api,
        middleware=[Middleware(BudgetMiddleware), body_limit],
        lifespan=lifespan,
        exception_handlers={WallboardError: on_wallboard_error, HTTPException: on_http_error, Exception: on_unexpected},
    )

"""Running the server: settings completed with the embedded services, preflight, uvicorn, operator commands.

The command line (``server/cli.py``) parses argv and calls these; the benches and the seeding tool
reuse ``with_runtime`` and ``loop_factory``. Nothing here imports ``server.tools``: a feeder (the
demo's simulator) is handed in by the caller.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from server.app import close_services, create_app, open_services, uvicorn_options
from server.core import logs
from server.core.auth import TokenVerifier, mint
from server.core.config import Settings
from server.core.db_roles import serving_role_problems
from server.core.embedded import EmbeddedServices, signing_secret
from server.core.errors import ConfigError
from server.core.heap import Heap
from server.core.metrics import process_dead
from server.core.migrations import migrate
from server.core.workers import Workers, child_env, listening_socket, worker_socket

log = logging.getLogger("wallboard.runtime")

DEMO_TENANT = "demo"


@dataclass(frozen=True)
class Listening:
    """A server being started: what a feeder needs to reach it once it listens."""

    server: Any  # uvicorn.Server
    settings: Settings
    host: str
    port: int

    async def started(self) -> None:
        while not self.server.started:
            await asyncio.sleep(0.05)

    @property
    def base_url(self) -> str:
        shown = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{shown}:{self.port}"


Feeder = Callable[[Listening], Awaitable[None]]


def with_runtime(settings: Settings, *, postgres: bool = True, valkey: bool = True,
                 progress: Callable[[str], None] | None = None) -> tuple[Settings, EmbeddedServices | None]:
    """Settings completed with the embedded servers where DATABASE_URL / REDIS_URL are unset.

    The caller owns the returned EmbeddedServices and must ``stop()`` it.
    """
    say = progress or (lambda message: print(message, file=sys.stderr, flush=True))
    need_pg = postgres and settings.database_url is None
    need_valkey = valkey and settings.redis_url is None
    use_own_secret = (settings.embedded and settings.jwt_secret is None and settings.jwt_public_key is None
                      and settings.jwt_jwks_url is None and settings.jwt_jwks_file is None)
    embedded = None
    if need_pg or need_valkey:
        embedded = EmbeddedServices(settings.data_dir, postgres=need_pg, valkey=need_valkey, app_role=settings.app_role)
        embedded.start(progress=say)
        settings = settings.replace(
            database_url=settings.database_url or embedded.database_url,
            redis_url=settings.redis_url or embedded.redis_url,
            migrate_database_url=settings.migrate_database_url or embedded.owner_url,
        )
    if use_own_secret:
        settings = settings.replace(jwt_secret=signing_secret(settings.data_dir))
    return settings, embedded


def serve(host: str, port: int | None, feeders: Sequence[Feeder] = (), *, demo: bool = False, workers: int = 1,
          worker_fd: int | None = None) -> int:
    """Run the server until SIGINT/SIGTERM: embedded services where needed, migrations, then uvicorn.

    ``feeders`` run beside it once it listens (``--demo``'s simulated contact center) and are
    cancelled when it stops. Links with demo tokens are printed only on the embedded default or
    with ``demo``: a production server's output never holds a credential.
    ``workers`` > 1: this process supervises that many workers on one port (server/core/workers.py);
    ``worker_fd``: this process is one of them, serving the socket its supervisor handed down.
    0 when the server started and stopped cleanly, 1 when it never started.
    """
    settings = Settings.from_env()
    log_config = logs.setup(settings.log_level, settings.log_format)
    port = port if port is not None else settings.port
    if worker_fd is not None:  # the supervisor completed the settings and migrated
        logs.setup(settings.log_level, settings.log_format, secrets=(settings.jwt_secret,))
        return _run_uvicorn(settings, log_config, host, port, feeders, sockets=[worker_socket(worker_fd)])
    show_tokens = demo or settings.embedded
    settings, embedded = with_runtime(settings)
    logs.setup(settings.log_level, settings.log_format, secrets=(settings.jwt_secret,))
    try:
        asyncio.run(preflight(settings))
        if workers > 1:
            return _supervise(settings, host, port, workers, show_tokens, demo)
        return _run_uvicorn(settings, log_config, host, port, feeders, show_tokens=show_tokens)
    finally:
        if embedded is not None:
            embedded.stop()


def _run_uvicorn(settings: Settings, log_config: dict[str, Any], host: str, port: int, feeders: Sequence[Feeder],
                 *, show_tokens: bool = False, sockets: list[socket.socket] | None = None) -> int:
    """One server process: uvicorn on ``host``:``port`` (or the inherited ``sockets``) until it stops."""
    import uvicorn

    app = create_app(settings)
    config = uvicorn.Config(app, host=host, port=port, log_config=log_config, proxy_headers=True,
                            timeout_graceful_shutdown=10, **uvicorn_options(settings))
    server = uvicorn.Server(config)

    async def run() -> None:
        tasks = [] if sockets else [asyncio.create_task(_announce(server, settings, host, port, show_tokens))]
        tasks += [asyncio.create_task(feed(Listening(server, settings, host, port))) for feed in feeders]
        heap = Heap(settings.gc_freeze_every_s) if settings.gc_freeze_every_s else None
        if heap is not None:
            heap.start()
        try:
            await server.serve(sockets=sockets)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if heap is not None:
                await heap.close()

    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(run())
    return 0 if server.started else 1


def _supervise(settings: Settings, host: str, port: int, count: int, show_tokens: bool, demo: bool) -> int:
    """``serve --workers N``: bind once, run N workers on the socket, restart any that dies."""
    sock = listening_socket(host, port)
    port = sock.getsockname()[1]
    own_secret = settings.jwt_secret if not os.environ.get("WALLBOARD_JWT_SECRET") else None
    env = child_env(os.environ, DATABASE_URL=settings.database_url, REDIS_URL=settings.redis_url,
                    WALLBOARD_MIGRATE_DATABASE_URL=settings.migrate_database_url, WALLBOARD_JWT_SECRET=own_secret,
                    PORT=str(port))
    pool = Workers(count, sock, env, argv=["--host", host, "--port", str(port)] + (["--demo"] if demo else []))
    pool.on_exit = lambda pid: process_dead(pid, pool.env["PROMETHEUS_MULTIPROC_DIR"])
    base = Listening(None, settings, host, port).base_url
    print("\n".join([f"{count} workers"] + announcement(settings, base, show_tokens)), file=sys.stderr, flush=True)
    pool.run()
    return 0


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop where it is installed (Linux, macOS), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


async def preflight(settings: Settings) -> None:
    """Fail fast, with one line, on a bad key, an unreachable PostgreSQL or Redis; then migrate."""
    assert settings.database_url is not None
    TokenVerifier(settings)
    await migrate(settings.migrate_database_url or settings.database_url, app_role=settings.app_role)
    if settings.migrate_database_url is None:
        log.warning("db.serving_role_is_owner", extra={
            "reason": "DATABASE_URL's user runs the migrations and serves: SQL run by the server could become "
                      "the owner; set WALLBOARD_MIGRATE_DATABASE_URL to the owner and DATABASE_URL to a login role"})
    else:
        problems = await serving_role_problems(settings.database_url)
        if problems:
            raise ConfigError("; ".join(problems) + ": with WALLBOARD_MIGRATE_DATABASE_URL set, DATABASE_URL must be "
                              "a login role that is only a member of " + settings.app_role + " (see README)")
    await close_services(await open_services(settings, background=False))


async def _announce(server: Any, settings: Settings, host: str, port: int, show_tokens: bool) -> None:
    """Print the URL a person can open, once the server listens."""
    listening = Listening(server, settings, host, port)
    await listening.started()
    print("\n".join(announcement(settings, listening.base_url, show_tokens)), file=sys.stderr, flush=True)


def announcement(settings: Settings, base: str, show_tokens: bool) -> list[str]:
    """The lines that tell a person what to open; with demo tokens in the fragment only when ``show_tokens``
    (the embedded default or ``--demo``)."""
    lines = [f"wallboard server listening on {base}"]
    if show_tokens and (settings.jwt_secret is not None or settings.jwt_private_key is not None):
        token = mint(settings, tenant=DEMO_TENANT, role="supervisor", sub="demo-supervisor", ttl_s=7 * 86400)
        admin = mint(settings, tenant=DEMO_TENANT, role="admin", sub="demo-admin", ttl_s=7 * 86400)
        lines.append(f"open {base}/#token={token}")
        lines.append(f"  wallboard:  {base}/wallboard.html#token={token}")
        lines.append(f"  supervisor: {base}/supervisor.html#token={admin}  (admin: settings too)")
        lines.append("(the token is in the URL fragment, which browsers never send to the server)")
    else:
        lines.append(f"open {base}/#token=TOKEN with a token from `wallboard token --tenant T --role supervisor`")
    return lines


def rebuild_live(tenant: str) -> int:
    """``wallboard rebuild-live``: count a tenant's today again from PostgreSQL into Redis."""
    settings, embedded = with_runtime(Settings.from_env())

    async def run() -> int:
        svc = await open_services(settings, background=False)
        try:
            return await svc.live.rebuild(tenant, reset=True)
        finally:
            await close_services(svc)

    try:
        started = time.monotonic()
        count = asyncio.run(run())
        print(f"rebuilt the live state of {tenant!r} from {count} events in {time.monotonic() - started:.1f}s")
        return 0
    finally:
        if embedded is not None:
            embedded.stop()


def check_live(tenants: Sequence[str], *, every: bool, repair: bool) -> int:
    """``wallboard check-live``: compare today's live counters with the rollups, one line per tenant.

    0 when every tenant is equal, 1 when one differed (and with ``repair`` was rebuilt).
    """
    from server.live.heal import Healer

    settings, embedded = with_runtime(Settings.from_env())

    async def run() -> int:
        svc = await open_services(settings, background=False)
        healer = svc.healer or Healer(svc.live, settings)
        try:
            names = list(tenants) + ([t for t in await healer.active_tenants() if t not in tenants] if every else [])
            found = 0
            for tenant in names:
                check = await healer.compare(tenant)
                if check.equal:
                    print(check.line(), flush=True)
                    continue
                found += 1
                if not repair:
                    print(check.line(), flush=True)
                    continue
                started = time.monotonic()
                count = await svc.live.rebuild(tenant, reset=True, reason="check_live")
                print(f"{check.line()}; rebuilt from {count} events in {time.monotonic() - started:.1f}s", flush=True)
            if not names:
                print("no active tenants")
            return 1 if found else 0
        finally:
            await close_services(svc)

    try:
        return asyncio.run(run())
    finally:
        if embedded is not None:
            embedded.stop()


def apply_migrations() -> int:
    """``wallboard migrate``: apply the migrations as WALLBOARD_MIGRATE_DATABASE_URL, else DATABASE_URL
    (the embedded owner when unset)."""
    settings = Settings.from_env()
    settings, embedded = with_runtime(settings, valkey=False)
    try:
        owner = settings.migrate_database_url or settings.database_url
        assert owner is not None
        applied = asyncio.run(migrate(owner, app_role=settings.app_role))
        print(f"applied {len(applied)} migration(s): {applied}" if applied else "database is up to date")
        return 0
    finally:
        if embedded is not None:
            embedded.stop()


def as_owner(settings: Settings) -> Settings:
    """Settings for a tool that needs the tables' owner (benches: scratch databases, COPY): DATABASE_URL becomes
    WALLBOARD_MIGRATE_DATABASE_URL where that is set (the embedded default sets it)."""
    if settings.migrate_database_url is None:
        return settings
    return settings.replace(database_url=settings.migrate_database_url, migrate_database_url=None)

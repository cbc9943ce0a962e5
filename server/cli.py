"""``wallboard …``: the command line. Nothing else parses argv.

Every command reads Settings once; a ConfigError (or any WallboardError)
ends the command with one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from .auth import TokenVerifier, mint, parse_ttl
from .config import Settings
from .embedded import EmbeddedServices, signing_secret
from .errors import WallboardError

DEMO_TENANT = "demo"


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``wallboard`` console script and ``python -m server``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # uvicorn re-raises the signal it caught once it has shut down; turning SIGTERM into
    # SystemExit lets every `finally` (the embedded servers' stop above all) run.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        code = args.func(args)
    except WallboardError as exc:
        print(f"wallboard: error: {exc.message}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(code or 0)


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wallboard", description="Real-time contact-center wallboard server.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("serve", help="run the HTTP + WebSocket server")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default $PORT, else 8000)")
    p.add_argument("--demo", action="store_true", help="feed tenant 'demo' with a simulated contact center")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("simulate", help="drive a running server with a simulated contact center")
    p.add_argument("--url", required=True, help="the server, e.g. http://127.0.0.1:8000")
    p.add_argument("--token", required=True, help="an ingest (or admin) token of the tenant to feed")
    p.add_argument("--agents", type=int, default=50)
    p.add_argument("--queues", type=int, default=3)
    p.add_argument("--calls-per-hour", type=float, default=600)
    p.add_argument("--speed", type=float, default=1.0, help="virtual seconds per real second (default 1)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    p.add_argument("--minutes", type=float, default=None, help="stop after this much virtual time")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("rebuild-live", help="rebuild a tenant's live state in Redis from PostgreSQL")
    p.add_argument("--tenant", required=True)
    p.set_defaults(func=cmd_rebuild_live)

    p = sub.add_parser("seed-history", help="write a reproducible year of history straight to PostgreSQL "
                                           "(history benchmarks; no raw events)")
    p.add_argument("--tenant", required=True, help="the tenant to seed")
    for name, default, what in (("days", 365, "tenant days"), ("agents", 500, "agents"), ("queues", 8, "queues"),
                                ("calls", 10_000_000, "customer calls in all"), ("seed", 1, "random seed")):
        p.add_argument(f"--{name}", type=int, default=default, help=f"{what} (default {default})")
    p.add_argument("--end", default=None, help="the last day, YYYY-MM-DD (default yesterday, UTC)")
    p.add_argument("--replace", action="store_true", help="delete the tenant's history first, if it has any")
    p.set_defaults(func=cmd_seed_history)

    p = sub.add_parser("migrate", help="apply the sql/ migrations to DATABASE_URL")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("token", help="print a signed JWT")
    p.add_argument("--tenant", required=True, help="client_id claim")
    p.add_argument("--role", required=True, choices=["agent", "supervisor", "admin", "ingest"])
    p.add_argument("--sub", default=None, help="sub claim (an agent token's agent_id)")
    p.add_argument("--ttl", default="8h", help="lifetime: 900, 15m, 8h, 30d (default 8h)")
    p.set_defaults(func=cmd_token)

    p = sub.add_parser("ingest-queue-log", help="feed an Asterisk queue_log file to a running server")
    p.add_argument("file", metavar="FILE", help="the queue_log file, e.g. /var/log/asterisk/queue_log")
    p.add_argument("--tenant", required=True, help="the tenant the events belong to")
    p.add_argument("--follow", action="store_true", help="keep reading as the file grows (tail -F, rotation too)")
    p.add_argument("--url", default=None, help="the server (default http://127.0.0.1:$PORT)")
    p.add_argument("--state-file", default=None, help="where the resume offset is kept (default FILE.offset.json)")
    p.add_argument("--batch", type=_positive_int, default=500, help="lines per request (default 500)")
    p.add_argument("--token", default=None,
                   help="an ingest token of the tenant (default $WALLBOARD_TOKEN, else one minted "
                        "with the configured secret or WALLBOARD_JWT_PRIVATE_KEY)")
    p.set_defaults(func=cmd_ingest_queue_log)

    p = sub.add_parser("bench", help="measure performance and print the figures")
    bench = p.add_subparsers(dest="bench", required=True, metavar="BENCH")
    b = bench.add_parser("ingest", help="POST /api/events throughput against the raw storage work (baseline)")
    b.add_argument("--events", type=int, default=200_000, help="events per phase (default 200000)")
    b.add_argument("--batch", type=int, default=500, help="events per request (default 500)")
    b.add_argument("--concurrency", type=int, default=4, help="concurrent connections / workers (default 4)")
    b.add_argument("--seconds", type=float, default=None, help="stop each phase after this long (default: all events)")
    b.set_defaults(func=cmd_bench_ingest)
    b = bench.add_parser("fanout", help="WebSocket fan-out: ingest-to-client latency and deliveries/s against "
                                        "a plain broadcast server (baseline)")
    b.add_argument("--clients", type=_positive_int, default=10_000, help="WebSocket clients (default 10000)")
    b.add_argument("--tenants", type=_positive_int, default=100, help="tenants t000… to spread them over (default 100)")
    b.add_argument("--events-per-s", type=float, default=200.0, help="events posted per second in all (default 200)")
    b.add_argument("--seconds", type=float, default=30.0, help="length of each phase's load window (default 30)")
    b.add_argument("--procs", type=_positive_int, default=2, help="client processes (default 2)")
    b.set_defaults(func=cmd_bench_fanout)
    b = bench.add_parser("history", help="p50/p95 of every history endpoint over 1, 30 and 365 days of a seeded "
                                         "tenant, against counting the raw rows (baseline)")
    b.add_argument("--tenant", default="big", help="the seeded tenant to query (default big)")
    b.add_argument("--repeat", type=int, default=20, help="timed requests per endpoint and range (default 20)")
    b.set_defaults(func=cmd_bench_history)
    b = bench.add_parser("forecast", help="forecast accuracy (1 - WAPE per queue) and anomaly precision/recall on "
                                          "simulated seasonal traffic, in memory")
    b.add_argument("--queues", type=_positive_int, default=4, help="queues (default 4)")
    b.add_argument("--calls-per-hour", type=float, default=1200.0, help="all queues, averaged over the week (default 1200)")
    b.add_argument("--weeks", type=_positive_int, default=8, help="weeks simulated; the last 2 are held out (default 8)")
    b.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    b.add_argument("--timezone", default="UTC", help="the tenant's time zone (default UTC)")
    b.add_argument("--injections", type=int, default=60, help="spikes injected into the held-out weeks (default 60)")
    b.add_argument("--target", type=float, default=0.85, help="1 - WAPE each queue must reach (default 0.85)")
    b.set_defaults(func=cmd_bench_forecast)
    return parser


def with_runtime(settings: Settings, *, postgres: bool = True, valkey: bool = True,
                 progress: Callable[[str], None] | None = None) -> tuple[Settings, EmbeddedServices | None]:
    """Settings completed with the embedded servers where DATABASE_URL / REDIS_URL are unset.

    The caller owns the returned EmbeddedServices and must ``stop()`` it.
    """
    say = progress or (lambda message: print(message, file=sys.stderr, flush=True))
    need_pg = postgres and settings.database_url is None
    need_valkey = valkey and settings.redis_url is None
    use_own_secret = settings.embedded and settings.jwt_secret is None and settings.jwt_public_key is None
    embedded = None
    if need_pg or need_valkey:
        embedded = EmbeddedServices(settings.data_dir, postgres=need_pg, valkey=need_valkey)
        embedded.start(progress=say)
        settings = settings.replace(
            database_url=settings.database_url or embedded.database_url,
            redis_url=settings.redis_url or embedded.redis_url,
        )
    if use_own_secret:
        settings = settings.replace(jwt_secret=signing_secret(settings.data_dir))
    return settings, embedded


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from . import logs
    from .app import create_app, uvicorn_options
    from .heap import Heap

    settings = Settings.from_env()
    log_config = logs.setup(settings.log_level, settings.log_format)
    port = args.port if args.port is not None else settings.port
    settings, embedded = with_runtime(settings)
    try:
        asyncio.run(preflight(settings))
        app = create_app(settings)
        config = uvicorn.Config(app, host=args.host, port=port, log_config=log_config, proxy_headers=True,
                                timeout_graceful_shutdown=10, **uvicorn_options(settings))
        server = uvicorn.Server(config)

        async def run() -> None:
            tasks = [asyncio.create_task(_announce(server, settings, args.host, port))]
            if args.demo:
                tasks.append(asyncio.create_task(_demo(server, settings, args.host, port)))
            heap = Heap(settings.gc_freeze_every_s) if settings.gc_freeze_every_s else None
            if heap is not None:
                heap.start()
            try:
                await server.serve()
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                if heap is not None:
                    await heap.close()

        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            runner.run(run())
        return 0 if server.started else 1
    finally:
        if embedded is not None:
            embedded.stop()


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop where it is installed (Linux, macOS), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


async def preflight(settings: Settings) -> None:
    """Fail fast, with one line, on a bad key, an unreachable PostgreSQL or Redis; then migrate."""
    from .app import close_services, open_services
    from .db import migrate

    assert settings.database_url is not None
    TokenVerifier(settings)
    await migrate(settings.database_url, app_role=settings.app_role)
    await close_services(await open_services(settings, background=False))


async def _announce(server: Any, settings: Settings, host: str, port: int) -> None:
    """Print the URL a person can open, once the server listens, with a token in the fragment."""
    while not server.started:
        await asyncio.sleep(0.05)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    base = f"http://{shown}:{port}"
    lines = [f"wallboard server listening on {base}"]
    if settings.jwt_secret is not None or settings.jwt_private_key is not None:
        token = mint(settings, tenant=DEMO_TENANT, role="supervisor", sub="demo-supervisor", ttl_s=7 * 86400)
        admin = mint(settings, tenant=DEMO_TENANT, role="admin", sub="demo-admin", ttl_s=7 * 86400)
        lines.append(f"open {base}/#token={token}")
        lines.append(f"  wallboard:  {base}/wallboard.html#token={token}")
        lines.append(f"  supervisor: {base}/supervisor.html#token={admin}  (admin: settings too)")
        lines.append("(the token is in the URL fragment, which browsers never send to the server)")
    print("\n".join(lines), file=sys.stderr, flush=True)


def cmd_simulate(args: argparse.Namespace) -> int:
    import random
    from datetime import timedelta

    from . import logs
    from .simulate import PostStats, SimulationConfig, run_simulation

    settings = Settings.from_env()
    logs.setup(settings.log_level, "text" if sys.stderr.isatty() else settings.log_format)
    seed = args.seed if args.seed is not None else random.randrange(1 << 31)
    config = SimulationConfig(agents=args.agents, queues=args.queues, calls_per_hour=args.calls_per_hour, seed=seed)
    duration = timedelta(minutes=args.minutes) if args.minutes else None
    started = time.monotonic()

    def progress(stats: PostStats) -> None:
        rate = stats.accepted / max(time.monotonic() - started, 1e-3)
        print(f"\rsimulate: {stats.batches} batches, {stats.accepted} accepted, {stats.duplicates} duplicates, "
              f"{stats.rejected} rejected, {stats.retries} retries ({rate:.0f} events/s)", end="", file=sys.stderr,
              flush=True)

    print(f"simulate: seed {seed}, {args.agents} agents, {args.queues} queues, {args.calls_per_hour:g} calls/h, "
          f"speed {args.speed:g} -> {args.url} (Ctrl-C stops)", file=sys.stderr)
    try:
        stats = asyncio.run(run_simulation(args.url, args.token, config, speed=args.speed, duration=duration,
                                           on_progress=progress))
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    print(file=sys.stderr)
    return 0 if stats.rejected == 0 and stats.skipped == 0 else 1


def cmd_rebuild_live(args: argparse.Namespace) -> int:
    from .app import close_services, open_services

    settings, embedded = with_runtime(Settings.from_env())

    async def run() -> int:
        svc = await open_services(settings, background=False)
        try:
            return await svc.live.rebuild(args.tenant, reset=True)
        finally:
            await close_services(svc)

    try:
        started = time.monotonic()
        count = asyncio.run(run())
        print(f"rebuilt the live state of {args.tenant!r} from {count} events in {time.monotonic() - started:.1f}s")
        return 0
    finally:
        if embedded is not None:
            embedded.stop()


async def _demo(server: Any, settings: Settings, host: str, port: int) -> None:
    """Feed tenant 'demo' with a simulated contact center: today so far at once, then live."""
    from datetime import UTC, datetime, timedelta

    from .simulate import SimulationConfig, run_simulation

    while not server.started:
        await asyncio.sleep(0.05)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    token = mint(settings, tenant=DEMO_TENANT, role="ingest", sub="demo-simulator", ttl_s=365 * 86400)
    now = datetime.now(UTC)
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    backfill = max(day_start, now - timedelta(hours=8))
    config = SimulationConfig(agents=90, queues=3, calls_per_hour=600, seed=int(day_start.timestamp()))
    await run_simulation(f"http://{shown}:{port}", token, config, backfill_from=backfill)


def cmd_migrate(args: argparse.Namespace) -> int:
    from .db import migrate

    settings = Settings.from_env()
    settings, embedded = with_runtime(settings, valkey=False)
    try:
        assert settings.database_url is not None
        applied = asyncio.run(migrate(settings.database_url, app_role=settings.app_role))
        print(f"applied {len(applied)} migration(s): {applied}" if applied else "database is up to date")
        return 0
    finally:
        if embedded is not None:
            embedded.stop()


def cmd_token(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    if settings.jwt_secret is None and settings.jwt_public_key is None:
        settings = settings.replace(jwt_secret=signing_secret(settings.data_dir))
    try:
        ttl = parse_ttl(args.ttl)
        token = mint(settings, tenant=args.tenant, role=args.role, sub=args.sub, ttl_s=ttl)
    except ValueError as exc:
        print(f"wallboard: error: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {value}")
    return value


def cmd_ingest_queue_log(args: argparse.Namespace) -> int:
    """Post a queue_log file's events; 0 when all went in, 1 when lines were refused, 2 on bad config.

    Without ``--token`` (or ``$WALLBOARD_TOKEN``) an ingest token is minted here from the
    configured signing secret or private key. Such a token is re-minted when the server
    answers 401 (it expired during a long ``--follow``); a given token is used as it is.
    Ctrl-C stops at once: the offset of every batch the server answered is already saved,
    and a batch in flight is sent again next time (the server counts it as duplicates).
    """
    from .queue_log_follow import IngestError, ingest_file

    settings = Settings.from_env()
    url = args.url or f"http://127.0.0.1:{settings.port}"
    # A client credential, not server configuration: read here rather than into Settings.
    given = args.token or os.environ.get("WALLBOARD_TOKEN") or None

    def new_token() -> str:
        signer = settings
        if signer.jwt_secret is None and signer.jwt_public_key is None:
            signer = signer.replace(jwt_secret=signing_secret(signer.data_dir))
        elif signer.jwt_public_key is not None and signer.jwt_private_key is None:
            raise WallboardError(
                "WALLBOARD_JWT_PUBLIC_KEY is set (RS256/ES256) but WALLBOARD_JWT_PRIVATE_KEY is not: "
                "set it to the PEM private key, or pass an ingest token with --token or $WALLBOARD_TOKEN"
            )
        return mint(signer, tenant=args.tenant, role="ingest", sub="queue-log", ttl_s=24 * 3600)

    try:
        token = given or new_token()
    except ValueError as exc:  # an ill-formed tenant
        print(f"wallboard: error: {exc}", file=sys.stderr)
        return 2
    totals = dict.fromkeys(("lines", "events", "accepted", "duplicates", "rejected", "errors"), 0)
    try:
        while True:
            try:
                summary = asyncio.run(ingest_file(args.file, url, token, follow=args.follow,
                                                  state_path=args.state_file, batch_size=args.batch,
                                                  progress=sys.stderr.isatty()))
            except IngestError as exc:
                if given or not isinstance(exc.details, dict) or exc.details.get("status") != 401:
                    raise
                token = new_token()  # resumes at the committed offset with a fresh token
                continue
            for key in totals:
                totals[key] += summary.get(key, 0)
            break
    except FileNotFoundError as exc:
        print(f"wallboard: error: {exc.filename or args.file}: no such file", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"stopped; the next run resumes at the saved offset ({args.state_file or args.file + '.offset.json'})",
              file=sys.stderr)
        return 130
    print(f"{args.file}: {totals['lines']} lines read, {totals['events']} events sent: "
          f"{totals['accepted']} accepted, {totals['duplicates']} duplicates, {totals['rejected']} rejected; "
          f"{totals['errors']} unparseable lines")
    return 1 if totals["rejected"] or totals["errors"] else 0


def cmd_bench_ingest(args: argparse.Namespace) -> int:
    from .bench import cmd_bench_ingest

    return cmd_bench_ingest(args)


def cmd_bench_history(args: argparse.Namespace) -> int:
    from .bench_history import cmd_bench_history as run

    return run(args)


def cmd_bench_forecast(args: argparse.Namespace) -> int:
    from .bench_forecast import cmd_bench_forecast as run

    return run(args)


def cmd_seed_history(args: argparse.Namespace) -> int:
    from .seed_history import cmd_seed_history

    return cmd_seed_history(args)


def cmd_bench_fanout(args: argparse.Namespace) -> int:
    from .bench_fanout import cmd_bench_fanout

    return cmd_bench_fanout(args)

"""``wallboard …``: the command line. Nothing else parses argv.

Every command reads Settings once; a ConfigError (or any WallboardError)
ends the command with one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from typing import Any

from server.core.auth import mint, parse_ttl
from server.core.config import Settings
from server.core.embedded import signing_secret
from server.core.errors import WallboardError


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
    p.add_argument("--workers", type=_positive_int, default=1,
                   help="server processes sharing the port, restarted when one dies (default 1)")
    p.add_argument("--worker-fd", type=int, default=None, help=argparse.SUPPRESS)  # set by --workers for its workers
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

    p = sub.add_parser("check-live", help="compare a tenant's live counters of today with the PostgreSQL rollups "
                                         "(exit 1 on a mismatch); --repair rebuilds the ones that differ")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--tenant", action="append", default=[], help="a tenant to check (repeatable)")
    which.add_argument("--all", action="store_true", help="every tenant active in the last WALLBOARD_LIVE_ACTIVE_S")
    p.add_argument("--repair", action="store_true", help="rebuild each tenant found different from PostgreSQL")
    p.set_defaults(func=cmd_check_live)

    p = sub.add_parser("seed-history", help="write a reproducible year of history straight to PostgreSQL "
                                           "(history benchmarks; no raw events)")
    p.add_argument("--tenant", required=True, help="the tenant to seed")
    for name, default, what in (("days", 365, "tenant days"), ("agents", 500, "agents"), ("queues", 8, "queues"),
                                ("calls", 10_000_000, "customer calls in all"), ("seed", 1, "random seed")):
        p.add_argument(f"--{name}", type=int, default=default, help=f"{what} (default {default})")
    p.add_argument("--end", default=None, help="the last day, YYYY-MM-DD (default yesterday, UTC)")
    p.add_argument("--replace", action="store_true", help="delete the tenant's history first, if it has any")
    p.set_defaults(func=cmd_seed_history)

    p = sub.add_parser("migrate", help="apply the sql/ migrations as WALLBOARD_MIGRATE_DATABASE_URL (the owner), else DATABASE_URL")
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
    b.add_argument("--mix", choices=["full", "base"], default="full",
                   help="full: every event kind (default); base: without rings, holds, callbacks and revenue")
    b.add_argument("--pg-sessions", action="store_true",
                   help="also sample what PostgreSQL's sessions spend each server phase on (costs some CPU itself)")
    b.add_argument("--rounds", type=_positive_int, default=1,
                   help="with --batch under 500: run the one-by-one and batched phases this many times, alternated, "
                        "each round under tenants of its own, and print each round's ratio and their median (default 1)")
    b.set_defaults(func=cmd_bench_ingest)
    b = bench.add_parser("fanout", help="WebSocket fan-out: ingest-to-client latency and deliveries/s against "
                                        "a plain broadcast server (baseline)")
    b.add_argument("--clients", type=_positive_int, default=10_000, help="WebSocket clients (default 10000)")
    b.add_argument("--tenants", type=_positive_int, default=100, help="tenants t000… to spread them over (default 100)")
    b.add_argument("--events-per-s", type=float, default=200.0, help="events posted per second in all (default 200)")
    b.add_argument("--seconds", type=float, default=30.0, help="length of each phase's load window (default 30)")
    b.add_argument("--procs", type=_positive_int, default=2, help="client processes (default 2)")
    b.add_argument("--procs-server", type=_positive_int, default=1,
                   help="server processes (serve --workers N) for the same clients (default 1)")
    b.add_argument("--ingest-apart", action="store_true",
                   help="post the events to a second server process, so the measured one only fans out")
    b.set_defaults(func=cmd_bench_fanout)
    b = bench.add_parser("poll", help="GET /api/metrics/live with If-None-Match (304s) at a target rate against a "
                                      "minimal Starlette app reading one Redis key (baseline)")
    b.add_argument("--pollers", type=_positive_int, default=50, help="keep-alive connections polling (default 50)")
    b.add_argument("--rate", type=float, default=1000.0, help="polls per second in all; 0: as fast as possible "
                                                             "(default 1000)")
    b.add_argument("--seconds", type=float, default=10.0, help="length of each phase's load window (default 10)")
    b.add_argument("--refused", action="store_true", help="the tenant is past its read budget: every poll gets a 429, "
                                                          "against a minimal app answering a fixed 429")
    b.set_defaults(func=cmd_bench_poll)
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


def cmd_serve(args: argparse.Namespace) -> int:
    from server.runtime import serve

    feeders = []
    if args.demo:
        from server.tools.simulate import feed_demo

        feeders.append(feed_demo)
    return serve(args.host, args.port, feeders, demo=args.demo, workers=args.workers, worker_fd=args.worker_fd)


def cmd_migrate(args: argparse.Namespace) -> int:
    from server.runtime import apply_migrations

    return apply_migrations()


def cmd_rebuild_live(args: argparse.Namespace) -> int:
    from server.runtime import rebuild_live

    return rebuild_live(args.tenant)


def cmd_check_live(args: argparse.Namespace) -> int:
    from server.runtime import check_live

    return check_live(args.tenant, every=args.all, repair=args.repair)


def cmd_simulate(args: argparse.Namespace) -> int:
    from server.tools.simulate import cmd_simulate as run

    return run(args)


def cmd_ingest_queue_log(args: argparse.Namespace) -> int:
    from server.tools.queue_log_feed import cmd_ingest_queue_log as run

    return run(args)


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


def cmd_bench_ingest(args: argparse.Namespace) -> int:
    from server.tools.bench import cmd_bench_ingest

    return cmd_bench_ingest(args)


def cmd_bench_history(args: argparse.Namespace) -> int:
    from server.tools.bench_history import cmd_bench_history as run

    return run(args)


def cmd_bench_forecast(args: argparse.Namespace) -> int:
    from server.tools.bench_forecast import cmd_bench_forecast as run

    return run(args)


def cmd_seed_history(args: argparse.Namespace) -> int:
    from server.tools.seed_history import cmd_seed_history

    return cmd_seed_history(args)


def cmd_bench_poll(args: argparse.Namespace) -> int:
    from server.tools.bench_poll import cmd_bench_poll as run

    return run(args)


def cmd_bench_fanout(args: argparse.Namespace) -> int:
    from server.tools.bench_fanout import cmd_bench_fanout

    return cmd_bench_fanout(args)

"""Drive a running wallboard server with simulated contact-center traffic.

The model lives in :mod:`server.tools.simulate_model`; this module moves its virtual
clock in step with real time (times ``speed``) and posts the events to
``POST {url}/api/events``. Delivery is at-least-once: a batch is retried with
capped exponential back-off and full jitter until the server answers it, and a
batch answered 2xx is never sent again. A retry after a timeout may deliver a
batch twice; that is harmless because the server deduplicates by ``event_id``.
A 4xx other than 408/429 means the batch itself is wrong, so it is logged and
skipped rather than retried forever.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson

from server.core import logs
from server.core.auth import mint
from server.core.config import Settings
from server.runtime import DEMO_TENANT, Listening
from server.tools.poster import post_until_answered, response_data
from server.tools.simulate_model import ContactCenter, SimulationConfig, arrival_rate, generate

__all__ = ["ContactCenter", "PostStats", "SimulationConfig", "arrival_rate", "generate",
           "post_events", "run_simulation"]

logger = logging.getLogger("wallboard.simulate")


@dataclass
class PostStats:
    """Running totals of a poster; ``skipped`` counts events in batches refused with a 4xx."""

    batches: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    skipped: int = 0
    retries: int = 0


async def _post_batch(client: httpx.AsyncClient, endpoint: str, headers: dict[str, str],
                      batch: Sequence[dict[str, Any]], stats: PostStats, rng: random.Random,
                      backoff_base_s: float, backoff_cap_s: float) -> None:
    def retrying(attempt: int, problem: str, delay: float) -> None:
        stats.retries += 1
        logger.warning("post failed, will retry", extra={
            "error": problem, "attempt": attempt, "retry_in_s": round(delay, 2), "events": len(batch)})

    response = await post_until_answered(client, endpoint, content=orjson.dumps(list(batch)),
                                         headers={**headers, "Content-Type": "application/json"},
                                         backoff_base_s=backoff_base_s, backoff_cap_s=backoff_cap_s, rng=rng,
                                         on_retry=retrying)
    status = response.status_code
    if 200 <= status < 300:
        data = response_data(response) or {}
        stats.accepted += int(data.get("accepted", len(batch) if status == 200 else 0))
        stats.duplicates += int(data.get("duplicates", 0))
        rejected = data.get("rejected") or []
        stats.rejected += len(rejected)
        if rejected:
            logger.warning("server rejected events", extra={
                "status": status, "rejected": len(rejected), "first": rejected[0]})
        return
    stats.skipped += len(batch)
    logger.error("server refused batch; not retrying", extra={
        "status": status, "events": len(batch), "body": response.text[:500]})


async def post_events(url: str, token: str, events: Sequence[dict[str, Any]], *,
                      batch_size: int = 500, client: httpx.AsyncClient | None = None,
                      on_progress: Callable[[PostStats], None] | None = None,
                      stats: PostStats | None = None, timeout_s: float = 30.0,
                      backoff_base_s: float = 0.5, backoff_cap_s: float = 30.0,
                      rng: random.Random | None = None) -> PostStats:
    """Post ``events`` to ``{url}/api/events`` in batches, in order, and return the totals.

    Each batch is retried until the server answers it (connection errors,
    timeouts, 5xx, 408 and 429; ``Retry-After`` is honoured, otherwise capped
    exponential back-off with full jitter), so this call only returns once
    every batch was answered: it can wait forever on a dead server; cancel it
    to stop. ``on_progress`` is called with the running totals after each batch.
    Pass ``client`` to reuse connections; otherwise one is opened and closed here.
    """
    if batch_size < 1 or batch_size > 10_000:
        raise ValueError(f"Expected 1 <= batch_size <= 10000 (the server's limit), got {batch_size}.")
    stats = stats if stats is not None else PostStats()
    rng = rng or random.Random()
    endpoint = url.rstrip("/") + "/api/events"
    headers = {"Authorization": f"Bearer {token}"}
    own = client is None
    http = client or httpx.AsyncClient(timeout=timeout_s)
    try:
        for start in range(0, len(events), batch_size):
            batch = events[start:start + batch_size]
            await _post_batch(http, endpoint, headers, batch, stats, rng, backoff_base_s, backoff_cap_s)
            stats.batches += 1
            logger.debug("batch posted", extra={"events": len(batch), "accepted": stats.accepted})
            if on_progress is not None:
                on_progress(stats)
    finally:
        if own:
            await http.aclose()
    return stats


async def run_simulation(url: str, token: str, config: SimulationConfig, speed: float = 1.0,
                         stop_event: asyncio.Event | None = None, *, start: datetime | None = None,
                         duration: timedelta | None = None, tick_s: float = 1.0,
                         batch_size: int = 500, client: httpx.AsyncClient | None = None,
                         on_progress: Callable[[PostStats], None] | None = None,
                         backfill_from: datetime | None = None) -> PostStats:
    """Feed a server live: every ``tick_s`` advance the virtual clock and post what happened.

    The virtual clock starts at ``start`` (default: now, UTC) and runs at
    ``speed`` times real time. It keeps running while a post is retried, so the
    events of an outage arrive in one burst afterwards rather than being lost.
    Stops when ``stop_event`` is set (after posting what is due) or after
    ``duration`` of virtual time; returns the poster's totals. With
    ``backfill_from`` the model starts at that earlier instant and its first
    tick posts everything from then to ``start`` (a demo day that already has history).
    """
    if speed <= 0:
        raise ValueError(f"Expected speed > 0, got {speed}.")
    loop = asyncio.get_running_loop()
    virtual_start = start or datetime.now(UTC)
    virtual_end = virtual_start + duration if duration is not None else None
    model = ContactCenter(config, backfill_from or virtual_start)
    stats = PostStats()
    real_start = loop.time()
    logger.info("simulation started", extra={
        "url": url, "agents": config.agents, "queues": config.queues,
        "calls_per_hour": config.calls_per_hour, "seed": config.seed, "speed": speed})
    own = client is None
    http = client or httpx.AsyncClient(timeout=30.0)
    try:
        while True:
            stopping = stop_event is not None and stop_event.is_set()
            virtual_now = virtual_start + timedelta(seconds=(loop.time() - real_start) * speed)
            if virtual_end is not None and virtual_now >= virtual_end:
                virtual_now, stopping = virtual_end, True
            events = model.advance(virtual_now)
            if events:
                await post_events(url, token, events, batch_size=batch_size, client=http,
                                  on_progress=on_progress, stats=stats)
            if stopping:
                break
            if stop_event is None:
                await asyncio.sleep(tick_s)
            else:
                try:
                    await asyncio.wait_for(stop_event.wait(), tick_s)
                except TimeoutError:
                    pass
    finally:
        if own:
            await http.aclose()
    logger.info("simulation stopped", extra={
        "virtual_now": model.now.isoformat(), "batches": stats.batches,
        "accepted": stats.accepted, "duplicates": stats.duplicates, "retries": stats.retries})
    return stats


def cmd_simulate(args: argparse.Namespace) -> int:
    import random
    from datetime import timedelta

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


async def feed_demo(listening: Listening) -> None:
    """``serve --demo``: feed tenant 'demo' with a simulated contact center: today so far at once, then live."""
    await listening.started()
    token = mint(listening.settings, tenant=DEMO_TENANT, role="ingest", sub="demo-simulator", ttl_s=365 * 86400)
    now = datetime.now(UTC)
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    backfill = max(day_start, now - timedelta(hours=8))
    config = SimulationConfig(agents=90, queues=3, calls_per_hour=600, seed=int(day_start.timestamp()))
    await run_simulation(listening.base_url, token, config, backfill_from=backfill)

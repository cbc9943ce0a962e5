"""Prometheus metrics of one process: a :class:`Metrics` object owning its own registry.

The app's lifespan builds one ``Metrics`` and hands it to the services; nothing is
module-level, so two apps in one process (the tests) never share counters. prometheus_client
is the library (the exposition format, histograms, the multiprocess mode are its job).

Multiprocess mode: when ``PROMETHEUS_MULTIPROC_DIR`` is set before the process starts
(``wallboard serve --workers N`` sets it for its workers), prometheus_client keeps every value
in a file of that directory, and :meth:`Metrics.exposition` merges the files of every worker
with ``MultiProcessCollector``: one scrape of any worker shows the whole host. Gauges sum
over live processes (``livesum``).

Labels are bounded: a route template (never a raw path), a method, a status, a view, a job
name, an outcome. No tenant id, no token, no path parameter is ever a label value.

Hot paths stay cheap: ingest counts a batch with three ``inc`` calls; fan-out counts once per
stream and publish, not per client; the gauges (clients by view, pool use) are sampled by
one background task every ``metrics_sample_s`` instead of being moved on every connect.
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess as prom_multiprocess

from server.core import background

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SLOW = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0)

Sampler = Callable[["Metrics"], None]


def multiprocess_dir() -> str | None:
    """The shared directory of multiprocess mode, or None (one process)."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    """Every collector of the process, registered in ``self.registry``."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.http_requests = Counter("wallboard_http_requests", "HTTP requests answered", ["route", "method", "status"],
                                     registry=r)
        self.http_seconds = Histogram("wallboard_http_request_duration_seconds", "HTTP request latency",
                                      ["route", "method"], buckets=FAST, registry=r)
        self.events = Counter("wallboard_ingest_events", "events posted, by outcome", ["outcome"], registry=r)
        self.accepted = self.events.labels("accepted")
        self.duplicates = self.events.labels("duplicate")
        self.rejected = self.events.labels("rejected")
        self.ingest_seconds = Histogram("wallboard_ingest_batch_seconds",
                                        "time to answer one ingest request (its commit, and its apply unless "
                                        "answered ahead of it)", buckets=FAST, registry=r)
        self.ws_clients = Gauge("wallboard_ws_clients", "WebSocket clients by subscribed view ('none': not subscribed)",
                                ["view"], multiprocess_mode="livesum", registry=r)
        self.ws_streams = Gauge("wallboard_ws_streams", "distinct live streams rendered", multiprocess_mode="livesum",
                                registry=r)
        self.deliveries = Counter("wallboard_ws_deliveries", "updates offered to WebSocket clients", registry=r)
        self.delivered_bytes = Counter("wallboard_ws_delivered_bytes", "bytes of updates offered to clients", registry=r)
        self.tick_lag = Histogram("wallboard_ws_tick_lag_seconds", "how late the hub's tick woke up",
                                  buckets=FAST, registry=r)
        self.coalesced = Counter("wallboard_ws_updates_coalesced", "tenant changes folded into a publish already due",
                                 registry=r)
        self.dropped = Counter("wallboard_ws_updates_dropped", "queued updates replaced by a newer one before sending",
                               registry=r)
        self.slow_closes = Counter("wallboard_ws_slow_closes", "clients closed by the hub", ["reason"], registry=r)
        self.db_pool = Gauge("wallboard_db_pool_connections", "PostgreSQL pool connections", ["state"],
                             multiprocess_mode="livesum", registry=r)
        self.db_wait = Histogram("wallboard_db_pool_wait_seconds", "wait for a PostgreSQL connection (tenant work)",
                                 buckets=FAST, registry=r)
        self.redis_wait = Histogram("wallboard_redis_pool_wait_seconds", "wait for a pooled Redis connection",
                                    buckets=FAST, registry=r)
        self.redis_pool = Gauge("wallboard_redis_pool_connections", "Redis pool connections", ["state"],
                                multiprocess_mode="livesum", registry=r)
        self.job_seconds = Histogram("wallboard_job_duration_seconds", "background job runs", ["job"],
                                     buckets=SLOW, registry=r)
        self.job_failures = Counter("wallboard_job_failures", "background job runs that raised", ["job"], registry=r)
        self.rebuilds = Counter("wallboard_live_rebuilds", "live-state rebuilds from PostgreSQL started", registry=r)
        self.samplers: list[Sampler] = []
        self._task: asyncio.Task[None] | None = None

    # -- instrumentation helpers ----------------------------------------------

    def timed(self, job: str, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        """``fn`` recording each run's duration under ``job``, and a failure when it raises (re-raised)."""
        seconds, failures = self.job_seconds.labels(job), self.job_failures.labels(job)

        @functools.wraps(fn)
        async def run(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            except asyncio.CancelledError:
                raise
            except BaseException:
                failures.inc()
                raise
            finally:
                seconds.observe(time.perf_counter() - began)

        return run

    def time_job(self, owner: object, method: str, job: str) -> None:
        """Replace ``owner.method`` by its :meth:`timed` version (before ``owner`` starts its loops)."""
        setattr(owner, method, self.timed(job, getattr(owner, method)))

    # -- sampling ---------------------------------------------------------------

    def sample(self) -> None:
        for sampler in self.samplers:
            sampler(self)

    def start(self, every_s: float) -> None:
        self._task = asyncio.create_task(self._sample_loop(every_s), name="metrics-sample")

    async def close(self) -> None:
        await background.stop([self._task])
        self._task = None

    async def _sample_loop(self, every_s: float) -> None:
        while True:
            self.sample()
            await asyncio.sleep(every_s)

    # -- exposition -------------------------------------------------------------

    def exposition(self) -> bytes:
        """The text format: this process's registry, or every worker's files merged in multiprocess mode."""
        self.sample()
        path = multiprocess_dir()
        if path is None:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        prom_multiprocess.MultiProcessCollector(merged, path=path)
        return generate_latest(merged)


def process_dead(pid: int, path: str | None = None) -> None:
    """A worker ended: its live gauges leave the merged view (multiprocess mode only)."""
    path = path or multiprocess_dir()
    if path is not None:
        prom_multiprocess.mark_process_dead(pid, path)

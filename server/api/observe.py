"""Every HTTP request observed: a request id, its log context, its count and latency by route template.

The id is the client's ``X-Request-Id`` when that is a sane token (1-128 characters of
``[A-Za-z0-9._-]``), else a new one; the answer always carries it back in ``X-Request-Id``.
While the request runs, every log line carries ``request_id`` and ``route`` (and ``tenant``
once its token verified: server/core/logs.py). The metrics' ``route`` label is the route's
template (``/api/metrics/agents/{agent_id}/status``), ``static`` for files, ``unmatched``
for anything else: a bounded label set whatever paths clients send.
"""

from __future__ import annotations

import itertools
import os
import re
import secrets
import time
from collections.abc import Callable
from typing import Any

from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.api.headers import HEADERS
from server.core import logs
from server.core.config import Settings
from server.core.metrics import Metrics

SANE_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def process_tag(settings: Settings) -> str | None:
    """``worker/pid`` of a worker of ``serve --workers N`` (answers carry it in X-Wallboard-Process), else None."""
    return f"{settings.worker_id}/{os.getpid()}" if settings.worker_id is not None else None


def process_headers(settings: Settings) -> list[tuple[bytes, bytes]] | None:
    """The X-Wallboard-Process header of a worker's WebSocket handshake answer (None: not a worker)."""
    tag = process_tag(settings)
    return [(b"x-wallboard-process", tag.encode())] if tag else None


def request_id(scope: Scope, new: Callable[[], str]) -> str:
    """The client's X-Request-Id when it is a sane token, else ``new()``."""
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            offered = value.decode("latin-1")
            if SANE_ID.fullmatch(offered):
                return offered
            break
    return new()


def id_maker() -> Callable[[], str]:
    """New request ids: a random prefix per process (per app) and a counter, unique without a syscall per request."""
    prefix, counter = secrets.token_hex(6), itertools.count(1)
    return lambda: f"{prefix}{next(counter):010x}"


class Observer:
    """Wraps the app's HTTP handling (see the module docstring); ``process`` tags answers with the serving process."""

    def __init__(self, routes: list[BaseRoute], metrics: Metrics, settings: Settings) -> None:
        # Routes without parameters by their path (one dict lookup for the hot ones: ingest, live reads);
        # the rest matched in order like the router does.
        self.exact = {r.path: r.path for r in routes if isinstance(r, Route) and "{" not in r.path}
        self.others = [r for r in routes if not (isinstance(r, Route) and "{" not in r.path)]
        self.metrics = metrics
        # Added to every answer after X-Request-Id: the serving process (workers only), the security headers.
        self.extra = (*(process_headers(settings) or ()), *HEADERS)
        self.new_id = id_maker()
        # Label children by their values: a dict lookup per request instead of prometheus_client's labels().
        self._counted: dict[tuple[str, str, int], Any] = {}
        self._timed: dict[tuple[str, str], Any] = {}

    def route_of(self, scope: Scope) -> str:
        """The label of the route that serves the request: its template, ``static`` for the pages' mount."""
        label = self.exact.get(scope["path"])
        if label is not None:
            return label
        for route in self.others:
            match, _ = route.matches(scope)
            if match is not Match.NONE:
                if isinstance(route, Route):
                    return route.path
                return "static" if isinstance(route, Mount) else "other"
        return "unmatched"

    async def __call__(self, scope: Scope, receive: Receive, send: Send, app: ASGIApp) -> None:
        rid = request_id(scope, self.new_id)
        route = self.route_of(scope)
        method = scope["method"] if scope["method"] in METHODS else "other"
        token = logs.begin_request(rid, route)
        header = (b"x-request-id", rid.encode())
        status = 500
        began = time.perf_counter()

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header, *self.extra]
            await send(message)

        try:
            await app(scope, receive, send_observed)
        finally:
            logs.end_request(token)
            self.count(route, method, status, time.perf_counter() - began)

    async def answer(self, scope: Scope, send: Send, status: int, headers: tuple[tuple[bytes, bytes], ...],
                     body: bytes, tenant: str) -> None:
        """Send a prebuilt answer (a refusal decided before the app ran), observed like any other request.

        The same request id, log context (with the tenant) and request metrics as :meth:`__call__`,
        without wrapping ``send`` or running the app: a few microseconds."""
        began = time.perf_counter()
        rid = request_id(scope, self.new_id)
        route = self.route_of(scope)
        method = scope["method"] if scope["method"] in METHODS else "other"
        token = logs.begin_request(rid, route)
        logs.bind(tenant=tenant)
        try:
            await send({"type": "http.response.start", "status": status,
                        "headers": [*headers, (b"x-request-id", rid.encode()), *self.extra]})
            await send({"type": "http.response.body", "body": body})
        finally:
            logs.end_request(token)
            self.count(route, method, status, time.perf_counter() - began)

    def count(self, route: str, method: str, status: int, seconds: float) -> None:
        counted = self._counted.get((route, method, status))
        if counted is None:
            counted = self._counted[(route, method, status)] = self.metrics.http_requests.labels(route, method,
                                                                                                 str(status))
        timed = self._timed.get((route, method))
        if timed is None:
            timed = self._timed[(route, method)] = self.metrics.http_seconds.labels(route, method)
        counted.inc()
        timed.observe(seconds)

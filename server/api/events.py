"""`POST /api/events`: parse the body, record the batch, answer 200/207/422."""

from __future__ import annotations

import asyncio
import logging
import time
from functools import partial

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api.context import principal, services
from server.api.responses import failure, success
from server.core.auth import INGEST
from server.core.errors import PayloadTooLarge
from server.ingest.events import parse_body

log = logging.getLogger("wallboard.ingest")

INLINE_PARSE_BYTES = 256 * 1024  # larger bodies are parsed in a worker thread


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) past ``limit`` bytes without reading it all."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is {declared} bytes: at most {limit} bytes per request; split the batch",
                              code="body_too_large")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"the body exceeds {limit} bytes per request; split the batch", code="body_too_large")
    return bytes(body)


async def post_events(request: Request) -> Response:
    """``POST /api/events`` (roles ingest, admin): a JSON array or NDJSON of events."""
    who = principal(request, INGEST)
    svc = services(request)
    started = time.perf_counter()
    body = await read_body(request, svc.settings.max_body_bytes)
    window = (await svc.settings_store.get(who.tenant)).ingest_window_days
    parse = partial(parse_body, body, request.headers.get("content-type"), max_events=svc.settings.max_events,
                    window_days=window)
    # A big body is parsed beside the event loop, so other requests and sockets are not held up by it.
    valid, rejected = parse() if len(body) < INLINE_PARSE_BYTES else await asyncio.to_thread(parse)
    outcome = await svc.ingestor.ingest(who.tenant, valid, rejected)
    svc.hub.renderings.changed(who.tenant)  # the poster's next read here sees its events
    log.info("ingest.batch", extra={"tenant": who.tenant, "events": len(valid) + len(rejected),
                                    "accepted": outcome.accepted, "duplicates": outcome.duplicates,
                                    "rejected": len(outcome.rejected),
                                    "ms": round((time.perf_counter() - started) * 1000, 1)})
    if outcome.status == 422:
        first = outcome.rejected[0]
        return failure(422, "all_events_rejected",
                       f"no event was accepted: {len(outcome.rejected)} rejected, the first (index {first['index']}) "
                       f"for {first['error']}", details={"rejected": outcome.rejected},
                       data=outcome.data())
    return success(outcome.data(), status=outcome.status)


routes = [Route("/api/events", post_events, methods=["POST"])]

"""`POST /api/events`: parse the body, record the batch, answer 200/207/422.

The route is a plain ASGI endpoint, which the app calls straight from its own ``__call__``
(server/app.py): a connector posting each event as it happens sends thousands of these
requests a second, and Starlette's request object, router, middleware and response
objects were a fifth of the server's CPU per one-event request. What they did for this
route is done here, in the same order and with the same answers: the budget charge
(:class:`~server.api.budget.Budgets`, after the token verified), the body cap (413
before the body is read when ``Content-Length`` is past it, or as it arrives), the error
envelopes of the app's handlers (:func:`~server.api.responses.error_answer`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from functools import partial

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from server.api.budget import bearer_of
from server.api.responses import error_answer
from server.core.auth import INGEST
from server.core.errors import BadRequest, PayloadTooLarge, Unauthorized
from server.ingest.events import parse_body

log = logging.getLogger("wallboard.ingest")

PATH = "/api/events"
INLINE_PARSE_BYTES = 256 * 1024  # larger bodies are parsed in a worker thread
JSON_TYPE = (b"content-type", b"application/json")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) past ``limit`` bytes without reading it all."""
    check_declared(request.headers.get("content-length"), limit)
    body = await receive_body(request.receive, limit)
    if body is None:
        raise ClientDisconnect()
    return body


def check_declared(declared: str | None, limit: int) -> None:
    """413 when ``Content-Length`` says the body is past ``limit`` bytes (before any of it is read)."""
    if declared is None:
        return
    if not declared.isdigit():
        raise BadRequest("Content-Length is not a number", code="bad_content_length", details={"limit": limit})
    if int(declared) > limit:
        raise PayloadTooLarge(f"the body is {declared[:20]} bytes: at most {limit} bytes per request; split the batch",
                              code="body_too_large", details={"limit": limit})


async def receive_body(receive: Receive, limit: int) -> bytes | None:
    """The body as it arrives (413 past ``limit`` bytes); None when the client disconnected first."""
    body = bytearray()  # grown in place: a big body in many chunks is not copied once per chunk
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body += message.get("body", b"")
        if len(body) > limit:
            raise PayloadTooLarge(f"the body exceeds {limit} bytes per request; split the batch",
                                  code="body_too_large", details={"limit": limit})
        more = message.get("more_body", False)
    return bytes(body)


async def post_events(scope: Scope, receive: Receive, send: Send) -> None:
    """``POST /api/events`` (roles ingest, admin): a JSON array or NDJSON of events; answers every error itself."""
    try:
        answer = await _post(scope, receive)
    except Exception as exc:  # noqa: BLE001 - a WallboardError's envelope, else the app's logged 500
        await error_answer(exc, scope["path"])(scope, receive, send)
        return
    if answer is None:  # the client went away before its body came: nobody to answer
        return
    status, headers, body = answer
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _post(scope: Scope, receive: Receive) -> tuple[int, list[tuple[bytes, bytes]], bytes] | None:
    """The answer (status, headers, body); None when the client disconnected. Errors are raised to be answered."""
    svc = scope["state"]["services"]
    token = bearer_of(scope)
    denied: Unauthorized | None = None
    try:
        who = svc.verifier.verify(token)
    except Unauthorized as exc:
        denied = exc  # answered 401 after the body cap, charged to nobody (as on the other routes)
    if denied is None and svc.budgets is not None and token is not None:
        refusal = await svc.budgets.refused("ingest", who, token)
        if refusal is not None:
            spent = svc.budgets.answer(refusal, "ingest")
            return 429, list(spent.headers), spent.body
    limit = svc.settings.max_body_bytes
    content_type = None
    for name, value in scope["headers"]:
        if name == b"content-length":
            check_declared(value.decode("latin-1"), limit)
        elif name == b"content-type":
            content_type = value.decode("latin-1")
    if denied is not None:
        raise denied
    who.require(INGEST)
    started = time.perf_counter()
    body = await receive_body(receive, limit)
    if body is None:
        return None
    window = (await svc.settings_store.get(who.tenant)).ingest_window_days
    parse = partial(parse_body, body, content_type, max_events=svc.settings.max_events, window_days=window)
    # A big body is parsed beside the event loop, so other requests and sockets are not held up by it.
    valid, rejected = parse() if len(body) < INLINE_PARSE_BYTES else await asyncio.to_thread(parse)
    outcome = await svc.ingestor.ingest(who.tenant, valid, rejected)
    svc.hub.renderings.changed(who.tenant)  # the poster's next read here sees its events
    if log.isEnabledFor(logging.INFO):
        log.info("ingest.batch", extra={"tenant": who.tenant, "events": len(valid) + len(rejected),
                                        "accepted": outcome.accepted, "duplicates": outcome.duplicates,
                                        "rejected": len(outcome.rejected),
                                        "ms": round((time.perf_counter() - started) * 1000, 1)})
    if outcome.status == 422:
        first = outcome.rejected[0]
        reply = orjson.dumps({"success": False, "error": {
            "code": "all_events_rejected",
            "message": f"no event was accepted: {len(outcome.rejected)} rejected, the first (index {first['index']}) "
                       f"for {first['error']}",
            "details": {"rejected": outcome.rejected}}, "data": outcome.data()})
    else:
        reply = orjson.dumps({"success": True, "data": outcome.data()})
    return outcome.status, [(b"content-length", str(len(reply)).encode()), JSON_TYPE], reply


class _Endpoint:
    """``post_events`` as an ASGI app for Starlette's router (a function would be wrapped as a request handler)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await post_events(scope, receive, send)


routes = [Route(PATH, _Endpoint(), methods=["POST"])]

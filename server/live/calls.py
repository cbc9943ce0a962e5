"""The ``calls`` view of API.md: each waiting call with its place in its queue, and each pending callback.

Made from a :class:`~server.live.view.Snapshot` (read.lua lists every queue's waiting calls, oldest
first, and the tenant's pending callbacks hash ``Keys.callbacks``), so it is coalesced, cached and
ETagged like the overview. Nothing in it moves with the clock but ``as_of``: a board ticks each
wait from ``queued_at``.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from server.live.view import Snapshot, iso_ms

log = logging.getLogger("wallboard.calls")

CALLBACK_FIELDS = ("callback_id", "queue_id", "requested_at", "due_ts")


def calls_document(snap: Snapshot, only: set[str] | None = None) -> dict[str, Any]:
    """``{as_of, waiting: [{call_id, queue_id, queued_at, position}], callbacks: [...]}``, oldest first.

    ``position`` counts from 1 within the call's queue; with ``only``, just those queues' calls and callbacks.
    """
    waiting = []
    for queue_id, calls in snap.waiting_calls.items():
        if only is not None and queue_id not in only:
            continue
        for position, (call_id, queued_ms) in enumerate(calls, start=1):
            waiting.append({"call_id": call_id, "queue_id": queue_id, "queued_at": iso_ms(queued_ms),
                            "position": position, "_ms": queued_ms})
    waiting.sort(key=lambda row: (row["_ms"], row["queue_id"], row["position"]))
    for row in waiting:
        del row["_ms"]
    return {"as_of": iso_ms(snap.now_ms), "waiting": waiting, "callbacks": pending_callbacks(snap.callbacks, only)}


def pending_callbacks(raw: list[str], only: set[str] | None) -> list[dict[str, Any]]:
    """The pending callbacks (the stored JSON objects, with the API.md fields), soonest due first."""
    rows = []
    for text in raw:
        try:
            item = orjson.loads(text)
        except orjson.JSONDecodeError:
            item = None
        if not isinstance(item, dict) or not item.get("callback_id"):
            log.debug("calls.bad_callback", extra={"value": text[:200]})  # per render: debug, not a flood
            continue
        if only is not None and item.get("queue_id") not in only:
            continue
        rows.append({name: item.get(name) for name in CALLBACK_FIELDS})
    rows.sort(key=lambda row: (str(row["due_ts"] or ""), str(row["requested_at"] or ""), str(row["callback_id"])))
    return rows

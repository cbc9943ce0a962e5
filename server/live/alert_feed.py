"""Alerts on the process's one subscription: encoded once where raised, delivered in order on arrival.

An alert travels as ``tenant + "\n" + JSON`` on the alerts channel (``Keys.alerts``). Each process
hands the same frame to each of the tenant's clients, in publish order, without waiting for the
tick. A client whose queue filter excludes the alert's ``queue_id`` is skipped; an alert without
``queue_id`` goes to all; an agent token's clients get none (they may not see queue figures).
At most once: a process cut off from Redis at that moment misses the alert (its clients are
told ``stale``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import orjson

from server.live.outbox import Outbox, frame

log = logging.getLogger("wallboard.hub")


def encode(tenant: str, alert: dict[str, Any]) -> bytes:
    """The channel payload of ``{"type": "alert", **alert}`` for ``tenant``; ValueError on a misuse."""
    if "type" in alert:
        raise ValueError(f"alert has its own 'type' ({alert['type']!r}): the message type is always 'alert'; "
                         "name the kind of alert with another key, e.g. 'kind'")
    if "\n" in tenant:
        raise ValueError(f"tenant {tenant!r}: expected a tenant id without a newline")
    return tenant.encode() + b"\n" + orjson.dumps({"type": "alert", **alert})


def deliver(clients: Mapping[str, set[Outbox]], payload: bytes) -> None:
    """Queue one alert from the channel for this process's clients of its tenant."""
    tenant, _, message = payload.partition(b"\n")
    boxes = clients.get(tenant.decode())
    if not boxes:
        return
    try:
        body = orjson.loads(message)
    except orjson.JSONDecodeError:
        log.warning("hub.bad_alert", extra={"tenant": tenant.decode(), "payload": message[:200].decode(errors="replace")})
        return
    queue = body.get("queue_id") if isinstance(body, dict) else None
    data = frame(message)
    for box in list(boxes):
        if box.alerts and (queue is None or box.follows(queue)):
            box.say(data)

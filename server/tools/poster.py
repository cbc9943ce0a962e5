"""Posting to the ingest API until the server answers: the client side of "nothing is lost".

Shared by the simulator and the queue_log follower. A batch is retried on
connection errors, timeouts, 408, 429 and 5xx (503 while PostgreSQL is away),
honouring ``Retry-After``, otherwise after capped exponential back-off with
full jitter. Any other answer is returned to the caller: 2xx (taken), or a 4xx
that no retry can fix. Re-sending after a timeout may deliver a batch twice,
which is harmless: the server deduplicates by ``event_id``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

RETRY_STATUSES = frozenset({408, 429})
RETRY_AFTER_CAP_S = 600.0


def retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date), capped; None when absent."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), RETRY_AFTER_CAP_S)


def response_data(response: httpx.Response) -> dict[str, Any] | None:
    """The ``data`` object of an API reply, or None."""
    try:
        doc = response.json()
    except ValueError:
        return None
    data = doc.get("data") if isinstance(doc, dict) else None
    return data if isinstance(data, dict) else None


def is_transient(status: int) -> bool:
    return status >= 500 or status in RETRY_STATUSES


async def post_until_answered(client: httpx.AsyncClient, url: str, *, content: bytes,
                              headers: dict[str, str] | None = None, backoff_base_s: float = 0.5,
                              backoff_cap_s: float = 30.0, rng: random.Random | None = None,
                              on_retry: Callable[[int, str, float], None] | None = None) -> httpx.Response:
    """POST ``content`` until the answer is not a transient failure; return that answer.

    ``on_retry(attempt, problem, delay_s)`` is called before each wait. Waits
    forever on a dead server: cancel the call to stop. A malformed URL raises at once.
    """
    rng = rng or random.Random()
    attempt = 0
    while True:
        delay: float | None = None
        try:
            response = await client.post(url, content=content, headers=headers)
        except httpx.UnsupportedProtocol:
            raise  # a wrong URL never heals by waiting
        except httpx.TransportError as exc:
            problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        else:
            if not is_transient(response.status_code):
                return response
            problem = f"HTTP {response.status_code}"
            delay = retry_after(response.headers.get("Retry-After"))
        if delay is None:
            delay = rng.uniform(0, min(backoff_cap_s, backoff_base_s * 2 ** attempt))
        attempt += 1
        if on_retry is not None:
            on_retry(attempt, problem, delay)
        await asyncio.sleep(delay)

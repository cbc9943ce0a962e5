"""What one event may cost: its time window and the size and depth of its unknown extra fields.

API.md: an event older than the tenant's ingest window (``ingest_window_days``, default 35) or more
than 5 minutes in the future is rejected on its own (``ts_out_of_window``), so no request can make
PostgreSQL create a day partition outside the window; unknown extra fields are kept only while
small and flat. Each check here rejects the one event, never its batch.

Functions return the problem (or None) rather than raise, so :mod:`server.ingest.events` owns the
error type.
"""

from __future__ import annotations

from typing import Any

DAY_MS = 86_400_000
AHEAD_MS = 5 * 60_000  # how far in the future a ts may be (clock skew of the sender)
DEFAULT_WINDOW_DAYS = 35
OUT_OF_WINDOW = "ts_out_of_window"
EXTRA_TOO_BIG = "extra_field_too_large"

MAX_EXTRA_FIELDS = 50
MAX_EXTRA_NAME = 128
MAX_EXTRA_DEPTH = 4  # {"a": {"b": [1]}} is depth 3; a scalar is depth 0
MAX_EXTRA_BYTES = 16 * 1024  # all unknown fields of one event, about as JSON


def oldest_ms(now_ms: int, window_days: int) -> int:
    """The first epoch millisecond inside a window of ``window_days`` days ending now."""
    return now_ms - window_days * DAY_MS


def extras_problem(body: dict[str, Any], names: list[str]) -> tuple[str, str] | None:
    """``(field, reason)`` for the first unknown field of ``body`` (named in ``names``) past a limit.

    The walk is iterative (no recursion, whatever the depth) and stops as soon as the byte budget
    is spent, so its cost is bounded by the limits, not by the input.
    """
    if len(names) > MAX_EXTRA_FIELDS:
        return names[MAX_EXTRA_FIELDS][:64], f"more than {MAX_EXTRA_FIELDS} unknown fields in one event"
    budget = MAX_EXTRA_BYTES
    for name in names:
        if len(name) > MAX_EXTRA_NAME:
            return name[:64], f"an unknown field name is longer than {MAX_EXTRA_NAME} characters"
        budget -= len(name) + 4
        stack: list[tuple[Any, int]] = [(body[name], 1)]
        while stack:
            value, depth = stack.pop()
            kind = type(value)
            if kind is dict or kind is list:
                if depth > MAX_EXTRA_DEPTH:
                    return name, f"unknown field nested deeper than {MAX_EXTRA_DEPTH} levels: keep extra fields flat"
                budget -= 2 + 4 * len(value)
                if budget < 0:
                    break
                if kind is dict:
                    for key, item in value.items():
                        budget -= len(key)
                        stack.append((item, depth + 1))
                else:
                    stack.extend((item, depth + 1) for item in value)
            elif kind is str:
                budget -= len(value) + 2
            else:
                budget -= 8
            if budget < 0:
                break
        if budget < 0:
            return name, f"unknown fields larger than {MAX_EXTRA_BYTES} bytes in one event: keep extra fields small"
    return None


def nul_problem(path: str, value: Any) -> tuple[str, str] | None:
    """``(field, reason)`` for the first key or string (at any depth) holding a NUL, which PostgreSQL
    cannot store. Iterative: a body nested a thousand levels deep costs a loop, not a RecursionError."""
    stack: list[tuple[str, Any]] = [(path, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return where, "contains a NUL character, which cannot be stored"
        elif isinstance(item, dict):
            for key, inner in reversed(item.items()):
                if "\x00" in key:
                    return where, "a key contains a NUL character, which cannot be stored"
                stack.append((key if where == "event" else f"{where}.{key}", inner))
        elif isinstance(item, list):
            stack.extend((f"{where}[{index}]", inner) for index, inner in reversed(list(enumerate(item))))
    return None

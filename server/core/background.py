"""Stopping the background tasks a service owns: cancelled, and cancelled again until they have ended.

A cancellation can be lost on the way (in Python 3.11 ``asyncio.wait_for``, which drivers use
inside connect and acquire, may swallow one that races with a completion), and a loop that
lost it runs on and holds up shutdown. :func:`stop` repeats the cancellation until every task
has ended; a task still running after ``patience_s`` is logged and left behind, so a shutdown
never hangs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

log = logging.getLogger("wallboard.background")


async def stop(tasks: Iterable[asyncio.Task[object] | asyncio.Task[None] | None], *, patience_s: float = 10.0) -> None:
    """Cancel every task and wait until all have ended (their exceptions retrieved, never raised)."""
    pending = {task for task in tasks if task is not None and not task.done()}
    deadline = asyncio.get_running_loop().time() + patience_s
    while pending:
        for task in pending:
            task.cancel()
        done, pending = await asyncio.wait(pending, timeout=0.5)
        for task in done:
            if not task.cancelled():
                task.exception()  # retrieved: a failure while stopping is not news
        if pending and asyncio.get_running_loop().time() > deadline:
            log.warning("background.stuck", extra={"tasks": sorted(task.get_name() for task in pending)})
            return

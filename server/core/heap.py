"""The long-lived heap of a serving process: kept out of the collector's full passes.

CPython's full (generation 2) collection walks every object the collector tracks. A WebSocket
connection is about 70 of them (the ASGI task and its coroutines, the protocol's parser, buffers),
so with 10,000 wallboards one full pass stopped the event loop for about half a second, and under
load one came every 20-30 s: that pause was the ingest-to-wallboard p99.

:class:`Heap` freezes what has survived (``gc.freeze``: moved to the permanent generation, a
constant-time splice) every ``freeze_every_s``, so a full pass walks only what is newer. Frozen
objects are still freed by reference counting the moment they die, which is how a closed
connection goes (measured: 0.08 objects of cyclic garbage left per closed connection). What
cyclic garbage did freeze is collected at a thaw: everything is handed back to the collector,
collected once, and frozen again (that one pause is logged). A thaw is due every
``thaw_every_s`` but only taken when the frozen set grew by more than ``thaw_growth`` objects
since the last one: frozen garbage can only be part of that growth, so it stays bounded, and a
steady server (the same wallboards for months) never pays the pause.

Collections that stop the process for longer than ``SLOW_MS`` are logged (``heap.pause``) with
their generation and length, so a pause never hides behind a latency figure, and trigger a freeze
within ``CHECK_S``: when thousands of clients connect at once, what they built is frozen after the
first slow pass instead of being walked again by the next ones.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from typing import Any

from server.core import background

log = logging.getLogger("wallboard.heap")

SLOW_MS = 100.0
CHECK_S = 1.0  # how often the task looks for slow collections (and freezes at once after one)


class Heap:
    """Freezes the survivors every ``freeze_every_s``; thaws and collects every ``thaw_every_s`` when grown."""

    def __init__(self, freeze_every_s: float, thaw_every_s: float = 3600.0, thaw_growth: int = 100_000) -> None:
        self.freeze_every_s = freeze_every_s
        self.thaw_every_s = thaw_every_s
        self.thaw_growth = thaw_growth
        self._thawed_at_size = 0  # the frozen set's size after the last thaw (or the start)
        self.pauses: list[tuple[int, float]] = []  # (generation, ms) of slow collections, logged by the task
        self._began = 0.0
        self._thawing = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        gc.callbacks.append(self._timed)
        gc.freeze()  # what start-up built lives as long as the process
        self._thawed_at_size = gc.get_freeze_count()
        self._task = asyncio.create_task(self._run(), name="heap")

    async def close(self) -> None:
        await background.stop([self._task])
        self._task = None
        if self._timed in gc.callbacks:
            gc.callbacks.remove(self._timed)
        gc.unfreeze()

    def _timed(self, phase: str, info: dict[str, Any]) -> None:
        """gc callback: note collections slower than SLOW_MS (logged later, outside the collector)."""
        if phase == "start":
            self._began = time.perf_counter()
        elif (ms := (time.perf_counter() - self._began) * 1000) > SLOW_MS and not self._thawing:
            self.pauses.append((info["generation"], ms))

    def thaw(self) -> int:
        """Hand every frozen object back to the collector, collect once, freeze again; the objects found."""
        self._thawing = True
        try:
            gc.unfreeze()
            found = gc.collect()
        finally:
            self._thawing = False
            gc.freeze()
            self._thawed_at_size = gc.get_freeze_count()
        return found

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        thawed = frozen = loop.time()
        while True:
            await asyncio.sleep(min(CHECK_S, self.freeze_every_s))
            pauses, self.pauses = self.pauses, []
            for generation, ms in pauses:
                log.warning("heap.pause", extra={"generation": generation, "ms": round(ms, 1)})
            if (loop.time() - thawed >= self.thaw_every_s
                    and gc.get_freeze_count() - self._thawed_at_size > self.thaw_growth):
                thawed = frozen = loop.time()
                began = time.perf_counter()
                found = self.thaw()
                log.info("heap.thawed", extra={"collected": found, "frozen": gc.get_freeze_count(),
                                               "ms": round((time.perf_counter() - began) * 1000, 1)})
            elif pauses or loop.time() - frozen >= self.freeze_every_s:
                # A slow pass means much has survived since the last freeze (thousands of clients
                # connecting at once): freeze it now rather than walk it again at the next pass.
                frozen = loop.time()
                gc.freeze()

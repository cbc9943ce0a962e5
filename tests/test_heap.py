"""The serving process's heap: survivors frozen out of full collections, frozen garbage collected at the thaw."""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref

import pytest

from server import heap as heap_module
from server.heap import Heap


class Node:
    """An object in a reference cycle: only the cyclic collector can free it."""

    def __init__(self) -> None:
        self.me = self


async def test_frozen_cycles_skip_full_collections_and_are_collected_at_the_thaw() -> None:
    heap = Heap(freeze_every_s=0.05, thaw_every_s=0.6)
    heap.start()
    try:
        node = Node()
        gone = weakref.ref(node)
        await asyncio.sleep(0.2)  # frozen by now
        assert gc.get_freeze_count() > 0
        del node
        gc.collect()
        assert gone() is not None, "a frozen object was walked by a full collection"
        await asyncio.sleep(0.8)  # the thaw has come
        assert gone() is None, "frozen cyclic garbage outlived the thaw"
    finally:
        await heap.close()
    assert gc.get_freeze_count() == 0 and heap._task is None


async def test_slow_collections_are_logged(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(heap_module, "SLOW_MS", 0.0)  # every collection counts as slow
    heap = Heap(freeze_every_s=0.05, thaw_every_s=3600)
    heap.start()
    try:
        with caplog.at_level(logging.WARNING, logger="wallboard.heap"):
            gc.collect(1)
            await asyncio.sleep(0.2)
    finally:
        await heap.close()
    pauses = [r for r in caplog.records if r.getMessage() == "heap.pause"]
    assert pauses and {"generation", "ms"} <= vars(pauses[0]).keys()
    assert any(vars(r)["generation"] == 1 for r in pauses)

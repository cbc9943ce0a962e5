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
    heap = Heap(freeze_every_s=0.05, thaw_every_s=0.6, thaw_growth=0)
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


async def test_a_steady_heap_is_not_thawed_and_a_grown_one_is(caplog: pytest.LogCaptureFixture) -> None:
    """The thaw (one full pass) is taken only when the frozen set grew past thaw_growth since the last one."""
    heap = Heap(freeze_every_s=0.05, thaw_every_s=0.1, thaw_growth=50_000)
    heap.start()
    try:
        with caplog.at_level(logging.INFO, logger="wallboard.heap"):
            await asyncio.sleep(0.5)
            steady = [r for r in caplog.records if r.getMessage() == "heap.thawed"]
            grown = [[n] for n in range(100_000)]  # long-lived objects: 100,001 tracked containers
            await asyncio.sleep(0.5)
            thawed = [r for r in caplog.records if r.getMessage() == "heap.thawed"]
    finally:
        await heap.close()
    assert steady == [] and len(thawed) == 1 and len(grown) == 100_000

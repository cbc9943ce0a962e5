"""The serving process's heap: survivors frozen out of full collections, frozen garbage collected at the thaw."""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref

import pytest

from server.core import heap as heap_module
from server.core.heap import Heap


def frozen(obj: object) -> bool:
    """Whether the collector has ``obj`` in its permanent generation (in none of the three it walks)."""
    return gc.is_tracked(obj) and all(o is not obj for generation in range(3) for o in gc.get_objects(generation))


class Node:
    """An object in a reference cycle: only the cyclic collector can free it."""

    def __init__(self) -> None:
        self.me = self


async def test_frozen_cycles_skip_full_collections_and_are_collected_at_the_thaw() -> None:
    heap = Heap(freeze_every_s=0.05, thaw_every_s=3600)
    heap.start()
    try:
        node = Node()
        gone = weakref.ref(node)
        await asyncio.sleep(0.2)
        assert frozen(node)
        del node
        gc.collect()
        assert gone() is not None, "a frozen object was walked by a full collection"
        assert heap.thaw() > 0
        assert gone() is None, "frozen cyclic garbage outlived the thaw"
        assert gc.get_freeze_count() > 0, "the thaw did not freeze the survivors again"
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


async def test_a_slow_collection_freezes_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """After a slow pass the survivors are frozen within a second, without waiting for freeze_every_s."""
    monkeypatch.setattr(heap_module, "SLOW_MS", 0.0)  # every collection counts as slow
    heap = Heap(freeze_every_s=3600, thaw_every_s=3600)
    heap.start()
    try:
        survivors = [[n] for n in range(10_000)]
        gc.collect(2)
        assert not frozen(survivors[0])
        await asyncio.sleep(1.5)
        assert frozen(survivors[0]) and frozen(survivors[-1])
    finally:
        await heap.close()

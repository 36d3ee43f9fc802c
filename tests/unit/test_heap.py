"""HeapReclaimer: a closed room's cyclic garbage is collected, once per burst of closes."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from tessera.portal.heap import HeapReclaimer


class _Node:
    """Stands for a closed room's peer connection: garbage only a full collection frees."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def no_automatic_gc() -> Iterator[None]:
    # Only the reclaimer may collect the cycle, or the test proves nothing.
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def test_cyclic_garbage_is_collected_after_the_delay(no_automatic_gc: None) -> None:
    reclaimer = HeapReclaimer(delay=0.05)
    node = _Node()
    alive = weakref.ref(node)
    del node
    reclaimer.schedule()
    assert alive() is not None  # not at once: the room's threads are still ending
    for _ in range(100):
        await asyncio.sleep(0.02)
        if reclaimer.reclaims:
            break
    assert reclaimer.reclaims == 1
    assert alive() is None


async def test_rooms_closing_together_cost_one_reclaim(no_automatic_gc: None) -> None:
    reclaimer = HeapReclaimer(delay=0.1)
    for _ in range(5):
        reclaimer.schedule()
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.4)
    assert reclaimer.reclaims == 1


async def test_close_cancels_a_pending_reclaim() -> None:
    reclaimer = HeapReclaimer(delay=0.05)
    reclaimer.schedule()
    reclaimer.close()
    await asyncio.sleep(0.15)
    assert reclaimer.reclaims == 0


async def test_caches_are_released_before_collecting() -> None:
    released: list[bool] = []
    reclaimer = HeapReclaimer(delay=0.01, release=[lambda: released.append(True)])
    await reclaimer.reclaim()
    assert released == [True]

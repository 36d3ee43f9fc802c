"""HeapReclaimer: a closed room's cyclic garbage is collected, once per burst of closes."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from tessera.portal.heap import HeapReclaimer
from tests.eventually import eventually


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
    await eventually(lambda: reclaimer.reclaims == 1, what="one reclaim")
    assert alive() is None


async def test_rooms_closing_together_cost_one_reclaim(no_automatic_gc: None) -> None:
    reclaimer = HeapReclaimer(delay=0.1)
    for _ in range(5):
        reclaimer.schedule()
    await eventually(lambda: reclaimer.reclaims >= 1, what="a reclaim")
    # A later close is reclaimed on its own: by then any reclaim of the five (due before
    # it) has run too, and there was just the one.
    reclaimer.schedule()
    await eventually(lambda: reclaimer.reclaims >= 2, what="the later close's reclaim")
    assert reclaimer.reclaims == 2


async def test_close_cancels_a_pending_reclaim() -> None:
    reclaimer = HeapReclaimer(delay=0.05)
    reclaimer.schedule()
    reclaimer.close()
    # One scheduled after it with the same delay: once that one ran, the cancelled one
    # (due first) would have run too.
    later = HeapReclaimer(delay=0.05)
    later.schedule()
    await eventually(lambda: later.reclaims == 1, what="the later reclaim")
    assert reclaimer.reclaims == 0


async def test_caches_are_released_before_collecting() -> None:
    released: list[bool] = []
    reclaimer = HeapReclaimer(delay=0.01, release=[lambda: released.append(True)])
    await reclaimer.reclaim()
    assert released == [True]

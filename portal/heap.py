"""Give a closed room's memory back to the system once it is really free.

A room's media (decoded frames, codec buffers, packets) is allocated by
many threads, and glibc keeps each thread's arena and any free memory at
the top of it for reuse: without a trim a server never shrinks after a
busy hour. `malloc_trim(0)` returns free pages of every arena. Elsewhere
than glibc this does nothing.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable, Sequence

from tessera.conference.background import spawn

from .malloc import trim_heap

logger = logging.getLogger(__name__)

# Seconds between a room closing and the reclaim: its view threads and
# aiortc's decoder threads end, and its peer connections finish closing, in
# well under that.
RECLAIM_DELAY = 1.5


class HeapReclaimer:
    """Collects a closed room's garbage, then trims the heap, a moment after it closed.

    Trimming at the very moment a room closes returns little: its threads
    have not ended yet, and its peer connections, codec contexts and frames
    sit in reference cycles (aiortc's objects point at each other) that only
    a full garbage collection frees, which Python may not run for minutes.
    Each `schedule()` (re)starts the delay, so rooms closing together cost
    one collection. `release` are called first: caches worth keeping only
    while rooms run.
    """

    def __init__(
        self, delay: float = RECLAIM_DELAY, release: Sequence[Callable[[], None]] = ()
    ) -> None:
        self.delay = delay
        self._release = tuple(release)
        self.reclaims = 0
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None

    def schedule(self) -> None:
        """A room closed: reclaim `delay` seconds after the last such call."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(self.delay, self._start)

    def _start(self) -> None:
        self._timer = None
        if self._task is not None and not self._task.done():
            self.schedule()  # still trimming: go again once done
            return
        self._task = spawn(self.reclaim(), "heap reclaim")

    async def reclaim(self) -> None:
        """Collect garbage (on this thread: it holds the interpreter anyway), then trim."""
        started = time.perf_counter()
        for release in self._release:
            release()
        collected = gc.collect()
        collected_at = time.perf_counter()
        await asyncio.get_running_loop().run_in_executor(None, trim_heap)
        self.reclaims += 1
        logger.debug(
            "heap reclaimed",
            extra={
                "objects": collected,
                "gc_ms": round(1000 * (collected_at - started), 1),
                "trim_ms": round(1000 * (time.perf_counter() - collected_at), 1),
            },
        )

    def close(self) -> None:
        """Cancel a pending reclaim (shutdown)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is not None:
            self._task.cancel()
            self._task = None

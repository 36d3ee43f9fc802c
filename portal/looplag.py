"""LoopLagMonitor: how late the event loop runs a timer, the measure of its responsiveness."""

from __future__ import annotations

import asyncio
import time
from collections import deque


class LoopLagMonitor:
    """Samples event-loop lag every `interval` seconds and keeps the recent samples.

    Lag is how much later than asked a sleeping task wakes up: any CPU work on
    the loop thread (decode, encode, a slow handler) shows up here directly.
    """

    def __init__(self, interval: float = 0.05, keep: int = 1200) -> None:
        self.interval = interval
        self.samples: deque[float] = deque(maxlen=keep)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(self.interval)
            self.samples.append(max(0.0, time.perf_counter() - start - self.interval))

    def reset(self) -> None:
        self.samples.clear()

    def percentile(self, q: float) -> float:
        """The q-th percentile (0..100) of recent lag, in seconds (0 without samples)."""
        if not self.samples:
            return 0.0
        ordered = sorted(self.samples)
        index = min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))
        return ordered[index]

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

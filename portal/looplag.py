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
        self._times: deque[float] = deque(maxlen=keep)  # when each sample was taken
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(self.interval)
            now = time.perf_counter()
            self.samples.append(max(0.0, now - start - self.interval))
            self._times.append(now)

    def reset(self) -> None:
        self.samples.clear()
        self._times.clear()

    def percentile(self, q: float) -> float:
        """The q-th percentile (0..100) of recent lag, in seconds (0 without samples)."""
        if not self.samples:
            return 0.0
        ordered = sorted(self.samples)
        index = min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))
        return ordered[index]

    def recent(self, q: float, window: float, now: float | None = None) -> float:
        """The q-th percentile of the lag sampled in the last `window` seconds.

        A sample is only taken once the loop runs again, so a loop that is
        still blocked shows up through its last late sample, not at once.
        """
        now = time.perf_counter() if now is None else now
        recent = [s for s, t in zip(self.samples, self._times, strict=True) if now - t <= window]
        if not recent:
            return 0.0
        recent.sort()
        return recent[min(len(recent) - 1, round(q / 100 * (len(recent) - 1)))]

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

"""CpuMeter: the share of one core this process used since the last reading."""

from __future__ import annotations

import time


class CpuMeter:
    """Reads process CPU time against wall time (both monotonic), reading by reading."""

    def __init__(self) -> None:
        self._cpu = time.process_time()
        self._wall = time.monotonic()
        self.last = 0.0

    def sample(self) -> float:
        """CPU seconds per wall second since the previous sample (1.0 = one busy core)."""
        cpu, wall = time.process_time(), time.monotonic()
        elapsed = wall - self._wall
        if elapsed > 0.05:  # shorter windows say little; keep the last figure
            self.last = max(0.0, (cpu - self._cpu) / elapsed)
            self._cpu, self._wall = cpu, wall
        return self.last

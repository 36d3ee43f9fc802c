"""CpuMeter reads this process's CPU use between samples."""

from __future__ import annotations

import time

from tessera.cluster.cpumeter import CpuMeter


def test_cpu_meter_tells_idle_from_busy() -> None:
    meter = CpuMeter()
    meter._wall -= 1.0  # the last reading a second ago, with (almost) no CPU used since
    idle = meter.sample()
    spin_until = time.process_time() + 0.2
    while time.process_time() < spin_until:
        pass
    busy = meter.sample()
    # Busy spun 0.2 s of CPU in at most a few tenths of wall time, even on a loaded machine.
    assert idle < 0.1 and busy > 0.2

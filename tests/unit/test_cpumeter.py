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
    # The window as if the spin had taken 0.25 s of wall time (on a loaded machine it may
    # take much longer, which would dilute the figure): 0.2 s of CPU in it is 80 %.
    meter._wall = time.monotonic() - 0.25
    busy = meter.sample()
    assert idle < 0.1 and busy >= 0.79

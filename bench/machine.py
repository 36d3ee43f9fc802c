"""What the benchmark ran on, and CPU time read from /proc (psutil is not a dependency)."""

from __future__ import annotations

import datetime
import os
import platform
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import av

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class MachineInfo:
    """The machine, library versions and time of a benchmark run."""

    date: str
    cpu_model: str
    cores: int
    load_average: tuple[float, float, float]
    python: str
    pyav: str
    ffmpeg: str
    libavcodec: str
    aiortc: str

    @classmethod
    def collect(cls) -> MachineInfo:
        """Read /proc/cpuinfo, the load average and the versions of the media libraries."""
        codec = av.library_versions.get("libavcodec", (0, 0, 0))
        return cls(
            date=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
            cpu_model=_cpu_model(),
            cores=os.cpu_count() or 1,
            load_average=os.getloadavg(),
            python=platform.python_version(),
            pyav=av.__version__,
            ffmpeg=str(getattr(av, "ffmpeg_version_info", "unknown")),
            libavcodec=".".join(str(part) for part in codec),
            aiortc=_package_version("aiortc"),
        )


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` (all its threads), from /proc/<pid>/stat.

    Resolution is one clock tick (usually 10 ms): read it over windows of seconds.
    """
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may hold spaces and parentheses: split after its last ")".
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / CLOCK_TICKS


@dataclass(frozen=True)
class SystemCpu:
    """Busy and total CPU seconds of the whole machine (all cores), from /proc/stat."""

    busy: float
    total: float

    @classmethod
    def read(cls) -> SystemCpu:
        """A snapshot of the first line of /proc/stat."""
        with open("/proc/stat") as stat:
            values = [int(v) for v in stat.readline().split()[1:]]
        # user nice system idle iowait irq softirq steal (guest time is already in user).
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        total = sum(values[:8])
        return cls(busy=(total - idle) / CLOCK_TICKS, total=total / CLOCK_TICKS)

    def busy_cores_since(self, earlier: SystemCpu, wall_seconds: float) -> float:
        """Cores kept busy on average between `earlier` and this snapshot."""
        if wall_seconds <= 0:
            return 0.0
        return (self.busy - earlier.busy) / wall_seconds


def udp_receive_errors() -> int:
    """Datagrams the kernel dropped for want of room in a socket's receive buffer, machine-wide.

    `RcvbufErrors` of the `Udp:` lines in /proc/net/snmp (IPv4; 0 where it cannot be read).
    """
    try:
        lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()]
    except OSError:
        return 0
    udp = [line[1:] for line in lines if line and line[0] == "Udp:"]
    if len(udp) < 2 or "RcvbufErrors" not in udp[0]:
        return 0
    return int(udp[1][udp[0].index("RcvbufErrors")])

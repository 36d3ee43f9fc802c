"""What every benchmark command shares: its options, its header, verdicts, JSON and CPU sets.

Each `python -m bench.<name>` prints the machine it ran on, the load the
machine carried while it ran (other people's work included), its table, a
"met" / "MISSED" line per target, and writes the same figures as JSON (by
default to `bench-results/<name>.json`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .machine import MachineInfo, SystemCpu

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench-results"


def verdict(ok: bool) -> str:
    """The word a benchmark prints after a target."""
    return "met" if ok else "MISSED"


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), nearest rank; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def add_common_arguments(parser: argparse.ArgumentParser, *, cores: bool = False) -> None:
    """--quick, --json FILE (and --cores N where the server's CPU set matters)."""
    parser.add_argument("--quick", action="store_true", help="a short smoke run (seconds)")
    parser.add_argument(
        "--json",
        metavar="FILE",
        help="where to write the figures as JSON (default bench-results/<name>.json)",
    )
    if cores:
        parser.add_argument(
            "--cores",
            type=int,
            metavar="N",
            help="pin the server to N cores (the clients get the others when any are left); "
            "default: no pinning",
        )


def server_cpus(cores: int | None) -> set[int] | None:
    """The CPUs the server process may use: the first `cores` CPUs this process may use."""
    if cores is None:
        return None
    available = sorted(os.sched_getaffinity(0))
    if not 1 <= cores <= len(available):
        raise SystemExit(f"--cores must be between 1 and {len(available)}")
    return set(available[:cores])


def pin_clients(server: set[int] | None) -> set[int] | None:
    """Keep this (the clients') process off the server's CPUs when others are left.

    Returns the clients' CPU set (None: unchanged). With every CPU given to the
    server, clients and server share them, as they would on one machine.
    """
    if server is None:
        return None
    rest = set(os.sched_getaffinity(0)) - server
    if not rest:
        return None
    os.sched_setaffinity(0, rest)
    return rest


@dataclass(frozen=True)
class Load:
    """How busy the whole machine was during a run, and how much of that was ours."""

    seconds: float
    machine_cores: float  # busy cores, every process on the machine
    ours_cores: float  # the benchmark's own processes (server + clients)

    @property
    def others_cores(self) -> float:
        """Busy cores not ours: other people's tests, builds, browsers."""
        return max(0.0, self.machine_cores - self.ours_cores)


class LoadMeter:
    """Measures `Load` from its construction to `stop(ours_cpu_seconds)`."""

    def __init__(self) -> None:
        self._wall = time.monotonic()
        self._system = SystemCpu.read()

    def stop(self, ours_cpu_seconds: float) -> Load:
        """The load since construction; `ours_cpu_seconds` = the benchmark's processes' CPU."""
        wall = time.monotonic() - self._wall
        busy = SystemCpu.read().busy_cores_since(self._system, wall)
        return Load(seconds=wall, machine_cores=busy, ours_cores=ours_cpu_seconds / wall)


def header(title: str, machine: MachineInfo, cpus: set[int] | None = None) -> list[str]:
    """Title, machine, versions, load average and the server's CPU set."""
    load = " ".join(f"{v:.2f}" for v in machine.load_average)
    lines = [
        f"{title}, {machine.date}",
        f"machine   {machine.cpu_model}, {machine.cores} cores; load average {load} at start",
        f"versions  Python {machine.python}, PyAV {machine.pyav}, FFmpeg {machine.ffmpeg} "
        f"(libavcodec {machine.libavcodec}), aiortc {machine.aiortc}",
    ]
    if cpus is not None:
        lines.append(f"server    pinned to CPU(s) {sorted(cpus)} ({len(cpus)} core(s))")
    return lines


def json_ready(value: Any) -> Any:
    """Dataclasses (with their verdict properties), dicts and lists as plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        data = {f.name: json_ready(getattr(value, f.name)) for f in dataclasses.fields(value)}
        for name, attribute in vars(type(value)).items():
            if isinstance(attribute, property) and not name.startswith("_"):
                data[name] = json_ready(getattr(value, name))
        return data
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_ready(v) for v in value]
    if isinstance(value, float) and value != value:
        return None  # NaN is not JSON
    return value


def write_json(name: str, path: str | None, result: dict[str, Any]) -> Path:
    """Write `result` to `path` or bench-results/<name>.json; return where it went."""
    target = Path(path) if path else RESULTS / f"{name}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(json_ready(result), indent=1) + "\n")
    return target


def finish(
    name: str,
    json_path: str | None,
    machine: MachineInfo,
    figures: Any,
    lines: Iterable[str],
    started: float,
    cpus: set[int] | None = None,
    ok: bool = True,
) -> int:
    """Print a benchmark's result lines, write its JSON, say where and how long.

    Returns the exit status: 0, or 1 when `ok` is false (a check the command
    fails on, e.g. a client that got neither in nor a clear refusal).
    """
    for line in lines:
        print(line)
    elapsed = time.monotonic() - started
    result: dict[str, Any] = {"benchmark": name, "machine": machine}
    if cpus is not None:
        result["server_cpus"] = sorted(cpus)
    result.update(figures=figures, elapsed_seconds=elapsed)
    path = write_json(name, json_path, result)
    print(f"(run took {elapsed:.0f} s; figures in {path})")
    return 0 if ok else 1

"""Density: `python -m bench.density [--quick] [--cores N] [--rooms N] [--json FILE]`.

How many 3x3 rooms one server runs at once: each room has 9 participants,
each publishing 640x360 VP8 (pre-encoded camera-like content, ~600 kbit/s)
and subscribed to the room's 1280x720 30 fps mixed view. Rooms are added
one at a time; after each, a window measures the server's CPU (its own
process, pinned to N cores with --cores), every view's composited frame
rate (the server's /metrics) and the frame rate every participant receives.

A step passes when every view holds 30 fps +-1 (composited and received)
and the server uses at most 70% of its cores. The answer is the largest
passing step; the target is 2 rooms per core. Stops at the first failing
step or at --rooms (default 6). Under two minutes on a 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .machine import MachineInfo, SystemCpu
from .participants import Participant, ParticipantSpec, encode_scenes, enter_all
from .report import add_common_arguments, finish, header, pin_clients, server_cpus, verdict
from .subscribers import Metrics, ServerProcess, leave, loop_lag_p99_ms

ROOMS_PER_CORE_TARGET = 2.0
CPU_LIMIT = 0.70  # of the server's cores
FPS = 30.0
FPS_TOLERANCE = 1.0


@dataclass(frozen=True)
class DensityBenchConfig:
    """What is measured; the defaults are the full run."""

    participants: int = 9  # per room
    max_rooms: int = 6
    window: float = 6.0
    settle: float = 3.0
    server_cpus: frozenset[int] | None = None


QUICK = DensityBenchConfig(participants=3, max_rooms=1, window=2.0, settle=1.5)


@dataclass(frozen=True)
class DensityStep:
    """One window with `rooms` rooms running."""

    rooms: int
    server_cpu_percent: float  # % of one core
    clients_cpu_percent: float
    others_cpu_percent: float
    view_fps: list[float]  # composited by each view (server)
    received_fps_min: list[float]  # the slowest participant of each room
    loop_lag_p99_ms: float
    cores: int  # the server's cores

    @property
    def cpu_share(self) -> float:
        """Server CPU as a share of its cores."""
        return self.server_cpu_percent / 100 / self.cores

    @property
    def holds_frame_rate(self) -> bool:
        """Every view composited and delivered 30 fps +-1."""
        rates = self.view_fps + self.received_fps_min
        return bool(rates) and all(abs(r - FPS) <= FPS_TOLERANCE for r in rates)

    @property
    def within_cpu(self) -> bool:
        """The server used at most 70% of its cores."""
        return self.cpu_share <= CPU_LIMIT

    @property
    def passed(self) -> bool:
        """Both conditions."""
        return self.holds_frame_rate and self.within_cpu


@dataclass(frozen=True)
class DensityFigures:
    """Every step and the answer."""

    config: DensityBenchConfig
    cores: int
    steps: list[DensityStep] = field(default_factory=list)
    error: str | None = None  # why it stopped early, if something failed outright

    @property
    def rooms(self) -> int:
        """The largest step that passed (0 if none did)."""
        passed = [s.rooms for s in self.steps if s.passed]
        return max(passed) if passed else 0

    @property
    def rooms_per_core(self) -> float:
        """Rooms per server core."""
        return self.rooms / self.cores

    @property
    def meets_target(self) -> bool:
        """At least 2 rooms per core."""
        return self.rooms_per_core >= ROOMS_PER_CORE_TARGET


def _view_frames(metrics: Metrics) -> dict[str, float]:
    return {
        dict(labels).get("view", "?"): value
        for labels, value in metrics.get("tessera_view_frames_total", {}).items()
    }


async def _measure(
    server: ServerProcess, rooms: list[list[Participant]], window: float, cores: int
) -> DensityStep:
    # Each count is divided by the time between its own two readings: a /metrics
    # fetch takes a while on a loaded server (it once stretched a 6 s window
    # by 0.2 s and made 30 fps read as 31).
    fetch0 = time.monotonic()
    views0 = _view_frames(await server.metrics())
    views_start = (fetch0 + time.monotonic()) / 2
    frames0 = [[c.frames for c in room] for room in rooms]
    server0, own0, machine0 = server.cpu_seconds(), time.process_time(), SystemCpu.read()
    start = time.monotonic()
    await asyncio.sleep(window)
    frames1 = [[c.frames for c in room] for room in rooms]
    elapsed = time.monotonic() - start
    server1, own1 = server.cpu_seconds(), time.process_time()
    machine = SystemCpu.read().busy_cores_since(machine0, elapsed) * 100
    fetch1 = time.monotonic()
    metrics = await server.metrics()
    views_elapsed = (fetch1 + time.monotonic()) / 2 - views_start
    views1 = _view_frames(metrics)
    received = [
        min((f1 - f0) / elapsed for f0, f1 in zip(before, after, strict=True))
        for before, after in zip(frames0, frames1, strict=True)
    ]
    server_percent = (server1 - server0) / elapsed * 100
    clients_percent = (own1 - own0) / elapsed * 100
    return DensityStep(
        rooms=len(rooms),
        server_cpu_percent=server_percent,
        clients_cpu_percent=clients_percent,
        others_cpu_percent=max(0.0, machine - server_percent - clients_percent),
        view_fps=[(views1[v] - views0.get(v, 0.0)) / views_elapsed for v in sorted(views1)],
        received_fps_min=received,
        loop_lag_p99_ms=loop_lag_p99_ms(metrics),
        cores=cores,
    )


async def run_density_bench(config: DensityBenchConfig) -> DensityFigures:
    """Add rooms one by one until a step fails or `max_rooms` ran."""
    scenes = encode_scenes(config.participants)
    cpus = set(config.server_cpus) if config.server_cpus is not None else None
    cores = len(cpus) if cpus is not None else len(os.sched_getaffinity(0))
    steps: list[DensityStep] = []
    rooms: list[list[Participant]] = []
    error: str | None = None
    with tempfile.TemporaryDirectory(prefix="tessera-bench-") as tmp:
        server = await ServerProcess.start(Path(tmp), cpus=cpus)
        try:
            for number in range(1, config.max_rooms + 1):
                specs = [
                    ParticipantSpec(user=f"r{number}-p{i}", video=scenes[i])
                    for i in range(config.participants)
                ]
                try:
                    rooms.append(
                        await enter_all(server, f"density-{number}", specs, config.participants, 40)
                    )
                except RuntimeError as exc:
                    error = f"room {number} could not start: {exc}"
                    break
                await asyncio.sleep(config.settle)
                step = await _measure(server, rooms, config.window, cores)
                steps.append(step)
                print(_row(step), flush=True)
                if not step.passed:
                    break
        finally:
            await asyncio.gather(*(leave(c) for room in rooms for c in room))
            await server.stop()
    return DensityFigures(config=config, cores=cores, steps=steps, error=error)


def _columns() -> list[str]:
    return [
        f"   {'rooms':>5}{'server':>9}{'of its':>8}{'view fps (server)':>20}"
        f"{'received fps':>14}{'loop lag':>10}{'clients':>9}{'others':>8}  pass",
        f"   {'':>5}{'% core':>9}{'cores':>8}{'min / max':>20}{'min':>14}{'p99 ms':>10}"
        f"{'% core':>9}{'% core':>8}",
    ]


def _row(s: DensityStep) -> str:
    views = f"{min(s.view_fps, default=0):.1f} / {max(s.view_fps, default=0):.1f}"
    return (
        f"   {s.rooms:>5}{s.server_cpu_percent:>9.1f}{100 * s.cpu_share:>7.0f}%{views:>20}"
        f"{min(s.received_fps_min, default=0):>14.1f}{s.loop_lag_p99_ms:>10.1f}"
        f"{s.clients_cpu_percent:>9.0f}{s.others_cpu_percent:>8.0f}  "
        + ("yes" if s.passed else ("no: fps" if not s.holds_frame_rate else "no: CPU"))
    )


def format_figures(figures: DensityFigures) -> list[str]:
    """The table (again, complete) and the verdict."""
    c = figures.config
    lines = [
        "",
        f"rooms of {c.participants} participants: 640x360 VP8 in, each subscribed to the "
        f"1280x720 30 fps view; {c.window:g} s windows; pass = every view {FPS:g} +-"
        f"{FPS_TOLERANCE:g} fps and server <= {100 * CPU_LIMIT:.0f}% of its {figures.cores} "
        "core(s)",
        "",
        *_columns(),
        *(_row(s) for s in figures.steps),
    ]
    if figures.error:
        lines.append(f"   stopped: {figures.error}")
    lines += [
        "",
        f"rooms that fit: {figures.rooms} on {figures.cores} core(s) = "
        f"{figures.rooms_per_core:.1f} per core - target >= {ROOMS_PER_CORE_TARGET:g} per core: "
        f"{verdict(figures.meets_target)}",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run the density benchmark, print the table, write JSON."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.density", description=(__doc__ or "").splitlines()[0]
    )
    add_common_arguments(parser, cores=True)
    parser.add_argument("--rooms", type=int, metavar="N", help="at most N rooms (default 6)")
    args = parser.parse_args(argv)
    cpus = server_cpus(args.cores)
    clients = pin_clients(cpus)
    started = time.monotonic()
    machine = MachineInfo.collect()
    for line in header("Tessera density benchmark", machine, cpus):
        print(line, flush=True)
    if clients is not None:
        print(f"clients   pinned to CPU(s) {sorted(clients)}")
    config = QUICK if args.quick else DensityBenchConfig()
    if args.rooms:
        config = dataclasses.replace(config, max_rooms=args.rooms)
    if cpus is not None:
        config = dataclasses.replace(config, server_cpus=frozenset(cpus))
    print("", *_columns(), sep="\n", flush=True)
    figures = asyncio.run(run_density_bench(config))
    return finish("density", args.json, machine, figures, format_figures(figures), started, cpus)


if __name__ == "__main__":
    raise SystemExit(main())

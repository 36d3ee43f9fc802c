"""Density: `python -m bench.density [--quick] [--cores N] [--rooms N] [--agents N] [--json FILE]`.

How many 3x3 rooms one server runs at once: each room has 9 participants,
each publishing 640x360 VP8 (pre-encoded camera-like content, ~600 kbit/s)
and subscribed to the room's 1280x720 30 fps mixed view. Rooms are added
one at a time; after each, a window measures the server's CPU (its own
process, pinned to N cores with --cores), every view's composited frame
rate (the server's /metrics) and the frame rate every participant receives.

A step passes when every view holds 30 fps +-1 (composited and received),
its inputs reach it decoded at 30 fps +-1 (mean over its inputs, the
server's `tessera_view_input_frames` counter: a view composites 30 fps from
whatever its inputs last delivered, so a starved server can show 30 fps of
stale pictures), and the server uses at most 70% of its cores. The answer
is the largest passing step; the target is 2 rooms per core. A step over
the CPU limit alone still counts towards "rooms at 30 fps" (how many rooms
the server holds at frame rate however much of the machine it takes: the
cluster's target); the run stops at the first step whose frame rates fail
(`--keep-going`: measures every step, and a step counts only if all before
it passed too) or at --rooms (default 6). Under two minutes on a 2-core
machine.

With --agents N the same rooms then run on a cluster started by the
benchmark (`ClusterProcess`: a redis-server, one `tessera portal`, N
`tessera agent`), and both tables and a comparison are printed. For the
cluster, "the server" is every one of its processes: CPU is summed over
Redis, the portal and the agents, and the 70% limit applies to the cores
they all share (the machine's, or the --cores set every process is pinned
to); view frame rates come from the agents' /metrics and the loop lag is
the worst agent's. Every participant also times join -> first mixed frame
(from the start of its login to the first frame of the view it receives);
the comparison takes the median and p95 over the rooms both runs entered.

The participants count the view's whole frames from the clear RTP headers of
the SRTP packets they receive (sequence numbers and marker bits, read 64
datagrams per system call on one thread: `bench/batchreceiver.py`), without
decrypting; a frame that lost a packet is not counted (the "incomplete"
column). They share the cores with the server, and aiortc's whole receive
path for 36 participants in one Python process fell behind at 2-3 rooms (the
kernel dropped their datagrams: the "UDP drops" column, `RcvbufErrors` of
the whole machine in the window). `--full-receivers` runs that path again.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .batchreceiver import BatchReceiver
from .clusterprocess import ClusterProcess
from .machine import MachineInfo, SystemCpu, udp_receive_errors
from .participants import Participant, ParticipantSpec, encode_scenes, enter_all
from .report import (
    add_common_arguments,
    finish,
    header,
    percentile,
    pin_clients,
    server_cpus,
    verdict,
)
from .subscribers import BenchServer, Metrics, ServerProcess, leave, loop_lag_p99_ms

ROOMS_PER_CORE_TARGET = 2.0
CPU_LIMIT = 0.70  # of the server's cores
FPS = 30.0
FPS_TOLERANCE = 1.0
#: The cluster's join -> first mixed frame (median) may be this much above one process's.
JOIN_DELAY_TARGET_MS = 50.0


@dataclass(frozen=True)
class DensityBenchConfig:
    """What is measured; the defaults are the full run."""

    participants: int = 9  # per room
    max_rooms: int = 6
    window: float = 6.0
    settle: float = 3.0
    server_cpus: frozenset[int] | None = None
    full_receivers: bool = False  # aiortc's receive path in every participant (decrypt, reassemble)
    keep_going: bool = False  # measure every step up to max_rooms, passed or not
    pin_agents: bool = False  # a cluster: agent k on the k-th core only (one agent per core)


QUICK = DensityBenchConfig(participants=3, max_rooms=1, window=1.5, settle=1.0)


@dataclass(frozen=True)
class DensityStep:
    """One window with `rooms` rooms running."""

    rooms: int
    server_cpu_percent: float  # % of one core
    clients_cpu_percent: float
    others_cpu_percent: float
    view_fps: list[float]  # composited by each view (server)
    received_fps_min: list[float]  # the slowest participant of each room
    loop_lag_p99_ms: float  # a cluster: the worst agent's
    cores: int  # the server's cores
    rooms_by_agent: list[int] = field(default_factory=list)  # a cluster: rooms on each agent
    portal_lag_p99_ms: float | None = None  # a cluster: its portal's event-loop lag
    udp_drops: int = 0  # datagrams the kernel dropped (RcvbufErrors, whole machine) in the window
    incomplete_frames: int = 0  # frames the participants got with a packet missing, in the window
    nodes_cpu_percent: dict[str, float] = field(default_factory=dict)  # a cluster: per process
    # Thread CPU per composited frame, mean over the views (their /metrics counters).
    composite_ms_per_frame: float = 0.0
    encode_ms_per_frame: float = 0.0
    # Decoded frames per input per second reaching each view (mean over its inputs).
    input_fps: list[float] = field(default_factory=list)

    @property
    def cpu_share(self) -> float:
        """Server CPU as a share of its cores."""
        return self.server_cpu_percent / 100 / self.cores

    @property
    def holds_frame_rate(self) -> bool:
        """Every view composited and delivered 30 fps +-1, from inputs decoded at 30 fps +-1."""
        rates = self.view_fps + self.received_fps_min + self.input_fps
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
    agents: int = 0  # 0: one process (`tessera serve`); else a cluster of 1 portal + N agents
    join_to_first_frame_ms: list[list[float]] = field(default_factory=list)  # room by room
    node_errors: list[str] = field(default_factory=list)  # a cluster: its nodes' error lines

    @property
    def mode(self) -> str:
        """What ran the rooms."""
        if not self.agents:
            return "one process"
        return f"cluster: 1 portal + {self.agents} agent(s) + Redis"

    @property
    def rooms(self) -> int:
        """The largest step up to which every step passed (0 if the first did not)."""
        return self._rooms_while(lambda step: step.passed)

    @property
    def rooms_at_frame_rate(self) -> int:
        """The largest step up to which every step held 30 fps, whatever its CPU."""
        return self._rooms_while(lambda step: step.holds_frame_rate)

    def _rooms_while(self, holds: Callable[[DensityStep], bool]) -> int:
        rooms = 0
        for step in sorted(self.steps, key=lambda s: s.rooms):
            if not holds(step):
                break
            rooms = step.rooms
        return rooms

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


def _per_view(metrics: Metrics, name: str) -> dict[str, float]:
    return {dict(labels).get("view", "?"): value for labels, value in metrics.get(name, {}).items()}


def _ms_per_frame(before: Metrics, after: Metrics, name: str) -> float:
    """Seconds counter `name` per composited frame between two scrapes, in ms (all views)."""
    frames0, frames1 = _view_frames(before), _view_frames(after)
    seconds0, seconds1 = _per_view(before, name), _per_view(after, name)
    frames = seconds = 0.0
    for view, spent in seconds1.items():
        spent -= seconds0.get(view, 0.0)
        made = frames1.get(view, 0.0) - frames0.get(view, 0.0)
        if spent >= 0 and made > 0:  # a view whose encoder was replaced restarts its count
            frames, seconds = frames + made, seconds + spent
    return 1000 * seconds / frames if frames > 0 else 0.0


def _rooms(metrics: Metrics) -> int:
    return round(sum(metrics.get("tessera_rooms", {}).values()))


async def _measure(
    server: BenchServer,
    rooms: list[list[Participant]],
    window: float,
    cores: int,
    participants: int,
) -> DensityStep:
    # Each count is divided by the time between its own two readings: a /metrics
    # fetch takes a while on a loaded server (it once stretched a 6 s window
    # by 0.2 s and made 30 fps read as 31).
    fetch0 = time.monotonic()
    metrics0 = await server.metrics()
    views0 = _view_frames(metrics0)
    views_start = (fetch0 + time.monotonic()) / 2
    frames0 = [[c.frames for c in room] for room in rooms]
    incomplete0 = _incomplete(rooms)
    nodes0 = server.node_cpu_seconds() if isinstance(server, ClusterProcess) else {}
    drops0 = udp_receive_errors()
    server0, own0, machine0 = server.cpu_seconds(), time.process_time(), SystemCpu.read()
    start = time.monotonic()
    await asyncio.sleep(window)
    frames1 = [[c.frames for c in room] for room in rooms]
    elapsed = time.monotonic() - start
    server1, own1 = server.cpu_seconds(), time.process_time()
    drops = udp_receive_errors() - drops0
    incomplete = _incomplete(rooms) - incomplete0
    nodes1 = server.node_cpu_seconds() if isinstance(server, ClusterProcess) else {}
    machine = SystemCpu.read().busy_cores_since(machine0, elapsed) * 100
    fetch1 = time.monotonic()
    metrics = await server.metrics()
    views_elapsed = (fetch1 + time.monotonic()) / 2 - views_start
    views1 = _view_frames(metrics)
    inputs0 = _per_view(metrics0, "tessera_view_input_frames_total")
    inputs1 = _per_view(metrics, "tessera_view_input_frames_total")
    received = [
        min((f1 - f0) / elapsed for f0, f1 in zip(before, after, strict=True))
        for before, after in zip(frames0, frames1, strict=True)
    ]
    server_percent = (server1 - server0) / elapsed * 100
    clients_percent = (own1 - own0) / elapsed * 100
    rooms_by_agent: list[int] = []
    portal_lag: float | None = None
    if isinstance(server, ClusterProcess):
        rooms_by_agent = [_rooms(m) for m in await server.agent_metrics()]
        portal_lag = loop_lag_p99_ms(await server.portal_metrics())
    return DensityStep(
        rooms=len(rooms),
        server_cpu_percent=server_percent,
        clients_cpu_percent=clients_percent,
        others_cpu_percent=max(0.0, machine - server_percent - clients_percent),
        view_fps=[(views1[v] - views0.get(v, 0.0)) / views_elapsed for v in sorted(views1)],
        received_fps_min=received,
        loop_lag_p99_ms=loop_lag_p99_ms(metrics),
        cores=cores,
        rooms_by_agent=rooms_by_agent,
        portal_lag_p99_ms=portal_lag,
        udp_drops=drops,
        incomplete_frames=incomplete,
        nodes_cpu_percent={
            name: (nodes1[name] - seconds) / elapsed * 100
            for name, seconds in nodes0.items()
            if name in nodes1
        },
        composite_ms_per_frame=_ms_per_frame(
            metrics0, metrics, "tessera_view_composite_seconds_total"
        ),
        encode_ms_per_frame=_ms_per_frame(metrics0, metrics, "tessera_view_encode_seconds_total"),
        input_fps=[
            (inputs1[v] - inputs0.get(v, 0.0)) / participants / views_elapsed
            for v in sorted(inputs1)
        ],
    )


def _incomplete(rooms: list[list[Participant]]) -> int:
    return sum(getattr(c, "incomplete_frames", 0) for room in rooms for c in room)


async def run_density_bench(config: DensityBenchConfig, agents: int = 0) -> DensityFigures:
    """Add rooms one by one until a step fails or `max_rooms` ran.

    `agents` 0 runs them on one process (`bench._server`), N on a cluster of one
    portal, N agents and a redis-server (`ClusterProcess`).
    """
    scenes = encode_scenes(config.participants)
    cpus = set(config.server_cpus) if config.server_cpus is not None else None
    cores = len(cpus) if cpus is not None else len(os.sched_getaffinity(0))
    steps: list[DensityStep] = []
    rooms: list[list[Participant]] = []
    joins: list[list[float]] = []
    error: str | None = None
    reader = None if config.full_receivers else BatchReceiver()
    with tempfile.TemporaryDirectory(prefix="tessera-bench-") as tmp:
        server: ServerProcess | ClusterProcess
        if agents:
            server = await ClusterProcess.start(
                Path(tmp), agents, cpus=cpus, pin_agents=config.pin_agents
            )
        else:
            server = await ServerProcess.start(Path(tmp), cpus=cpus)
        try:
            for number in range(1, config.max_rooms + 1):
                specs = [
                    ParticipantSpec(
                        user=f"r{number}-p{i}",
                        video=scenes[i],
                        count_headers=not config.full_receivers,
                    )
                    for i in range(config.participants)
                ]
                try:
                    room = await enter_all(
                        server, f"density-{number}", specs, config.participants, 40, reader
                    )
                except RuntimeError as exc:
                    error = f"room {number} could not start: {exc}"
                    break
                rooms.append(room)
                joins.append([1000 * t for c in room if (t := c.join_to_first_frame) is not None])
                await asyncio.sleep(config.settle)
                step = await _measure(server, rooms, config.window, cores, config.participants)
                steps.append(step)
                print(_row(step), flush=True)
                if not step.holds_frame_rate and not config.keep_going:
                    break
        finally:
            await asyncio.gather(*(leave(c) for room in rooms for c in room))
            logged = await server.stop()
    return DensityFigures(
        config=config,
        cores=cores,
        steps=steps,
        error=error,
        agents=agents,
        join_to_first_frame_ms=joins,
        # A node that logged an error may have skewed the figures: they are shown with them.
        node_errors=logged if agents else [],
    )


@dataclass(frozen=True)
class DensityComparison:
    """The same rooms on one process and on a cluster, and the cluster's targets."""

    single: DensityFigures
    cluster: DensityFigures

    @property
    def common_rooms(self) -> int:
        """Rooms both runs entered: the join times compared are theirs."""
        single, cluster = self.single.join_to_first_frame_ms, self.cluster.join_to_first_frame_ms
        return min(len(single), len(cluster))

    def _joins(self, figures: DensityFigures) -> list[float]:
        return [t for room in figures.join_to_first_frame_ms[: self.common_rooms] for t in room]

    @property
    def single_join_ms(self) -> tuple[float, float]:
        """One process: join -> first mixed frame, median and p95 (ms) over the common rooms."""
        return _median_p95(self._joins(self.single))

    @property
    def cluster_join_ms(self) -> tuple[float, float]:
        """The cluster: join -> first mixed frame, median and p95 (ms) over the common rooms."""
        return _median_p95(self._joins(self.cluster))

    @property
    def join_delay_ms(self) -> float:
        """How much later the cluster's median participant saw its first mixed frame."""
        return self.cluster_join_ms[0] - self.single_join_ms[0]

    @property
    def rooms_target(self) -> int:
        """At least 2 rooms per core for the cluster (4 on 2 cores)."""
        return int(ROOMS_PER_CORE_TARGET * self.cluster.cores)

    @property
    def meets_rooms_target(self) -> bool:
        """The cluster holds at least `rooms_target` rooms at 30 fps (views, inputs and
        participants), whatever share of the machine they take."""
        return self.cluster.rooms_at_frame_rate >= self.rooms_target

    @property
    def meets_join_target(self) -> bool:
        """The cluster's median join -> first mixed frame is at most 50 ms above one process's."""
        return self.common_rooms > 0 and self.join_delay_ms <= JOIN_DELAY_TARGET_MS


def _median_p95(values: list[float]) -> tuple[float, float]:
    if not values:
        return (float("nan"), float("nan"))
    return (statistics.median(values), percentile(values, 95))


def _columns(cluster: bool = False) -> list[str]:
    extra = (f"{'portal lag':>12}{'rooms on':>10}", f"{'p99 ms':>12}{'agents':>10}")
    return [
        f"   {'rooms':>5}{'server':>9}{'of its':>8}{'view fps (server)':>20}"
        f"{'received fps':>14}{'loop lag':>10}{'clients':>9}{'others':>8}{'UDP':>8}"
        f"{'incom-':>8}  pass" + (f"{'':>7}{extra[0]}" if cluster else ""),
        f"   {'':>5}{'% core':>9}{'cores':>8}{'min / max':>20}{'min':>14}{'p99 ms':>10}"
        f"{'% core':>9}{'% core':>8}{'drops':>8}{'plete':>8}"
        + (f"{'':>13}{extra[1]}" if cluster else ""),
    ]


def _row(s: DensityStep) -> str:
    views = f"{min(s.view_fps, default=0):.1f} / {max(s.view_fps, default=0):.1f}"
    outcome = "yes" if s.passed else ("no: fps" if not s.holds_frame_rate else "no: CPU")
    row = (
        f"   {s.rooms:>5}{s.server_cpu_percent:>9.1f}{100 * s.cpu_share:>7.0f}%{views:>20}"
        f"{min(s.received_fps_min, default=0):>14.1f}{s.loop_lag_p99_ms:>10.1f}"
        f"{s.clients_cpu_percent:>9.0f}{s.others_cpu_percent:>8.0f}{s.udp_drops:>8}"
        f"{s.incomplete_frames:>8}  {outcome}"
    )
    # What a view frame cost its thread (CPU ms): compositing, then encoding.
    frame_cost = (
        f"inputs {min(s.input_fps, default=0):.1f} fps, "
        f"view {s.composite_ms_per_frame:.1f}+{s.encode_ms_per_frame:.1f} ms"
    )
    if s.portal_lag_p99_ms is not None:
        placement = "+".join(str(n) for n in s.rooms_by_agent)
        row += f"{'':>{10 - len(outcome)}}{s.portal_lag_p99_ms:>12.1f}{placement:>10}"
        row += f"   {frame_cost}"
        if s.nodes_cpu_percent:
            row += "   " + " ".join(f"{n} {v:.0f}%" for n, v in s.nodes_cpu_percent.items())
    else:
        row += f"{'':>{10 - len(outcome)}}{frame_cost}"
    return row


def _ms(value: float) -> str:
    return f"{value:.0f}" if value == value else "-"


def format_figures(figures: DensityFigures) -> list[str]:
    """The table (again, complete) and the verdict."""
    c = figures.config
    who = "server" if not figures.agents else "its processes together (Redis, portal, agents)"
    lines = [
        "",
        f"{figures.mode}: rooms of {c.participants} participants: 640x360 VP8 in, each "
        f"subscribed to the 1280x720 30 fps view; {c.window:g} s windows; pass = every view "
        f"{FPS:g} +-{FPS_TOLERANCE:g} fps and {who} <= {100 * CPU_LIMIT:.0f}% of "
        f"{figures.cores} core(s)",
        "",
        *_columns(cluster=bool(figures.agents)),
        *(_row(s) for s in figures.steps),
    ]
    if figures.error:
        lines.append(f"   stopped: {figures.error}")
    if figures.node_errors:
        lines.append(f"   the cluster logged {len(figures.node_errors)} error(s), first:")
        lines += [f"      {e[:200]}" for e in figures.node_errors[:3]]
    joins = [t for room in figures.join_to_first_frame_ms for t in room]
    median, p95 = _median_p95(joins)
    lines += [
        "",
        f"join -> first mixed frame over {len(joins)} participants: median {_ms(median)} ms, "
        f"p95 {_ms(p95)} ms",
        f"rooms that fit: {figures.rooms} on {figures.cores} core(s) = "
        f"{figures.rooms_per_core:.1f} per core - target >= {ROOMS_PER_CORE_TARGET:g} per core: "
        f"{verdict(figures.meets_target)}",
    ]
    return lines


def format_comparison(comparison: DensityComparison) -> list[str]:
    """Both tables, then one process against the cluster."""
    single, cluster = comparison.single, comparison.cluster
    (s_median, s_p95), (c_median, c_p95) = comparison.single_join_ms, comparison.cluster_join_ms

    def lag(figures: DensityFigures) -> str:
        passed = [s for s in figures.steps if s.passed]
        if not passed:
            return "-"
        return f"{passed[-1].loop_lag_p99_ms:.1f} ms at {passed[-1].rooms} room(s)"

    return [
        *format_figures(single),
        *format_figures(cluster),
        "",
        f"one process against the {cluster.mode}:",
        f"   rooms at 30 fps              {single.rooms_at_frame_rate:>8} "
        f"{cluster.rooms_at_frame_rate:>8}",
        f"   ... within {100 * CPU_LIMIT:.0f} % CPU too      {single.rooms:>8} {cluster.rooms:>8}",
        f"   loop lag p99 (largest pass)  {lag(single):>24} | {lag(cluster)} (worst agent)",
        f"   join -> first mixed frame, over the {comparison.common_rooms} room(s) both entered:",
        f"      median ms                 {_ms(s_median):>8} {_ms(c_median):>8}",
        f"      p95 ms                    {_ms(s_p95):>8} {_ms(c_p95):>8}",
        "",
        f"cluster: rooms at 30 fps {cluster.rooms_at_frame_rate} (one process "
        f"{single.rooms_at_frame_rate}) - target >= {comparison.rooms_target} "
        f"({ROOMS_PER_CORE_TARGET:g} per core): {verdict(comparison.meets_rooms_target)}",
        f"cluster: rooms at 30 fps within {100 * CPU_LIMIT:.0f} % of the cores {cluster.rooms} "
        f"(one process {single.rooms}) - density target >= {comparison.rooms_target}: "
        f"{verdict(cluster.rooms >= comparison.rooms_target)}",
        f"cluster: join -> first mixed frame median {_ms(comparison.join_delay_ms)} ms above "
        f"one process - target <= {JOIN_DELAY_TARGET_MS:g} ms: "
        f"{verdict(comparison.meets_join_target)}",
    ]


async def run_comparison(config: DensityBenchConfig, agents: int) -> DensityComparison:
    """The same rooms on one process, then on a cluster of `agents` agents."""
    print(f"{'one process':>14}", *_columns(), sep="\n", flush=True)
    single = await run_density_bench(config)
    print(f"\n   cluster: 1 portal + {agents} agent(s) + Redis", *_columns(cluster=True), sep="\n")
    cluster = await run_density_bench(config, agents)
    return DensityComparison(single=single, cluster=cluster)


def main(argv: list[str] | None = None) -> int:
    """Run the density benchmark, print the table(s), write JSON."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.density", description=(__doc__ or "").splitlines()[0]
    )
    add_common_arguments(parser, cores=True)
    parser.add_argument("--rooms", type=int, metavar="N", help="at most N rooms (default 6)")
    parser.add_argument(
        "--full-receivers",
        action="store_true",
        help="participants run aiortc's whole receive path (decrypt, reassemble) on the view",
    )
    parser.add_argument(
        "--keep-going",
        action="store_true",
        help="measure every step up to --rooms even after one fails (to see where CPU goes)",
    )
    parser.add_argument(
        "--pin-agents",
        action="store_true",
        help="with --agents: pin agent k to the k-th core (one agent per core; the portal, "
        "Redis and the clients float)",
    )
    parser.add_argument(
        "--single",
        choices=("run", "skip"),
        default="run",
        help="with --agents: 'skip' runs the cluster only (experiments; no comparison)",
    )
    parser.add_argument(
        "--agents",
        type=int,
        metavar="N",
        help="then run the same rooms on a cluster (redis-server, 1 portal, N agents) and compare",
    )
    args = parser.parse_args(argv)
    if args.agents is not None and args.agents < 1:
        parser.error("--agents must be at least 1")
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
    if args.full_receivers:
        config = dataclasses.replace(config, full_receivers=True)
    if args.keep_going:
        config = dataclasses.replace(config, keep_going=True)
    if args.pin_agents:
        if not args.agents:
            parser.error("--pin-agents needs --agents")
        config = dataclasses.replace(config, pin_agents=True)
    if args.single == "skip":
        if not args.agents:
            parser.error("--single skip needs --agents")
        print("", *_columns(cluster=True), sep="\n", flush=True)
        figures = asyncio.run(run_density_bench(config, args.agents))
        return finish(
            "density", args.json, machine, figures, format_figures(figures), started, cpus
        )
    if cpus is not None:
        config = dataclasses.replace(config, server_cpus=frozenset(cpus))
    if args.agents:
        comparison = asyncio.run(run_comparison(config, args.agents))
        lines = format_comparison(comparison)
        return finish("density", args.json, machine, comparison, lines, started, cpus)
    print("", *_columns(), sep="\n", flush=True)
    figures = asyncio.run(run_density_bench(config))
    return finish("density", args.json, machine, figures, format_figures(figures), started, cpus)


if __name__ == "__main__":
    raise SystemExit(main())

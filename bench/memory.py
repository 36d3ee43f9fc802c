"""Memory: `python -m bench.memory [--quick] [--json FILE]`.

Resident memory (RSS, /proc/<pid>/status) of a Tessera server in its own
process:

1. idle, after start-up;
2. with one room whose 3x3 view mixes 9 participants, each publishing 640x360
   VP8 and Opus and subscribed to the view's video and audio (mix-minus);
3. with a second such room: the difference is the cost of a room, and a
   ninth of it the cost of a participant (their share of the view included);
4. after everyone has left (and the rooms have emptied), and again after a
   second round of the same two rooms coming and going (a leak grows).

Targets: idle <= 150 MB; <= 20 MB per participant; back within 10% of idle
once everyone has left. Under a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .machine import MachineInfo
from .participants import Participant, ParticipantSpec, encode_scenes, encode_voice, enter_all
from .report import add_common_arguments, finish, header, verdict
from .subscribers import ServerProcess, leave

MB = 1024 * 1024
IDLE_TARGET_MB = 150.0
PARTICIPANT_TARGET_MB = 20.0
RETURN_TARGET = 0.10


@dataclass(frozen=True)
class MemoryBenchConfig:
    """What is measured; the defaults are the full run."""

    participants: int = 9  # per room
    settle: float = 4.0  # seconds of media before reading RSS
    empty_wait: float = 4.0  # seconds after everyone left
    rounds: int = 2


QUICK = MemoryBenchConfig(participants=2, settle=1.0, empty_wait=1.0, rounds=1)


@dataclass(frozen=True)
class MemoryFigures:
    """RSS at each point (MB) and the verdicts."""

    config: MemoryBenchConfig
    idle_mb: float
    one_room_mb: float
    two_rooms_mb: float
    after_leave_mb: list[float]  # after each round
    peak_mb: float  # VmHWM
    video_fps_min: float  # what the participants received while measured
    # RSS split at each point: anonymous (heap, stacks) and file-backed (library code touched).
    anon_mb: dict[str, float]
    file_mb: dict[str, float]

    @property
    def first_room_mb(self) -> float:
        """The first room (with one-off costs: codec libraries, pools, caches)."""
        return self.one_room_mb - self.idle_mb

    @property
    def room_mb(self) -> float:
        """One more room of `participants` participants."""
        return self.two_rooms_mb - self.one_room_mb

    @property
    def participant_mb(self) -> float:
        """A participant's share of a room (the room's view included)."""
        return self.room_mb / self.config.participants

    @property
    def returned_ratio(self) -> float:
        """RSS after the last round over idle, minus one."""
        return self.after_leave_mb[-1] / self.idle_mb - 1

    @property
    def meets_idle(self) -> bool:
        """Idle within its target."""
        return self.idle_mb <= IDLE_TARGET_MB

    @property
    def meets_participant(self) -> bool:
        """A participant within its target."""
        return self.participant_mb <= PARTICIPANT_TARGET_MB

    @property
    def meets_return(self) -> bool:
        """Back within 10% of idle."""
        return self.returned_ratio <= RETURN_TARGET


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """A memory field of /proc/<pid>/status in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024 / MB
    raise RuntimeError(f"no {field} for process {pid}")


def _split(pid: int, point: str, anon: dict[str, float], file: dict[str, float]) -> None:
    anon[point] = rss_mb(pid, "RssAnon")
    file[point] = rss_mb(pid, "RssFile")


async def _steady_rss(pid: int, seconds: float) -> float:
    """The median of RSS samples over the last half of `seconds` (after things settle)."""
    await asyncio.sleep(seconds / 2)
    samples = []
    for _ in range(5):
        samples.append(rss_mb(pid))
        await asyncio.sleep(seconds / 10)
    return statistics.median(samples)


def _specs(
    room: int, count: int, scenes: list[list[bytes]], voices: list[list[bytes]]
) -> list[ParticipantSpec]:
    return [
        ParticipantSpec(
            user=f"room{room}-user{i}",
            video=scenes[i % len(scenes)],
            audio=voices[i % len(voices)],
            subscribe_video=True,
            subscribe_audio=True,
        )
        for i in range(count)
    ]


async def run_memory_bench(config: MemoryBenchConfig) -> MemoryFigures:
    """Start a server, bring rooms in and out, read its RSS at each point."""
    scenes = encode_scenes(min(config.participants, 9))
    voices = [encode_voice(seed=i) for i in range(3)]
    with tempfile.TemporaryDirectory(prefix="tessera-bench-") as tmp:
        server = await ServerProcess.start(Path(tmp))

        async def enter_room(name: str, room: int) -> list[Participant]:
            """Every participant of room `room` (0 or 1) enters `name` at once."""
            specs = _specs(room, config.participants, scenes, voices)
            return await enter_all(server, name, specs, batch=config.participants, timeout=30)

        try:
            pid = server.pid
            anon: dict[str, float] = {}
            file: dict[str, float] = {}
            idle = await _steady_rss(pid, 3.0)
            _split(pid, "idle", anon, file)
            after: list[float] = []
            loaded: list[float] = []  # every RSS reading with rooms up
            one = two = fps = 0.0
            for round_number in range(config.rounds):
                first = await enter_room(f"mem-{round_number}-a", 0)
                rss_one = await _steady_rss(pid, config.settle)
                if round_number == 0:
                    _split(pid, "one room", anon, file)
                second = await enter_room(f"mem-{round_number}-b", 1)
                frames0 = [c.frames for c in first + second]
                t0 = time.monotonic()
                rss_two = await _steady_rss(pid, config.settle)
                loaded += [rss_one, rss_two]
                if round_number == 0:
                    _split(pid, "two rooms", anon, file)
                elapsed = time.monotonic() - t0
                rates = [
                    (c.frames - f) / elapsed for c, f in zip(first + second, frames0, strict=True)
                ]
                if round_number == 0:
                    one, two, fps = rss_one, rss_two, min(rates)
                await asyncio.gather(*(leave(c) for c in first + second))
                after.append(await _steady_rss(pid, config.empty_wait))
                _split(pid, f"left {round_number + 1}", anon, file)
            # The kernel updates VmHWM lazily (per-CPU RSS counters), so it can trail a
            # VmRSS reading by a fraction of a MB: the peak is the larger of the two.
            peak = max(rss_mb(pid, "VmHWM"), *loaded)
        finally:
            await server.stop()
    return MemoryFigures(
        config=config,
        idle_mb=idle,
        one_room_mb=one,
        two_rooms_mb=two,
        after_leave_mb=after,
        peak_mb=peak,
        video_fps_min=fps,
        anon_mb=anon,
        file_mb=file,
    )


def format_figures(figures: MemoryFigures) -> list[str]:
    """The table and verdicts."""
    n = figures.config.participants
    rows = [
        ("idle (after start-up)", figures.idle_mb, "", "idle"),
        (
            f"1 room: {n} participants, 3x3 view",
            figures.one_room_mb,
            f"+{figures.first_room_mb:.1f}",
            "one room",
        ),
        (
            f"2 rooms: {2 * n} participants",
            figures.two_rooms_mb,
            f"+{figures.room_mb:.1f}",
            "two rooms",
        ),
    ]
    for i, value in enumerate(figures.after_leave_mb):
        change = f"{value - figures.idle_mb:+.1f}"
        rows.append((f"everyone left (round {i + 1})", value, change, f"left {i + 1}"))
    rows.append(("peak (VmHWM)", figures.peak_mb, "", ""))
    lines = [
        "",
        f"   {'server RSS':<40}{'MB':>9}{'change':>10}{'heap etc.':>11}{'lib. code':>11}",
        f"   {'':<40}{'':>9}{'':>10}{'(RssAnon)':>11}{'(RssFile)':>11}",
    ]
    for name, value, change, point in rows:
        split = ""
        if point in figures.anon_mb:
            split = f"{figures.anon_mb[point]:>11.1f}{figures.file_mb[point]:>11.1f}"
        lines.append(f"   {name:<40}{value:>9.1f}{change:>10}{split}")
    lines += [
        "",
        f"   each participant publishes 640x360 VP8 + Opus and subscribes to the view's 720p "
        f"video and its mix-minus; every one received >= {figures.video_fps_min:.1f} fps",
        "",
        f"idle {figures.idle_mb:.1f} MB - target <= {IDLE_TARGET_MB:.0f} MB: "
        f"{verdict(figures.meets_idle)}",
        f"per room {figures.room_mb:.1f} MB, per participant {figures.participant_mb:.2f} MB"
        f" - target <= {PARTICIPANT_TARGET_MB:.0f} MB: {verdict(figures.meets_participant)}",
        f"after everyone left {figures.after_leave_mb[-1]:.1f} MB = idle "
        f"{100 * figures.returned_ratio:+.1f}% - target within +{100 * RETURN_TARGET:.0f}%: "
        f"{verdict(figures.meets_return)}",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run the memory benchmark, print the table, write JSON."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.memory", description=(__doc__ or "").splitlines()[0]
    )
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    started = time.monotonic()
    machine = MachineInfo.collect()
    for line in header("Tessera memory benchmark", machine):
        print(line, flush=True)
    figures = asyncio.run(run_memory_bench(QUICK if args.quick else MemoryBenchConfig()))
    return finish("memory", args.json, machine, figures, format_figures(figures), started)


if __name__ == "__main__":
    raise SystemExit(main())

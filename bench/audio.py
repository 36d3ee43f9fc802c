"""Audio rooms: `python -m bench.audio [--quick] [--cores N] [--json FILE]`.

One audio-only room with N full-duplex participants: each publishes Opus
(speech-like, pre-encoded, all talking about half of the time) and receives
the view's audio: the mix of the loudest talkers (`[mixer] max_mixed_talkers`),
a talker its own mix-minus encode, everyone else the one shared encode. The server runs in its
own process; its CPU per window gives participants per core. The
participants count the audio frames they receive (50 per second when the
mixer keeps up) with an encoded-frame tap, without decoding.

Target: at least 50 participants per core. Under two minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .machine import MachineInfo, SystemCpu
from .participants import Counter, Participant, ParticipantSpec, encode_voice, enter_all
from .report import add_common_arguments, finish, header, pin_clients, server_cpus, verdict
from .subscribers import ServerProcess, leave, loop_lag_p99_ms

PER_CORE_TARGET = 50.0
#: Audio frames per second a participant must receive for a step to count (50 = every one).
MIN_AUDIO_FPS = 48.0


@dataclass(frozen=True)
class AudioBenchConfig:
    """What is measured; the defaults are the full run."""

    steps: tuple[int, ...] = (10, 25, 50)
    window: float = 5.0
    settle: float = 2.0
    batch: int = 10
    server_cpus: frozenset[int] | None = None


QUICK = AudioBenchConfig(steps=(2, 4), window=1.0, settle=0.5, batch=4)


@dataclass(frozen=True)
class AudioStep:
    """One window with `participants` participants talking and listening."""

    participants: int
    server_cpu_percent: float  # % of one core
    clients_cpu_percent: float
    others_cpu_percent: float
    audio_fps_min: float  # frames received per participant per second
    audio_fps_mean: float
    loop_lag_p99_ms: float

    @property
    def per_core(self) -> float:
        """Participants one core would carry at this step's cost per participant."""
        if self.server_cpu_percent <= 0:
            return 0.0
        return self.participants / (self.server_cpu_percent / 100)

    @property
    def kept_up(self) -> bool:
        """Every participant received (nearly) every 20 ms frame."""
        return self.audio_fps_min >= MIN_AUDIO_FPS


@dataclass(frozen=True)
class AudioFigures:
    """Every step and the headline figure."""

    config: AudioBenchConfig
    idle_cpu_percent: float
    steps: list[AudioStep] = field(default_factory=list)

    @property
    def best(self) -> AudioStep | None:
        """The largest step where everyone kept receiving every frame."""
        good = [s for s in self.steps if s.kept_up]
        return max(good, key=lambda s: s.participants) if good else None

    @property
    def per_core(self) -> float:
        """Participants per core at the best step (its whole server CPU, idle included)."""
        return self.best.per_core if self.best is not None else 0.0

    @property
    def meets_target(self) -> bool:
        """At least the target per core, measured at the largest full step."""
        return self.per_core >= PER_CORE_TARGET


async def run_audio_bench(config: AudioBenchConfig) -> AudioFigures:
    """Start a server, grow one audio room step by step, measure each step."""
    voices = [encode_voice(seed=i) for i in range(5)]
    steps: list[AudioStep] = []
    clients: list[Participant] = []
    with tempfile.TemporaryDirectory(prefix="tessera-bench-") as tmp:
        cpus = set(config.server_cpus) if config.server_cpus is not None else None
        server = await ServerProcess.start(Path(tmp), cpus=cpus)
        try:
            await asyncio.sleep(config.settle)
            c0 = server.cpu_seconds()
            await asyncio.sleep(config.window / 2)
            idle = (server.cpu_seconds() - c0) / (config.window / 2) * 100
            for target in sorted(set(config.steps)):
                specs = [
                    ParticipantSpec(
                        user=f"talker-{i}",
                        audio=voices[i % len(voices)],
                        subscribe_video=False,
                        subscribe_audio=True,
                    )
                    for i in range(len(clients), target)
                ]
                clients += await enter_all(server, "audio-room", specs, config.batch, 30)
                await asyncio.sleep(config.settle)
                steps.append(await _measure(server, clients, config.window))
        finally:
            await asyncio.gather(*(leave(c) for c in clients))
            await server.stop()
    return AudioFigures(config=config, idle_cpu_percent=idle, steps=steps)


async def _measure(server: ServerProcess, clients: list[Participant], window: float) -> AudioStep:
    counter = Counter(clients)
    server0, own0, machine0 = server.cpu_seconds(), time.process_time(), SystemCpu.read()
    start = time.monotonic()
    await asyncio.sleep(window)
    elapsed = time.monotonic() - start
    server1, own1 = server.cpu_seconds(), time.process_time()
    machine = SystemCpu.read().busy_cores_since(machine0, elapsed) * 100
    received = counter.stop()
    metrics = await server.metrics()
    server_percent = (server1 - server0) / elapsed * 100
    clients_percent = (own1 - own0) / elapsed * 100
    return AudioStep(
        participants=len(clients),
        server_cpu_percent=server_percent,
        clients_cpu_percent=clients_percent,
        others_cpu_percent=max(0.0, machine - server_percent - clients_percent),
        audio_fps_min=received.audio_fps_min,
        audio_fps_mean=received.audio_fps_mean,
        loop_lag_p99_ms=loop_lag_p99_ms(metrics),
    )


def format_figures(figures: AudioFigures) -> list[str]:
    """The table and the verdict."""
    lines = [
        "",
        "one audio-only room; each participant publishes Opus (20 ms) and receives the "
        "mix of the loudest talkers (a talker: its own mix-minus encode)",
        f"server idle: {figures.idle_cpu_percent:.1f}% of a core",
        "",
        f"   {'participants':>12}{'server':>9}{'per core':>10}{'audio fps':>14}{'loop lag':>10}"
        f"{'clients':>9}{'others':>8}",
        f"   {'':>12}{'% core':>9}{'':>10}{'min / mean':>14}{'p99 ms':>10}{'% core':>9}"
        f"{'% core':>8}",
    ]
    for s in figures.steps:
        received = f"{s.audio_fps_min:.1f} / {s.audio_fps_mean:.1f}"
        lines.append(
            f"   {s.participants:>12}{s.server_cpu_percent:>9.1f}{s.per_core:>10.0f}"
            f"{received:>14}{s.loop_lag_p99_ms:>10.1f}{s.clients_cpu_percent:>9.0f}"
            f"{s.others_cpu_percent:>8.0f}"
        )
    best = figures.best
    if best is None:
        lines.append(f"\nno step where every participant received >= {MIN_AUDIO_FPS:g} frames/s")
    lines += [
        "",
        f"participants per core (server CPU at {best.participants if best else '-'} "
        f"participants, all its work included): {figures.per_core:.0f}"
        f" - target >= {PER_CORE_TARGET:.0f}: {verdict(figures.meets_target)}",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run the audio benchmark, print the table, write JSON."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.audio", description=(__doc__ or "").splitlines()[0]
    )
    add_common_arguments(parser, cores=True)
    parser.add_argument("--participants", metavar="N,N,...", help="steps (default 10,25,50)")
    args = parser.parse_args(argv)
    cpus = server_cpus(args.cores)
    clients = pin_clients(cpus)
    started = time.monotonic()
    machine = MachineInfo.collect()
    for line in header("Tessera audio benchmark", machine, cpus):
        print(line, flush=True)
    if clients is not None:
        print(f"clients   pinned to CPU(s) {sorted(clients)}")
    config = QUICK if args.quick else AudioBenchConfig()
    if args.participants:
        steps = tuple(int(n) for n in args.participants.split(",") if n.strip())
        config = dataclasses.replace(config, steps=steps)
    if cpus is not None:
        config = dataclasses.replace(config, server_cpus=frozenset(cpus))
    figures = asyncio.run(run_audio_bench(config))
    return finish("audio", args.json, machine, figures, format_figures(figures), started, cpus)


if __name__ == "__main__":
    raise SystemExit(main())

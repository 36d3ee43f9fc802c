"""Soak: `python -m bench.soak [--quick] [--cycles N] [--concurrency C] [--json FILE]`.

N cycles (default 500) of one client's life in a running server: join,
publish a small camera-like video, subscribe to the room's mixed view, wait
for its first frame, leave. C clients (default 4) cycle at once, so the room
is loaded and unloaded, its view started and stopped, over and over. The
server runs in its own process (`bench._server`); what it holds is read from
its /metrics when it is idle: at the start, after the first 50 cycles and at
the end. Prints peer connections, event-loop tasks, threads, encoders, views,
open file descriptors and RSS at each, and the verdicts:

- nothing left: no participant, peer connection, encoder or running view at
  the end, and no more tasks, threads or file descriptors than after the
  first 50 cycles (the executor pools and caches are warm by then);
- memory: RSS at the end within 10% of RSS after the first 50 cycles.

About two minutes on a 2-core machine; `--quick` (6 cycles, 2 at a time)
about one, most of it waiting out Engine.IO's ping tasks (without that wait
the task count cannot be judged). Exits 1 when something was left, RSS grew
past the tolerance or a cycle failed.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .content import MovingVideoTrack
from .machine import MachineInfo
from .report import add_common_arguments, finish, header, percentile, verdict
from .subscribers import Metrics, ServerProcess, TappedClient

logger = logging.getLogger(__name__)

#: RSS at the end may exceed RSS after the checkpoint by at most this fraction.
RSS_TOLERANCE = 0.10


@dataclass(frozen=True)
class SoakConfig:
    """What the soak run does; the defaults are the full run."""

    cycles: int = 500
    concurrency: int = 4
    checkpoint: int = 50
    width: int = 160
    height: int = 120
    framerate: int = 15
    timeout: float = 30.0
    settle_timeout: float = 20.0  # for the server to go idle after a phase
    # Engine.IO keeps a sleeping ping task per closed connection for one ping
    # interval (25 s by default): wait that out before counting tasks.
    linger: float = 26.0


QUICK_SOAK = SoakConfig(cycles=6, checkpoint=2, concurrency=2)


@dataclass(frozen=True)
class Snapshot:
    """What the idle server holds."""

    after_cycles: int
    participants: int
    rooms: int
    peer_connections: int
    tasks: int
    threads: int
    encoders: int
    views_running: int
    open_fds: int
    rss_mb: float

    @classmethod
    def of(cls, cycles: int, m: Metrics) -> Snapshot:
        """The snapshot in the server's /metrics after `cycles` cycles."""

        def total(name: str) -> float:
            # Over all its labels (peer connections are counted by state).
            return sum(m.get(name, {}).values())

        return cls(
            after_cycles=cycles,
            participants=int(total("tessera_participants")),
            rooms=int(total("tessera_rooms")),
            peer_connections=int(total("tessera_transports")),
            tasks=int(total("tessera_event_loop_tasks")),
            threads=int(total("tessera_threads")),
            encoders=int(total("tessera_encoders")),
            views_running=int(total("tessera_views_running")),
            open_fds=int(total("process_open_fds")),
            rss_mb=total("process_resident_memory_bytes") / 2**20,
        )


@dataclass(frozen=True)
class SoakFigures:
    """The snapshots, the cycle times and the verdicts."""

    config: SoakConfig
    snapshots: list[Snapshot]
    completed: int
    failures: list[str]
    cycle_ms_p50: float
    cycle_ms_p95: float
    seconds: float
    settle_seconds: list[float] = field(default_factory=list)

    @property
    def checkpoint(self) -> Snapshot:
        return self.snapshots[1]

    @property
    def end(self) -> Snapshot:
        return self.snapshots[-1]

    @property
    def nothing_left(self) -> bool:
        end, mid = self.end, self.checkpoint
        return (
            end.participants == 0
            and end.peer_connections == 0
            and end.encoders == 0
            and end.views_running == 0
            and end.tasks <= mid.tasks
            and end.threads <= mid.threads
            and end.open_fds <= mid.open_fds
        )

    @property
    def rss_growth(self) -> float:
        """RSS at the end over RSS at the checkpoint, minus one."""
        return self.end.rss_mb / self.checkpoint.rss_mb - 1 if self.checkpoint.rss_mb else 0.0

    @property
    def rss_ok(self) -> bool:
        return self.rss_growth <= RSS_TOLERANCE


async def _cycle(server: ServerProcess, number: int, config: SoakConfig) -> float:
    """One client's life; returns its duration in ms (raises on any failure)."""
    started = time.monotonic()
    client = TappedClient(request_timeout=config.timeout)
    try:
        await client.join(server.token(f"soak-{number}", "presenter"))
        track = MovingVideoTrack(
            config.width, config.height, config.framerate, seed=number, cycle=15
        )
        publication = await client.publish(video=track)
        await publication.wait_ready(config.timeout)
        subscription = await client.subscribe(f"{client.room_id}-common", audio=False)
        await subscription.wait_ready(config.timeout)
        await asyncio.wait_for(client.first_frame.wait(), config.timeout)
    finally:
        await asyncio.wait_for(client.leave(), config.timeout)
    return (time.monotonic() - started) * 1000


async def _phase(
    server: ServerProcess, first: int, last: int, config: SoakConfig
) -> tuple[list[float], list[str]]:
    """Cycles first..last-1, `concurrency` at a time."""
    durations: list[float] = []
    failures: list[str] = []
    numbers = iter(range(first, last))

    async def worker() -> None:
        for number in numbers:
            try:
                durations.append(await _cycle(server, number, config))
            except Exception as exc:
                failures.append(f"cycle {number}: {type(exc).__name__}: {exc}")

    await asyncio.gather(*(worker() for _ in range(config.concurrency)))
    return durations, failures


async def _idle(
    server: ServerProcess, cycles: int, timeout: float, linger: float
) -> tuple[Snapshot, float]:
    """The server's snapshot once it holds no participant or peer connection."""
    started = time.monotonic()
    while True:
        snapshot = Snapshot.of(cycles, await server.metrics())
        quiet = snapshot.participants == 0 and snapshot.peer_connections == 0
        if quiet and snapshot.views_running == 0 and snapshot.encoders == 0:
            quiet_after = time.monotonic() - started
            await asyncio.sleep(max(1.0, linger))
            return Snapshot.of(cycles, await server.metrics()), quiet_after
        if time.monotonic() - started > timeout:
            return snapshot, time.monotonic() - started
        await asyncio.sleep(0.25)


async def run_soak(config: SoakConfig) -> SoakFigures:
    """Start a server, run the cycles in two phases, snapshot it idle before and after each."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tessera-soak-") as tmp:
        server = await ServerProcess.start(Path(tmp))
        try:
            snapshots = [(await _idle(server, 0, config.settle_timeout, 0.0))[0]]
            settles = []
            durations: list[float] = []
            failures: list[str] = []
            checkpoint = min(config.checkpoint, config.cycles)
            for first, last in ((0, checkpoint), (checkpoint, config.cycles)):
                times, failed = await _phase(server, first, last, config)
                durations += times
                failures += failed
                snapshot, settle = await _idle(server, last, config.settle_timeout, config.linger)
                snapshots.append(snapshot)
                settles.append(settle)
        finally:
            await server.stop()
    return SoakFigures(
        config=config,
        snapshots=snapshots,
        completed=len(durations),
        failures=failures[:20],
        cycle_ms_p50=percentile(durations, 50),
        cycle_ms_p95=percentile(durations, 95),
        seconds=time.monotonic() - started,
        settle_seconds=settles,
    )


def format_soak(f: SoakFigures) -> list[str]:
    """The table printed by `python -m bench.soak`."""
    c = f.config
    lines = [
        "",
        f"Soak: {c.cycles} cycles of join / publish {c.width}x{c.height} / subscribe to the "
        f"mixed view / leave, {c.concurrency} at a time",
        f"completed {f.completed} / {c.cycles} in {f.seconds:.0f} s; cycle p50 "
        f"{f.cycle_ms_p50:.0f} ms, p95 {f.cycle_ms_p95:.0f} ms",
        "",
        f"{'server, idle, after cycle':<24}"
        + "".join(f"{s.after_cycles:>10}" for s in f.snapshots),
    ]
    rows = [
        ("participants", "participants"),
        ("rooms loaded", "rooms"),
        ("peer connections", "peer_connections"),
        ("event-loop tasks", "tasks"),
        ("threads", "threads"),
        ("encoders", "encoders"),
        ("views running", "views_running"),
        ("open fds", "open_fds"),
    ]
    for label, attr in rows:
        lines.append(f"{label:<24}" + "".join(f"{getattr(s, attr):>10}" for s in f.snapshots))
    lines.append(f"{'RSS (MiB)':<24}" + "".join(f"{s.rss_mb:>10.1f}" for s in f.snapshots))
    lines += [
        "",
        f"nothing left (vs after cycle {f.checkpoint.after_cycles}): "
        f"{'yes' if f.nothing_left else 'NO'}",
        f"RSS end vs after cycle {f.checkpoint.after_cycles}: {f.rss_growth:+.1%} "
        f"(within {RSS_TOLERANCE:.0%}: {verdict(f.rss_ok)})",
    ]
    for failure in f.failures:
        lines.append(f"FAILED {failure}")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run the soak and print its table; exit 1 if something was left or a cycle failed."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=(__doc__ or "").splitlines()[0]
    )
    add_common_arguments(parser)
    parser.add_argument("--cycles", type=int, help=f"default {SoakConfig.cycles}")
    parser.add_argument("--concurrency", type=int, help=f"default {SoakConfig.concurrency}")
    parser.add_argument(
        "--checkpoint",
        type=int,
        help=f"cycles before the middle snapshot (default {SoakConfig.checkpoint})",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("aioice").setLevel(logging.ERROR)
    config = QUICK_SOAK if args.quick else SoakConfig()
    given = {
        name: getattr(args, name)
        for name in ("cycles", "concurrency", "checkpoint")
        if getattr(args, name) is not None
    }
    config = dataclasses.replace(config, **given)

    started = time.monotonic()
    machine = MachineInfo.collect()
    for line in header("Tessera soak benchmark", machine):
        print(line, flush=True)
    figures = asyncio.run(run_soak(config))
    ok = figures.nothing_left and figures.rss_ok and not figures.failures
    return finish("soak", args.json, machine, figures, format_soak(figures), started, ok=ok)


if __name__ == "__main__":
    raise SystemExit(main())

"""Load: `python -m bench.load [--quick] [--clients N] [--subscribers K] [--window S]`.

N Python clients (default 50) join one room within a few seconds, each
publishing low-resolution camera-like video (160x120 at 15 fps); K of them
(default 3) also subscribe to the room's mixed view. The server runs in its
own process (`bench._server`), so its CPU and memory are its own. Prints:

- how many logged in, got their publication `ready`, and what was refused
  (with the server's error message);
- join latency (login reply) and ready latency (publication ready), p50 / p95;
- the view's achieved frame rate over the measurement window, from the
  server's own frame counter, against its configured rate (target: within 10%),
  and what the subscribers received;
- server CPU, this process's CPU (all the clients), the machine's busy cores,
  the server's RSS and event-loop lag.

About a minute on a 2-core machine; `--quick` (3 clients, 1 subscriber) a few
seconds. Exits 1 when a client got neither `ready` nor a clear refusal.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tessera_client import ClientError

from .content import MovingVideoTrack
from .machine import MachineInfo, SystemCpu
from .report import add_common_arguments, finish, header, percentile, verdict
from .subscribers import Metrics, ServerProcess, TappedClient, leave, loop_lag_p99_ms

#: The view keeps its frame rate within this fraction.
FPS_TOLERANCE = 0.10


@dataclass(frozen=True)
class LoadConfig:
    """What the load run does; the defaults are the full run."""

    clients: int = 50
    subscribers: int = 3
    spread: float = 4.0  # seconds over which the joins start
    width: int = 160
    height: int = 120
    framerate: int = 15
    settle: float = 3.0  # seconds after the last client is ready, before measuring
    window: float = 10.0  # seconds of measurement
    timeout: float = 60.0


QUICK_LOAD = LoadConfig(clients=3, subscribers=1, spread=0.5, settle=1.0, window=2.0)


@dataclass(frozen=True)
class LoadFigures:
    """What the load run measured."""

    config: LoadConfig
    joined: int
    ready: int
    subscribed: int
    refused: dict[str, int]  # server error message -> how many clients got it
    join_ms_p50: float
    join_ms_p95: float
    ready_ms_p50: float
    ready_ms_p95: float
    arrival_seconds: float  # first join start to last publication ready
    view_framerate: float  # configured
    view_fps: float  # achieved, from the server's frame counter over the window
    view_dropped: float  # ticks the view skipped during the window
    subscriber_fps_mean: float
    subscriber_fps_min: float
    server_cpu_percent: float  # of one core
    bench_cpu_percent: float
    machine_busy_percent: float
    server_rss_mb: float
    loop_lag_p99_ms: float
    mixed_inputs: int
    window_s: float
    errors: list[str] = field(default_factory=list)

    @property
    def keeps_framerate(self) -> bool:
        return self.view_fps >= (1 - FPS_TOLERANCE) * self.view_framerate

    @property
    def all_accounted(self) -> bool:
        """Every client got `ready` or a clear refusal."""
        return self.ready + sum(self.refused.values()) == self.config.clients


@dataclass
class _Client:
    number: int
    client: TappedClient
    join_ms: float | None = None
    ready_ms: float | None = None
    subscribed: bool = False
    refusal: str | None = None
    error: str | None = None


async def _arrive(
    server: ServerProcess, view: str, entry: _Client, delay: float, config: LoadConfig
) -> None:
    await asyncio.sleep(delay)
    client = entry.client
    started = time.monotonic()
    try:
        await client.join(server.token(f"load-{entry.number}", "presenter"))
        entry.join_ms = (time.monotonic() - started) * 1000
        track = MovingVideoTrack(
            config.width, config.height, config.framerate, seed=entry.number, cycle=30
        )
        publication = await client.publish(video=track)
        await publication.wait_ready(config.timeout)
        entry.ready_ms = (time.monotonic() - started) * 1000
        if entry.number < config.subscribers:
            subscription = await client.subscribe(view, audio=False)
            await subscription.wait_ready(config.timeout)
            await asyncio.wait_for(client.first_frame.wait(), config.timeout)
            entry.subscribed = True
    except ClientError as exc:
        # The server refusing the excess with a clear error is an accepted outcome.
        entry.refusal = str(exc)
    except Exception as exc:
        entry.error = f"{type(exc).__name__}: {exc}"


async def run_load(config: LoadConfig) -> LoadFigures:
    """Start a server, bring the clients in, measure the window, clean up."""
    entries: list[_Client] = []
    with tempfile.TemporaryDirectory(prefix="tessera-load-") as tmp:
        server = await ServerProcess.start(Path(tmp))
        view = f"{server.info['room_id']}-common"
        try:
            entries = [
                _Client(n, TappedClient(request_timeout=config.timeout))
                for n in range(config.clients)
            ]
            started = time.monotonic()
            await asyncio.gather(
                *(
                    _arrive(server, view, e, n * config.spread / config.clients, config)
                    for n, e in enumerate(entries)
                )
            )
            arrival = time.monotonic() - started
            await asyncio.sleep(config.settle)
            before = await server.metrics()
            frames0 = [e.client.frames for e in entries]
            cpu0, own0, machine0 = server.cpu_seconds(), time.process_time(), SystemCpu.read()
            window_start = time.monotonic()
            await asyncio.sleep(config.window)
            elapsed = time.monotonic() - window_start
            cpu1, own1, machine1 = server.cpu_seconds(), time.process_time(), SystemCpu.read()
            after = await server.metrics()
            fps = [
                (e.client.frames - f) / elapsed
                for e, f in zip(entries, frames0, strict=True)
                if e.subscribed
            ]
            view_frames = _of_view(after, "tessera_view_frames_total", view) - _of_view(
                before, "tessera_view_frames_total", view
            )
            view_dropped = _of_view(after, "tessera_view_dropped_frames_total", view) - _of_view(
                before, "tessera_view_dropped_frames_total", view
            )
            joins = [e.join_ms for e in entries if e.join_ms is not None]
            readies = [e.ready_ms for e in entries if e.ready_ms is not None]
            refused: dict[str, int] = {}
            for e in entries:
                if e.refusal is not None:
                    refused[e.refusal] = refused.get(e.refusal, 0) + 1
            layout_inputs = await _layout_inputs(entries, view)
            figures = LoadFigures(
                config=config,
                joined=len(joins),
                ready=len(readies),
                subscribed=sum(e.subscribed for e in entries),
                refused=refused,
                join_ms_p50=percentile(joins, 50),
                join_ms_p95=percentile(joins, 95),
                ready_ms_p50=percentile(readies, 50),
                ready_ms_p95=percentile(readies, 95),
                arrival_seconds=arrival,
                view_framerate=30.0,
                view_fps=view_frames / elapsed,
                view_dropped=view_dropped,
                subscriber_fps_mean=statistics.fmean(fps) if fps else 0.0,
                subscriber_fps_min=min(fps) if fps else 0.0,
                server_cpu_percent=(cpu1 - cpu0) / elapsed * 100,
                bench_cpu_percent=(own1 - own0) / elapsed * 100,
                machine_busy_percent=machine1.busy_cores_since(machine0, elapsed) * 100,
                server_rss_mb=after.get("process_resident_memory_bytes", {}).get((), 0.0) / 2**20,
                loop_lag_p99_ms=loop_lag_p99_ms(after),
                mixed_inputs=layout_inputs,
                window_s=elapsed,
                errors=[f"client {e.number}: {e.error}" for e in entries if e.error][:10],
            )
        finally:
            await asyncio.gather(*(leave(e.client, 15) for e in entries))
            await server.stop()
    return figures


def _of_view(metrics: Metrics, name: str, view: str) -> float:
    """The sample `name` of the view `view` (0 when the server has none)."""
    return metrics.get(name, {}).get((("view", view),), 0.0)


async def _layout_inputs(entries: list[_Client], view: str) -> int:
    for entry in entries:
        info = entry.client.streams.get(view)
        if info is not None:
            return len(info.get("info", {}).get("layout", []))
    return 0


def format_load(f: LoadFigures) -> list[str]:
    """The table printed by `python -m bench.load`."""
    c = f.config
    lines = [
        "",
        f"Load: {c.clients} clients into one room over {c.spread:g} s, each publishing "
        f"{c.width}x{c.height} at {c.framerate} fps; {c.subscribers} subscribe to the view",
        "",
        f"{'clients logged in':<38}{f.joined:>10} / {c.clients}",
        f"{'publications ready':<38}{f.ready:>10} / {c.clients}",
        f"{'subscribers receiving the view':<38}{f.subscribed:>10} / {c.subscribers}",
    ]
    for message, count in sorted(f.refused.items()):
        lines.append(f"{'refused: ' + message:<38}{count:>10}")
    for error in f.errors:
        lines.append(f"ERROR {error}")
    lines += [
        f"{'join latency p50 / p95 (ms)':<38}{f.join_ms_p50:>10.0f} / {f.join_ms_p95:.0f}",
        f"{'ready latency p50 / p95 (ms)':<38}{f.ready_ms_p50:>10.0f} / {f.ready_ms_p95:.0f}",
        f"{'all in and ready after (s)':<38}{f.arrival_seconds:>10.1f}",
        f"{'inputs shown in the view':<38}{f.mixed_inputs:>10}",
        f"{'view fps (server) / configured':<38}{f.view_fps:>10.1f} / {f.view_framerate:.0f}"
        f"   within {FPS_TOLERANCE:.0%}: {verdict(f.keeps_framerate)}",
        f"{'view ticks skipped in the window':<38}{f.view_dropped:>10.0f}",
        f"{'subscriber fps mean / min':<38}{f.subscriber_fps_mean:>10.1f} / "
        f"{f.subscriber_fps_min:.1f}",
        f"{'server CPU (% of one core)':<38}{f.server_cpu_percent:>10.1f}",
        f"{'clients CPU, this process (%)':<38}{f.bench_cpu_percent:>10.1f}",
        f"{'machine busy (% of one core, all)':<38}{f.machine_busy_percent:>10.1f}",
        f"{'server RSS (MiB)':<38}{f.server_rss_mb:>10.1f}",
        f"{'event-loop lag p99 (ms)':<38}{f.loop_lag_p99_ms:>10.1f}",
        f"(window {f.window_s:.1f} s)",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run the load benchmark, print its table; exit 1 if a client was not accounted for."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.load", description=(__doc__ or "").splitlines()[0]
    )
    add_common_arguments(parser)
    parser.add_argument("--clients", type=int, help=f"default {LoadConfig.clients}")
    parser.add_argument("--subscribers", type=int, help=f"default {LoadConfig.subscribers}")
    parser.add_argument("--spread", type=float, help=f"seconds (default {LoadConfig.spread:g})")
    parser.add_argument("--window", type=float, help=f"seconds (default {LoadConfig.window:g})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("aioice").setLevel(logging.ERROR)
    config = QUICK_LOAD if args.quick else LoadConfig()
    given = {
        name: getattr(args, name)
        for name in ("clients", "subscribers", "spread", "window")
        if getattr(args, name) is not None
    }
    config = dataclasses.replace(config, **given)

    started = time.monotonic()
    machine = MachineInfo.collect()
    for line in header("Tessera load benchmark", machine):
        print(line, flush=True)
    figures = asyncio.run(run_load(config))
    ok = figures.all_accounted and not figures.errors
    return finish("load", args.json, machine, figures, format_load(figures), started, ok=ok)


if __name__ == "__main__":
    raise SystemExit(main())

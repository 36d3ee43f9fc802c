"""Forward-stream adaptation figures: `python -m bench.forwardadapt [--runs N] [--quick]`.

Issue 17's scenario for a subscriber of a forward stream, several times in one
run: a 640x360 noise publisher (as many bits as its encoder allows), a
subscriber (`tests/netclient.py`, aiortc with a browser-like jitter buffer)
in a network namespace (`tests/netlab.py`, root), its downlink limited to
500 kbit/s with 2 % loss and 80 ms round trip; then the limit is lifted.
Per run, from the limit: when the server's rung chooser left the top
(decided), when the subscriber's track sent the lower rung's first keyframe
(switched), when the subscriber decoded its first lower-rung picture
(settled), its frame rate and longest gap on the lower rungs; from the
lift: when it decoded the publisher's own picture again (climbed).
Targets (issue 17): settled within 10 s, no gap over 500 ms on the lower rungs
(from the first lower-rung picture to the lift), back on top within 20 s.

The server runs in this process (the figures are times, not CPU), on
127.0.0.1; each run has a new subscriber in the same namespace.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from .machine import MachineInfo
from .report import add_common_arguments, finish, header, percentile, verdict

SETTLE_TARGET = 10.0
CLIMB_TARGET = 20.0
GAP_TARGET = 500.0  # ms: no freeze longer on the lower rungs
# Seconds between two looks at the server's and the subscriber's state.
POLL = 0.02


@dataclass(frozen=True)
class ForwardAdaptConfig:
    """The scenario's link and how long each phase may take (s)."""

    runs: int = 5
    width: int = 640
    height: int = 360
    rate_kbit: int = 500
    loss: float = 0.02
    delay_ms: int = 40  # one way: 80 ms round trip
    on_lower: float = 5.0  # seconds on the lower rungs after settling, then the lift
    settle_timeout: float = 30.0
    climb_timeout: float = 45.0


QUICK = ForwardAdaptConfig(runs=1, on_lower=1.0)


@dataclass
class RunFigures:
    """One run; seconds from the limit (settling) or from the lift (climbing); None: missed."""

    decided: float | None = None
    switched: float | None = None
    settled: float | None = None
    settled_size: tuple[int, int] | None = None
    fps_on_lower: float = 0.0
    longest_gap_ms: float = 0.0
    # Where it ended (s after the first lower-rung picture) and the sizes either side of it.
    longest_gap_at: float | None = None
    longest_gap_sizes: str = ""
    climb_decided: float | None = None
    climbed: float | None = None
    rung_switches: int = 0
    transcoders: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class ForwardAdaptFigures:
    """Every run, and what they add up to."""

    publisher_bitrate: int = 0
    runs: list[RunFigures] = field(default_factory=list)

    @property
    def settle_times(self) -> list[float]:
        return [r.settled for r in self.runs if r.settled is not None]

    @property
    def climb_times(self) -> list[float]:
        return [r.climbed for r in self.runs if r.climbed is not None]

    @property
    def settled_in_time(self) -> int:
        return sum(1 for t in self.settle_times if t <= SETTLE_TARGET)

    @property
    def without_freeze(self) -> int:
        return sum(1 for r in self.runs if r.settled is not None and r.longest_gap_ms <= GAP_TARGET)

    @property
    def climbed_in_time(self) -> int:
        return sum(1 for t in self.climb_times if t <= CLIMB_TARGET)


class Timeline:
    """First moments (time.monotonic()) at which conditions held, looked at every POLL."""

    def __init__(self) -> None:
        self.seen: dict[str, float] = {}
        self._watch: dict[str, Callable[[], bool]] = {}

    def watch(self, name: str, condition: Callable[[], bool]) -> None:
        self._watch[name] = condition

    def look(self, now: float) -> None:
        for name, condition in list(self._watch.items()):
            if condition():
                self.seen[name] = now
                del self._watch[name]

    def since(self, name: str, start: float) -> float | None:
        return self.seen[name] - start if name in self.seen else None


def first_frame_after(
    frames: list[dict[str, Any]], t: float, sizes: set[tuple[int, int]]
) -> float | None:
    """The client time of the first reported frame at or after `t` of one of `sizes`."""
    for frame in frames:
        if frame["t"] >= t and (frame["width"], frame["height"]) in sizes:
            return float(frame["t"])
    return None


class RunWatch:
    """One subscriber of a forward stream, watched through a limit and a lift.

    `subscriber` (a tests.netclient.SubscriberProcess) decodes the publisher's picture
    already; `adaptive` is its AdaptiveVideo on the server, `stream` the ForwardStream.
    A phase that does not end within its timeout leaves its figures None.
    """

    def __init__(self, lab: Any, subscriber: Any, stream: Any, adaptive: Any) -> None:
        self.lab = lab
        self.subscriber = subscriber
        self.stream = stream
        self.adaptive = adaptive
        self.lower = {(r.width, r.height) for r in adaptive.rungs[1:]}
        self.top = (adaptive.rungs[0].width, adaptive.rungs[0].height)
        self.figures = RunFigures()
        self.timeline = Timeline()
        self._switches = adaptive.chooser.switches
        self._transcoders: set[tuple[int, int]] = set()

    async def until(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Look every POLL until `condition` holds (True) or `timeout` s passed (False);
        a subscriber that ended is an error, not a phase that did not end."""
        from tests.eventually import eventually

        def looked() -> bool:
            try:
                self.subscriber.check_alive()
            except AssertionError as exc:  # eventually() would take it for "not yet"
                raise RuntimeError(str(exc)) from exc
            self.timeline.look(time.monotonic())
            self._transcoders.update((f.width, f.height) for f in self.stream.transcoders)
            self.figures.transcoders = sorted(self._transcoders)
            self.figures.rung_switches = self.adaptive.chooser.switches - self._switches
            return condition()

        try:
            await eventually(looked, timeout, interval=POLL)
        except AssertionError:
            return False
        return True

    async def settle(self, config: ForwardAdaptConfig) -> bool:
        """Limit the downlink; wait for the first lower-rung picture, then `config.on_lower` s."""
        adaptive, figures, frames = self.adaptive, self.figures, self.subscriber.report.frames
        top_track = self.stream.tracks["video"]
        self.timeline.watch("decided", lambda: adaptive.rung > 0)
        self.timeline.watch("switched", lambda: adaptive.track.source not in (None, top_track))
        self.lab.set_rate(config.rate_kbit, "down")
        self.lab.set_loss(config.loss, "down")
        self.lab.set_delay(config.delay_ms)
        limited = time.monotonic()
        settled = await self.until(
            lambda: first_frame_after(frames, limited, self.lower) is not None,
            config.settle_timeout,
        )
        figures.decided = self.timeline.since("decided", limited)
        figures.switched = self.timeline.since("switched", limited)
        at = first_frame_after(frames, limited, self.lower)
        if not settled or at is None:
            return False
        figures.settled = at - limited
        figures.settled_size = next((f["width"], f["height"]) for f in frames if f["t"] == at)
        await self.until(lambda: time.monotonic() >= at + config.on_lower, config.on_lower + 1)
        figures.fps_on_lower = self.subscriber.report.fps_since(at)
        after = [(i, f) for i, f in enumerate(frames) if f["t"] > at]
        if after:
            index, worst = max(after, key=lambda item: float(item[1]["gap_ms"]))
            before = frames[index - 1]
            figures.longest_gap_ms = float(worst["gap_ms"])
            figures.longest_gap_at = worst["t"] - at
            figures.longest_gap_sizes = (
                f"{before['width']}x{before['height']} -> {worst['width']}x{worst['height']}"
            )
        return True

    async def climb(self, config: ForwardAdaptConfig) -> bool:
        """Lift the limit (loss and delay too); wait for the publisher's own picture."""
        adaptive, figures, frames = self.adaptive, self.figures, self.subscriber.report.frames
        self.lab.lift()
        self.lab.set_loss(0.0)
        self.lab.set_delay(0)
        lifted = time.monotonic()
        self.timeline.watch("climb_decided", lambda: adaptive.rung == 0)
        climbed = await self.until(
            lambda: first_frame_after(frames, lifted, {self.top}) is not None,
            config.climb_timeout,
        )
        figures.climb_decided = self.timeline.since("climb_decided", lifted)
        at = first_frame_after(frames, lifted, {self.top})
        if not climbed or at is None:
            return False
        figures.climbed = at - lifted
        return True


async def run_forward_bench(config: ForwardAdaptConfig) -> ForwardAdaptFigures:
    """Start a server, a noise publisher and a lab; `config.runs` subscribers one after another."""
    from tessera_client import ConferenceClient
    from tests.eventually import eventually
    from tests.netclient import SubscriberProcess
    from tests.netlab import open_netlab
    from tests.support import start_server
    from tests.synthetic import NoiseVideoTrack

    figures = ForwardAdaptFigures()
    with tempfile.TemporaryDirectory(prefix="forwardadapt-") as data:
        tessera = await start_server(Path(data))
        alice = ConferenceClient()
        try:
            await alice.join(tessera.token(user="alice"))
            publication = await alice.publish(
                video=NoiseVideoTrack(config.width, config.height, fps=30)
            )
            await publication.wait_ready()
            room = tessera.server.rooms[alice.room_id]  # type: ignore[index]
            stream = room.streams[publication.id]
            async with open_netlab() as lab:
                await lab.forward_tcp(tessera.port)
                for index in range(config.runs):
                    token = tessera.token(user=f"bob{index}")
                    bob = await SubscriberProcess.start(lab, token, publication.id)
                    try:
                        await eventually(
                            partial(decodes_top, bob, config.width),
                            60,
                            "the subscriber decodes the publisher's stream",
                        )
                        adaptive = next(
                            s.adaptive
                            for _, s in room._subscriptions_of(publication.id)
                            if s.adaptive is not None
                        )
                        # On top with nothing transcoded (a loaded machine's relay may lose
                        # the noise's packets at first: the subscriber is moved down, then up).
                        await eventually(
                            partial(on_top, bob, adaptive, stream, config.width),
                            60,
                            "the subscriber on top, nothing transcoded",
                        )
                        rate = stream.tracks["video"].received.bitrate(time.monotonic())
                        figures.publisher_bitrate = max(figures.publisher_bitrate, rate or 0)
                        watch = RunWatch(lab, bob, stream, adaptive)
                        await watch.settle(config)
                        await watch.climb(config)
                        figures.runs.append(watch.figures)
                        print(f"  run {index + 1}: {describe_run(watch.figures)}", flush=True)
                    finally:
                        await bob.stop()
                    await eventually(lambda: not stream.transcoders, 30, "no transcoder left")
        finally:
            await alice.leave()
            await tessera.stop()
    return figures


def lab_missing() -> str | None:
    """Why tests/netlab cannot build a lab here (root, iproute2, TUN), or None."""
    import pytest

    from tests.netlab import netlab_or_skip

    try:
        netlab_or_skip()
    except pytest.skip.Exception as why:
        return str(why)
    return None


def decodes_top(subscriber: Any, width: int) -> bool:
    """The subscriber decoded 30 frames, the latest of them `width` wide (raises once dead)."""
    latest = subscriber.report.latest()
    return bool(
        subscriber.check_alive() and latest.get("width") == width and latest.get("frames", 0) >= 30
    )


def on_top(subscriber: Any, adaptive: Any, stream: Any, width: int) -> bool:
    """The subscriber decodes the publisher's picture, is on the top rung, nothing transcoded."""
    return bool(adaptive.rung == 0 and not stream.transcoders and decodes_top(subscriber, width))


def _seconds(value: float | None) -> str:
    return "missed" if value is None else f"{value:.1f} s"


def _gap_place(run: RunFigures) -> str:
    if run.longest_gap_at is None:
        return ""
    return f" ending {run.longest_gap_at:.1f} s after settling, {run.longest_gap_sizes}"


def describe_run(run: RunFigures) -> str:
    """One run's figures in a line."""
    size = "x".join(map(str, run.settled_size)) if run.settled_size else "-"
    return (
        f"decided {_seconds(run.decided)}, switched {_seconds(run.switched)}, settled "
        f"{_seconds(run.settled)} on {size} ({run.fps_on_lower:.1f} fps, longest gap "
        f"{run.longest_gap_ms:.0f} ms{_gap_place(run)}); after the lift climb decided "
        f"{_seconds(run.climb_decided)}, back on top {_seconds(run.climbed)}"
    )


def format_figures(figures: ForwardAdaptFigures, config: ForwardAdaptConfig) -> list[str]:
    """The summary table and the verdicts."""
    runs = len(figures.runs)
    settle = figures.settle_times
    climb = figures.climb_times
    lines = [
        "",
        f"{config.width}x{config.height} noise publisher at {figures.publisher_bitrate / 1e6:.1f}"
        f" Mbit/s; subscriber behind {config.rate_kbit} kbit/s, {config.loss:.0%} loss, "
        f"{2 * config.delay_ms} ms round trip; {runs} run(s)",
        "",
        f"  {'seconds':<34}{'median':>8}{'max':>8}{'runs':>6}",
    ]
    for label, values in (
        ("limit -> first lower-rung picture", settle),
        ("lift -> publisher's picture again", climb),
    ):
        median = f"{percentile(values, 50):.1f}" if values else "-"
        most = f"{max(values):.1f}" if values else "-"
        lines.append(f"  {label:<34}{median:>8}{most:>8}{len(values):>6}")
    fps = [r.fps_on_lower for r in figures.runs if r.settled is not None]
    gaps = [r.longest_gap_ms for r in figures.runs if r.settled is not None]
    if fps:
        lines.append(
            f"  on the lower rungs: {min(fps):.1f}-{max(fps):.1f} fps, longest gap "
            f"{max(gaps):.0f} ms"
        )
    lines += [
        "",
        f"settled within {SETTLE_TARGET:.0f} s: {figures.settled_in_time} of {runs} "
        f"({verdict(runs > 0 and figures.settled_in_time == runs)})",
        f"no gap over {GAP_TARGET:.0f} ms on the lower rungs: {figures.without_freeze} of {runs} "
        f"({verdict(runs > 0 and figures.without_freeze == runs)})",
        f"back on top within {CLIMB_TARGET:.0f} s: {figures.climbed_in_time} of {runs} "
        f"({verdict(runs > 0 and figures.climbed_in_time == runs)})",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run the forward adaptation benchmark, print the figures, write JSON."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.forwardadapt", description=(__doc__ or "").splitlines()[0]
    )
    add_common_arguments(parser)
    parser.add_argument("--runs", type=int, help="runs (default 5, 1 with --quick)")
    args = parser.parse_args(argv)
    config = QUICK if args.quick else ForwardAdaptConfig()
    if args.runs is not None:
        if args.runs < 1:
            parser.error("--runs must be at least 1")
        config = ForwardAdaptConfig(**{**config.__dict__, "runs": args.runs})
    missing = lab_missing()
    if missing is not None:
        print(f"bench.forwardadapt cannot run here: {missing}")
        return 2
    started = time.monotonic()
    machine = MachineInfo.collect()
    for line in header("Tessera forward-stream adaptation benchmark", machine):
        print(line, flush=True)
    figures = asyncio.run(run_forward_bench(config))
    lines = format_figures(figures, config)
    return finish("forwardadapt", args.json, machine, figures, lines, started)


if __name__ == "__main__":
    raise SystemExit(main())

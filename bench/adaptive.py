"""The adaptive ladder benchmark: `python -m bench.adaptive [--quick] [--json FILE]`.

CPU of a view's thread with the whole default ladder in use (1280x720,
640x360 and 320x180, each scaled from the one composited canvas and encoded:
Tessera's `VideoCompositor` and `MixedVideoOutput`, as the view thread runs
them) against the same view with the top rung alone, and the issue's
four-rung example (with 960x540 at 1 Mbit/s), in one run: blocks of frames
alternate between the three so that the machine's load falls on all alike.
Thread CPU time per frame (composite + scale + encode), frames as fast as
the thread goes (no pacing). Target: the whole ladder costs at most 1.6x
the top rung alone.

Audio, in the same run: the audio thread's encode of the full mix per 20 ms
tick (voiced, syllable-paced sound: what a FEC encode codes in hybrid mode),
the plain Opus encode alone against it with the second, in-band FEC encode
that runs while a lossy subscriber receives it (alternating blocks).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass, field
from fractions import Fraction

import av
import numpy as np

from tessera.media.bandwidth import Rung
from tessera.media.videoencoder import EncoderSettings, default_bitrate
from tessera.mixer.compositor import InputPicture, VideoCompositor
from tessera.mixer.ladder import view_ladder
from tessera.mixer.layout import Layout, LayoutTemplates
from tessera.mixer.outputs import MixedVideoOutput, SharedMixEncoder

from .machine import MachineInfo
from .report import add_common_arguments, finish, header, percentile, verdict

TARGET = 1.6


@dataclass(frozen=True)
class AdaptiveBenchConfig:
    """The view and how many frames each of the two ways is measured over."""

    width: int = 1280
    height: int = 720
    framerate: int = 30
    inputs: int = 4
    blocks: int = 10  # per way, alternating
    frames_per_block: int = 60
    warmup: int = 30
    audio_ticks_per_block: int = 250  # 5 s of audio


QUICK = AdaptiveBenchConfig(blocks=2, frames_per_block=15, warmup=5, audio_ticks_per_block=25)


@dataclass
class AdaptiveFigures:
    """ms of view-thread CPU per frame, top rung alone and the whole ladder."""

    rungs: list[str]
    top_ms: list[float] = field(default_factory=list)
    ladder_ms: list[float] = field(default_factory=list)
    four_rungs_ms: list[float] = field(default_factory=list)
    per_rung_ms: dict[str, float] = field(default_factory=dict)
    composite_ms: float = 0.0
    # ms of audio-thread CPU per 20 ms tick: the plain encode alone, plain + FEC encodes.
    audio_plain_ms: list[float] = field(default_factory=list)
    audio_fec_ms: list[float] = field(default_factory=list)

    @property
    def fec_extra_core_share(self) -> float:
        """What the second (FEC) encode adds, as a share of one core (50 ticks a second)."""
        if not self.audio_plain_ms or not self.audio_fec_ms:
            return 0.0
        extra_ms = float(np.mean(self.audio_fec_ms)) - float(np.mean(self.audio_plain_ms))
        return extra_ms * 50 / 1000

    @property
    def ratio(self) -> float:
        return self._ratio(self.ladder_ms)

    @property
    def four_rungs_ratio(self) -> float:
        return self._ratio(self.four_rungs_ms)

    def _ratio(self, values: list[float]) -> float:
        top = float(np.mean(self.top_ms)) if self.top_ms else 0.0
        return float(np.mean(values)) / top if top and values else 0.0


def _input_frames(width: int, height: int, count: int) -> list[av.VideoFrame]:
    """A moving picture (a rolling pattern and a moving block): what a camera would change."""
    x = np.linspace(0, 6 * np.pi, width)
    y = np.linspace(0, 4 * np.pi, height)
    pattern = np.add.outer(np.sin(y), np.cos(x))
    frames = []
    rng = np.random.default_rng(7)
    for n in range(count):
        luma = (128 + 60 * np.roll(pattern, 5 * n, axis=1)).astype(np.uint8)
        top = (n * 7) % (height - 40)
        luma[top : top + 40, 40:120] = rng.integers(0, 255, (40, 80), dtype=np.uint8)
        chroma = np.full((height // 2, width), 128, np.uint8)
        frames.append(av.VideoFrame.from_ndarray(np.vstack([luma, chroma]), format="yuv420p"))
    return frames


def _outputs(
    config: AdaptiveBenchConfig, loop: asyncio.AbstractEventLoop
) -> list[MixedVideoOutput]:
    """The default ladder's outputs, then the issue's 960x540 rung (the four-rung example)."""
    top_bitrate = default_bitrate(config.width, config.height, config.framerate)
    rungs = list(view_ladder(config.width, config.height, top_bitrate, None))
    rungs.append(Rung(config.width * 3 // 4, config.height * 3 // 4, int(top_bitrate * 0.53)))
    outputs = []
    for rung in rungs:
        settings = EncoderSettings(
            "vp8", rung.width, rung.height, config.framerate, rung.bitrate, 100
        )
        outputs.append(MixedVideoOutput(settings, loop, 1.0, lambda _o, _a: None))
    return outputs


def run_adaptive_bench(config: AdaptiveBenchConfig) -> AdaptiveFigures:
    """Both ways in one run, alternating blocks (single thread: the view thread's work)."""
    # The outputs hand their packets to a loop; this one is never run, and dropped after.
    loop = asyncio.new_event_loop()
    outputs = _outputs(config, loop)
    ladder, extra = outputs[:-1], outputs[-1]
    figures = AdaptiveFigures(
        rungs=[
            f"{o.settings.width}x{o.settings.height}@{o.settings.bitrate // 1000}k" for o in outputs
        ]
    )
    layout = Layout(LayoutTemplates.from_options(None, Fraction(config.width, config.height)), 16)
    pictures: dict[str, InputPicture] = {}
    inputs = [_input_frames(640, 360, 30) for _ in range(config.inputs)]
    for i in range(config.inputs):
        stream_id = f"in{i}"
        layout.add(stream_id)
        pictures[stream_id] = InputPicture(stream_id=stream_id, user=f"user {i}")
    assignments = tuple(layout.assignments())
    compositor = VideoCompositor(config.width, config.height)
    frame_number = 0
    rung_seconds = [0.0] * len(outputs)
    rung_frames = 0
    composite_seconds = 0.0
    composite_frames = 0

    def one_frame(active: list[MixedVideoOutput]) -> float:
        nonlocal frame_number, composite_seconds, composite_frames, rung_frames
        now = time.monotonic()
        for i, picture in enumerate(pictures.values()):
            picture.frame = inputs[i][(frame_number + 7 * i) % len(inputs[i])]
            picture.frame_time = now
        started = time.thread_time()
        canvas = compositor.compose(assignments, pictures, layout.version, now)
        frame = av.VideoFrame.from_numpy_buffer(canvas, format="yuv420p")
        composed = time.thread_time()
        pts = frame_number * 90000 // config.framerate
        for output in active:
            before = output.encode_seconds
            output.encode(frame, pts)
            if len(active) == len(outputs):
                rung_seconds[outputs.index(output)] += output.encode_seconds - before
        if len(active) == len(outputs):
            rung_frames += 1
        composite_seconds += composed - started
        composite_frames += 1
        frame_number += 1
        return time.thread_time() - started

    for _ in range(config.warmup):
        one_frame(outputs)
    for _ in range(config.blocks):
        ways = (
            (figures.top_ms, outputs[:1]),
            (figures.ladder_ms, ladder),
            (figures.four_rungs_ms, [*ladder[:1], extra, *ladder[1:]]),
        )
        for spent_ms, active in ways:
            for _ in range(config.frames_per_block):
                spent_ms.append(one_frame(active) * 1000)
            # Drain the packets the outputs queued for the (idle) loop.
            loop.call_soon(loop.stop)
            loop.run_forever()
    for output in outputs:
        output.close()
    loop.close()
    figures.per_rung_ms = {
        name: 1000 * seconds / max(1, rung_frames)
        for name, seconds in zip(figures.rungs, rung_seconds, strict=True)
    }
    figures.composite_ms = 1000 * composite_seconds / max(1, composite_frames)
    return figures


def _voiced_ticks(count: int) -> list[np.ndarray]:
    """Stereo 20 ms ticks of voiced, syllable-paced sound (a full mix of one talker)."""
    t = np.arange(count * 960) / 48000
    voiced = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((150, 300, 450, 600), 1))
    envelope = (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)) ** 2
    noise = np.random.default_rng(5).normal(0, 0.05, t.size)
    mono = ((voiced * 0.3 + noise) * envelope * 10000).astype(np.int16)
    stereo = np.repeat(mono, 2)
    return [stereo[i * 1920 : (i + 1) * 1920] for i in range(count)]


def run_audio_fec_bench(config: AdaptiveBenchConfig, figures: AdaptiveFigures) -> None:
    """The full mix's plain Opus encode alone, then with the FEC encode beside it,
    in alternating blocks (single thread: the audio thread's work)."""
    ticks = _voiced_ticks(250)
    plain, fec = SharedMixEncoder(False), SharedMixEncoder(True)
    tick = 0

    def one_tick(with_fec: bool) -> float:
        nonlocal tick
        samples = ticks[tick % len(ticks)]
        started = time.thread_time()
        plain.encode(samples, tick * 960)
        if with_fec:
            fec.encode(samples, tick * 960)
        tick += 1
        return time.thread_time() - started

    for _ in range(config.warmup):
        one_tick(True)
    for _ in range(config.blocks):
        for spent_ms, with_fec in ((figures.audio_plain_ms, False), (figures.audio_fec_ms, True)):
            for _ in range(config.audio_ticks_per_block):
                spent_ms.append(one_tick(with_fec) * 1000)


def format_figures(figures: AdaptiveFigures, config: AdaptiveBenchConfig) -> list[str]:
    top = figures.top_ms
    lines = [
        "",
        f"view {config.width}x{config.height} @ {config.framerate} fps, {config.inputs} moving "
        f"640x360 inputs; default ladder {', '.join(figures.rungs[:-1])};"
        f" four-rung example adds {figures.rungs[-1]}",
        f"view-thread CPU per frame (composite + scale + encode), {len(top)} frames each way,"
        f" alternating blocks of {config.frames_per_block}",
        "",
        f"  {'ms per frame':<24}{'median':>8}{'p90':>8}{'mean':>8}",
    ]
    ways = (
        ("top rung alone", top),
        ("whole default ladder", figures.ladder_ms),
        ("four-rung example", figures.four_rungs_ms),
    )
    for name, values in ways:
        lines.append(
            f"  {name:<24}{percentile(values, 50):>8.2f}{percentile(values, 90):>8.2f}"
            f"{float(np.mean(values)):>8.2f}"
        )
    lines.append(f"  {'of which composite':<24}{figures.composite_ms:>8.2f}  (mean)")
    for name, ms in figures.per_rung_ms.items():
        lines.append(f"  {'scale+encode ' + name:<32}{ms:>6.2f}  (mean, four rungs running)")
    lines += [
        "",
        f"whole default ladder / top rung alone: {figures.ratio:.2f}x (target <= {TARGET}x):"
        f" {verdict(figures.ratio <= TARGET)}",
        f"four-rung example / top rung alone: {figures.four_rungs_ratio:.2f}x"
        f" (target <= {TARGET}x): {verdict(figures.four_rungs_ratio <= TARGET)}",
    ]
    audio = (
        ("plain Opus alone", figures.audio_plain_ms),
        ("plain + in-band FEC", figures.audio_fec_ms),
    )
    if figures.audio_plain_ms:
        lines += [
            "",
            f"audio-thread CPU per 20 ms tick (the full mix's Opus encodes, 64 kbit/s stereo,"
            f" voiced sound), {len(figures.audio_plain_ms)} ticks each way",
            "",
            f"  {'ms per tick':<24}{'median':>8}{'p90':>8}{'mean':>8}",
        ]
        for name, values in audio:
            lines.append(
                f"  {name:<24}{percentile(values, 50):>8.3f}{percentile(values, 90):>8.3f}"
                f"{float(np.mean(values)):>8.3f}"
            )
        lines += [
            "",
            f"the FEC encode adds {100 * figures.fec_extra_core_share:.2f} % of a core per view"
            " while a lossy subscriber receives it",
        ]
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run the adaptive ladder benchmark, print the table, write JSON."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.adaptive", description=(__doc__ or "").splitlines()[0]
    )
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    started = time.monotonic()
    machine = MachineInfo.collect()
    for line in header("Tessera adaptive ladder benchmark", machine):
        print(line, flush=True)
    config = QUICK if args.quick else AdaptiveBenchConfig()
    figures = run_adaptive_bench(config)
    run_audio_fec_bench(config, figures)
    lines = format_figures(figures, config)
    return finish("adaptive", args.json, machine, figures, lines, started)


if __name__ == "__main__":
    raise SystemExit(main())

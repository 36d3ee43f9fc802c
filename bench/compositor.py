"""Compositors compared: `python -m bench.compositor [--quick] [--json FILE]`.

The same nine 640x360 yuv420p inputs (camera-like moving content, a new
picture every frame) composed into the same 1280x720 3x3 canvas (Tessera's
fluid layout, letterboxed, bilinear scaling) by:

1. Tessera's `VideoCompositor` (a kept swscale context per input + numpy
   copies into one preallocated canvas, wrapped without a copy), as a view does;
2. FFmpeg's `xstack` filter through PyAV's filter graph (`buffer` x 9 ->
   `scale=W:H:flags=bilinear` -> `xstack` -> `buffersink`), the regions at
   the very pixel rectangles Tessera uses, one filter thread like Tessera;
3. GStreamer's `compositor` (`gst-launch-1.0`, the same inputs from raw
   files, the same rectangles, `fakesink`), where Debian's packages are
   installed:  apt-get install gstreamer1.0-tools gstreamer1.0-plugins-base
   (skipped with a note when `gst-launch-1.0` is missing).

1 and 2 run in this process, interleaved in rounds (so a change of machine
load hits both), timed per frame with the process CPU clock; their outputs
are compared pixel by pixel to show they draw the same picture. GStreamer's
cost is its process CPU minus that of the same pipeline without the
compositor (reading the files), per frame.

Target: Tessera no slower than xstack with the same scaling filter
(median CPU per frame).

Then the picture people expect against today's composite, in the same run:
the same nine inputs composed (a) as before (OWT's fluid 3x3, letterboxed,
nothing drawn on top) and (b) as rooms now get them (the gallery, cropped,
with a name label on every region, one muted mark and the speaker's border),
each frame then encoded as a view does (VP8 1280x720, the view's default
settings), in alternating rounds. Target: (b) costs at most 5% more CPU per
view frame (composite + encode, medians) than (a).
"""

from __future__ import annotations

import argparse
import gc
import resource
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from av.filter import Graph
from av.video.format import VideoFormat

from tessera.media.videoencoder import EncoderSettings, VideoEncoder, default_bitrate
from tessera.mixer.compositor import InputPicture, VideoCompositor
from tessera.mixer.decorations import Decorations, LabelStyle
from tessera.mixer.layout import Layout, LayoutTemplates, place, region_rect

from .content import MovingPattern
from .machine import MachineInfo
from .pipeline import StageFigures
from .report import LoadMeter, add_common_arguments, finish, header, verdict

WIDTH, HEIGHT = 1280, 720
INPUT_W, INPUT_H = 640, 360
GST_INSTALL = "apt-get install gstreamer1.0-tools gstreamer1.0-plugins-base"


@dataclass(frozen=True)
class CompositorBenchConfig:
    """What is measured; the defaults are the full run."""

    inputs: int = 9
    distinct_frames: int = 30  # per input, cycled: every output frame gets new pictures
    rounds: int = 6  # alternating Tessera / xstack rounds
    frames_per_round: int = 100
    gstreamer_frames: int = 90  # per input, written to raw files (9 x 31 MB in /dev/shm)


QUICK = CompositorBenchConfig(distinct_frames=4, rounds=2, frames_per_round=10, gstreamer_frames=8)


@dataclass(frozen=True)
class GStreamerFigures:
    """gst-launch-1.0's compositor: CPU per frame, over the cost of reading the inputs."""

    available: bool
    note: str
    frames: int = 0
    composite_ms: float = 0.0  # per output frame, over the baseline
    pipeline_ms: float = 0.0  # the whole compositing pipeline, per frame
    baseline_ms: float = 0.0  # the same sources into fakesinks, per frame


@dataclass(frozen=True)
class PictureFigures:
    """Today's composite against the gallery with labels and marks, per view frame."""

    frames: int  # per variant
    before_composite: StageFigures  # fluid, letterbox, nothing on top
    after_composite: StageFigures  # gallery, crop, labels + muted mark + speaker border
    before_frame: StageFigures  # composite + VP8 720p encode
    after_frame: StageFigures
    labels_rendered: int  # label tiles made over the whole run (once per name)

    @property
    def ratio(self) -> float:
        """After / before, median CPU per view frame (composite + encode)."""
        return self.after_frame.median_ms / self.before_frame.median_ms

    @property
    def composite_ratio(self) -> float:
        """After / before, compositing alone (medians)."""
        return self.after_composite.median_ms / self.before_composite.median_ms

    @property
    def meets_target(self) -> bool:
        """At most 5% more per view frame."""
        return self.ratio <= 1.05


@dataclass(frozen=True)
class CompositorFigures:
    """Per-frame CPU of each compositor and how Tessera compares with xstack."""

    config: CompositorBenchConfig
    rects: list[tuple[int, int, int, int]]  # where each input lands (x, y, w, h)
    tessera: StageFigures
    xstack: StageFigures
    tessera_rounds_ms: list[float]  # median per round
    xstack_rounds_ms: list[float]
    max_pixel_difference: int  # Tessera's canvas against xstack's output, same inputs
    mean_pixel_difference: float
    gstreamer: GStreamerFigures
    machine_busy_cores: float
    others_cores: float
    picture: PictureFigures

    @property
    def ratio(self) -> float:
        """Tessera / xstack, median CPU per frame."""
        return self.tessera.median_ms / self.xstack.median_ms

    @property
    def meets_target(self) -> bool:
        """Tessera is no slower than xstack."""
        return self.ratio <= 1.0


def make_inputs(config: CompositorBenchConfig) -> list[list[av.VideoFrame]]:
    """`distinct_frames` decoded-like yuv420p frames per input, each input its own scene."""
    inputs = []
    for i in range(config.inputs):
        pattern = MovingPattern(INPUT_W, INPUT_H, seed=300 + i)
        inputs.append([_frame(pattern.frame(k)) for k in range(config.distinct_frames)])
    return inputs


def _frame(yuv: np.ndarray) -> av.VideoFrame:
    frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
    frame.time_base = Fraction(1, 30)
    return frame


def placements(count: int) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """(dest, size) of each input in Tessera's fluid layout, letterboxed."""
    layout = Layout(LayoutTemplates("fluid", fit_policy="letterbox"), max_input=16)
    for i in range(count):
        layout.add(f"input-{i}")
    result = []
    for region, _ in layout.assignments()[:count]:
        rect = region_rect(region.area, WIDTH, HEIGHT)
        placement = place(INPUT_W, INPUT_H, rect, "letterbox")
        result.append((placement.dest, placement.size))
    return result


class TesseraComposer:
    """A view's compositor as the view thread drives it: compose, then wrap the canvas."""

    def __init__(self, count: int) -> None:
        self.layout = Layout(LayoutTemplates("fluid", fit_policy="letterbox"), max_input=16)
        self.pictures: dict[str, InputPicture] = {}
        for i in range(count):
            stream_id = f"input-{i}"
            self.layout.add(stream_id)
            self.pictures[stream_id] = InputPicture(stream_id=stream_id, user=f"user {i}")
        self.assignments = self.layout.assignments()
        self.compositor = VideoCompositor(WIDTH, HEIGHT, fit_policy="letterbox")

    def compose(self, frames: list[av.VideoFrame]) -> av.VideoFrame:
        now = time.monotonic()
        for picture, frame in zip(self.pictures.values(), frames, strict=True):
            picture.frame = frame
            picture.frame_time = now
        canvas = self.compositor.compose(self.assignments, self.pictures, self.layout.version, now)
        return av.VideoFrame.from_numpy_buffer(canvas, format="yuv420p")


PICTURE_NAMES = (
    "Ada Lovelace",
    "Grace Hopper",
    "محمد علي",
    "王小明",
    "Zoë 🎉",
    "Edsger Dijkstra",
    "Bartholomew Featherstonehaugh-Smythe",
    "Ольга",
    "Alan Turing",
)


class PictureComposer:
    """A view's compositor and encoder, today's way or with the picture people expect."""

    def __init__(self, count: int, picture: bool) -> None:
        base, fit = ("gallery", "crop") if picture else ("fluid", "letterbox")
        self.layout = Layout(
            LayoutTemplates(base, fit_policy=fit, aspect=Fraction(WIDTH, HEIGHT)), max_input=16
        )
        self.pictures: dict[str, InputPicture] = {}
        for i in range(count):
            stream_id = f"input-{i}"
            self.layout.add(stream_id)
            self.pictures[stream_id] = InputPicture(
                stream_id=stream_id, user=PICTURE_NAMES[i % len(PICTURE_NAMES)], muted=i == 2
            )
        self.assignments = self.layout.assignments()
        self.decorations = Decorations(LabelStyle(), HEIGHT) if picture else None
        self.compositor = VideoCompositor(
            WIDTH, HEIGHT, fit_policy=fit, decorations=self.decorations
        )
        self.encoder = VideoEncoder(
            EncoderSettings(
                codec="vp8",
                width=WIDTH,
                height=HEIGHT,
                framerate=30,
                bitrate=default_bitrate(WIDTH, HEIGHT, 30),
                keyframe_interval=100,
            )
        )
        self.tick = 0

    def frame(self, frames: list[av.VideoFrame]) -> tuple[float, float]:
        """Compose and encode one view frame: (composite, whole) CPU seconds of this thread."""
        t0 = time.thread_time()
        now = time.monotonic()
        for picture, frame in zip(self.pictures.values(), frames, strict=True):
            picture.frame = frame
            picture.frame_time = now
        canvas = self.compositor.compose(
            self.assignments, self.pictures, self.layout.version, now, speaking="input-0"
        )
        frame = av.VideoFrame.from_numpy_buffer(canvas, format="yuv420p")
        t1 = time.thread_time()
        self.encoder.encode(frame, self.tick * 3000, keyframe=False)
        self.tick += 1
        return t1 - t0, time.thread_time() - t0


def run_picture_bench(
    config: CompositorBenchConfig, inputs: list[list[av.VideoFrame]]
) -> PictureFigures:
    """Before and after, in alternating rounds, each frame composed then encoded."""
    before, after = PictureComposer(config.inputs, False), PictureComposer(config.inputs, True)
    distinct = len(inputs[0])
    samples: dict[bool, tuple[list[float], list[float]]] = {False: ([], []), True: ([], [])}
    # A warm-up frame each: the encoders' first frame is a keyframe, the labels' first render.
    for composer in (before, after):
        composer.frame([per_input[0] for per_input in inputs])
    for r in range(config.rounds):
        order = [False, True] if r % 2 == 0 else [True, False]
        for which in order:
            composer = after if which else before
            for k in range(config.frames_per_round):
                index = 1 + r * config.frames_per_round + k
                composite, whole = composer.frame([p[index % distinct] for p in inputs])
                samples[which][0].append(composite)
                samples[which][1].append(whole)
    for composer in (before, after):
        composer.encoder.close()
    assert after.decorations is not None
    return PictureFigures(
        frames=len(samples[True][0]),
        before_composite=StageFigures.of(samples[False][0]),
        after_composite=StageFigures.of(samples[True][0]),
        before_frame=StageFigures.of(samples[False][1]),
        after_frame=StageFigures.of(samples[True][1]),
        labels_rendered=after.decorations.rendered,
    )


class XstackComposer:
    """FFmpeg's xstack through PyAV's filter graph, scaling each input first (bilinear)."""

    def __init__(self, count: int, sample: av.VideoFrame) -> None:
        graph = Graph()
        # One thread, as Tessera's compositor uses one (its scalers run with threads=1).
        graph.threads = 1
        where = placements(count)
        sources = [
            graph.add_buffer(
                width=sample.width,
                height=sample.height,
                format=VideoFormat("yuv420p"),
                time_base=Fraction(1, 30),
            )
            for _ in range(count)
        ]
        stack = graph.add(
            "xstack",
            f"inputs={count}:fill=black:layout="
            + "|".join(f"{dest[0]}_{dest[1]}" for dest, _ in where),
        )
        for i, (source, (_, size)) in enumerate(zip(sources, where, strict=True)):
            scale = graph.add("scale", f"{size[0]}:{size[1]}:flags=bilinear")
            source.link_to(scale)
            scale.link_to(stack, 0, i)
        right = max(dest[0] + size[0] for dest, size in where)
        bottom = max(dest[1] + size[1] for dest, size in where)
        last = stack
        if (right, bottom) != (WIDTH, HEIGHT):
            # xstack's output ends at its rightmost/bottom input: pad to the canvas.
            last = graph.add("pad", f"{WIDTH}:{HEIGHT}:0:0:black")
            stack.link_to(last)
        self.padded = last is not stack
        sink = graph.add("buffersink")
        last.link_to(sink)
        graph.configure()
        self.graph = graph
        self.sources = sources
        self.sink = sink
        self.pts = 0

    def compose(self, frames: list[av.VideoFrame]) -> av.VideoFrame:
        for source, frame in zip(self.sources, frames, strict=True):
            frame.pts = self.pts
            source.push(frame)
        self.pts += 1
        out = self.sink.pull()
        assert isinstance(out, av.VideoFrame)
        return out


def _planes(frame: av.VideoFrame) -> np.ndarray:
    return frame.to_ndarray(format="yuv420p").astype(np.int16)


def _time_round(
    compose: Any, inputs: list[list[av.VideoFrame]], start: int, frames: int
) -> list[float]:
    samples = []
    distinct = len(inputs[0])
    for k in range(start, start + frames):
        batch = [per_input[k % distinct] for per_input in inputs]
        t0 = time.process_time()
        compose(batch)
        samples.append(time.process_time() - t0)
    return samples


def run_gstreamer(
    config: CompositorBenchConfig, inputs: list[list[av.VideoFrame]]
) -> GStreamerFigures:
    """gst-launch-1.0 with `compositor` on the same inputs, minus the same sources alone."""
    launcher = shutil.which("gst-launch-1.0")
    if launcher is None:
        return GStreamerFigures(False, f"gst-launch-1.0 not found; to include it: {GST_INSTALL}")
    where = placements(config.inputs)
    frames = config.gstreamer_frames
    # Raw files in memory where there is a tmpfs: reading them should cost next to nothing.
    shm = Path("/dev/shm")
    with tempfile.TemporaryDirectory(
        prefix="tessera-gst-", dir=shm if shm.is_dir() else None
    ) as tmp:
        folder = Path(tmp)
        for i, per_input in enumerate(inputs):
            with (folder / f"in{i}.yuv").open("wb") as raw:
                for k in range(frames):
                    raw.write(per_input[k % len(per_input)].to_ndarray(format="yuv420p").tobytes())

        def source(i: int) -> list[str]:
            return [
                "filesrc",
                f"location={folder}/in{i}.yuv",
                "!",
                "rawvideoparse",
                f"width={INPUT_W}",
                f"height={INPUT_H}",
                "format=i420",
                "framerate=30/1",
            ]

        composite = [launcher, "-q", "compositor", "name=mix", "background=black"]
        for i, (dest, size) in enumerate(where):
            composite += [
                f"sink_{i}::xpos={dest[0]}",
                f"sink_{i}::ypos={dest[1]}",
                f"sink_{i}::width={size[0]}",
                f"sink_{i}::height={size[1]}",
                # Bilinear, as the other two use (GstVideoConverter's default is cubic).
                f"sink_{i}::converter-config=s,GstVideoConverter.resampler-method=linear",
            ]
        composite += ["!", f"video/x-raw,width={WIDTH},height={HEIGHT}", "!", "fakesink"]
        baseline = [launcher, "-q"]
        for i in range(config.inputs):
            composite += [*source(i), "!", f"mix.sink_{i}"]
            baseline += [*source(i), "!", "fakesink"]
        try:
            base_cpu = _child_cpu(baseline)
            full_cpu = _child_cpu(composite)
        except subprocess.CalledProcessError as exc:
            error = (exc.stderr or b"").decode(errors="replace").strip()[-300:]
            return GStreamerFigures(True, f"gst-launch-1.0 failed: {error}")
        except subprocess.TimeoutExpired:
            return GStreamerFigures(True, "gst-launch-1.0 did not finish in time")
    per = 1000 / frames
    return GStreamerFigures(
        available=True,
        note="gst-launch-1.0: filesrc ! rawvideoparse x 9 -> compositor (linear) -> fakesink",
        frames=frames,
        composite_ms=(full_cpu - base_cpu) * per,
        pipeline_ms=full_cpu * per,
        baseline_ms=base_cpu * per,
    )


def _child_cpu(command: list[str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(command, check=True, timeout=90, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def run_compositor_bench(config: CompositorBenchConfig) -> CompositorFigures:
    """Prepare the inputs, run Tessera and xstack in alternating rounds, then GStreamer."""
    inputs = make_inputs(config)
    tessera = TesseraComposer(config.inputs)
    xstack = XstackComposer(config.inputs, inputs[0][0])
    first = [per_input[0] for per_input in inputs]
    ours = _planes(tessera.compose(first))
    theirs = _planes(xstack.compose(first))
    difference = np.abs(ours - theirs)

    meter = LoadMeter()
    cpu0 = time.process_time()
    tessera_samples: list[float] = []
    xstack_samples: list[float] = []
    tessera_rounds: list[float] = []
    xstack_rounds: list[float] = []
    gc.collect()
    for r in range(config.rounds):
        start = 1 + r * config.frames_per_round
        # Alternate which goes first, so neither always follows the other's cache state.
        order = [("t", tessera.compose), ("x", xstack.compose)]
        if r % 2:
            order.reverse()
        for name, compose in order:
            samples = _time_round(compose, inputs, start, config.frames_per_round)
            if name == "t":
                tessera_samples += samples
                tessera_rounds.append(float(np.median(samples)) * 1000)
            else:
                xstack_samples += samples
                xstack_rounds.append(float(np.median(samples)) * 1000)
    load = meter.stop(time.process_time() - cpu0)
    gstreamer = run_gstreamer(config, inputs)
    picture = run_picture_bench(config, inputs)
    return CompositorFigures(
        config=config,
        rects=[(d[0], d[1], s[0], s[1]) for d, s in placements(config.inputs)],
        tessera=StageFigures.of(tessera_samples),
        xstack=StageFigures.of(xstack_samples),
        tessera_rounds_ms=tessera_rounds,
        xstack_rounds_ms=xstack_rounds,
        max_pixel_difference=int(difference.max()),
        mean_pixel_difference=float(difference.mean()),
        gstreamer=gstreamer,
        machine_busy_cores=load.machine_cores,
        others_cores=load.others_cores,
        picture=picture,
    )


def format_figures(figures: CompositorFigures) -> list[str]:
    """The comparison table and the verdict."""
    c = figures.config
    t, x, g = figures.tessera, figures.xstack, figures.gstreamer
    lines = [
        "",
        f"{c.inputs} x {INPUT_W}x{INPUT_H} yuv420p -> {WIDTH}x{HEIGHT} 3x3 (fluid, letterbox, "
        f"bilinear); {c.rounds} alternating rounds x {c.frames_per_round} frames, "
        f"{c.distinct_frames} distinct pictures per input",
        "",
        f"   {'CPU ms per output frame':<46}{'median':>8}{'p90':>8}{'mean':>8}",
        f"   {'Tessera VideoCompositor':<46}{t.median_ms:>8.3f}{t.p90_ms:>8.3f}{t.mean_ms:>8.3f}",
        f"   {'FFmpeg xstack (PyAV filter graph, 1 thread)':<46}"
        f"{x.median_ms:>8.3f}{x.p90_ms:>8.3f}{x.mean_ms:>8.3f}",
    ]
    if g.available and g.frames:
        lines.append(
            f"   {'GStreamer compositor (gst-launch-1.0)':<46}{'-':>8}{'-':>8}"
            f"{g.composite_ms:>8.3f}"
        )
        lines.append(
            f"     (its whole pipeline {g.pipeline_ms:.3f} ms/frame, reading the inputs alone "
            f"{g.baseline_ms:.3f}; {g.frames} frames)"
        )
    else:
        lines.append(f"   GStreamer compositor: skipped - {g.note}")
    rounds = ", ".join(
        f"{a:.2f}/{b:.2f}"
        for a, b in zip(figures.tessera_rounds_ms, figures.xstack_rounds_ms, strict=True)
    )
    lines += [
        "",
        f"   medians per round (Tessera/xstack): {rounds}",
        f"   same picture: Tessera's canvas vs xstack's output differ by at most "
        f"{figures.max_pixel_difference} (mean {figures.mean_pixel_difference:.3f}) of 255",
        f"   machine during the rounds: {figures.machine_busy_cores:.2f} busy cores, "
        f"{figures.others_cores:.2f} of them other work",
        "",
        f"Tessera / xstack = {figures.ratio:.3f} (medians) - target <= 1.0 (no slower): "
        f"{verdict(figures.meets_target)}",
    ]
    if g.available and g.frames and g.composite_ms > 0:
        lines.append(f"Tessera / GStreamer compositor = {t.mean_ms / g.composite_ms:.3f} (means)")
    return lines + format_picture(figures.picture)


def format_picture(p: PictureFigures) -> list[str]:
    """Today's composite against the picture people expect, and the verdict."""
    rows = [
        ("today: fluid 3x3, letterbox, nothing on top", p.before_composite, p.before_frame),
        ("now: gallery, crop, 9 labels, 1 mark, border", p.after_composite, p.after_frame),
    ]
    lines = [
        "",
        "The picture people expect against today's composite (same inputs; each frame then "
        f"encoded VP8 {WIDTH}x{HEIGHT}; {p.frames} frames each, alternating rounds)",
        "",
        f"   {'CPU ms per view frame (median, p90)':<48}{'composite':>20}{'+ encode':>20}",
    ]
    for name, composite, whole in rows:
        lines.append(
            f"   {name:<48}{composite.median_ms:>10.3f}{composite.p90_ms:>10.3f}"
            f"{whole.median_ms:>10.3f}{whole.p90_ms:>10.3f}"
        )
    lines += [
        f"   label tiles rendered over the run: {p.labels_rendered} (once per name, not per frame)",
        "",
        f"compositing alone: now / today = {p.composite_ratio:.3f}",
        f"per view frame: now / today = {p.ratio:.3f} (medians) - target <= 1.05 "
        f"(at most 5% more): {verdict(p.meets_target)}",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run the comparison, print it, write JSON."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.compositor", description=(__doc__ or "").splitlines()[0]
    )
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    started = time.monotonic()
    machine = MachineInfo.collect()
    for line in header("Tessera compositor benchmark", machine):
        print(line, flush=True)
    figures = run_compositor_bench(QUICK if args.quick else CompositorBenchConfig())
    return finish("compositor", args.json, machine, figures, format_figures(figures), started)


if __name__ == "__main__":
    raise SystemExit(main())

"""Parts 1-3: CPU per output frame of a 3x3 view, Tessera's pipeline against codec-only.

Everything runs on the calling thread, one frame after another as fast as the
CPU allows, and each stage is timed with the process CPU clock (all threads:
libvpx's decoder may use helper threads, as it does inside aiortc). Wall
clock is never used, so a busy machine makes the figures noisier, not larger.

Both pipelines decode the same pre-encoded inputs with fresh decoders and
encode with fresh encoders of the view's default settings. The codec-only
pipeline encodes the very canvases Tessera composed during its warm-up pass,
so both encoders see identical pictures (their bitstreams are compared).
"""

from __future__ import annotations

import gc
import hashlib
import time
from dataclasses import dataclass, field

import av
import numpy as np
from av.packet import Packet

from tessera.media.videoencoder import (
    VIDEO_TIME_BASE,
    EncoderSettings,
    VideoEncoder,
    default_bitrate,
)
from tessera.mixer.compositor import InputPicture, VideoCompositor
from tessera.mixer.layout import Layout, LayoutTemplates

from .content import MovingPattern, encode_like_aiortc

#: The view thread's budget at 30 fps within half a core.
HALF_CORE_MS_AT_30FPS = 1000 / 30 / 2
#: "Compositing adds at most 25%" over decode + encode.
COMPOSITE_OVERHEAD_TARGET = 1.25


@dataclass(frozen=True)
class MixerBenchConfig:
    """What parts 1-3 measure; the defaults are the full run."""

    inputs: int = 9
    input_width: int = 640
    input_height: int = 360
    input_bitrate: int = 600_000  # aiortc starts at 500k and climbs on loopback; 360p lands here
    input_seconds: float = 4.0  # pre-encoded per input, then looped
    width: int = 1280
    height: int = 720
    framerate: int = 30
    measured_frames: int = 300
    fit_policy: str = "letterbox"

    @property
    def period(self) -> int:
        """Frames per input loop: also the warm-up length (one full loop, pre-rendered)."""
        return max(2, round(self.input_seconds * self.framerate))

    def encoder_settings(self) -> EncoderSettings:
        """The view's default output: what MixedStream.encoder_settings gives a plain request."""
        return EncoderSettings(
            codec="vp8",
            width=self.width,
            height=self.height,
            framerate=self.framerate,
            bitrate=default_bitrate(self.width, self.height, self.framerate),
            keyframe_interval=100,  # the view's default keyFrameInterval
        )


QUICK_MIXER = MixerBenchConfig(input_seconds=1.0, measured_frames=60)


@dataclass(frozen=True)
class StageFigures:
    """CPU milliseconds per output frame of one stage (or the total)."""

    median_ms: float
    p90_ms: float
    mean_ms: float

    @classmethod
    def of(cls, seconds: list[float]) -> StageFigures:
        """Figures of per-frame CPU seconds."""
        ms = np.asarray(seconds, dtype=np.float64) * 1000
        return cls(
            median_ms=float(np.median(ms)),
            p90_ms=float(np.percentile(ms, 90)),
            mean_ms=float(ms.mean()),
        )


@dataclass(frozen=True)
class PipelineFigures:
    """One pipeline's CPU per output frame, split by stage, over the measured frames."""

    name: str
    frames: int
    stages: dict[str, StageFigures]
    total: StageFigures
    # Share of the stages' process CPU spent outside the calling thread (codec helper threads).
    helper_thread_share: float
    output_kbps: float
    output_digest: str  # of the encoded bitstream over the measured frames


@dataclass(frozen=True)
class MixerFigures:
    """Parts 1-3: both pipelines, their ratio and the 30 fps / half-core check."""

    config: MixerBenchConfig
    input_kbps: float  # mean bitrate of the pre-encoded inputs
    regions: int
    tessera: PipelineFigures
    codec_only: PipelineFigures
    ratio: float  # Tessera / codec-only, median totals
    ratio_mean: float
    same_bitstream: bool  # both encoders produced identical output: they saw identical content
    setup_seconds: float
    machine_busy_cores: float  # whole machine during the measured passes (others included)
    own_cores: float  # this process during the measured passes
    budget_ms: float = HALF_CORE_MS_AT_30FPS
    target_ratio: float = COMPOSITE_OVERHEAD_TARGET
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def core_percent(self) -> float:
        """Tessera's median total as % of one core at the view's frame rate."""
        return self.tessera.total.median_ms * self.config.framerate / 10

    @property
    def holds_frame_rate(self) -> bool:
        """The view keeps its frame rate within half a core (median and p90)."""
        return self.tessera.total.p90_ms <= self.budget_ms

    @property
    def meets_ratio(self) -> bool:
        """Compositing adds at most the target share."""
        return self.ratio <= self.target_ratio


class _Inputs:
    """The pre-encoded inputs, one libvpx decoder each, as an aiortc receiver decodes them."""

    def __init__(self, encoded: list[list[bytes]], offsets: list[int]) -> None:
        self.encoded = encoded
        self.offsets = offsets
        self.decoders = [av.CodecContext.create("libvpx", "r") for _ in encoded]
        self.latest: list[av.VideoFrame | None] = [None] * len(encoded)
        # Each input starts `offset` frames into its loop (keyframes do not coincide): feed the
        # decoder the frames before it so that it holds the reference pictures it needs.
        for i, offset in enumerate(offsets):
            for index in range(offset):
                self._decode(i, index)

    def _decode(self, i: int, index: int) -> None:
        packet = Packet(self.encoded[i][index])
        packet.pts = index * 3000
        packet.time_base = VIDEO_TIME_BASE
        for frame in self.decoders[i].decode(packet):
            self.latest[i] = frame

    def decode_all(self, tick: int) -> None:
        """Decode every input's frame for output frame `tick`."""
        for i, offset in enumerate(self.offsets):
            self._decode(i, (tick + offset) % len(self.encoded[i]))


class _StageClock:
    """Process and thread CPU per stage of each output frame: `with clock.stage("decode"): ...`."""

    def __init__(self, stages: tuple[str, ...]) -> None:
        self.stages = stages
        self.process: dict[str, list[float]] = {s: [] for s in stages}
        self.thread: dict[str, list[float]] = {s: [] for s in stages}
        self._current = ""
        self._p0 = self._t0 = 0.0

    def stage(self, name: str) -> _StageClock:
        """Time the body of a `with` block as stage `name`."""
        self._current = name
        return self

    def __enter__(self) -> None:
        self._p0, self._t0 = time.process_time(), time.thread_time()

    def __exit__(self, *exc: object) -> None:
        t1, p1 = time.thread_time(), time.process_time()
        self.process[self._current].append(p1 - self._p0)
        self.thread[self._current].append(t1 - self._t0)

    def drop_first(self, frames: int) -> None:
        """Forget the warm-up frames."""
        for samples in (*self.process.values(), *self.thread.values()):
            del samples[:frames]

    def figures(self, name: str, encoded_bytes: int, digest: str, fps: int) -> PipelineFigures:
        frames = len(self.process[self.stages[0]])
        totals = [sum(self.process[s][k] for s in self.stages) for k in range(frames)]
        process_sum = sum(totals)
        thread_sum = sum(sum(v) for v in self.thread.values())
        return PipelineFigures(
            name=name,
            frames=frames,
            stages={s: StageFigures.of(self.process[s]) for s in self.stages},
            total=StageFigures.of(totals),
            helper_thread_share=max(0.0, 1 - thread_sum / process_sum) if process_sum else 0.0,
            output_kbps=encoded_bytes * 8 * fps / frames / 1000 if frames else 0.0,
            output_digest=digest,
        )


def prepare_inputs(config: MixerBenchConfig) -> list[list[bytes]]:
    """Pre-encode (untimed) `input_seconds` of VP8 per input, each from its own scene."""
    return [
        encode_like_aiortc(
            MovingPattern(config.input_width, config.input_height, seed=100 + i),
            config.period,
            config.input_bitrate,
            config.framerate,
        )
        for i in range(config.inputs)
    ]


def _offsets(config: MixerBenchConfig) -> list[int]:
    return [i * config.period // config.inputs for i in range(config.inputs)]


def _pts(config: MixerBenchConfig, tick: int) -> int:
    return round(tick * 90000 / config.framerate)


def run_tessera(
    config: MixerBenchConfig, encoded: list[list[bytes]]
) -> tuple[PipelineFigures, list[np.ndarray], int]:
    """Decode, composite (VideoCompositor, fluid layout) and encode (VideoEncoder).

    Runs one loop of warm-up, keeping a copy of every composed canvas, then
    `measured_frames` measured frames. Returns the figures, the canvases and
    the number of regions drawn.
    """
    inputs = _Inputs(encoded, _offsets(config))
    layout = Layout(LayoutTemplates("fluid", fit_policy=config.fit_policy), max_input=16)
    pictures: dict[str, InputPicture] = {}
    for i in range(config.inputs):
        stream_id = f"input-{i}"
        layout.add(stream_id)
        pictures[stream_id] = InputPicture(stream_id=stream_id, user=f"user {i}")
    assignments = layout.assignments()
    compositor = VideoCompositor(config.width, config.height, fit_policy=config.fit_policy)
    encoder = VideoEncoder(config.encoder_settings())
    canvases: list[np.ndarray] = []
    output = hashlib.sha256()
    output_bytes = 0
    clock = _StageClock(("decode", "composite", "encode"))
    for tick in range(config.period + config.measured_frames):
        warm = tick < config.period
        if tick == config.period:
            gc.collect()
        with clock.stage("decode"):
            inputs.decode_all(tick)
        with clock.stage("composite"):
            # As MixedStream's video thread: newest frame of each input, compose, copy, wrap.
            now = time.monotonic()
            for i, picture in enumerate(pictures.values()):
                picture.frame = inputs.latest[i]
                picture.frame_time = now
            canvas = compositor.compose(assignments, pictures, layout.version, now).copy()
            frame = av.VideoFrame.from_numpy_buffer(canvas, format="yuv420p")
        with clock.stage("encode"):
            packets = encoder.encode(frame, _pts(config, tick), keyframe=False)
        if warm:
            canvases.append(canvas)
            continue
        for packet in packets:
            data = bytes(packet)
            output.update(data)
            output_bytes += len(data)
    encoder.close()
    clock.drop_first(config.period)
    figures = clock.figures("Tessera", output_bytes, output.hexdigest(), config.framerate)
    return figures, canvases, sum(1 for _, stream in assignments if stream is not None)


def run_codec_only(
    config: MixerBenchConfig, encoded: list[list[bytes]], canvases: list[np.ndarray]
) -> PipelineFigures:
    """Decode the same inputs and encode Tessera's pre-rendered canvases: no compositing."""
    inputs = _Inputs(encoded, _offsets(config))
    encoder = VideoEncoder(config.encoder_settings())
    output = hashlib.sha256()
    output_bytes = 0
    clock = _StageClock(("decode", "encode"))
    for tick in range(config.period + config.measured_frames):
        if tick == config.period:
            gc.collect()
        frame = av.VideoFrame.from_numpy_buffer(canvases[tick % config.period], format="yuv420p")
        with clock.stage("decode"):
            inputs.decode_all(tick)
        with clock.stage("encode"):
            packets = encoder.encode(frame, _pts(config, tick), keyframe=False)
        if tick < config.period:
            continue
        for packet in packets:
            data = bytes(packet)
            output.update(data)
            output_bytes += len(data)
    encoder.close()
    clock.drop_first(config.period)
    return clock.figures("codec-only", output_bytes, output.hexdigest(), config.framerate)


def run_mixer_bench(config: MixerBenchConfig) -> MixerFigures:
    """Parts 1-3 in one go: prepare the inputs, run both pipelines, compare."""
    from .machine import SystemCpu

    started = time.perf_counter()
    encoded = prepare_inputs(config)
    input_bytes = sum(len(frame) for frames in encoded for frame in frames)
    input_kbps = input_bytes * 8 / (config.inputs * config.period / config.framerate) / 1000
    setup = time.perf_counter() - started

    wall0, sys0, own0 = time.monotonic(), SystemCpu.read(), time.process_time()
    tessera, canvases, regions = run_tessera(config, encoded)
    codec_only = run_codec_only(config, encoded, canvases)
    wall = time.monotonic() - wall0
    machine = SystemCpu.read().busy_cores_since(sys0, wall)
    own = (time.process_time() - own0) / wall if wall > 0 else 0.0

    return MixerFigures(
        config=config,
        input_kbps=input_kbps,
        regions=regions,
        tessera=tessera,
        codec_only=codec_only,
        ratio=tessera.total.median_ms / codec_only.total.median_ms,
        ratio_mean=tessera.total.mean_ms / codec_only.total.mean_ms,
        same_bitstream=tessera.output_digest == codec_only.output_digest,
        setup_seconds=setup,
        machine_busy_cores=machine,
        own_cores=own,
    )

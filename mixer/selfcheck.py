"""Media self-check: at start-up, every codec a view uses encodes and decodes a picture.

A PyAV build without libvpx, libx264 or libopus would otherwise be found
when the first room mixes, by its participants. Running the whole media path
once also pages in the codec libraries and fills their one-off tables before
anyone joins, so the first room does not pay for it (and memory after rooms
close is compared against a server that has the same code loaded).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from typing import Any, TypeVar

import av
import numpy as np

from tessera.media.videoencoder import EncoderSettings, VideoEncoder, default_bitrate

from .compositor import InputPicture, VideoCompositor
from .decorations import Decorations, LabelStyle
from .layout import Layout, LayoutTemplates
from .outputs import OpusEncoder

# The codec a publisher's video of each kind is decoded with (aiortc's decoders are these).
_DECODERS = {"vp8": "libvpx", "h264": "h264"}
WIDTH, HEIGHT = 1280, 720
T = TypeVar("T")


@dataclass(frozen=True)
class SelfCheckReport:
    """What the self-check found: one line per failed check (none: all work)."""

    failures: tuple[str, ...]
    seconds: float

    @property
    def ok(self) -> bool:
        return not self.failures


def check_media(video_codecs: tuple[str, ...] = ("vp8", "h264")) -> SelfCheckReport:
    """Composite a 3-region view, encode and decode it with each codec, Opus both ways.

    Blocking and CPU-bound (about 0.1 s): for start-up, before anything is served.
    """
    started = time.perf_counter()
    failures: list[str] = []
    canvas = _run("compositor", _compose, failures)
    if canvas is not None:
        for codec in video_codecs:
            _run(f"{codec} video", partial(_video_round_trip, codec, canvas), failures)
    _run("opus audio", _opus_round_trip, failures)
    return SelfCheckReport(tuple(failures), time.perf_counter() - started)


def _run(name: str, check: Callable[[], T], failures: list[str]) -> T | None:
    try:
        return check()
    except Exception as exc:  # any failure is the finding
        failures.append(f"{name}: {type(exc).__name__}: {exc}")
        return None


def _compose() -> av.VideoFrame:
    """A camera picture scaled into a region and two avatars (text drawn), as a view does.

    With name labels and a muted mark: the fonts and the shaping library are read here,
    at start-up, rather than by the first view, whose first frames would wait for them.
    """
    layout = Layout(LayoutTemplates("fluid", fit_policy="letterbox"), max_input=16)
    camera = np.zeros((360 * 3 // 2, 640), np.uint8)
    camera[:360] = np.linspace(16, 235, 640, dtype=np.uint8)
    camera[360:] = 128
    frame = av.VideoFrame.from_ndarray(camera, format="yuv420p")
    inputs = {
        "camera": InputPicture("camera", "Camera", frame=frame, frame_time=time.monotonic()),
        "avatar": InputPicture("avatar", "Ada Lovelace", has_video=False),
        "audio": InputPicture("audio", "Грейс", has_video=False, muted=True),
    }
    for stream_id in inputs:
        layout.add(stream_id)
    decorations = Decorations(LabelStyle(), HEIGHT)
    compositor = VideoCompositor(WIDTH, HEIGHT, decorations=decorations)
    canvas = compositor.compose(layout.assignments(), inputs, layout.version, time.monotonic())
    if compositor.redrawn_regions < len(inputs):
        raise RuntimeError(f"drew {compositor.redrawn_regions} of {len(inputs)} regions")
    if decorations.rendered < len(inputs):
        raise RuntimeError(f"labelled {decorations.rendered} of {len(inputs)} regions")
    return av.VideoFrame.from_ndarray(canvas.copy(), format="yuv420p")


def _video_round_trip(codec: str, picture: av.VideoFrame) -> None:
    settings = EncoderSettings(
        codec, WIDTH, HEIGHT, 30, default_bitrate(WIDTH, HEIGHT, 30, codec), keyframe_interval=2
    )
    encoder = VideoEncoder(settings)
    packets = []
    for index in range(2):
        packets += encoder.encode(picture, index * 3000, keyframe=index == 0)
    if not packets:
        raise RuntimeError("the encoder returned no packets")
    decoder: Any = av.CodecContext.create(_DECODERS[codec], "r")
    decoded = [f for p in packets for f in decoder.decode(p)]
    decoded += decoder.decode(None)
    if not decoded or (decoded[0].width, decoded[0].height) != (WIDTH, HEIGHT):
        raise RuntimeError(f"decoding gave {[(f.width, f.height) for f in decoded]}")


def _opus_round_trip() -> None:
    encoder = OpusEncoder(2)
    tone = (np.sin(np.arange(960) * 2 * np.pi * 440 / 48000) * 8000).astype(np.int16)
    packets = encoder.encode(np.repeat(tone, 2), 0) + encoder.encode(np.repeat(tone, 2), 960)
    if not packets:
        raise RuntimeError("the encoder returned no packets")
    decoder: Any = av.CodecContext.create("libopus", "r")
    decoded = []
    for packet in packets:
        packet.time_base = Fraction(1, 48000)
        decoded += decoder.decode(packet)
    if not decoded:
        raise RuntimeError("nothing decoded")

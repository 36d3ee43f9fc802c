"""VideoEncoder: one real-time PyAV encoder for one output format."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from itertools import pairwise
from typing import Any, TypeAlias

import av
from av.video.frame import PictureType

VIDEO_TIME_BASE = Fraction(1, 90000)

Packet: TypeAlias = "av.Packet[Any]"


@dataclass(frozen=True)
class EncoderSettings:
    """A distinct output format: one encoder is shared by everyone who wants it."""

    codec: str  # "vp8" | "h264"
    width: int
    height: int
    framerate: int
    bitrate: int  # bits per second
    keyframe_interval: int  # seconds between periodic keyframes (OWT semantics)
    # VP8: a keyframe's size at most this % of one frame's share of the bitrate (libvpx
    # max-intra-rate); 0: as large as rate control lets it be.
    max_intra_rate: int = 0


# OWT's partial-linear table: pixels per frame at 30 fps -> kbit/s (mediaUtil.js).
_STANDARD_BITRATE = (
    (0, 0),
    (320 * 240, 400),
    (640 * 480, 800),
    (1280 * 720, 2000),
    (1920 * 1080, 4000),
    (3840 * 2160, 16000),
    (7680 * 4320, 64000),
)
_CODEC_FACTOR = {"h264": 1.0, "vp8": 1.2, "vp9": 0.8, "h265": 0.9}


def default_bitrate(
    width: int, height: int, framerate: int, codec: str = "vp8", motion_factor: float = 0.8
) -> int:
    """OWT's automatic bitrate (bit/s) for a resolution and frame rate when none is set."""
    size = width * height * framerate / 30
    kbps = 64000.0
    for (prev, low), (nxt, high) in pairwise(_STANDARD_BITRATE):
        if prev < size <= nxt:
            kbps = low + (high - low) * (size - prev) / (nxt - prev)
            break
    kbps *= _CODEC_FACTOR.get(codec, 1.0) * motion_factor
    return max(50_000, int(kbps * 1000))


class VideoEncoder:
    """Encodes yuv420p frames of exactly the configured size, on its caller's thread.

    Settings are for real-time use: VP8 `deadline=realtime` with a fast
    `cpu-used` and no denoiser, x264 `ultrafast` + `zerolatency` constrained
    baseline. Not thread-safe: keep one encoder on one worker thread.
    """

    # Encoders ever created in this process: tests and metrics use it to prove
    # that pass-through forwarding encodes nothing.
    created = 0

    def __init__(self, settings: EncoderSettings) -> None:
        VideoEncoder.created += 1
        self.settings = settings
        self.frames = 0
        self.keyframes = 0
        self._context = self._create(settings)

    @staticmethod
    def _create(s: EncoderSettings) -> av.VideoCodecContext:
        gop = max(1, s.keyframe_interval * s.framerate)
        if s.codec == "vp8":
            ctx = av.CodecContext.create("libvpx", "w")
            ctx.options = {
                "deadline": "realtime",
                "cpu-used": "-16",
                "noise-sensitivity": "0",
                "lag-in-frames": "0",
                "error-resilient": "1",
                "static-thresh": "1",
                "undershoot-pct": "100",
                "overshoot-pct": "15",
                "bufsize": str(s.bitrate),
                "minrate": str(s.bitrate),
                "maxrate": str(s.bitrate),
                "qmin": "2",
                "qmax": "56",
            }
            if s.max_intra_rate > 0:
                ctx.options = {**ctx.options, "max-intra-rate": str(s.max_intra_rate)}
        elif s.codec == "h264":
            ctx = av.CodecContext.create("libx264", "w")
            ctx.options = {
                "preset": "ultrafast",
                "tune": "zerolatency",
                "profile": "baseline",
                "level": "31",
                # Repeat SPS/PPS before every IDR so any receiver can start there.
                "x264-params": "repeat-headers=1:annexb=1:sliced-threads=0",
            }
            ctx.profile = "Baseline"
        else:
            raise ValueError(f"unsupported video codec {s.codec!r}")
        ctx.width = s.width
        ctx.height = s.height
        ctx.pix_fmt = "yuv420p"
        ctx.bit_rate = s.bitrate
        ctx.framerate = Fraction(s.framerate, 1)
        ctx.time_base = VIDEO_TIME_BASE
        ctx.gop_size = gop
        ctx.thread_count = 1
        ctx.open()
        return ctx

    def encode(self, frame: av.VideoFrame, pts: int, keyframe: bool) -> list[Packet]:
        """Encode one frame with presentation time `pts` (90 kHz).

        Returns the packets (normally one), each with `pts` and a 90 kHz time base.
        """
        # Frames decoded from a keyframe carry pict_type I; passing that on
        # would make every such frame a keyframe (2x CPU and bitrate).
        frame.pict_type = PictureType.I if keyframe else PictureType.NONE
        frame.pts = pts
        frame.time_base = VIDEO_TIME_BASE
        packets = list(self._context.encode(frame))
        for packet in packets:
            packet.pts = pts
            packet.dts = pts
            packet.time_base = VIDEO_TIME_BASE
            if packet.is_keyframe:
                self.keyframes += 1
        self.frames += 1
        return packets

    def close(self) -> None:
        self._context = None  # type: ignore[assignment]

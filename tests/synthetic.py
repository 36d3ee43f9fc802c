"""Synthetic media of known content: solid-colour video, pure tones, and their measurement."""

from __future__ import annotations

import asyncio
import fractions
import math
import time

import av
import numpy as np
from aiortc.mediastreams import MediaStreamTrack

VIDEO_CLOCK = 90000
AUDIO_RATE = 48000


class RealTimePace:
    """A live source's pace: item ``position`` of a stream at ``rate`` items a second is
    released ``position / rate`` seconds after the first (the one stimulus every synthetic
    source shares; nothing waits on it before asserting)."""

    def __init__(self) -> None:
        self._start: float | None = None

    async def until(self, position: int, rate: float) -> None:
        now = time.monotonic()
        if self._start is None:
            self._start = now
        await asyncio.sleep(max(0.0, self._start + position / rate - now))  # stimulus


class ColorVideoTrack(MediaStreamTrack):
    """Frames of one RGB colour at `fps`, in real time."""

    kind = "video"

    def __init__(
        self, rgb: tuple[int, int, int], width: int = 320, height: int = 240, fps: int = 30
    ):
        super().__init__()
        self.fps = fps
        rgb_frame = np.zeros((height, width, 3), np.uint8)
        rgb_frame[:] = rgb
        self._frame = av.VideoFrame.from_ndarray(rgb_frame, format="rgb24").reformat(
            format="yuv420p"
        )
        self._pace = RealTimePace()
        self._count = 0

    async def recv(self) -> av.VideoFrame:
        await self._pace.until(self._count, self.fps)
        frame = av.VideoFrame.from_ndarray(self._frame.to_ndarray(), format="yuv420p")
        frame.pts = self._count * VIDEO_CLOCK // self.fps
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self._count += 1
        return frame


def mono_frame(wave: np.ndarray, pts: int) -> av.AudioFrame:
    """One frame of mono int16 samples at AUDIO_RATE, stamped `pts` (in samples)."""
    frame = av.AudioFrame.from_ndarray(wave.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = AUDIO_RATE
    frame.pts = pts
    frame.time_base = fractions.Fraction(1, AUDIO_RATE)
    return frame


class ToneTrack(MediaStreamTrack):
    """A sine tone at `frequency` Hz, 20 ms frames, in real time."""

    kind = "audio"

    def __init__(self, frequency: float, amplitude: float = 0.3):
        super().__init__()
        self.frequency = frequency
        self.amplitude = amplitude
        self._samples = 0
        self._pace = RealTimePace()

    async def recv(self) -> av.AudioFrame:
        await self._pace.until(self._samples, AUDIO_RATE)
        n = AUDIO_RATE // 50
        t = (np.arange(n) + self._samples) / AUDIO_RATE
        wave = (self.amplitude * 32767 * np.sin(2 * math.pi * self.frequency * t)).astype(np.int16)
        frame = mono_frame(wave, self._samples)
        self._samples += n
        return frame


def mean_rgb(
    frame: av.VideoFrame, box: tuple[float, float, float, float] | None = None
) -> np.ndarray:
    """Mean colour of a frame, or of a box (left, top, width, height as fractions) in it."""
    rgb = frame.to_ndarray(format="rgb24").astype(np.float64)
    if box is not None:
        h, w = rgb.shape[:2]
        left, top, width, height = box
        # Stay clear of the edges, where scaling blends neighbours.
        x0, x1 = int(w * (left + width * 0.2)), int(w * (left + width * 0.8))
        y0, y1 = int(h * (top + height * 0.2)), int(h * (top + height * 0.8))
        rgb = rgb[y0:y1, x0:x1]
    return rgb.reshape(-1, 3).mean(axis=0)


def close_to(rgb: np.ndarray, expected: tuple[int, int, int], tolerance: float = 40) -> bool:
    return bool(np.all(np.abs(rgb - np.array(expected)) < tolerance))


def tone_energy(samples: np.ndarray, frequency: float, rate: int = AUDIO_RATE) -> float:
    """Relative energy of `samples` (mono float or int) in a narrow band around `frequency`."""
    x = samples.astype(np.float64)
    x = x - x.mean()
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    band = (freqs > frequency - 15) & (freqs < frequency + 15)
    return float(spectrum[band].sum() / (spectrum.sum() + 1e-9))


async def collect_audio(track: MediaStreamTrack, seconds: float) -> np.ndarray:
    """Receive `seconds` of audio from a remote track as mono int16 samples."""
    chunks = []
    total = 0
    while total < seconds * AUDIO_RATE:
        frame = await asyncio.wait_for(track.recv(), 20)
        data = frame.to_ndarray()
        channels = len(frame.layout.channels)
        mono = data.reshape(-1, channels).mean(axis=1) if channels > 1 else data.reshape(-1)
        chunks.append(mono)
        total += len(mono)
    return np.concatenate(chunks)


async def next_video_frame(track: MediaStreamTrack, timeout: float = 20) -> av.VideoFrame:
    frame = await asyncio.wait_for(track.recv(), timeout)
    assert isinstance(frame, av.VideoFrame)
    return frame


class NoiseVideoTrack(MediaStreamTrack):
    """Frames of changing noise at `fps`, in real time: as many bits as an encoder allows.

    A pool of noise frames is cycled (drawing a new one per frame costs a core); a
    solid colour would fit any link, and a link limit would show nothing.
    """

    kind = "video"

    def __init__(self, width: int = 640, height: int = 360, fps: int = 30, pool: int = 15):
        super().__init__()
        self.fps = fps
        noise = np.random.default_rng(17)
        self._frames = [
            noise.integers(0, 256, (height * 3 // 2, width), dtype=np.uint8) for _ in range(pool)
        ]
        self._pace = RealTimePace()
        self._count = 0

    async def recv(self) -> av.VideoFrame:
        await self._pace.until(self._count, self.fps)
        planes = self._frames[self._count % len(self._frames)]
        frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
        frame.pts = self._count * VIDEO_CLOCK // self.fps
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self._count += 1
        return frame

"""Camera-like synthetic video for the benchmarks: motion, texture and grain, different per seed.

A solid colour compresses to almost nothing and decodes for free, which would
flatter every figure. These frames keep an encoder busy the way a webcam does:
a drifting gradient (illumination), a moving textured block (a face, a shirt,
a bookshelf) and a slowly moving disc, plus a little sensor noise.
"""

from __future__ import annotations

import asyncio
import fractions
import math
import time

import av
import numpy as np
from aiortc.codecs.vpx import Vp8Encoder, vp8_depayload
from aiortc.mediastreams import MediaStreamTrack

VIDEO_CLOCK = 90000


class MovingPattern:
    """yuv420p frames (as one (h*3/2, w) uint8 array) of a moving, textured scene."""

    def __init__(self, width: int, height: int, seed: int, noise: int = 3) -> None:
        if width % 2 or height % 2:
            raise ValueError("yuv420p needs an even width and height")
        self.width = width
        self.height = height
        rng = np.random.default_rng(seed)
        self._rng = rng
        self._noise = noise
        # Gradient: a sum of a wave along x and one along y, each drifting at its own speed.
        self._wave_x = float(rng.uniform(0.6, 1.6))
        self._wave_y = float(rng.uniform(0.4, 1.2))
        self._speed_x = float(rng.uniform(-3.0, 3.0))
        self._speed_y = float(rng.uniform(-2.0, 2.0))
        self._x = np.arange(width, dtype=np.float32) / width
        self._y = np.arange(height, dtype=np.float32) / height
        self._hue = float(rng.uniform(0, 2 * math.pi))
        # A textured block: 8x8-pixel cells of random brightness, edges and all.
        block_w, block_h = (width // 4) & ~1, (height // 3) & ~1
        cells = rng.integers(30, 226, size=(block_h // 8 + 1, block_w // 8 + 1), dtype=np.uint8)
        self._block = np.kron(cells, np.ones((8, 8), np.uint8))[:block_h, :block_w]
        self._block_phase = float(rng.uniform(0, 2 * math.pi))
        # A disc of its own brightness, moving on a slow Lissajous path.
        self._disc_radius = height // 6
        self._disc_luma = int(rng.integers(40, 220))
        yy, xx = np.mgrid[
            -self._disc_radius : self._disc_radius, -self._disc_radius : self._disc_radius
        ]
        self._disc_mask = (xx * xx + yy * yy) < self._disc_radius**2
        # A few noise fields reused at random offsets: generating fresh noise costs more than
        # everything else here and looks no different to an encoder.
        self._noise_fields = [
            rng.integers(-noise, noise + 1, size=(height, width), dtype=np.int16) for _ in range(4)
        ]

    def frame(self, index: int, fps: int = 30) -> np.ndarray:
        """Frame `index` of the sequence (deterministic for a given seed and index)."""
        t = index / fps
        w, h = self.width, self.height
        gx = 60 * np.sin(2 * np.pi * (self._wave_x * self._x + 0.15 * self._speed_x * t))
        gy = 40 * np.sin(2 * np.pi * (self._wave_y * self._y + 0.15 * self._speed_y * t))
        luma = 118 + gx[np.newaxis, :] + gy[:, np.newaxis]
        if self._noise:
            field = self._noise_fields[index % len(self._noise_fields)]
            shift = (index * 7919) % (w * h)
            luma = luma + np.roll(field.reshape(-1), shift).reshape(h, w)
        y_plane = np.clip(luma, 0, 255).astype(np.uint8)

        bh, bw = self._block.shape
        phase = self._block_phase + 2 * math.pi * t / 5
        bx = int((w - bw) * (0.5 + 0.45 * math.sin(phase))) & ~1
        by = int((h - bh) * (0.5 + 0.45 * math.sin(1.3 * phase))) & ~1
        y_plane[by : by + bh, bx : bx + bw] = self._block

        r = self._disc_radius
        dx = int((w - 2 * r) * (0.5 + 0.4 * math.cos(0.7 * phase)))
        dy = int((h - 2 * r) * (0.5 + 0.4 * math.sin(0.9 * phase)))
        y_plane[dy : dy + 2 * r, dx : dx + 2 * r][self._disc_mask] = self._disc_luma

        hx = self._x[::2][np.newaxis, :]
        hy = self._y[::2][:, np.newaxis]
        u_plane = 128 + 30 * np.sin(2 * np.pi * (hx + hy) + self._hue + 0.5 * t)
        v_plane = 128 + 30 * np.cos(2 * np.pi * (hx - hy) + self._hue + 0.3 * t)
        out = np.empty((h * 3 // 2, w), np.uint8)
        out[:h] = y_plane
        out[h : h + h // 4] = u_plane.astype(np.uint8).reshape(h // 4, w)
        out[h + h // 4 :] = v_plane.astype(np.uint8).reshape(h // 4, w)
        return out


def encode_like_aiortc(
    pattern: MovingPattern, frames: int, bitrate: int, fps: int = 30
) -> list[bytes]:
    """Encode `frames` frames of `pattern` with aiortc's own VP8 encoder at `bitrate`.

    Returns one encoded VP8 frame per input frame, as an aiortc receiver
    reassembles them (RTP payloads with their VP8 descriptors removed). Only
    the first is a keyframe (aiortc's encoder uses a 3000-frame GOP).
    """
    encoder = Vp8Encoder()
    encoder.target_bitrate = bitrate
    encoded: list[bytes] = []
    for index in range(frames):
        frame = av.VideoFrame.from_ndarray(pattern.frame(index, fps), format="yuv420p")
        frame.pts = index * VIDEO_CLOCK // fps
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        payloads, _ = encoder.encode(frame)
        encoded.append(b"".join(vp8_depayload(p) for p in payloads))
    return encoded


class MovingVideoTrack(MediaStreamTrack):  # type: ignore[misc]
    """A publisher's camera: `MovingPattern` frames at `fps`, in real time (cycling)."""

    kind = "video"

    def __init__(
        self, width: int = 640, height: int = 360, fps: int = 30, seed: int = 1, cycle: int = 90
    ) -> None:
        super().__init__()
        self.fps = fps
        pattern = MovingPattern(width, height, seed)
        self._frames = [pattern.frame(i, fps) for i in range(cycle)]
        self._start: float | None = None
        self._count = 0

    async def recv(self) -> av.VideoFrame:
        """The next frame, when it is due."""
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._count / self.fps
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        frame = av.VideoFrame.from_ndarray(
            self._frames[self._count % len(self._frames)], format="yuv420p"
        )
        frame.pts = self._count * VIDEO_CLOCK // self.fps
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self._count += 1
        return frame

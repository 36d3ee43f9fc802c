"""CaptionOverlay: a view's live captions burnt into its picture, at the bottom.

The room hands it each caption (event loop thread); the view's video thread
draws it onto the composited canvas just before the frame is encoded and
puts back what was under it just after (the compositor redraws only regions
whose picture changed, so the canvas must stay as it composed it). The text
is rendered with Pillow's bundled font once per change of caption, not per
frame; per frame it costs two copies of the caption box.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from tessera.captions.caption import Caption
from tessera.captions.segmenter import wrap_lines

# How long a final caption stays after it was said, when nothing follows it.
HOLD = 4.0
MAX_LINES = 2
# The box: its text height as a share of the picture's height, and its margins.
TEXT_SHARE = 0.05
BOTTOM_SHARE = 0.04


@dataclass(frozen=True)
class _Shown:
    text: str
    until: float  # monotonic


@dataclass
class _Tile:
    text: str
    top: int
    left: int
    y: np.ndarray
    u: np.ndarray
    v: np.ndarray


class CaptionOverlay:
    """Draws the latest caption of a view on its canvas (yuv420p, one contiguous buffer
    as `VideoCompositor.canvas`): white text on a black box, bottom centre, the last
    two lines, held ``HOLD`` seconds after the speaker's last words."""

    def __init__(self, width: int, height: int) -> None:
        self.width = width
        self.height = height
        self._lock = threading.Lock()
        self._shown: _Shown | None = None
        self._tile: _Tile | None = None
        self._saved: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        size = max(10, round(height * TEXT_SHARE))
        self._font = ImageFont.load_default(size=size)
        self._line_height = round(size * 1.25)
        self._padding = max(2, size // 3)
        # Characters a line holds: about the width of the picture in average letters.
        self._line_chars = max(8, int(width * 0.9 / (size * 0.5)))
        self.rendered = 0  # tiles rendered (once per change of caption)

    def show(self, caption: Caption, now: float | None = None) -> None:
        """The newest caption of the room (event loop thread)."""
        now = time.monotonic() if now is None else now
        text = f"{caption.user}: {caption.text}" if caption.user else caption.text
        with self._lock:
            self._shown = _Shown(text, now + HOLD) if caption.text.strip() else None

    def draw(self, canvas: np.ndarray, now: float) -> bool:
        """Draw the caption, if one is showing, keeping what it covers (video thread)."""
        with self._lock:
            shown = self._shown
        if shown is None or now >= shown.until:
            return False
        tile = self._tile
        if tile is None or tile.text != shown.text:
            tile = self._tile = self._render(shown.text)
        y, u, v = self._planes(canvas)
        top, left = tile.top, tile.left
        h, w = tile.y.shape
        rows, cols = slice(top, top + h), slice(left, left + w)
        crows, ccols = slice(top // 2, top // 2 + h // 2), slice(left // 2, left // 2 + w // 2)
        self._saved = (y[rows, cols].copy(), u[crows, ccols].copy(), v[crows, ccols].copy())
        y[rows, cols] = tile.y
        u[crows, ccols] = tile.u
        v[crows, ccols] = tile.v
        return True

    def undo(self, canvas: np.ndarray) -> None:
        """Put back what the last `draw` covered (after the frame was encoded)."""
        saved, self._saved = self._saved, None
        tile = self._tile
        if saved is None or tile is None:
            return
        y, u, v = self._planes(canvas)
        top, left = tile.top, tile.left
        h, w = saved[0].shape
        y[top : top + h, left : left + w] = saved[0]
        u[top // 2 : top // 2 + h // 2, left // 2 : left // 2 + w // 2] = saved[1]
        v[top // 2 : top // 2 + h // 2, left // 2 : left // 2 + w // 2] = saved[2]

    def _planes(self, canvas: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        h, w = self.height, self.width
        quarter = h // 4
        u = canvas[h : h + quarter].reshape(h // 2, w // 2)
        v = canvas[h + quarter : h + 2 * quarter].reshape(h // 2, w // 2)
        return canvas[:h], u, v

    def _render(self, text: str) -> _Tile:
        lines = wrap_lines(text, self._line_chars, MAX_LINES)
        pad = self._padding
        widths = [self._font.getlength(line) for line in lines]
        box_w = _even(min(self.width, max(widths, default=0) + 2 * pad))
        box_h = _even(min(self.height, len(lines) * self._line_height + 2 * pad))
        image = Image.new("RGB", (box_w, box_h), (0, 0, 0))
        pen = ImageDraw.Draw(image)
        for index, line in enumerate(lines):
            pen.text((pad, pad + index * self._line_height), line, font=self._font, fill="white")
        frame = av.VideoFrame.from_ndarray(np.asarray(image), format="rgb24").reformat(
            format="yuv420p"
        )
        planes = [np.asarray(p).reshape(-1, p.line_size) for p in frame.planes]
        y = planes[0][:box_h, :box_w].copy()
        u = planes[1][: box_h // 2, : box_w // 2].copy()
        v = planes[2][: box_h // 2, : box_w // 2].copy()
        bottom = round(self.height * BOTTOM_SHARE)
        top = _even(max(0, self.height - bottom - box_h))
        left = _even((self.width - box_w) / 2)
        self.rendered += 1
        return _Tile(text, top, left, y, u, v)


def _even(value: float) -> int:
    # yuv420p: chroma is half size, so boxes start and extend on even pixels.
    return max(0, int(value) // 2 * 2)

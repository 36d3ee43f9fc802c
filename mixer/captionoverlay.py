"""CaptionOverlay: a view's live captions burnt into its picture, at the bottom.

An overlay (:mod:`tessera.mixer.overlay`) like any other: the view runs it
with its other overlays, within the same CPU budget, and the canvas puts back
what it covered before the next frame is composed. The room hands it each
caption (event loop thread); the view's video thread draws it. The text is
rendered with Pillow's bundled font once per change of caption, as an opaque
grey Tile (about 1.5 ms at 720p), not per frame; per frame it costs two copies of the caption box.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from tessera.captions.caption import Caption
from tessera.captions.segmenter import wrap_lines

from .canvas import Canvas, Tile

__all__ = ["BOTTOM_SHARE", "HOLD", "CaptionOverlay"]

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


@dataclass(frozen=True)
class _Rendered:
    text: str
    tile: Tile


class CaptionOverlay:
    """Draws the latest caption of a view on its canvas: white text on a black box,
    bottom centre, the last two lines, held ``HOLD`` seconds after the speaker's last
    words. An :class:`~tessera.mixer.overlay.Overlay` for a canvas of ``width`` x ``height``."""

    def __init__(self, width: int, height: int) -> None:
        self.width = width
        self.height = height
        self._lock = threading.Lock()
        self._shown: _Shown | None = None
        self._rendered: _Rendered | None = None
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

    def showing(self, now: float) -> str | None:
        """The text drawn at ``now`` (None: nothing)."""
        with self._lock:
            shown = self._shown
        if shown is None or now >= shown.until:
            return None
        return shown.text

    def draw(self, canvas: Canvas, now: float) -> None:
        """Blend the caption, if one is showing (video thread); the canvas undoes it."""
        text = self.showing(now)
        if text is None:
            return
        rendered = self._rendered
        if rendered is None or rendered.text != text:
            rendered = self._rendered = _Rendered(text, self._render(text))
        tile = rendered.tile
        bottom = round(canvas.height * BOTTOM_SHARE)
        top = max(0, canvas.height - bottom - tile.height)
        canvas.blend(tile, (canvas.width - tile.width) // 2, top)

    def _render(self, text: str) -> Tile:
        lines = wrap_lines(text, self._line_chars, MAX_LINES)
        pad = self._padding
        widths = [self._font.getlength(line) for line in lines]
        box_w = _even(min(self.width, max(widths, default=0) + 2 * pad))
        box_h = _even(min(self.height, len(lines) * self._line_height + 2 * pad))
        # White on black: grey levels only, the cheapest tile to make (see Tile.from_grey).
        image = Image.new("L", (box_w, box_h), 0)
        pen = ImageDraw.Draw(image)
        for index, line in enumerate(lines):
            pen.text((pad, pad + index * self._line_height), line, font=self._font, fill=255)
        self.rendered += 1
        return Tile.from_grey(np.asarray(image))


def _even(value: float) -> int:
    # yuv420p: chroma is half size, so boxes start and extend on even pixels.
    return max(2, int(value) // 2 * 2)

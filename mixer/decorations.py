"""Decorations: name labels, muted marks and the speaker's border on a view's regions.

Drawn by the compositor on its canvas after the pictures (see `canvas.py`: the
pixels under them are put back before the next frame). A label is rendered
once per change of what it shows (name, muted, size), as a Tile, and blended
every frame; a border is four filled rectangles.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw

from .canvas import Canvas, Rect, Stamp, Tile
from .textrender import TextRenderer, default_renderer, display_text, rgba_array

logger = logging.getLogger(__name__)

__all__ = [
    "LABEL_BACKGROUND",
    "SPEAKER_COLOUR",
    "Decorated",
    "Decorations",
    "LabelStyle",
    "SpeakerHighlight",
    "label_size",
    "mic_off_image",
]

# RGBA: white text stays readable on any picture. Opaque, so that a label is copied onto
# each frame rather than blended (bench.compositor: blending nine labels cost 6% of a frame).
LABEL_BACKGROUND = (32, 32, 32, 255)
SPEAKER_COLOUR = (66, 133, 244)
MUTED_COLOUR = (217, 48, 37)
_CACHE_LIMIT = 512


@dataclass(frozen=True)
class LabelStyle:
    """What a view draws over its regions (from its ``labels`` and ``marks`` options)."""

    labels: bool = True
    position: str = "bottom-left"
    muted: bool = True
    speaker: bool = True
    speaker_hold: float = 1.0


@dataclass(frozen=True)
class Decorated:
    """One region as the decorations see it: where it is, who it shows, their state."""

    rect: Rect
    stream_id: str
    name: str
    muted: bool


def label_size(view_height: int, region_height: int) -> int:
    """Text size in pixels: 1/24 of the view (15 px at 360p), smaller in small regions."""
    return max(10, min(round(view_height / 24), region_height // 6))


class SpeakerHighlight:
    """Which input shows the speaker's border: follows the speaker, with a hold time.

    Pure: the caller gives the speaker the audio mixer detected (None: nobody)
    and the time. The border stays at least ``hold`` seconds where it is before
    it moves to another speaker or goes away, so a quick exchange does not make
    it flicker; a change that lasts is followed once the hold has passed.
    """

    def __init__(self, hold: float) -> None:
        self.hold = hold
        self.shown: str | None = None
        self._since = -math.inf

    def update(self, speaking: str | None, now: float) -> str | None:
        """The input to draw the border on now."""
        if speaking != self.shown and now - self._since >= self.hold:
            self.shown = speaking
            self._since = now
        return self.shown


def mic_off_image(size: int) -> Image.Image:
    """A crossed-out microphone on a red disc, ``size`` pixels across (RGBA)."""
    scale = 4  # drawn large and scaled down: smooth edges
    s = size * scale
    image = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.ellipse((0, 0, s - 1, s - 1), fill=(*MUTED_COLOUR, 255))
    white = (255, 255, 255, 255)
    line = max(1, s // 14)
    # Capsule, cradle, stem and the slash.
    draw.rounded_rectangle((s * 0.40, s * 0.20, s * 0.60, s * 0.56), radius=s * 0.10, fill=white)
    draw.arc((s * 0.30, s * 0.32, s * 0.70, s * 0.66), 0, 180, fill=white, width=line)
    draw.line((s * 0.50, s * 0.66, s * 0.50, s * 0.78), fill=white, width=line)
    draw.line((s * 0.40, s * 0.78, s * 0.60, s * 0.78), fill=white, width=line)
    draw.line((s * 0.25, s * 0.25, s * 0.75, s * 0.75), fill=(*MUTED_COLOUR, 255), width=line * 3)
    draw.line((s * 0.25, s * 0.25, s * 0.75, s * 0.75), fill=white, width=line)
    return image.resize((size, size), Image.Resampling.LANCZOS)


class Decorations:
    """Draws a view's labels, muted marks and speaker border on its canvas each frame.

    Not thread-safe: the view's video thread owns it. Label tiles are kept by
    what they show and dropped when more than a few hundred pile up.
    """

    def __init__(
        self, style: LabelStyle, view_height: int, renderer: TextRenderer | None = None
    ) -> None:
        self.style = style
        self.view_height = view_height
        self.renderer = renderer or default_renderer()
        self.highlight = SpeakerHighlight(style.speaker_hold)
        self._tiles: dict[tuple[str, bool, int, int], Tile | None] = {}
        # Prepared for the canvas last drawn on: labels by (rect, name, muted), borders by rect.
        self._canvas: Canvas | None = None
        self._labels: dict[tuple[Rect, str, bool], Stamp | None] = {}
        self._borders: dict[Rect, list[Stamp]] = {}
        self.rendered = 0  # label tiles made (tests: once per change, not per frame)

    @property
    def active(self) -> bool:
        """Whether anything is drawn at all."""
        s = self.style
        return s.labels or s.muted or s.speaker

    def draw(
        self, canvas: Canvas, regions: Sequence[Decorated], speaking: str | None, now: float
    ) -> None:
        """Labels and marks on each region, then the border on the speaker's."""
        style = self.style
        if canvas is not self._canvas or len(self._labels) > _CACHE_LIMIT:
            self._canvas = canvas
            self._labels.clear()
            self._borders.clear()
        for region in regions:
            key = (region.rect, region.name, region.muted)
            if key in self._labels:
                stamp = self._labels[key]
            else:
                tile = self.label_tile(region)
                stamp = None
                if tile is not None:
                    stamp = canvas.prepare(tile, *self.label_position(region.rect, tile))
                self._labels[key] = stamp
            if stamp is not None:
                canvas.stamp(stamp)
        if not style.speaker:
            return
        shown = self.highlight.update(speaking, now)
        if shown is None:
            return
        for region in regions:
            if region.stream_id == shown:
                border = self._borders.get(region.rect)
                if border is None:
                    border = self._borders[region.rect] = canvas.prepare_frame(
                        region.rect, self.border_width, SPEAKER_COLOUR
                    )
                for stamp in border:
                    canvas.stamp(stamp)

    @property
    def border_width(self) -> int:
        """4 px at 720p, 2 px at 360p."""
        return max(2, round(self.view_height / 180))

    def label_tile(self, region: Decorated) -> Tile | None:
        """The tile for a region's label and mark (None: nothing to draw); made once."""
        style = self.style
        name = display_text(region.name) if style.labels else ""
        muted = region.muted and style.muted
        if not name and not muted:
            return None
        _, _, w, h = region.rect
        size = label_size(self.view_height, h)
        key = (name, muted, size, w)
        if key in self._tiles:
            return self._tiles[key]
        if len(self._tiles) > _CACHE_LIMIT:
            self._tiles.clear()
        try:
            image = self.label_image(name, muted, size, w - 2 * self.margin(size))
            tile = Tile.from_rgba(rgba_array(image)) if image is not None else None
        except Exception:
            # A name comes from a token: whatever it holds, the view goes on without
            # this label (logged once: the failure is kept as "no tile").
            logger.exception("label of %r could not be drawn", name[:64])
            tile = None
        self._tiles[key] = tile
        self.rendered += 1
        return tile

    @staticmethod
    def margin(size: int) -> int:
        """Space between a label and its region's edges."""
        return max(4, size // 2)

    def label_image(self, name: str, muted: bool, size: int, max_width: int) -> Image.Image | None:
        """The label as RGBA: a translucent box with the mark and the (elided) name."""
        pad = max(2, size // 4)
        line = self.renderer.render("", size)  # the line's height, for the box
        box_h = line.height + 2 * pad
        mark = mic_off_image(box_h - 2 * max(1, pad // 2)) if muted else None
        mark_w = mark.width + pad if mark is not None else 0
        room = max_width - 2 * pad - mark_w
        text = self.renderer.elide(name, size, room) if name and room > size else ""
        if not text and mark is None:
            return None
        rendered = self.renderer.render(text, size) if text else None
        width = 2 * pad + mark_w + (rendered.width if rendered is not None else -pad)
        box = Image.new("RGBA", (width + width % 2, box_h + box_h % 2), LABEL_BACKGROUND)
        x = pad
        if mark is not None:
            box.alpha_composite(mark, (x, (box_h - mark.height) // 2))
            x += mark_w
        if rendered is not None:
            box.alpha_composite(rendered, (x, pad))
        return box

    def label_position(self, rect: Rect, tile: Tile) -> tuple[int, int]:
        """Top-left corner of a label in its region, by the view's ``position``."""
        x, y, w, h = rect
        m = self.margin(label_size(self.view_height, h))
        position = self.style.position
        left = x + m
        if position.endswith("right"):
            left = x + w - m - tile.width
        elif position.endswith("center"):
            left = x + (w - tile.width) // 2
        top = y + m if position.startswith("top") else y + h - m - tile.height
        # Even: 4:2:0 chroma is drawn in 2x2 blocks (Canvas.blend would round it down).
        left, top = max(x, left), max(y, top)
        return left - left % 2, top - top % 2

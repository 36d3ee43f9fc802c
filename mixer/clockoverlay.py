"""ClockOverlay: the example overlay, a clock in a corner of the view.

Load it in a view's options (always allowed)::

    "video": {"overlays": [{"overlay": "tessera.mixer.clockoverlay:ClockOverlay",
                            "options": {"position": "top-right", "utc": true}}]}

It shows how an overlay keeps within its budget: the text is rendered once a
second, as a Tile, and only blended on the other frames.
"""

from __future__ import annotations

import time

from PIL import Image, ImageDraw

from .canvas import Canvas, Tile
from .textrender import default_renderer, rgba_array

__all__ = ["ClockOverlay"]

_BOX = (0, 0, 0, 150)  # translucent: the overlay shows what blending a Tile looks like
_POSITIONS = ("top-left", "top-right", "bottom-left", "bottom-right")


class ClockOverlay:
    """Draws ``HH:MM:SS`` (local time, or UTC) in a corner; see the module's docstring."""

    def __init__(self, position: str = "top-right", utc: bool = False) -> None:
        if position not in _POSITIONS:
            raise ValueError(f"position must be one of {', '.join(_POSITIONS)}, not {position!r}")
        if not isinstance(utc, bool):
            raise ValueError("utc must be true or false")
        self.position = position
        self.utc = utc
        self._text = ""
        self._tile: Tile | None = None

    def text(self, wall: float) -> str:
        """The clock's text at ``wall`` (seconds since the epoch)."""
        moment = time.gmtime(wall) if self.utc else time.localtime(wall)
        return time.strftime("%H:%M:%S", moment)

    def draw(self, canvas: Canvas, now: float) -> None:
        """Blend the clock; render its text again only when the second changes."""
        text = self.text(time.time())
        if text != self._text or self._tile is None:
            size = max(10, canvas.height // 24)
            text_image = default_renderer().render(text, size)
            pad = max(2, size // 4)
            # On a translucent box: readable on any picture.
            image = Image.new("RGBA", (text_image.width + 2 * pad, text_image.height + 2 * pad))
            ImageDraw.Draw(image).rounded_rectangle(
                (0, 0, image.width - 1, image.height - 1), radius=pad, fill=_BOX
            )
            image.alpha_composite(text_image, (pad, pad))
            self._tile = Tile.from_rgba(rgba_array(image))
            self._text = text
        tile = self._tile
        margin = max(4, canvas.height // 48)
        x = margin if self.position.endswith("left") else canvas.width - margin - tile.width
        y = margin if self.position.startswith("top") else canvas.height - margin - tile.height
        canvas.blend(tile, x, y)

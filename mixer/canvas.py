"""Canvas: a view's composited yuv420p frame, for drawing on top of the pictures.

Labels, state marks and overlays draw on the compositor's canvas after it has
composed a frame and before the frame is encoded. The compositor redraws only
the regions whose picture changed, so whatever is drawn on top must not stay
in the canvas: every drawing call saves the pixels it covers, and
:meth:`Canvas.restore` puts them back before the next compose. Drawing thus
costs in proportion to the area drawn, never a copy of the whole frame.

Pure numpy: no asyncio, no I/O. Coordinates are luma pixels; rectangles are
widened to even edges, as 4:2:0 chroma covers 2x2 luma pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Canvas", "Tile", "rgb_to_yuv"]

Rect = tuple[int, int, int, int]


def rgb_to_yuv(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """BT.601 limited range, as libvpx and x264 expect for yuv420p."""
    r, g, b = (c / 255 for c in rgb)
    y = 16 + 65.481 * r + 128.553 * g + 24.966 * b
    u = 128 - 37.797 * r - 74.203 * g + 112.0 * b
    v = 128 + 112.0 * r - 93.786 * g - 18.214 * b
    return round(y), round(u), round(v)


def _rgb_planes(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # The same BT.601 limited-range matrix as rgb_to_yuv, on whole arrays (float32).
    r, g, b = (rgb[..., i].astype(np.float32) / 255 for i in range(3))
    y = 16 + 65.481 * r + 128.553 * g + 24.966 * b
    u = 128 - 37.797 * r - 74.203 * g + 112.0 * b
    v = 128 + 112.0 * r - 93.786 * g - 18.214 * b
    return y, u, v


def _half(plane: np.ndarray) -> np.ndarray:
    """Average 2x2 blocks (the plane's size is even)."""
    h, w = plane.shape
    half: np.ndarray = plane.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    return half


@dataclass(frozen=True)
class Tile:
    """A picture with transparency, ready to blend onto a yuv420p canvas every frame.

    Made once (from RGBA) and kept: the colour is premultiplied by its opacity
    in 8-bit fixed point, so a blend is one multiply, one add and one shift per
    sample. Width and height are even.
    """

    width: int
    height: int
    premultiplied: tuple[np.ndarray, np.ndarray, np.ndarray]  # Y, U, V times alpha (uint16)
    transparency: tuple[np.ndarray, np.ndarray]  # 256 - alpha, luma and chroma size (uint16)

    @classmethod
    def from_rgba(cls, rgba: np.ndarray) -> Tile:
        """From an ``h x w x 4`` uint8 array (straight, not premultiplied, alpha).

        An odd last row or column is padded with transparent pixels.
        """
        if rgba.ndim != 3 or rgba.shape[2] != 4 or rgba.dtype != np.uint8:
            raise ValueError("a tile is made from an h x w x 4 uint8 RGBA array")
        h, w = rgba.shape[:2]
        if h % 2 or w % 2:
            padded = np.zeros((h + h % 2, w + w % 2, 4), np.uint8)
            padded[:h, :w] = rgba
            rgba = padded
            h, w = rgba.shape[:2]
        alpha = rgba[..., 3].astype(np.float32) / 255
        y, u, v = _rgb_planes(rgba)
        # Chroma of a 2x2 block: the alpha-weighted mean of its colours.
        alpha_half = _half(alpha)
        weight = np.where(alpha_half > 0, alpha_half, 1)
        u_half = _half(u * alpha) / weight
        v_half = _half(v * alpha) / weight

        def fixed(a: np.ndarray) -> np.ndarray:
            result: np.ndarray = np.rint(a * 256).astype(np.uint16)
            return result

        a_y, a_uv = fixed(alpha), fixed(alpha_half)
        return cls(
            w,
            h,
            (
                np.rint(y * a_y).astype(np.uint16),
                np.rint(u_half * a_uv).astype(np.uint16),
                np.rint(v_half * a_uv).astype(np.uint16),
            ),
            ((256 - a_y).astype(np.uint16), (256 - a_uv).astype(np.uint16)),
        )


class Canvas:
    """A composited frame that labels, marks and overlays draw on.

    Only the drawing methods change pixels, and each first saves what it
    covers; :meth:`restore` undoes every drawing since the last restore. An
    overlay that needs raw pixels takes them from :meth:`planes`, which saves
    the rectangle too. Not thread-safe: the view's video thread owns it.
    """

    def __init__(self, buffer: np.ndarray, width: int, height: int) -> None:
        if width % 2 or height % 2 or buffer.shape != (height * 3 // 2, width):
            raise ValueError("a canvas is one contiguous even-sized yuv420p buffer")
        self.width = width
        self.height = height
        self._y = buffer[:height]
        quarter = height // 4
        self._u = buffer[height : height + quarter].reshape(height // 2, width // 2)
        self._v = buffer[height + quarter :].reshape(height // 2, width // 2)
        self._saved: list[tuple[Rect, np.ndarray, np.ndarray, np.ndarray]] = []

    def clip(self, rect: Rect) -> Rect | None:
        """``rect`` widened to even edges and cut to the canvas; None if nothing is left."""
        x, y, w, h = rect
        x0, y0 = max(0, x - x % 2), max(0, y - y % 2)
        x1 = min(self.width, x + w + (x + w) % 2)
        y1 = min(self.height, y + h + (y + h) % 2)
        if x1 <= x0 or y1 <= y0:
            return None
        return x0, y0, x1 - x0, y1 - y0

    def planes(self, rect: Rect) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Writable Y, U, V views of ``rect`` (see :meth:`clip`), saved for :meth:`restore`."""
        clipped = self.clip(rect)
        if clipped is None:
            return None
        x, y, w, h = clipped
        views = (
            self._y[y : y + h, x : x + w],
            self._u[y // 2 : (y + h) // 2, x // 2 : (x + w) // 2],
            self._v[y // 2 : (y + h) // 2, x // 2 : (x + w) // 2],
        )
        self._saved.append((clipped, views[0].copy(), views[1].copy(), views[2].copy()))
        return views

    def fill(self, rect: Rect, rgb: tuple[int, int, int]) -> None:
        """Paint ``rect`` in one opaque colour."""
        views = self.planes(rect)
        if views is None:
            return
        for view, value in zip(views, rgb_to_yuv(rgb), strict=True):
            view[...] = value

    def frame(self, rect: Rect, thickness: int, rgb: tuple[int, int, int]) -> None:
        """A border ``thickness`` pixels wide just inside ``rect``."""
        x, y, w, h = rect
        t = max(2, thickness)
        self.fill((x, y, w, t), rgb)
        self.fill((x, y + h - t, w, t), rgb)
        self.fill((x, y + t, t, h - 2 * t), rgb)
        self.fill((x + w - t, y + t, t, h - 2 * t), rgb)

    def blend(self, tile: Tile, x: int, y: int) -> None:
        """Draw ``tile`` with its transparency, its top-left corner at ``x, y`` (made even).

        The part of the tile outside the canvas is not drawn.
        """
        x, y = x - x % 2, y - y % 2
        clipped = self.clip((x, y, tile.width, tile.height))
        if clipped is None:
            return
        cx, cy, w, h = clipped
        ox, oy = cx - x, cy - y  # where the visible part starts in the tile
        views = self.planes(clipped)
        assert views is not None
        windows = (
            (slice(oy, oy + h), slice(ox, ox + w)),
            (slice(oy // 2, (oy + h) // 2), slice(ox // 2, (ox + w) // 2)),
        )
        for index, view in enumerate(views):
            window = windows[0 if index == 0 else 1]
            inverse = tile.transparency[0 if index == 0 else 1][window]
            mixed = view * inverse
            mixed += tile.premultiplied[index][window]
            mixed >>= 8
            view[...] = mixed

    def restore(self) -> None:
        """Put back every pixel drawn over since the last restore (newest first)."""
        for (x, y, w, h), y_saved, u_saved, v_saved in reversed(self._saved):
            self._y[y : y + h, x : x + w] = y_saved
            self._u[y // 2 : (y + h) // 2, x // 2 : (x + w) // 2] = u_saved
            self._v[y // 2 : (y + h) // 2, x // 2 : (x + w) // 2] = v_saved
        self._saved.clear()

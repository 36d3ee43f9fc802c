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

__all__ = ["Canvas", "Stamp", "Tile", "rgb_to_yuv"]

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
    # Wholly opaque: blending is a copy of these Y, U, V planes (uint8), several times cheaper.
    opaque: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

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
        opaque = None
        if bool((rgba[..., 3] == 255).all()):
            opaque = tuple(
                np.clip(np.rint(p), 0, 255).astype(np.uint8) for p in (y, u_half, v_half)
            )
        return cls(
            w,
            h,
            (
                np.rint(y * a_y).astype(np.uint16),
                np.rint(u_half * a_uv).astype(np.uint16),
                np.rint(v_half * a_uv).astype(np.uint16),
            ),
            ((256 - a_y).astype(np.uint16), (256 - a_uv).astype(np.uint16)),
            opaque,  # type: ignore[arg-type]
        )

    @classmethod
    def from_grey(cls, grey: np.ndarray) -> Tile:
        """A wholly opaque grey picture from an ``h x w`` uint8 array (0 black, 255 white).

        Several times cheaper to make than :meth:`from_rgba` (integers, no chroma to
        average): for text rendered anew often, such as captions. Even-sized only.
        """
        if grey.ndim != 2 or grey.dtype != np.uint8 or grey.shape[0] % 2 or grey.shape[1] % 2:
            raise ValueError("a grey tile is made from an even-sized h x w uint8 array")
        h, w = grey.shape
        # BT.601 limited range, as rgb_to_yuv: grey has luma 16..235 and neutral chroma.
        y = _GREY_LUMA[grey]
        u = np.full((h // 2, w // 2), 128, np.uint8)
        v = u.copy()
        premultiplied = (
            y.astype(np.uint16) << 8,
            u.astype(np.uint16) << 8,
            v.astype(np.uint16) << 8,
        )
        transparency = (np.zeros((h, w), np.uint16), np.zeros((h // 2, w // 2), np.uint16))
        return cls(w, h, premultiplied, transparency, (y, u, v))


_GREY_LUMA = np.array([round(16 + 219 * i / 255) for i in range(256)], np.uint8)


@dataclass(frozen=True)
class Stamp:
    """A tile or a colour prepared for one place of one canvas: drawn each frame cheaply.

    The canvas views, the visible part of the tile and the buffers the covered
    pixels are saved in are all made once (:meth:`Canvas.prepare` and
    :meth:`Canvas.prepare_fill`); drawing it is then a few copies.
    """

    views: tuple[np.ndarray, np.ndarray, np.ndarray]  # of the canvas
    saved: tuple[np.ndarray, np.ndarray, np.ndarray]  # what the views held before
    sources: tuple[np.ndarray | int, ...]  # opaque planes, or one value per plane
    tile: Tile | None  # translucent: blended, with ``windows`` of it
    windows: tuple[tuple[slice, slice], tuple[slice, slice]] | None


class Canvas:
    """A composited frame that labels, marks and overlays draw on.

    Only the drawing methods change pixels, and each first saves what it
    covers; :meth:`restore` undoes every drawing since the last restore. An
    overlay that needs raw pixels takes them from :meth:`planes`, which saves
    the rectangle too. What is drawn at the same place every frame is best
    prepared once as a :class:`Stamp`. Not thread-safe: the view's video thread
    owns it.
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
        self._drawn: list[Stamp] = []

    def clip(self, rect: Rect) -> Rect | None:
        """``rect`` widened to even edges and cut to the canvas; None if nothing is left."""
        x, y, w, h = rect
        x0, y0 = max(0, x - x % 2), max(0, y - y % 2)
        x1 = min(self.width, x + w + (x + w) % 2)
        y1 = min(self.height, y + h + (y + h) % 2)
        if x1 <= x0 or y1 <= y0:
            return None
        return x0, y0, x1 - x0, y1 - y0

    def _views(self, rect: Rect) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x, y, w, h = rect
        return (
            self._y[y : y + h, x : x + w],
            self._u[y // 2 : (y + h) // 2, x // 2 : (x + w) // 2],
            self._v[y // 2 : (y + h) // 2, x // 2 : (x + w) // 2],
        )

    def prepare(self, tile: Tile, x: int, y: int) -> Stamp | None:
        """``tile`` with its top-left corner at ``x, y`` (made even), for :meth:`stamp`.

        None when none of it is on the canvas.
        """
        x, y = x - x % 2, y - y % 2
        clipped = self.clip((x, y, tile.width, tile.height))
        if clipped is None:
            return None
        cx, cy, w, h = clipped
        ox, oy = cx - x, cy - y  # where the visible part starts in the tile
        views = self._views(clipped)
        windows = (
            (slice(oy, oy + h), slice(ox, ox + w)),
            (slice(oy // 2, (oy + h) // 2), slice(ox // 2, (ox + w) // 2)),
        )
        saved = (views[0].copy(), views[1].copy(), views[2].copy())
        if tile.opaque is not None:
            sources = tuple(
                np.ascontiguousarray(plane[windows[0 if i == 0 else 1]])
                for i, plane in enumerate(tile.opaque)
            )
            return Stamp(views, saved, sources, None, None)
        return Stamp(views, saved, (), tile, windows)

    def prepare_fill(self, rect: Rect, rgb: tuple[int, int, int]) -> Stamp | None:
        """``rect`` (see :meth:`clip`) in one opaque colour, for :meth:`stamp`."""
        clipped = self.clip(rect)
        if clipped is None:
            return None
        views = self._views(clipped)
        saved = (views[0].copy(), views[1].copy(), views[2].copy())
        return Stamp(views, saved, rgb_to_yuv(rgb), None, None)

    def stamp(self, stamp: Stamp) -> None:
        """Draw a prepared stamp (of this canvas), saving what it covers."""
        for view, saved in zip(stamp.views, stamp.saved, strict=True):
            np.copyto(saved, view)
        self._drawn.append(stamp)
        tile = stamp.tile
        if tile is None:
            for view, source in zip(stamp.views, stamp.sources, strict=True):
                np.copyto(view, source)
            return
        assert stamp.windows is not None
        for index, view in enumerate(stamp.views):
            window = stamp.windows[0 if index == 0 else 1]
            inverse = tile.transparency[0 if index == 0 else 1][window]
            mixed = view * inverse
            mixed += tile.premultiplied[index][window]
            mixed >>= 8
            view[...] = mixed

    def planes(self, rect: Rect) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Writable Y, U, V views of ``rect`` (see :meth:`clip`), saved for :meth:`restore`."""
        clipped = self.clip(rect)
        if clipped is None:
            return None
        views = self._views(clipped)
        saved = (views[0].copy(), views[1].copy(), views[2].copy())
        self._drawn.append(Stamp(views, saved, (), None, None))
        return views

    def fill(self, rect: Rect, rgb: tuple[int, int, int]) -> None:
        """Paint ``rect`` in one opaque colour."""
        stamp = self.prepare_fill(rect, rgb)
        if stamp is not None:
            self.stamp(stamp)

    def frame(self, rect: Rect, thickness: int, rgb: tuple[int, int, int]) -> None:
        """A border ``thickness`` pixels wide just inside ``rect``."""
        for stamp in self.prepare_frame(rect, thickness, rgb):
            self.stamp(stamp)

    def prepare_frame(self, rect: Rect, thickness: int, rgb: tuple[int, int, int]) -> list[Stamp]:
        """The four stamps of :meth:`frame`."""
        x, y, w, h = rect
        t = max(2, thickness)
        sides: list[Rect] = [
            (x, y, w, t),
            (x, y + h - t, w, t),
            (x, y + t, t, h - 2 * t),
            (x + w - t, y + t, t, h - 2 * t),
        ]
        return [s for side in sides if (s := self.prepare_fill(side, rgb)) is not None]

    def blend(self, tile: Tile, x: int, y: int) -> None:
        """Draw ``tile`` with its transparency, its top-left corner at ``x, y`` (made even).

        The part of the tile outside the canvas is not drawn.
        """
        stamp = self.prepare(tile, x, y)
        if stamp is not None:
            self.stamp(stamp)

    def restore(self) -> None:
        """Put back every pixel drawn over since the last restore (newest first)."""
        for stamp in reversed(self._drawn):
            for view, saved in zip(stamp.views, stamp.saved, strict=True):
                np.copyto(view, saved)
        self._drawn.clear()

"""VideoCompositor: draws a view's regions into one preallocated yuv420p canvas."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import av
import numpy as np
from av.video.reformatter import Interpolation, VideoReformatter

from .avatar import render_avatar
from .canvas import Canvas, rgb_to_yuv
from .decorations import Decorated, Decorations
from .layout import Region, place, region_rect
from .overlay import OverlayRunner

__all__ = ["InputPicture", "VideoCompositor", "rgb_to_yuv"]

Rect = tuple[int, int, int, int]

# Resolved once: an enum member's value is a descriptor lookup on every call.
_BILINEAR = int(Interpolation.BILINEAR)


# An avatar tile: its Y, U and V planes.
_Tile = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass
class InputPicture:
    """What the compositor knows of one input of a view.

    `frame` is replaced by the event loop thread as frames arrive and read by
    the compositor thread; swapping one reference is atomic in CPython, and a
    frame is never modified after it is published here.
    """

    stream_id: str
    user: str
    frame: av.VideoFrame | None = None
    frame_time: float = 0.0  # time.monotonic() when `frame` arrived
    video_active: bool = True  # False while the publisher has paused video
    has_video: bool = True  # False for audio-only publications
    muted: bool = False  # its audio is paused (the publisher muted the microphone)
    screen: bool = False  # a screen share: always letterboxed, its edges are content


@dataclass
class _Drawn:
    source: object
    rect: Rect
    plan: _Plan | None  # of a frame: its bars are there


@dataclass(frozen=True)
class _Plan:
    """How one input size lands in one rect: computed once, reused every frame."""

    width: int  # the size to scale the input to
    height: int
    letterbox: bool  # the picture leaves bars to fill
    empty: bool  # nothing of it is visible
    targets: tuple[np.ndarray, ...]  # Y, U, V views into the canvas
    windows: tuple[tuple[slice, slice], ...]  # what of each scaled plane lands there


class VideoCompositor:
    """Composites a view into one canvas, redrawing only regions whose picture changed.

    Each input keeps one scaler across frames (MEDIA-NOTES: a scaler per frame
    costs ~60% more). A region shows its input's newest frame; an input
    without video, paused, or whose frames stopped for `frame_timeout`
    seconds shows its avatar instead. Regions are drawn in list order, so
    overlapping regions are deterministic (later regions on top). Then
    `decorations` (labels, marks) and `overlays` draw on top; what they drew
    is put back at the start of the next compose (see `canvas.py`).
    Not thread-safe: one view thread calls `compose`.
    """

    def __init__(
        self,
        width: int,
        height: int,
        *,
        background: tuple[int, int, int] = (0, 0, 0),
        fit_policy: str = "letterbox",
        frame_timeout: float = 2.0,
        decorations: Decorations | None = None,
        overlays: OverlayRunner | None = None,
    ) -> None:
        self.width = width
        self.height = height
        self.fit_policy = fit_policy
        self.frame_timeout = frame_timeout
        self.background = rgb_to_yuv(background)
        # One contiguous yuv420p buffer; the planes are views into it.
        self.canvas = np.empty((height * 3 // 2, width), np.uint8)
        self._y = self.canvas[:height]
        quarter = height // 4
        self._u = self.canvas[height : height + quarter].reshape(height // 2, width // 2)
        self._v = self.canvas[height + quarter :].reshape(height // 2, width // 2)
        self.surface = Canvas(self.canvas, width, height)
        self.decorations = decorations if decorations is not None and decorations.active else None
        self.overlays = overlays
        self._scalers: dict[str, VideoReformatter] = {}
        # yuv420p avatar tiles by (stream id, user, width, height), kept while the input
        # is here: per view and pruned, since every publication has its own stream id.
        self._avatars: dict[tuple[str, str, int, int], _Tile] = {}
        self._drawn: dict[str, _Drawn] = {}
        # Geometry is exact fraction arithmetic: worth computing once, not per frame.
        self._rects: dict[object, Rect] = {}
        self._plans: dict[tuple[int, int, Rect, str], _Plan] = {}
        self._layout_version = -1
        self._inputs: dict[str, InputPicture] | None = None
        self._assignments: Sequence[tuple[Region, str | None]] = ()
        self._geometry: list[tuple[Rect, tuple[int, ...]]] = []
        self.redrawn_regions = 0
        self._fill((0, 0, width, height))

    def compose(
        self,
        assignments: Sequence[tuple[Region, str | None]],
        inputs: dict[str, InputPicture],
        layout_version: int,
        now: float,
        speaking: str | None = None,
    ) -> np.ndarray:
        """Bring the canvas up to date and return it (the caller copies it before encoding).

        ``speaking``: the input the audio mixer hears speaking now (its border).
        """
        # What labels and overlays drew over the last frame goes first: the regions
        # below are redrawn only when their picture changed.
        self.surface.restore()
        if layout_version != self._layout_version:
            self._layout_version = layout_version
            self._drawn.clear()
            self._avatars.clear()  # tiles are per region size
            self._fill((0, 0, self.width, self.height))
        if assignments is not self._assignments:
            self._assignments = assignments
            self._geometry = self._geometry_of(assignments)
        redrawn = [False] * len(assignments)
        for index, (region, stream_id) in enumerate(assignments):
            rect, below = self._geometry[index]
            picture = inputs.get(stream_id) if stream_id is not None else None
            source = self._source_of(picture, now)
            drawn = self._drawn.get(region.id)
            # An earlier region drawn over this one this tick: draw it again, bars included.
            covered = any(redrawn[i] for i in below) if below else False
            if drawn is None or drawn.rect != rect:
                drawn = None
            elif not covered and _same(drawn.source, source):
                continue
            plan = self._draw(
                rect, picture, source, None if covered or drawn is None else drawn.plan
            )
            self._drawn[region.id] = _Drawn(source, rect, plan)
            redrawn[index] = True
            self.redrawn_regions += 1
        if inputs is not self._inputs:
            # The view replaces its inputs (never mutates them) when one comes or goes: only
            # the current inputs' scalers and avatar tiles are kept (the soak found tiles
            # piling up).
            self._inputs = inputs
            for stream_id in [s for s in self._scalers if s not in inputs]:
                del self._scalers[stream_id]
            for key in [k for k in self._avatars if k[0] not in inputs]:
                del self._avatars[key]
        if self.decorations is not None:
            self.decorations.draw(self.surface, self._decorated(assignments, inputs), speaking, now)
        if self.overlays is not None:
            self.overlays.draw(self.surface, now)
        return self.canvas

    def _decorated(
        self, assignments: Sequence[tuple[Region, str | None]], inputs: dict[str, InputPicture]
    ) -> list[Decorated]:
        result = []
        for index, (_, stream_id) in enumerate(assignments):
            picture = inputs.get(stream_id) if stream_id is not None else None
            rect = self._geometry[index][0]
            if picture is not None and rect[2] > 0 and rect[3] > 0:
                result.append(Decorated(rect, picture.stream_id, picture.user, picture.muted))
        return result

    def _geometry_of(
        self, assignments: Sequence[tuple[Region, str | None]]
    ) -> list[tuple[Rect, tuple[int, ...]]]:
        """Each region's rect and the earlier regions overlapping it (once per layout)."""
        rects = []
        for region, _ in assignments:
            rect = self._rects.get(region.area)
            if rect is None:
                rect = self._rects[region.area] = region_rect(region.area, self.width, self.height)
            rects.append(rect)
        return [
            (rect, tuple(i for i in range(index) if _overlap(rects[i], rect)))
            for index, rect in enumerate(rects)
        ]

    def _source_of(self, picture: InputPicture | None, now: float) -> object:
        if picture is None:
            return None
        frame = picture.frame
        fresh = frame is not None and now - picture.frame_time <= self.frame_timeout
        if picture.has_video and picture.video_active and fresh:
            return frame
        return ("avatar", picture.user, picture.stream_id)

    def _draw(
        self,
        rect: Rect,
        picture: InputPicture | None,
        source: object,
        previous: _Plan | None,
    ) -> _Plan | None:
        """Draw a region; returns the plan of a drawn frame (its bars stay as they are)."""
        if picture is None or source is None:
            self._fill(rect)
        elif isinstance(source, av.VideoFrame):
            return self._draw_frame(rect, picture.stream_id, source, previous, picture.screen)
        else:
            self._draw_avatar(rect, picture)
        return None

    def _draw_frame(
        self,
        rect: Rect,
        stream_id: str,
        frame: av.VideoFrame,
        previous: _Plan | None,
        screen: bool,
    ) -> _Plan:
        fit = "letterbox" if screen else self.fit_policy
        key = (frame.width, frame.height, rect, fit)
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) > 1024:
                self._plans.clear()
            plan = self._plans[key] = self._plan(frame.width, frame.height, rect, fit)
        if plan.letterbox and plan is not previous:
            # Bars; a picture that covers the rect needs none, and the next frame
            # of the same size leaves them as they are.
            self._fill(rect)
        if plan.empty:
            return plan
        scaler = self._scalers.get(stream_id)
        if scaler is None:
            scaler = self._scalers[stream_id] = VideoReformatter()
        # swscale would split each small scale across cores; the views' and encoders' own
        # threads already use them.
        scaled = scaler.reformat(
            frame, plan.width, plan.height, "yuv420p", interpolation=_BILINEAR, threads=1
        )
        # The windows lie inside each plane's rows: the padding rows and bytes
        # of the scaled frame's buffer are never read.
        for target, plane, window in zip(plan.targets, scaled.planes, plan.windows, strict=True):
            source = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)  # type: ignore[call-overload]
            np.copyto(target, source[window])
        return plan

    def _plan(self, frame_w: int, frame_h: int, rect: Rect, fit: str) -> _Plan:
        """Scale size, and where each plane of the scaled picture lands (computed once)."""
        placement = place(frame_w, frame_h, rect, fit)
        cx, cy, cw, ch = placement.crop
        w, h = placement.size
        # Scale so that the placement's crop lands at its size, then copy its window.
        full_w = _even(frame_w * w / cw)
        full_h = _even(frame_h * h / ch)
        ox = min(_even(cx * w / cw), max(0, full_w - w))
        oy = min(_even(cy * h / ch), max(0, full_h - h))
        dx, dy = placement.dest
        w = min(w, self.width - dx, full_w - ox)
        h = min(h, self.height - dy, full_h - oy)
        letterbox = placement.size != (rect[2], rect[3])
        if w <= 0 or h <= 0:
            return _Plan(full_w, full_h, letterbox, True, (), ())
        hx, hy, hw, hh = dx // 2, dy // 2, w // 2, h // 2
        ux, uy = ox // 2, oy // 2
        return _Plan(
            full_w,
            full_h,
            letterbox,
            False,
            (
                self._y[dy : dy + h, dx : dx + w],
                self._u[hy : hy + hh, hx : hx + hw],
                self._v[hy : hy + hh, hx : hx + hw],
            ),
            (
                (slice(oy, oy + h), slice(ox, ox + w)),
                (slice(uy, uy + hh), slice(ux, ux + hw)),
                (slice(uy, uy + hh), slice(ux, ux + hw)),
            ),
        )

    def _draw_avatar(self, rect: Rect, picture: InputPicture) -> None:
        x, y, w, h = rect
        key = (picture.stream_id, picture.user, w, h)
        tile = self._avatars.get(key)
        if tile is None:
            tile = self._avatars[key] = _avatar_yuv(picture.user, picture.stream_id, w, h)
        self._y[y : y + h, x : x + w] = tile[0]
        self._u[y // 2 : (y + h) // 2, x // 2 : (x + w) // 2] = tile[1]
        self._v[y // 2 : (y + h) // 2, x // 2 : (x + w) // 2] = tile[2]

    def _fill(self, rect: Rect) -> None:
        x, y, w, h = rect
        yy, uu, vv = self.background
        self._y[y : y + h, x : x + w] = yy
        self._u[y // 2 : (y + h) // 2, x // 2 : (x + w) // 2] = uu
        self._v[y // 2 : (y + h) // 2, x // 2 : (x + w) // 2] = vv


def _plane(frame: av.VideoFrame, index: int) -> np.ndarray:
    plane = frame.planes[index]
    rows = frame.height if index == 0 else (frame.height + 1) // 2
    data: np.ndarray = np.frombuffer(memoryview(plane), np.uint8).reshape(-1, plane.line_size)
    return data[:rows]


def _avatar_yuv(user: str, key: str, w: int, h: int) -> _Tile:
    rgb = render_avatar(user, key, w, h)
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    yuv = frame.reformat(format="yuv420p")
    return (
        _plane(yuv, 0)[:h, :w].copy(),
        _plane(yuv, 1)[: h // 2, : w // 2].copy(),
        _plane(yuv, 2)[: h // 2, : w // 2].copy(),
    )


def _same(a: object, b: object) -> bool:
    # Frames are compared by identity (a new frame is a new picture), avatars by value.
    if isinstance(a, av.VideoFrame) or isinstance(b, av.VideoFrame):
        return a is b
    return a == b


def _even(value: float) -> int:
    return max(2, round(value / 2) * 2)


def _overlap(a: Rect, b: Rect) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]

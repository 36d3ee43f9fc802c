"""Overlays: Python code that draws on a view's composited frame, within a CPU budget.

The hook
--------
An overlay is any class with a ``draw(canvas, now)`` method (:class:`Overlay`).
A view calls it on its video thread for every frame, after the pictures,
labels and marks are drawn and before the frame is encoded. ``canvas`` is a
:class:`~tessera.mixer.canvas.Canvas` (``width``, ``height``, ``fill``,
``frame``, ``blend`` a :class:`~tessera.mixer.canvas.Tile`, ``planes`` for raw
Y/U/V access); ``now`` is ``time.monotonic()`` of the frame. Whatever it draws
is undone before the next frame is composed, so it draws every frame; make
anything expensive (text, images) once, as a Tile, and only blend it in
``draw``. ``draw`` must not block, and must not touch the event loop.

A view names its overlays in its options::

    "video": {"overlays": [{"overlay": "tessera.mixer.clockoverlay:ClockOverlay",
                            "options": {"position": "top-right"}}]}

The class is built as ``Class(**options)`` when the view starts drawing. Only
classes the server allows are loaded (a room's options come from the REST API:
naming any importable class would let a caller run code):
``[mixer] overlays`` of the server's configuration lists the allowed
``module:Class`` names, besides the example clock that is always allowed.

The budget
----------
Each overlay's ``draw`` is timed (thread CPU time). One that took longer than
the view's budget (``video.overlayBudgetMs``, default 2 ms) is skipped for as
many following frames as it overran (doubling on each overrun in a row, at
most ``MAX_SKIP`` frames), so on average it never takes more than its budget
and the view keeps its frame rate. One that raises is skipped the same way.
Both are logged, at most once per ``LOG_INTERVAL`` seconds per overlay.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import math
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from .canvas import Canvas

__all__ = [
    "EXAMPLE_OVERLAY",
    "LOG_INTERVAL",
    "MAX_SKIP",
    "Overlay",
    "OverlayError",
    "OverlayRunner",
    "allow_overlays",
    "allowed_overlays",
    "check_overlay",
    "load_overlay",
]

logger = logging.getLogger(__name__)

EXAMPLE_OVERLAY = "tessera.mixer.clockoverlay:ClockOverlay"
MAX_SKIP = 300  # frames: 10 s at 30 fps
LOG_INTERVAL = 10.0  # seconds between two log lines about the same overlay

_SPEC = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")
_allowed: set[str] = {EXAMPLE_OVERLAY}


@runtime_checkable
class Overlay(Protocol):
    """What a view calls on each frame: draw on ``canvas`` (see the module's docstring)."""

    def draw(self, canvas: Canvas, now: float) -> None: ...


class OverlayError(ValueError):
    """An overlay that cannot be loaded; the message names it and why."""


def allow_overlays(specs: Iterable[str]) -> None:
    """Allow these ``module:Class`` overlays in views (the server's ``[mixer] overlays``)."""
    for spec in specs:
        if not _SPEC.match(spec):
            raise OverlayError(f"overlay {spec!r} is not a 'module:Class' name")
        _allowed.add(spec)


def allowed_overlays() -> frozenset[str]:
    """The ``module:Class`` names views may use in this process."""
    return frozenset(_allowed)


def _class_of(spec: str) -> type:
    if not _SPEC.match(spec):
        raise OverlayError(f"overlay {spec!r} is not a 'module:Class' name")
    if spec not in _allowed:
        raise OverlayError(
            f"overlay {spec} is not allowed on this server (its [mixer] overlays setting)"
        )
    module_name, class_name = spec.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise OverlayError(f"overlay {spec}: cannot import {module_name}: {exc}") from None
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type) or not callable(getattr(cls, "draw", None)):
        raise OverlayError(f"overlay {spec} is not a class with a draw(canvas, now) method")
    return cls


def check_overlay(spec: str, options: Mapping[str, Any]) -> None:
    """Raise OverlayError unless ``spec`` is allowed, loads, and takes ``options``.

    Checked where a view's options are validated, so that a room with a wrong
    overlay is refused at once; nothing is built here.
    """
    cls = _class_of(spec)
    try:
        inspect.signature(cls).bind(**options)
    except TypeError as exc:
        raise OverlayError(f"overlay {spec}: options do not fit: {exc}") from None


def load_overlay(spec: str, options: Mapping[str, Any]) -> Overlay:
    """Build the overlay ``spec`` names with ``options``; OverlayError if it cannot be."""
    cls = _class_of(spec)
    try:
        overlay = cls(**options)
    except Exception as exc:  # its constructor is someone else's code: say what it raised
        raise OverlayError(f"overlay {spec}: {type(exc).__name__}: {exc}") from None
    if not isinstance(overlay, Overlay):
        raise OverlayError(f"overlay {spec} has no draw(canvas, now) method")
    return overlay


@dataclass
class _Entry:
    name: str
    overlay: Overlay
    skip: int = 0  # frames still to skip
    penalty: int = 0  # frames the last overrun cost; doubles on overruns in a row
    last_log: float = -math.inf
    overruns: int = 0
    errors: int = 0
    drawn: int = 0
    skipped: int = 0


@dataclass
class OverlayRunner:
    """Draws a view's overlays on each frame, each within ``budget`` seconds of CPU.

    See the module's docstring for the rule. ``clock`` is the thread CPU clock
    (a test may pass another). Not thread-safe: the view's video thread owns it.
    """

    overlays: Sequence[tuple[str, Overlay]]
    budget: float = 0.002
    log_ids: Mapping[str, str] = field(default_factory=dict)
    clock: Any = time.thread_time

    def __post_init__(self) -> None:
        self._entries = [_Entry(name, overlay) for name, overlay in self.overlays]

    def draw(self, canvas: Canvas, now: float) -> None:
        """Run each overlay that is not being skipped."""
        for entry in self._entries:
            if entry.skip > 0:
                entry.skip -= 1
                entry.skipped += 1
                continue
            started = self.clock()
            try:
                entry.overlay.draw(canvas, now)
            except Exception as exc:
                entry.errors += 1
                self._penalise(entry, 1, now, f"raised {type(exc).__name__}: {exc}")
                continue
            spent = self.clock() - started
            entry.drawn += 1
            if spent > self.budget:
                entry.overruns += 1
                over = math.ceil(spent / self.budget) - 1
                self._penalise(
                    entry, over, now, f"took {spent * 1000:.1f} ms (budget {self.budget * 1000:g})"
                )
            else:
                entry.penalty = 0

    def _penalise(self, entry: _Entry, frames: int, now: float, why: str) -> None:
        # Skipping as many frames as the overrun cost keeps the average within budget;
        # doubling on overruns in a row stops an overlay that is always slow from costing
        # a frame's worth every other frame.
        entry.penalty = min(MAX_SKIP, max(frames, entry.penalty * 2, 1))
        entry.skip = entry.penalty
        if now - entry.last_log >= LOG_INTERVAL:
            entry.last_log = now
            logger.warning(
                "overlay %s %s: skipped for %d frames (%d overruns, %d errors so far)",
                entry.name,
                why,
                entry.skip,
                entry.overruns,
                entry.errors,
                extra=dict(self.log_ids),
            )

    def counts(self) -> dict[str, dict[str, int]]:
        """Per overlay: frames drawn, skipped, overruns and errors (for stats and tests)."""
        return {
            e.name: {
                "drawn": e.drawn,
                "skipped": e.skipped,
                "overruns": e.overruns,
                "errors": e.errors,
            }
            for e in self._entries
        }

"""Captions burnt into a view: an overlay on the composited canvas, taken off again."""

from __future__ import annotations

import numpy as np

from tessera.captions.caption import Caption
from tessera.mixer.canvas import Canvas
from tessera.mixer.captionoverlay import HOLD, CaptionOverlay
from tessera.mixer.overlay import Overlay, OverlayRunner

W, H = 640, 360


def grey_canvas() -> np.ndarray:
    # yuv420p as the compositor keeps it: mid grey.
    canvas = np.empty((H * 3 // 2, W), np.uint8)
    canvas[:H] = 120
    canvas[H:] = 128
    return canvas


def caption(text: str, final: bool = False) -> Caption:
    return Caption("s-0", "s", "p", "Ada", "en-US", text, final, 10.0, 11.0)


def test_it_is_an_overlay_and_draws_nothing_without_a_caption() -> None:
    overlay = CaptionOverlay(W, H)
    assert isinstance(overlay, Overlay)
    buffer = grey_canvas()
    overlay.draw(Canvas(buffer, W, H), now=0.0)
    assert (buffer == grey_canvas()).all()
    assert overlay.rendered == 0


def test_the_caption_box_is_drawn_at_the_bottom_and_taken_off_by_the_canvas() -> None:
    overlay = CaptionOverlay(W, H)
    overlay.show(caption("we will meet at the office tomorrow"), now=100.0)
    buffer = grey_canvas()
    canvas = Canvas(buffer, W, H)
    overlay.draw(canvas, now=100.5)
    luma = buffer[:H]
    changed = np.argwhere(luma != 120)
    top, left = changed.min(axis=0)
    bottom, right = changed.max(axis=0)
    # A box in the bottom fifth, centred, with white text on black.
    assert top > H * 0.8 and bottom < H
    assert abs((left + right) / 2 - W / 2) < 4
    box = luma[top : bottom + 1, left : right + 1]
    assert (box < 30).mean() > 0.5 and (box > 200).sum() > 100
    assert overlay.rendered == 1
    canvas.restore()
    assert (buffer == grey_canvas()).all()
    # The same caption again: drawn from the tile rendered before.
    overlay.draw(canvas, now=101.0)
    assert (buffer != grey_canvas()).any()
    canvas.restore()
    assert overlay.rendered == 1


def test_a_caption_is_held_then_goes_and_a_new_one_replaces_it() -> None:
    overlay = CaptionOverlay(W, H)
    overlay.show(caption("first words", final=True), now=100.0)
    buffer = grey_canvas()
    canvas = Canvas(buffer, W, H)
    assert overlay.showing(100.0 + HOLD - 0.1) == "Ada: first words"
    overlay.draw(canvas, now=100.0 + HOLD - 0.1)
    assert (buffer != grey_canvas()).any()
    canvas.restore()
    assert overlay.showing(100.0 + HOLD) is None
    overlay.draw(canvas, now=100.0 + HOLD)
    assert (buffer == grey_canvas()).all()
    overlay.show(caption("then more " * 30), now=200.0)  # long: the last two lines
    overlay.draw(canvas, now=200.1)
    assert overlay.rendered == 2
    canvas.restore()
    assert (buffer == grey_canvas()).all()
    overlay.show(caption("   "), now=300.0)  # nothing to say: nothing shown
    assert overlay.showing(300.1) is None


def test_the_captions_run_within_the_overlay_budget() -> None:
    # A clock that makes every draw cost 10 budgets: the runner skips the captions
    # for the frames the overrun cost, as it does any overlay.
    spent = iter(range(0, 10_000, 10))
    overlay = CaptionOverlay(W, H)
    overlay.show(caption("hello there"), now=0.0)
    runner = OverlayRunner([("captions", overlay)], budget=1.0, clock=lambda: next(spent))
    buffer = grey_canvas()
    canvas = Canvas(buffer, W, H)
    for frame in range(20):
        runner.draw(canvas, now=frame / 30)
        canvas.restore()
    counts = runner.counts()["captions"]
    assert counts["overruns"] >= 1 and counts["skipped"] > counts["drawn"]
    assert overlay.rendered == 1

"""Captions burnt into a view: drawn on the composited canvas and taken off again."""

from __future__ import annotations

import numpy as np

from tessera.captions.caption import Caption
from tessera.mixer.captionoverlay import HOLD, CaptionOverlay

W, H = 640, 360


def grey_canvas() -> np.ndarray:
    # yuv420p as the compositor keeps it: mid grey.
    canvas = np.empty((H * 3 // 2, W), np.uint8)
    canvas[:H] = 120
    canvas[H:] = 128
    return canvas


def caption(text: str, final: bool = False) -> Caption:
    return Caption("s-0", "s", "p", "Ada", "en-US", text, final, 10.0, 11.0)


def test_nothing_is_drawn_without_a_caption() -> None:
    overlay = CaptionOverlay(W, H)
    canvas = grey_canvas()
    assert not overlay.draw(canvas, now=0.0)
    assert (canvas == grey_canvas()).all()


def test_the_caption_box_is_drawn_at_the_bottom_and_taken_off_after_encoding() -> None:
    overlay = CaptionOverlay(W, H)
    overlay.show(caption("we will meet at the office tomorrow"), now=100.0)
    canvas = grey_canvas()
    assert overlay.draw(canvas, now=100.5)
    luma = canvas[:H]
    changed = np.argwhere(luma != 120)
    top, left = changed.min(axis=0)
    bottom, right = changed.max(axis=0)
    # A box in the bottom fifth, centred, with white text on black.
    assert top > H * 0.8 and bottom < H
    assert abs((left + right) / 2 - W / 2) < 4
    box = luma[top : bottom + 1, left : right + 1]
    assert (box < 30).mean() > 0.5 and (box > 200).sum() > 100
    assert overlay.rendered == 1
    overlay.undo(canvas)
    assert (canvas == grey_canvas()).all()
    # The same caption again: drawn from the tile rendered before.
    assert overlay.draw(canvas, now=101.0)
    overlay.undo(canvas)
    assert overlay.rendered == 1


def test_a_caption_is_held_then_goes_and_a_new_one_replaces_it() -> None:
    overlay = CaptionOverlay(W, H)
    overlay.show(caption("first words", final=True), now=100.0)
    canvas = grey_canvas()
    assert overlay.draw(canvas, now=100.0 + HOLD - 0.1)
    overlay.undo(canvas)
    assert not overlay.draw(canvas, now=100.0 + HOLD)
    overlay.show(caption("then more " * 30), now=200.0)  # long: the last two lines
    assert overlay.draw(canvas, now=200.1)
    assert overlay.rendered == 2
    overlay.undo(canvas)
    assert (canvas == grey_canvas()).all()
    overlay.show(caption("   "), now=300.0)  # nothing to say: nothing shown
    assert not overlay.draw(canvas, now=300.1)

"""Gallery and presentation region sets: pure geometry (mixer/layout.py)."""

from __future__ import annotations

from fractions import Fraction

import pytest

from tessera.mixer.layout import (
    STRIP_HEIGHT,
    Layout,
    LayoutTemplates,
    gallery_rows,
    gallery_template,
    presentation_template,
    region_rect,
)

WIDE = Fraction(16, 9)


def rects(template_regions: object, width: int, height: int) -> list[tuple[int, int, int, int]]:
    return [region_rect(r.area, width, height) for r in template_regions]  # type: ignore[attr-defined]


def overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def test_rows_fill_the_view_without_an_empty_quarter() -> None:
    assert gallery_rows(1, WIDE) == [1]
    assert gallery_rows(2, WIDE) == [2]  # side by side, as Meet and Jitsi do
    assert gallery_rows(3, WIDE) == [2, 1]  # not a 2x2 grid with a hole
    assert gallery_rows(4, WIDE) == [2, 2]
    assert gallery_rows(5, WIDE) == [3, 2]
    assert gallery_rows(7, WIDE) == [3, 2, 2]
    assert gallery_rows(9, WIDE) == [3, 3, 3]
    assert gallery_rows(25, WIDE) == [5, 5, 5, 5, 5]
    # A portrait view stacks instead.
    assert gallery_rows(2, Fraction(9, 16)) == [1, 1]
    with pytest.raises(ValueError):
        gallery_rows(0, WIDE)


@pytest.mark.parametrize("size", [(1280, 720), (640, 360), (320, 180), (720, 1280)])
def test_every_count_covers_at_least_90_percent_with_no_overlap(size: tuple[int, int]) -> None:
    width, height = size
    aspect = Fraction(width, height)
    for count in range(1, 26):
        template = gallery_template(count, aspect)
        assert [r.id for r in template.regions] == [str(i + 1) for i in range(count)]
        boxes = rects(template.regions, width, height)
        area = sum(w * h for _, _, w, h in boxes)
        assert area >= 0.9 * width * height, (count, area / (width * height))
        for i, a in enumerate(boxes):
            assert a[2] > 0 and a[3] > 0
            assert a[0] + a[2] <= width and a[1] + a[3] <= height
            assert not any(overlap(a, b) for b in boxes[i + 1 :]), (count, i)


def test_gutters_are_thin_and_tiles_of_a_row_are_equal() -> None:
    boxes = rects(gallery_template(3, WIDE).regions, 1280, 720)
    (x0, y0, w0, h0), (x1, _, w1, h1), (x2, y2, w2, h2) = boxes
    assert (x0, y0) == (0, 0) and w0 == w1 and h0 == h1 == h2
    assert 2 <= x1 - (x0 + w0) <= 6  # a gutter of a few pixels
    assert 2 <= y2 - (y0 + h0) <= 6
    assert (x2, w2) == (0, 1280) and y2 + h2 == 720  # the third spans the bottom row


def test_gallery_is_a_template_base_that_layouts_use_per_count() -> None:
    layout = Layout(LayoutTemplates("gallery", fit_policy="crop", aspect=WIDE), 25)
    for count in range(1, 26):
        layout.add(f"s{count}")
        assert len(layout.regions) == count  # never an empty region
    layout.remove("s3")
    assert len(layout.regions) == 24 and "s3" not in layout


def test_presentation_puts_the_share_above_a_strip() -> None:
    alone = presentation_template(1, WIDE)
    assert rects(alone.regions, 1280, 720) == [(0, 0, 1280, 720)]
    template = presentation_template(4, WIDE)
    assert template.primary == "1"
    share, *strip = rects(template.regions, 1280, 720)
    assert share[:3] == (0, 0, 1280) and share[3] >= 560
    strip_top = round(720 * (1 - STRIP_HEIGHT))
    for _, y, w, h in strip:
        assert y >= share[3] and abs(y - strip_top) <= 2 and h >= 140
        assert abs(w / h - 16 / 9) < 0.1  # up to five tiles keep a camera's shape
    # Three tiles centred under the share.
    left, right = strip[0][0], strip[-1][0] + strip[-1][2]
    assert abs(left - (1280 - right)) <= 4
    crowded = rects(presentation_template(20, WIDE).regions, 1280, 720)
    assert len(crowded) == 20 and crowded[-1][0] + crowded[-1][2] <= 1280

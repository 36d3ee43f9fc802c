"""Mixed-direction names: font runs put in visual order by the bidi rules (textrender)."""

from __future__ import annotations

import numpy as np
import pytest

from tessera.mixer.textrender import default_renderer, visual_order
from tests.unit.test_labels import needs_noto


@pytest.mark.parametrize(
    ("directions", "paragraph", "expected"),
    [
        # One direction: logical order, or reversed.
        (["ltr", None, "ltr"], "ltr", [(0, "ltr"), (1, "ltr"), (2, "ltr")]),
        (["rtl", None, "rtl"], "rtl", [(2, "rtl"), (1, "rtl"), (0, "rtl")]),
        # A left-to-right phrase over three runs in a right-to-left name keeps its order
        # (the old two-level rule reversed it: "Smith 😀 John").
        (["rtl", "ltr", None, "ltr"], "rtl", [(1, "ltr"), (2, "ltr"), (3, "ltr"), (0, "rtl")]),
        # And a right-to-left phrase in a left-to-right name reads right to left.
        (
            ["ltr", "rtl", None, None, "rtl"],
            "ltr",
            [(0, "ltr"), (4, "rtl"), (3, "rtl"), (2, "rtl"), (1, "rtl")],
        ),
        # A neutral run between runs of two directions takes the paragraph's (N2).
        (["rtl", None, "ltr"], "rtl", [(2, "ltr"), (1, "rtl"), (0, "rtl")]),
        (["ltr", None, "rtl"], "ltr", [(0, "ltr"), (1, "ltr"), (2, "rtl")]),
        # At the ends, the paragraph's direction stands in for the missing neighbour.
        ([None, "rtl"], "ltr", [(0, "ltr"), (1, "rtl")]),
        ([None], "rtl", [(0, "rtl")]),
        ([], "ltr", []),
    ],
)
def test_runs_are_ordered_by_their_levels(
    directions: list[str | None], paragraph: str, expected: list[tuple[int, str]]
) -> None:
    assert visual_order(directions, paragraph) == expected


def alpha(text: str, size: int) -> np.ndarray:
    return np.asarray(default_renderer().render(text, size))[..., 3] > 110


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


@needs_noto
def test_a_latin_phrase_with_an_emoji_in_an_arabic_name_keeps_its_order() -> None:
    size = 30
    whole = alpha("محمد John 😀 Smith", size)
    phrase = alpha("John 😀 Smith", size)
    # Right to left: the Arabic word on the right, the Latin phrase as it is on its left.
    assert agreement(whole[:, : phrase.shape[1]], phrase) > 0.95
    arabic = alpha("محمد", size)
    right = whole[:, whole.shape[1] - arabic.shape[1] - size :]
    assert right[:, -arabic.shape[1] :].any()
    # What the old rule drew (the runs reversed one by one) is not what is drawn.
    reversed_runs = alpha(" Smith😀John ", size)
    width = min(reversed_runs.shape[1], phrase.shape[1])
    assert agreement(whole[:, :width], reversed_runs[:, :width]) < 0.6


@needs_noto
def test_an_arabic_phrase_with_an_emoji_in_a_latin_name_reads_right_to_left() -> None:
    size = 30
    whole = alpha("Ada محمد 😀 علي", size)
    phrase = alpha("محمد 😀 علي", size)
    assert agreement(whole[:, -phrase.shape[1] :], phrase) > 0.95

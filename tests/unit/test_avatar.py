"""Avatar tiles: initials, stable colours, and the rendered (cached) image."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from PIL import ImageFont

from tessera.mixer import avatar
from tessera.mixer.avatar import avatar_color, forget_avatars, initials, render_avatar


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Ada Lovelace", "AL"),
        ("bob", "B"),
        ("", "?"),
        ("   ", "?"),
        ("Augusta Ada King Lovelace", "AL"),  # first and last word, at most two
        ("émile zola", "ÉZ"),
        ("e\u0301mile", "É"),  # decomposed accent composes
        ("Łukasz Żuk", "ŁŻ"),
        ("Jean-Luc Picard", "JP"),
        ("Conan O'Brien", "CO"),
        ("ada.lovelace@example.com", "AL"),
        ("Ada Lovelace (guest)", "AL"),
        ("Сергей Брин", "СБ"),
        ("张伟", "张"),
        ("김 민준", "김민"),
        ("देवी", "दे"),  # a letter keeps its vowel sign
        ("🎉 🎉", "?"),
        ("straße", "S"),
        ("R2-D2", "RD"),
    ],
)
def test_initials(name: str, expected: str) -> None:
    assert initials(name) == expected


def test_initials_are_at_most_two_upper_case_letters() -> None:
    for name in ["a b c d", "x", "ünal özgür", "ωμέγα άλφα"]:
        result = initials(name)
        assert 1 <= len([c for c in result if c.isalpha()]) <= 2
        assert result == result.upper()


def test_colour_is_stable_and_distinct() -> None:
    assert avatar_color("participant-1") == avatar_color("participant-1")
    assert len({avatar_color(k) for k in ["alice", "bob", "carol", "dave", "erin"]}) == 5
    # Hues are spread by a hash, so two keys can land close (the birthday effect:
    # a name and initials tell them apart), but the palette is continuous.
    colours = {avatar_color(f"participant-{i}") for i in range(200)}
    assert len(colours) > 150
    # Pinned: the same on every machine and run (a salted hash() would not be).
    assert avatar_color("a") == (162, 130, 14)


def test_colours_are_never_dark_or_washed_out() -> None:
    for i in range(200):
        rgb = np.array(avatar_color(f"key-{i}"), float)
        assert all(0 <= v <= 255 for v in rgb)
        assert rgb.max() >= 120  # not near-black
        assert rgb.max() - rgb.min() >= 40  # a colour, not grey
        assert rgb.min() <= 200  # not near-white: white initials must read


def background_of(tile: npt.NDArray[np.uint8]) -> tuple[int, ...]:
    return tuple(int(v) for v in tile[0, 0])


def is_white(pixels: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
    white: npt.NDArray[np.bool_] = np.all(pixels >= 245, axis=-1)
    return white


def test_render_shape_dtype_and_colours() -> None:
    tile = render_avatar("Ada Lovelace", "stream-a", 320, 180)
    assert tile.shape == (180, 320, 3)
    assert tile.dtype == np.uint8
    assert background_of(tile) == avatar_color("stream-a")
    assert tile.mean() > 40  # not black
    centre = tile[60:120, 110:210]
    differs = (centre != np.array(background_of(tile))).any(axis=-1)
    assert differs.mean() > 0.9  # disc and initials cover the middle
    assert is_white(centre).sum() > 100  # the initials
    assert not is_white(tile[:, :40]).any()  # nothing white at the edge


def test_initials_are_centred() -> None:
    tile = render_avatar("Wm Mw", "k", 400, 200)
    ys, xs = np.nonzero(is_white(tile))
    assert abs(xs.mean() - 200) < 8
    assert abs(ys.mean() - 100) < 8


def test_different_names_draw_different_initials() -> None:
    a = render_avatar("Ada Lovelace", "same", 160, 90)
    b = render_avatar("Bob Builder", "same", 160, 90)
    assert background_of(a) == background_of(b)
    assert not np.array_equal(a, b)


def test_text_scales_with_the_tile() -> None:
    small = is_white(render_avatar("Ada Lovelace", "k", 160, 90)).sum()
    large = is_white(render_avatar("Ada Lovelace", "k", 640, 360)).sum()
    assert large > 8 * small > 0


def test_unrenderable_or_missing_name_gets_a_silhouette() -> None:
    for name in ["", "张伟", "Ωmega alpha"]:
        tile = render_avatar(name, "k2", 200, 200)
        assert is_white(tile[60:140, 60:140]).sum() > 500  # head and shoulders
    # Accented Latin is drawn through its base letter, not as a silhouette.
    accented = render_avatar("Émile Zola", "k3", 200, 200)
    plain = render_avatar("Emile Zola", "k3", 200, 200)
    np.testing.assert_array_equal(accented, plain)


def test_tiny_and_odd_tiles() -> None:
    for width, height in [(1, 1), (3, 2), (24, 14), (17, 301), (301, 17)]:
        tile = render_avatar("Ada Lovelace", "k", width, height)
        assert tile.shape == (height, width, 3)
    with pytest.raises(ValueError):
        render_avatar("Ada", "k", 0, 10)


def test_cache_returns_the_same_read_only_array() -> None:
    first = render_avatar("Ada Lovelace", "cached", 320, 180)
    assert render_avatar("Ada Lovelace", "cached", 320, 180) is first
    assert render_avatar(user_name="Ada Lovelace", key="cached", width=320, height=180) is first
    assert not first.flags.writeable
    with pytest.raises(ValueError):
        first[0, 0, 0] = 0


def test_forgotten_tiles_are_rendered_again_alike() -> None:
    first = render_avatar("Ada Lovelace", "forgotten", 320, 180)
    forget_avatars()
    again = render_avatar("Ada Lovelace", "forgotten", 320, 180)
    assert again is not first and np.array_equal(again, first)


def test_bitmap_font_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    # Pillow without FreeType gives its bitmap font: initials are scaled up, still white.
    monkeypatch.setattr(avatar, "_font", lambda size: ImageFont.load_default_imagefont())
    tile = render_avatar("Ada Lovelace", "bitmap-fallback", 320, 180)
    white = is_white(tile)
    assert white.sum() > 100
    ys, xs = np.nonzero(white)
    assert abs(xs.mean() - 160) < 12 and abs(ys.mean() - 90) < 12

"""The picture people expect, pixel by pixel: gallery coverage, name labels, marks, presentation.

Composited frames of synthetic inputs of known colour (no network, no encoder).
Labels are checked against reference renderings of the expected strings: the
text pixels in each region's label must match the reference, and not a
near-miss string, an unshaped rendering or a font without the glyphs.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from tessera.mixer.compositor import InputPicture, VideoCompositor
from tessera.mixer.decorations import (
    SPEAKER_COLOUR,
    Decorated,
    Decorations,
    LabelStyle,
    SpeakerHighlight,
    label_size,
)
from tessera.mixer.layout import Layout, LayoutTemplates, region_rect
from tessera.mixer.textrender import ELLIPSIS, MAX_TEXT, default_renderer, display_text

NOTO = Path("/usr/share/fonts/truetype/noto")
needs_noto = pytest.mark.skipif(
    not (NOTO / "NotoSansArabic-Regular.ttf").exists(),
    reason="Debian's fonts-noto-core/-cjk/-color-emoji are not installed (scripts/test.sh does)",
)
COLOURS = [(200, 60, 60), (60, 160, 60), (60, 60, 200), (180, 160, 40), (40, 160, 170)]
MAGENTA = (255, 0, 255)


def frame_of(rgb: tuple[int, int, int], width: int = 320, height: int = 240) -> av.VideoFrame:
    image = np.zeros((height, width, 3), np.uint8)
    image[:] = rgb
    return av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")


class Scene:
    """A gallery view of named inputs of solid colours, composited with decorations."""

    def __init__(
        self,
        names: list[str],
        *,
        size: tuple[int, int] = (640, 360),
        style: LabelStyle | None = None,
        base: str = "gallery",
        decorate: bool = True,
    ) -> None:
        self.width, self.height = size
        self.layout = Layout(
            LayoutTemplates(base, fit_policy="crop", aspect=Fraction(*size)), max_input=25
        )
        self.pictures: dict[str, InputPicture] = {}
        for i, name in enumerate(names):
            stream_id = f"s{i}"
            self.layout.add(stream_id)
            picture = InputPicture(stream_id=stream_id, user=name)
            picture.frame = frame_of(COLOURS[i % len(COLOURS)])
            picture.frame_time = 100.0
            self.pictures[stream_id] = picture
        self.decorations = Decorations(style or LabelStyle(), self.height) if decorate else None
        self.compositor = VideoCompositor(
            self.width,
            self.height,
            background=MAGENTA,
            fit_policy="crop",
            decorations=self.decorations,
        )

    def compose(self, speaking: str | None = None, now: float = 100.0) -> np.ndarray:
        """The composited canvas as a (height * 3 / 2, width) yuv420p array (a copy)."""
        for picture in self.pictures.values():
            picture.frame_time = now  # live cameras (a stale one shows its avatar)
        return self.compositor.compose(
            self.layout.assignments(), self.pictures, self.layout.version, now, speaking
        ).copy()

    def rect(self, stream_id: str) -> tuple[int, int, int, int]:
        region = next(r for r, s in self.layout.assignments() if s == stream_id)
        return region_rect(region.area, self.width, self.height)

    def label_box(self, stream_id: str) -> tuple[int, int, int, int]:
        """Where the label of ``stream_id`` is drawn: x, y, w, h."""
        assert self.decorations is not None
        picture = self.pictures[stream_id]
        rect = self.rect(stream_id)
        tile = self.decorations.label_tile(Decorated(rect, stream_id, picture.user, picture.muted))
        assert tile is not None
        x, y = self.decorations.label_position(rect, tile)
        return x, y, tile.width, tile.height


def rgb_of(canvas: np.ndarray) -> np.ndarray:
    return av.VideoFrame.from_numpy_buffer(canvas, format="yuv420p").to_ndarray(format="rgb24")


def text_mask(canvas: np.ndarray, scene: Scene, stream_id: str) -> np.ndarray:
    """Bright (text) pixels of a region's label, from where its text starts."""
    x, y, w, h = scene.label_box(stream_id)
    size = label_size(scene.height, scene.rect(stream_id)[3])
    pad = max(2, size // 4)
    luma = canvas[: scene.height][y + pad : y + h - pad, x + pad : x + w - pad]
    return luma > 140


def reference_mask(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGBA"))[..., 3] > 110


def agreement(found: np.ndarray, reference: np.ndarray) -> float:
    """Intersection over union of two text masks, aligned at their top-left corners."""
    h = max(found.shape[0], reference.shape[0])
    w = max(found.shape[1], reference.shape[1])
    a = np.zeros((h, w), bool)
    b = np.zeros((h, w), bool)
    a[: found.shape[0], : found.shape[1]] = found
    b[: reference.shape[0], : reference.shape[1]] = reference
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def label_text_size(scene: Scene, stream_id: str) -> int:
    return label_size(scene.height, scene.rect(stream_id)[3])


# --- the gallery ---------------------------------------------------------------------


@pytest.mark.parametrize("size", [(1280, 720), (640, 360)])
def test_cameras_cover_at_least_90_percent_for_every_count(size: tuple[int, int]) -> None:
    for count in range(1, 26):
        # 4:3 cameras in a 16:9 view: cropped to their tiles, no bars.
        scene = Scene([f"p{i}" for i in range(count)], size=size, decorate=False)
        rgb = rgb_of(scene.compose()).astype(int)
        background = np.all(np.abs(rgb - np.array(MAGENTA)) < 40, axis=2)
        covered = 1 - background.mean()
        assert covered >= 0.9, f"{count} cameras cover {covered:.1%} of {size}"


def test_three_people_share_the_frame_with_no_empty_quarter() -> None:
    scene = Scene(["A", "B", "C"], decorate=False)
    rgb = rgb_of(scene.compose()).astype(int)
    # The bottom-right quarter (OWT's fluid leaves it black) shows the third camera.
    assert np.all(np.abs(rgb[300, 560] - np.array(COLOURS[2])) < 30)


# --- name labels ---------------------------------------------------------------------


def test_each_region_is_labelled_with_its_participants_name() -> None:
    names = ["Ada Lovelace", "Grace Hopper", "Alan Turing", "Edsger Dijkstra"]
    scene = Scene(names)
    canvas = scene.compose()
    renderer = default_renderer()
    for i, name in enumerate(names):
        found = text_mask(canvas, scene, f"s{i}")
        size = label_text_size(scene, f"s{i}")
        right = agreement(found, reference_mask(renderer.render(name, size)))
        assert right > 0.85, (name, right)
        # Another participant's name does not match; a one-letter miss matches less well.
        other = names[(i + 1) % len(names)]
        wrong = agreement(found, reference_mask(renderer.render(other, size)))
        assert wrong < right - 0.3, (name, other, right, wrong)
        near = name.replace("a", "o")
        wrong = agreement(found, reference_mask(renderer.render(near, size)))
        assert wrong < right - 0.03, (name, near, right, wrong)
    # The label sits in the bottom-left corner of its own region.
    x, y, _w, h = scene.label_box("s3")
    rx, ry, rw, rh = scene.rect("s3")
    assert rx <= x < rx + rw // 4 and ry + rh // 2 < y and y + h <= ry + rh


def test_labels_are_readable_at_360p() -> None:
    scene = Scene(["Ada Lovelace"] * 9)
    size = label_text_size(scene, "s0")
    assert size >= 12
    found = text_mask(scene.compose(), scene, "s0")
    rows = np.flatnonzero(found.any(axis=1))
    assert rows[-1] - rows[0] >= 9  # cap height plus descender: a dozen pixels of text


@needs_noto
def test_an_arabic_name_is_shaped_right_to_left() -> None:
    name = "محمد علي"
    scene = Scene(["Ada", name])
    found = text_mask(scene.compose(), scene, "s1")
    size = label_text_size(scene, "s1")
    shaped = agreement(found, reference_mask(default_renderer().render(name, size)))
    # Pillow's basic layout draws the letters unjoined, left to right: not what we drew.
    font = ImageFont.truetype(
        str(NOTO / "NotoSansArabic-Regular.ttf"), size, layout_engine=ImageFont.Layout.BASIC
    )
    ascent, descent = font.getmetrics()
    unshaped = Image.new("RGBA", (round(font.getlength(name)) + 2, ascent + descent))
    ImageDraw.Draw(unshaped).text((0, ascent), name, font=font, anchor="ls", fill="white")
    assert shaped > 0.75 and agreement(found, reference_mask(unshaped)) < shaped - 0.25


@needs_noto
def test_a_cjk_name_is_drawn_with_cjk_glyphs_and_emoji_in_colour() -> None:
    name = "王小明"
    scene = Scene([name, "Zoë 🎉"])
    canvas = scene.compose()
    found = text_mask(canvas, scene, "s0")
    size = label_text_size(scene, "s0")
    drawn = agreement(found, reference_mask(default_renderer().render(name, size)))
    # Noto Sans alone has no CJK glyphs: its boxes ("tofu") are not what we drew.
    latin = ImageFont.truetype(str(NOTO / "NotoSans-Regular.ttf"), size)
    ascent, descent = latin.getmetrics()
    tofu = Image.new("RGBA", (round(latin.getlength(name)) + 2, ascent + descent))
    ImageDraw.Draw(tofu).text((0, ascent), name, font=latin, anchor="ls", fill="white")
    assert drawn > 0.75 and agreement(found, reference_mask(tofu)) < drawn - 0.25
    # The emoji is drawn in its colours (Noto Color Emoji), not as a white outline.
    x, y, w, h = scene.label_box("s1")
    label = rgb_of(canvas)[y : y + h, x : x + w].astype(int)
    saturation = label.max(axis=2) - label.min(axis=2)
    assert (saturation > 120).sum() > 20


def test_long_names_are_elided_to_their_region() -> None:
    name = "Bartholomew Featherstonehaugh-Smythe of Much Wenlock"
    scene = Scene([name] * 9)
    x, _, w, _ = scene.label_box("s0")
    rx, _, rw, _ = scene.rect("s0")
    assert x + w <= rx + rw  # inside its region
    size = label_text_size(scene, "s0")
    elided = default_renderer().elide(name, size, rw // 2)
    assert elided.endswith(ELLIPSIS) and name.startswith(elided[:-1])
    found = text_mask(scene.compose(), scene, "s0")
    assert agreement(found, reference_mask(default_renderer().render(name, size))) < 0.6


def test_labels_are_rendered_once_per_name_change_and_can_be_moved_or_switched_off() -> None:
    scene = Scene(["Ada", "Grace"])
    assert scene.decorations is not None
    for k in range(30):
        scene.compose(now=100.0 + k / 30)
    assert scene.decorations.rendered == 2
    scene.pictures["s1"].user = "Grace Hopper"
    scene.compose()
    assert scene.decorations.rendered == 3
    top = Scene(["Ada"], style=LabelStyle(position="top-right"))
    x, y, w, _ = top.label_box("s0")
    assert y < 40 and x + w > 600
    plain = Scene(["Ada"], style=LabelStyle(labels=False, muted=False, speaker=False))
    nothing = Scene(["Ada"], decorate=False)
    assert np.array_equal(plain.compose(), nothing.compose())


def test_what_labels_cover_is_put_back_before_the_next_frame() -> None:
    scene = Scene(["Ada"])
    bare = Scene(["Ada"], decorate=False)
    labelled = scene.compose()
    assert not np.array_equal(labelled, bare.compose())
    scene.compositor.surface.restore()
    assert np.array_equal(scene.compositor.canvas, bare.compose())


# --- state marks ---------------------------------------------------------------------


def red_pixels(canvas: np.ndarray, scene: Scene, stream_id: str) -> int:
    x, y, w, h = scene.rect(stream_id)
    rgb = rgb_of(canvas)[y : y + h, x : x + w].astype(int)
    return int(((rgb[..., 0] > 170) & (rgb[..., 1] < 90) & (rgb[..., 2] < 90)).sum())


def test_a_muted_microphone_is_marked_until_it_is_unmuted() -> None:
    scene = Scene(["Ada", "Grace"])  # colours without much red in them
    scene.pictures["s0"].frame = frame_of((60, 60, 60))
    scene.pictures["s1"].frame = frame_of((60, 60, 60))
    scene.pictures["s1"].muted = True
    canvas = scene.compose()
    assert red_pixels(canvas, scene, "s1") > 30 and red_pixels(canvas, scene, "s0") == 0
    scene.pictures["s1"].muted = False
    assert red_pixels(scene.compose(), scene, "s1") == 0
    # Marks off: no mark even when muted.
    quiet = Scene(["Ada"], style=LabelStyle(muted=False))
    quiet.pictures["s0"].frame = frame_of((60, 60, 60))
    quiet.pictures["s0"].muted = True
    assert red_pixels(quiet.compose(), quiet, "s0") == 0


def border_share(canvas: np.ndarray, scene: Scene, stream_id: str) -> float:
    """How much of the region's outermost ring of pixels is the speaker colour."""
    x, y, w, h = scene.rect(stream_id)
    rgb = rgb_of(canvas).astype(int)
    ring = np.concatenate(
        [
            rgb[y + 1, x + 4 : x + w - 4],
            rgb[y + h - 2, x + 4 : x + w - 4],
            rgb[y + 4 : y + h - 4, x + 1],
        ]
    )
    return float(np.all(np.abs(ring - np.array(SPEAKER_COLOUR)) < 40, axis=1).mean())


def test_the_speaker_border_follows_the_speaker_with_a_hold_time() -> None:
    scene = Scene(["Ada", "Grace", "Alan"], style=LabelStyle(speaker_hold=1.0))
    canvas = scene.compose(speaking="s1", now=100.0)
    assert border_share(canvas, scene, "s1") > 0.95
    assert border_share(canvas, scene, "s0") < 0.05 and border_share(canvas, scene, "s2") < 0.05
    # Someone else speaks for a moment: the border holds.
    canvas = scene.compose(speaking="s2", now=100.4)
    assert border_share(canvas, scene, "s1") > 0.95 and border_share(canvas, scene, "s2") < 0.05
    # And moves once the hold has passed.
    canvas = scene.compose(speaking="s2", now=101.1)
    assert border_share(canvas, scene, "s2") > 0.95 and border_share(canvas, scene, "s1") < 0.05
    canvas = scene.compose(speaking=None, now=102.2)
    assert max(border_share(canvas, scene, f"s{i}") for i in range(3)) < 0.05


def test_speaker_highlight_is_pure_hysteresis() -> None:
    highlight = SpeakerHighlight(hold=1.0)
    assert highlight.update("a", 0.0) == "a"
    assert highlight.update("b", 0.5) == "a"
    assert highlight.update(None, 0.9) == "a"
    assert highlight.update("b", 1.0) == "b"
    assert highlight.update("b", 5.0) == "b"
    assert SpeakerHighlight(hold=0.0).update("c", 0.0) == "c"


# --- presentation --------------------------------------------------------------------


def test_a_screen_share_is_large_and_letterboxed_above_a_strip_of_cameras() -> None:
    scene = Scene(["Screen", "Ada", "Grace"], size=(1280, 720), base="presentation", decorate=False)
    share = scene.pictures["s0"]
    share.screen = True
    share.frame = frame_of((250, 250, 250), 400, 300)  # 4:3 slides
    scene.layout.set_primary("s0")
    rgb = rgb_of(scene.compose()).astype(int)
    _x, y, w, h = scene.rect("s0")
    assert w == 1280 and h >= 560
    assert np.all(np.abs(rgb[y + h // 2, 640] - 250) < 20)  # the slide in the middle
    assert np.all(np.abs(rgb[y + h // 2, 20] - np.array(MAGENTA)) < 40)  # bars, not cropped
    for stream_id in ("s1", "s2"):
        sx, sy, _sw, sh = scene.rect(stream_id)
        assert sy >= y + h and sh < h // 3
        colour = COLOURS[int(stream_id[1])]
        assert np.all(np.abs(rgb[sy + sh // 2, sx + 3] - np.array(colour)) < 30)  # cropped: no bars


def test_hostile_names_never_stop_the_view() -> None:
    names = [
        "Eve\nMallory\r\x00",  # a line break would make Pillow draw two lines
        "\u202eevil\u202c",  # bidi override: dropped, it cannot reorder the frame
        "\U000e0001\U0010fffd\ufffe",  # tag, private use, non-character: no font has them
        "x" * 5000,
        "\u200d\u200d",
        "",
    ]
    scene = Scene(names)
    for k in range(3):
        scene.compose(now=100.0 + k)
    assert display_text("Eve\nMallory\r\x00") == "Eve Mallory"
    assert display_text("\u202eevil\u202c") == "evil"
    assert display_text("👩\u200d💻") == "👩\u200d💻"  # a ZWJ emoji stays one picture
    assert len(display_text("x" * 5000)) == MAX_TEXT
    found = text_mask(scene.compose(), scene, "s0")
    size = label_text_size(scene, "s0")
    assert agreement(found, reference_mask(default_renderer().render("Eve Mallory", size))) > 0.85

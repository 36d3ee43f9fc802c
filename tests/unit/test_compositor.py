"""VideoCompositor on synthetic frames of known colour (no network, no encoder)."""

from __future__ import annotations

import av
import numpy as np

from tessera.mixer.compositor import InputPicture, VideoCompositor, rgb_to_yuv
from tessera.mixer.layout import Layout, LayoutTemplates

RED = (220, 30, 30)
GREEN = (30, 200, 30)
BLUE = (30, 30, 220)
WHITE = (235, 235, 235)
GREY = (60, 60, 60)


def frame_of(rgb: tuple[int, int, int], width: int = 320, height: int = 240) -> av.VideoFrame:
    image = np.zeros((height, width, 3), np.uint8)
    image[:] = rgb
    return av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")


def to_rgb(canvas: np.ndarray) -> np.ndarray:
    frame = av.VideoFrame.from_numpy_buffer(canvas, format="yuv420p")
    return frame.to_ndarray(format="rgb24").astype(int)


def near(pixel: np.ndarray, rgb: tuple[int, int, int], tolerance: int = 30) -> bool:
    return bool(np.all(np.abs(pixel - np.array(rgb)) < tolerance))


def picture(stream_id: str, rgb: tuple[int, int, int] | None, **kw: object) -> InputPicture:
    p = InputPicture(stream_id=stream_id, user=f"User {stream_id}", **kw)  # type: ignore[arg-type]
    if rgb is not None:
        p.frame = frame_of(rgb)
        p.frame_time = 100.0
    return p


def fluid(*streams: str) -> Layout:
    layout = Layout(LayoutTemplates.from_options({"templates": {"base": "fluid"}}), 16)
    for s in streams:
        layout.add(s)
    return layout


def test_inputs_land_in_their_regions_of_a_2x2_grid() -> None:
    layout = fluid("a", "b", "c", "d")
    inputs = {
        "a": picture("a", RED),
        "b": picture("b", GREEN),
        "c": picture("c", BLUE),
        "d": picture("d", WHITE),
    }
    compositor = VideoCompositor(640, 360, fit_policy="crop")
    rgb = to_rgb(compositor.compose(layout.assignments(), inputs, layout.version, 100.0))
    assert near(rgb[90, 160], RED) and near(rgb[90, 480], GREEN)
    assert near(rgb[270, 160], BLUE) and near(rgb[270, 480], WHITE)


def test_letterbox_pads_with_the_background_and_crop_fills() -> None:
    layout = fluid("a")
    inputs = {"a": picture("a", RED)}  # 4:3 into a 16:9 canvas
    boxed = VideoCompositor(640, 360, background=GREY, fit_policy="letterbox")
    rgb = to_rgb(boxed.compose(layout.assignments(), inputs, layout.version, 100.0))
    assert near(rgb[180, 10], GREY) and near(rgb[180, 630], GREY)  # bars left and right
    assert near(rgb[180, 320], RED)
    cropped = VideoCompositor(640, 360, background=GREY, fit_policy="crop")
    rgb = to_rgb(cropped.compose(layout.assignments(), inputs, layout.version, 100.0))
    assert near(rgb[180, 10], RED) and near(rgb[5, 320], RED)


def test_overlapping_regions_draw_in_list_order() -> None:
    custom = {
        "templates": {
            "base": "void",
            "custom": [
                {
                    "region": [
                        {
                            "id": "1",
                            "area": {"left": "0/1", "top": "0/1", "width": "1/1", "height": "1/1"},
                        },
                        {
                            "id": "2",
                            "area": {"left": "1/2", "top": "1/2", "width": "1/4", "height": "1/4"},
                        },
                    ]
                }
            ],
        }
    }
    layout = Layout(LayoutTemplates.from_options(custom), 16)
    layout.add("big")
    layout.add("small")
    inputs = {"big": picture("big", BLUE), "small": picture("small", RED)}
    compositor = VideoCompositor(640, 360, fit_policy="crop")
    rgb = to_rgb(compositor.compose(layout.assignments(), inputs, layout.version, 100.0))
    assert near(rgb[225, 400], RED)  # the later region is on top
    assert near(rgb[50, 50], BLUE)
    # A new frame of the big input under the small one: the small one is drawn again on top.
    inputs["big"].frame = frame_of(GREEN)
    rgb = to_rgb(compositor.compose(layout.assignments(), inputs, layout.version, 100.1))
    assert near(rgb[225, 400], RED) and near(rgb[50, 50], GREEN)


def test_letterbox_bars_stay_right_across_frames_and_overlaps() -> None:
    # Bars are filled only when they change: a new frame of the same size leaves
    # them, an earlier region drawn over them this tick makes them be filled again.
    custom = {
        "templates": {
            "base": "void",
            "custom": [
                {
                    "region": [
                        {
                            "id": "1",
                            "area": {"left": "0/1", "top": "0/1", "width": "1/1", "height": "1/1"},
                        },
                        {
                            "id": "2",
                            "area": {"left": "1/4", "top": "1/4", "width": "1/2", "height": "1/2"},
                        },
                    ]
                }
            ],
        }
    }
    layout = Layout(LayoutTemplates.from_options(custom), 16)
    layout.add("big")
    layout.add("small")  # 4:3 into a 16:9 region: bars left and right of it
    inputs = {"big": picture("big", BLUE), "small": picture("small", RED)}
    compositor = VideoCompositor(640, 360, background=GREY, fit_policy="letterbox")
    for tick, (big, small) in enumerate([(BLUE, RED), (BLUE, GREEN), (WHITE, GREEN), (RED, BLUE)]):
        inputs["big"].frame = frame_of(big, 640, 360)
        inputs["small"].frame = frame_of(small)
        inputs["big"].frame_time = inputs["small"].frame_time = 100 + tick
        rgb = to_rgb(compositor.compose(layout.assignments(), inputs, layout.version, 100 + tick))
        assert near(rgb[180, 175], GREY), tick  # the small region's left bar
        assert near(rgb[180, 465], GREY), tick  # and its right bar
        assert near(rgb[180, 320], small), tick
        assert near(rgb[20, 20], big), tick


def test_avatar_for_audio_only_paused_and_stalled_inputs() -> None:
    layout = fluid("audio", "paused", "stalled", "live")
    inputs = {
        "audio": picture("audio", None, has_video=False),
        "paused": picture("paused", GREEN, video_active=False),
        "stalled": picture("stalled", BLUE),
        "live": picture("live", RED),
    }
    inputs["live"].frame_time = 109.5
    compositor = VideoCompositor(640, 360, frame_timeout=2.0, fit_policy="crop")
    rgb = to_rgb(compositor.compose(layout.assignments(), inputs, layout.version, 110.0))
    for y, x in ((90, 160), (90, 480), (270, 160)):
        centre = rgb[y - 40 : y + 40, x - 60 : x + 60].reshape(-1, 3).mean(axis=0)
        assert centre.max() > 60, "an avatar, not a black box"
        assert not near(centre, GREEN) and not near(centre, BLUE)
    assert near(rgb[270, 480], RED)
    # Initials are drawn: some near-white pixels inside the avatar tile.
    tile = rgb[20:160, 20:300]
    assert (tile.min(axis=2) > 200).any()


def test_only_changed_regions_are_redrawn() -> None:
    layout = fluid("a", "b", "c", "d")
    inputs = {k: picture(k, c) for k, c in zip("abcd", (RED, GREEN, BLUE, WHITE), strict=True)}
    compositor = VideoCompositor(640, 360)
    compositor.compose(layout.assignments(), inputs, layout.version, 100.0)
    first = compositor.redrawn_regions
    compositor.compose(layout.assignments(), inputs, layout.version, 100.1)
    assert compositor.redrawn_regions == first  # nothing new
    inputs["b"].frame = frame_of(RED)
    compositor.compose(layout.assignments(), inputs, layout.version, 100.2)
    assert compositor.redrawn_regions == first + 1
    layout.remove("d")
    compositor.compose(layout.assignments(), inputs, layout.version, 100.3)
    assert compositor.redrawn_regions > first + 1  # a layout change redraws


def test_background_colour_conversion() -> None:
    assert rgb_to_yuv((0, 0, 0)) == (16, 128, 128)
    assert rgb_to_yuv((255, 255, 255)) == (235, 128, 128)

"""A view's ladder (mixer/ladder.py) and its options (video.ladder): pure."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tessera.conference.errors import ConferenceError
from tessera.conference.optionchanges import plan_option_change
from tessera.conference.roomoptions import RoomOptions
from tessera.media.bandwidth import Rung
from tessera.mixer.ladder import view_ladder
from tessera.mixer.viewoptions import ViewVideo


def test_the_default_ladder_of_720p() -> None:
    assert view_ladder(1280, 720, 1_920_000, None) == (
        Rung(1280, 720, 1_920_000),
        Rung(640, 360, 460_800),
        Rung(320, 180, 153_600),
    )


def test_a_small_view_has_fewer_rungs() -> None:
    rungs = view_ladder(320, 240, 400_000, None)
    assert [r.height for r in rungs] == [240, 120]  # 60 px is under MIN_HEIGHT
    assert all(r.width % 2 == 0 and r.height % 2 == 0 for r in rungs)


def test_a_configured_ladder_and_none() -> None:
    video = ViewVideo.model_validate(
        {
            "ladder": [
                {"resolution": {"width": 640, "height": 360}, "bitrate": 600},
                {"resolution": {"width": 320, "height": 180}, "bitrate": 200},
            ]
        }
    )
    assert view_ladder(1280, 720, 1_900_000, video.ladder) == (
        Rung(1280, 720, 1_900_000),
        Rung(640, 360, 600_000),
        Rung(320, 180, 200_000),
    )
    off = ViewVideo.model_validate({"ladder": []})
    assert view_ladder(1280, 720, 1_900_000, off.ladder) == (Rung(1280, 720, 1_900_000),)


def test_the_default_ladder_is_left_out_of_the_json() -> None:
    assert "ladder" not in ViewVideo().model_dump(by_alias=True)
    assert ViewVideo.model_validate({"ladder": []}).model_dump(by_alias=True)["ladder"] == []


@pytest.mark.parametrize(
    ("ladder", "named"),
    [
        # Going up in bitrate.
        (
            [
                {"resolution": {"width": 640, "height": 360}, "bitrate": 300},
                {"resolution": {"width": 320, "height": 180}, "bitrate": 400},
            ],
            "ladder.1",
        ),
        # Taller than the view (720p by default).
        ([{"resolution": {"width": 1920, "height": 1080}, "bitrate": 300}], "ladder.0"),
        ([{"resolution": {"width": 641, "height": 360}, "bitrate": 300}], "even"),
        ([{"resolution": {"width": 640, "height": 360}, "bitrate": 0}], "bitrate"),
        ([{"resolution": {"width": 640, "height": 360}, "bitrate": "300"}], "bitrate"),
        ([{"resolution": {"width": 640, "height": 360}}], "bitrate"),
        ([{"resolution": {"width": 640, "height": 360}, "bitrate": 300, "fps": 5}], "fps"),
        ([{"resolution": {"width": 64, "height": 36}, "bitrate": 30}] * 9, "ladder"),
    ],
)
def test_bad_ladders_are_refused_naming_the_field(ladder: object, named: str) -> None:
    with pytest.raises(ValidationError) as info:
        ViewVideo.model_validate({"ladder": ladder})
    assert named in str(info.value)


def test_a_rung_above_the_views_own_bitrate_is_refused() -> None:
    with pytest.raises(ValidationError, match="below the view"):
        ViewVideo.model_validate(
            {
                "parameters": {"bitrate": 500},
                "ladder": [{"resolution": {"width": 640, "height": 360}, "bitrate": 600}],
            }
        )


def test_changing_a_running_views_ladder_is_a_409_naming_it() -> None:
    current = RoomOptions.model_validate({"name": "r"})
    new = RoomOptions.model_validate(
        {"name": "r", "views": [{"label": "common", "video": {"ladder": []}}]}
    )
    with pytest.raises(ConferenceError) as info:
        plan_option_change(current, new)
    assert "views.0.video.ladder" in str(info.value)

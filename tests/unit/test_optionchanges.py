"""What a change of room options does to a running room, or the field it refuses (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from tessera.conference.errors import ConferenceError
from tessera.conference.optionchanges import plan_option_change
from tessera.conference.roomoptions import RoomOptions, merge_room_options, parse_room_options

BASE = parse_room_options(
    {"name": "r", "views": [{"label": "common"}, {"label": "talk", "video": False}]}
)


def changed(patch: dict[str, Any]) -> RoomOptions:
    return merge_room_options(BASE, patch)


def test_room_wide_changes_apply_with_no_view_touched() -> None:
    new = changed({"inputLimit": 3, "participantLimit": 5, "autoMix": False, "name": "s"})
    change = plan_option_change(BASE, new)
    assert (change.added, change.removed, change.relaid) == ([], [], [])
    assert not change.media_changed
    assert plan_option_change(BASE, changed({"transcoding": {"audio": False}})).media_changed


def test_views_are_added_removed_and_relaid() -> None:
    views: list[dict[str, Any]] = [
        {
            "label": "common",
            "video": {
                "layout": {"fitPolicy": "crop", "templates": {"base": "lecture"}},
                "maxInput": 4,
                "bgColor": {"r": 10, "g": 20, "b": 30},
                "keepActiveInputPrimary": True,
            },
        },
        {"label": "extra"},
    ]
    change = plan_option_change(BASE, changed({"views": views}))
    assert [v.label for v in change.added] == ["extra"]
    assert change.removed == ["talk"]
    assert [v.label for v in change.relaid] == ["common"]
    vad_off = changed(
        {"views": [{"label": "common"}, {"label": "talk", "video": False, "audio": {"vad": False}}]}
    )
    assert [v.label for v in plan_option_change(BASE, vad_off).relaid] == ["talk"]


@pytest.mark.parametrize(
    ("view", "field"),
    [
        (
            {"video": {"parameters": {"resolution": {"width": 640, "height": 360}}}},
            "video.parameters.resolution.width",
        ),
        ({"video": {"parameters": {"framerate": 15}}}, "video.parameters.framerate"),
        ({"video": {"parameters": {"bitrate": 800}}}, "video.parameters.bitrate"),
        ({"video": {"format": {"codec": "h264"}}}, "video.format.codec"),
        ({"video": {"motionFactor": 1.5}}, "video.motionFactor"),
        ({"video": False}, "video"),
    ],
)
def test_what_the_encoders_were_built_for_is_refused_with_its_field(
    view: dict[str, Any], field: str
) -> None:
    new = changed({"views": [{"label": "common", **view}, {"label": "talk", "video": False}]})
    with pytest.raises(ConferenceError) as info:
        plan_option_change(BASE, new)
    assert info.value.status == 409
    assert info.value.message.startswith(f"views.0.{field} cannot change while the room runs")


def test_a_new_view_may_have_any_format_and_the_same_options_change_nothing() -> None:
    views = [{"label": "hd", "video": {"parameters": {"framerate": 15}}}]
    change = plan_option_change(BASE, changed({"views": views}))
    assert [v.label for v in change.added] == ["hd"] and change.removed == ["common", "talk"]
    same = plan_option_change(BASE, parse_room_options(BASE.to_json()))
    assert (same.added, same.removed, same.relaid, same.media_changed) == ([], [], [], False)

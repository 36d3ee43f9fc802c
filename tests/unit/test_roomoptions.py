import json
from fractions import Fraction
from typing import Any

import pydantic
import pytest

from tessera.conference.roomoptions import (
    DEFAULT_ROLE_NAMES,
    OptionsError,
    RoomOptions,
    merge_room_options,
    parse_room_options,
)
from tessera.mixer.viewoptions import parse_fraction


def custom_layout(*areas: tuple[str, str, str, str]) -> dict[str, Any]:
    return {
        "region": [
            {
                "id": str(i + 1),
                "shape": "rectangle",
                "area": {"left": left, "top": top, "width": width, "height": height},
            }
            for i, (left, top, width, height) in enumerate(areas)
        ]
    }


def with_view_video(video: dict[str, Any]) -> dict[str, Any]:
    return {"views": [{"label": "common", "video": video}]}


def error_of(data: Any) -> str:
    with pytest.raises(OptionsError) as info:
        parse_room_options(data)
    return str(info.value)


def test_owt_defaults() -> None:
    options = RoomOptions()
    assert options.input_limit == -1
    assert options.participant_limit == -1
    assert options.auto_mix is True
    assert options.notifying.participant_activities is True
    assert options.notifying.stream_change is True
    assert options.transcoding.audio is True
    assert options.transcoding.video.parameters.key_frame_interval is True
    assert DEFAULT_ROLE_NAMES == (
        "presenter",
        "viewer",
        "audio_only_presenter",
        "video_only_viewer",
        "sip",
        "guest",
    )
    viewer = options.role("viewer")
    assert viewer is not None
    assert (viewer.publish.audio, viewer.publish.video) == (False, False)
    assert (viewer.subscribe.audio, viewer.subscribe.video) == (True, True)
    audio_only = options.role("audio_only_presenter")
    assert audio_only is not None
    assert (audio_only.publish.audio, audio_only.publish.video) == (True, False)
    assert options.role("nobody") is None


def test_default_view() -> None:
    view = RoomOptions().view("common")
    assert view is not None
    assert view.audio.format.codec == "opus"
    assert view.audio.format.sample_rate == 48000
    assert view.audio.format.channel_num == 2
    assert view.audio.vad is True
    video = view.video
    assert video is not None
    assert video.format.codec == "vp8"
    assert (video.parameters.resolution.width, video.parameters.resolution.height) == (1280, 720)
    assert video.parameters.framerate == 30
    assert video.parameters.bitrate is None
    assert video.parameters.key_frame_interval == 100
    assert video.max_input == 16
    assert video.motion_factor == 0.8
    assert video.keep_active_input_primary is False
    # Tessera's gallery (rooms created since it exists); OWT's bases are asked for by name.
    assert video.layout.fit_policy == "crop"
    assert video.layout.templates.base == "gallery"
    assert video.layout.templates.custom == []
    assert RoomOptions().view("other") is None


def test_json_form_is_camel_case_and_roundtrips() -> None:
    data = RoomOptions(name="room").to_json()
    json.dumps(data)  # plain JSON types only
    assert data["inputLimit"] == -1
    assert data["autoMix"] is True
    view = data["views"][0]
    assert view["label"] == "common"
    assert view["video"]["parameters"]["keyFrameInterval"] == 100
    assert view["video"]["parameters"]["bitrate"] is None
    assert view["video"]["bgColor"] == {"r": 0, "g": 0, "b": 0}
    assert view["audio"]["format"] == {"codec": "opus", "sampleRate": 48000, "channelNum": 2}
    assert {"codec": "pcmu"} in data["mediaIn"]["audio"]  # unset fields are left out, not null
    assert {"codec": "h264", "profile": "CB"} in data["mediaOut"]["video"]["format"]
    parameters = data["mediaOut"]["video"]["parameters"]
    assert parameters["resolution"][:2] == ["x3/4", "x2/3"]
    assert parameters["framerate"] == [6, 12, 15, 24, 30, 48, 60]
    assert parameters["bitrate"] == ["x0.8", "x0.6", "x0.4", "x0.2"]
    assert parameters["keyFrameInterval"] == [100, 30, 5, 2, 1]
    assert data["notifying"] == {"participantActivities": True, "streamChange": True}
    assert "sip" not in data
    assert parse_room_options(data) == RoomOptions(name="room")


def test_parse_partial_uses_defaults() -> None:
    options = parse_room_options({"name": "r", "participantLimit": 10})
    assert options.participant_limit == 10
    assert options.views == RoomOptions().views


def test_owt_room_body_parses() -> None:
    # A room as an OWT application server would send it.
    data = {
        "name": "meeting",
        "inputLimit": 8,
        "participantLimit": 20,
        "selectActiveAudio": False,
        "roles": [
            {
                "role": "host",
                "publish": {"audio": True, "video": True},
                "subscribe": {"audio": True, "video": True},
            }
        ],
        "views": [
            {
                "label": "common",
                "audio": {
                    "format": {"codec": "opus", "sampleRate": 48000, "channelNum": 2},
                    "vad": False,
                },
                "video": {
                    "format": {"codec": "h264", "profile": "B"},
                    "parameters": {
                        "resolution": {"width": 640, "height": 480},
                        "framerate": 24,
                        "bitrate": 500,
                        "keyFrameInterval": 30,
                    },
                    "maxInput": 4,
                    "bgColor": {"r": 10, "g": 20, "b": 30},
                    "motionFactor": 1,
                    "keepActiveInputPrimary": True,
                    "layout": {
                        "fitPolicy": "crop",
                        "templates": {
                            "base": "lecture",
                            "custom": [
                                custom_layout(("0/1", "0/1", "1/1", "1/1")),
                                custom_layout(
                                    ("0/1", "0/1", "1/2", "1/1"), ("1/2", "0/1", "1/2", "1/1")
                                ),
                            ],
                        },
                    },
                },
            },
            {"label": "audio-only", "video": False},
        ],
        "sip": {"username": "u", "password": "p"},
    }
    options = parse_room_options(data)
    assert options.role("host") is not None
    assert options.role("presenter") is None  # given roles replace the defaults
    common = options.view("common")
    assert common is not None and common.video is not None
    assert common.video.motion_factor == 1.0
    assert common.video.layout.templates.custom[1].region[1].area.left == "1/2"
    audio_only = options.view("audio-only")
    assert audio_only is not None
    assert audio_only.video is None
    out = options.to_json()
    assert out["views"][1]["video"] is False
    assert out["sip"] == {"sipServer": None, "username": "u", "password": "p"}
    assert parse_room_options(out) == options


def test_video_true_means_default_video() -> None:
    options = parse_room_options({"views": [{"label": "v", "video": True}]})
    assert options.views[0].video == RoomOptions().views[0].video


def test_no_views_means_no_mixing() -> None:
    assert parse_room_options({"views": []}).views == []


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            with_view_video({"parameters": {"framerate": 70}}),
            "views.0.video.parameters.framerate: Input should be less than or equal to 60",
        ),
        (with_view_video({"parameters": {"framerate": 0}}), "views.0.video.parameters.framerate"),
        (
            with_view_video({"parameters": {"resolution": {"width": 641, "height": 480}}}),
            "views.0.video.parameters.resolution.width: 641 is not an even number",
        ),
        (
            with_view_video({"parameters": {"resolution": {"width": 8192, "height": 480}}}),
            "views.0.video.parameters.resolution.width: Input should be less than or equal to 4096",
        ),
        (
            with_view_video({"parameters": {"resolution": {"width": 8, "height": 480}}}),
            "views.0.video.parameters.resolution.width",
        ),
        (with_view_video({"bgColor": {"r": 256}}), "views.0.video.bgColor.r"),
        (with_view_video({"maxInput": 0}), "views.0.video.maxInput"),
        (with_view_video({"layout": {"fitPolicy": "stretch"}}), "views.0.video.layout.fitPolicy"),
        (
            with_view_video({"layout": {"templates": {"base": "grid"}}}),
            "views.0.video.layout.templates.base",
        ),
        (
            with_view_video({"format": {"codec": "vp8", "profile": "CB"}}),
            "views.0.video.format: a profile is only meaningful for h264",
        ),
        (with_view_video({"format": {"codec": "mpeg2"}}), "views.0.video.format.codec"),
        (
            with_view_video({"format": {"codec": "vp9"}}),
            "views.0.video.format: Tessera encodes views in vp8 or h264, not vp9",
        ),
        (
            {"views": [{"audio": {"format": {"codec": "pcmu"}}}]},
            "views.0.audio.format: Tessera mixes audio as Opus at 48000 Hz only",
        ),
        (
            {"views": [{"audio": {"format": {"codec": "opus", "channelNum": 1}}}]},
            "views.0.audio.format: Tessera mixes audio in stereo",
        ),
        (
            {"sip": {"sipServer": "sip.example", "username": "u", "password": "p"}},
            "sip.sipServer: Tessera has no SIP gateway",
        ),
        ({"selectActiveAudio": "true"}, "selectActiveAudio"),
        (
            {"enableBandwidthAdaptation": True},
            "enableBandwidthAdaptation: Tessera forwards one layer (no simulcast)",
        ),
        ({"enableBandwidthAdaptation": "no"}, "enableBandwidthAdaptation"),
        (
            {"views": [{"label": "a"}, {"label": "a"}]},
            "views: duplicate view label 'a'",
        ),
        ({"views": [{"label": "has space"}]}, "views.0.label"),
        ({"views": [{"label": "x" * 65}]}, "views.0.label"),
        ({"views": [{"label": ""}]}, "views.0.label"),
        ({"views": [{"video": "yes"}]}, "views.0.video"),
        (
            {"roles": [{"role": "a"}, {"role": "a"}]},
            "roles: duplicate role 'a'",
        ),
        ({"roles": [{"role": "a", "publish": {"audio": "yes"}}]}, "roles.0.publish.audio"),
        ({"inputLimit": -2}, "inputLimit: Input should be greater than or equal to -1"),
        ({"participantLimit": "10"}, "participantLimit"),
        ({"autoMix": 1}, "autoMix"),
        ({"unknownOption": 1}, "unknownOption: Extra inputs are not permitted"),
        (
            {"mediaOut": {"video": {"parameters": {"resolution": ["x5/4"]}}}},
            "mediaOut.video.parameters.resolution.0",
        ),
        (
            {"mediaOut": {"video": {"parameters": {"bitrate": ["x2.5"]}}}},
            "mediaOut.video.parameters.bitrate.0",
        ),
        (
            {"mediaOut": {"video": {"parameters": {"framerate": [0]}}}},
            "mediaOut.video.parameters.framerate.0",
        ),
        (
            {"mediaIn": {"audio": [{"codec": "opus", "channelNum": 0}]}},
            "mediaIn.audio.0.channelNum",
        ),
        ({"notifying": {"streamChange": None}}, "notifying.streamChange"),
    ],
)
def test_invalid_options(data: dict[str, Any], message: str) -> None:
    assert message in error_of(data)


@pytest.mark.parametrize(
    ("area", "message"),
    [
        (("0/1", "0/1", "3/2", "1/1"), "'3/2' is greater than 1"),
        (("0/1", "0/1", "1/0", "1/1"), "'1/0' has a zero denominator"),
        (("0.5", "0/1", "1/2", "1/1"), "'0.5' is not a fraction string 'n/d'"),
        (("-1/2", "0/1", "1/2", "1/1"), "is not a fraction string"),
        (("1/2", "0/1", "2/3", "1/1"), "left + width is greater than 1"),
        (("0/1", "1/2", "1/1", "2/3"), "top + height is greater than 1"),
    ],
)
def test_invalid_regions(area: tuple[str, str, str, str], message: str) -> None:
    data = with_view_video({"layout": {"templates": {"custom": [custom_layout(area)]}}})
    error = error_of(data)
    assert error.startswith("views.0.video.layout.templates.custom.0.region.0.area")
    assert message in error


def test_region_ids_unique_and_primary_known() -> None:
    layout = custom_layout(("0/1", "0/1", "1/2", "1/1"), ("1/2", "0/1", "1/2", "1/1"))
    layout["region"][1]["id"] = "1"
    assert "duplicate region id '1'" in error_of(
        with_view_video({"layout": {"templates": {"custom": [layout]}}})
    )
    layout = custom_layout(("0/1", "0/1", "1/1", "1/1"))
    layout["primary"] = "9"
    assert "primary region '9'" in error_of(
        with_view_video({"layout": {"templates": {"custom": [layout]}}})
    )
    layout["primary"] = "1"
    options = parse_room_options(with_view_video({"layout": {"templates": {"custom": [layout]}}}))
    assert (
        options.to_json()["views"][0]["video"]["layout"]["templates"]["custom"][0]["primary"] == "1"
    )


def test_region_shape_is_rectangle() -> None:
    layout = custom_layout(("0/1", "0/1", "1/1", "1/1"))
    layout["region"][0]["shape"] = "circle"
    assert "shape" in error_of(with_view_video({"layout": {"templates": {"custom": [layout]}}}))


def test_media_out_accepts_owt_forms() -> None:
    options = parse_room_options(
        {
            "mediaOut": {
                "video": {
                    "parameters": {
                        "resolution": ["x1/2", "r640x360", "uhd_4k"],
                        "bitrate": ["x0.5", 800],
                    }
                }
            }
        }
    )
    assert options.media_out.video.parameters.bitrate == ["x0.5", 800]


def test_parse_fraction() -> None:
    assert parse_fraction("1/3") == Fraction(1, 3)
    assert parse_fraction("0/1") == 0
    assert parse_fraction("2/2") == 1
    with pytest.raises(ValueError):
        parse_fraction("4/3")


def test_not_an_object() -> None:
    assert error_of([1, 2]) == "room options must be a JSON object"


def test_options_are_frozen() -> None:
    options = RoomOptions()
    with pytest.raises(pydantic.ValidationError):
        options.input_limit = 3  # type: ignore[misc]


def test_merge_is_deep_and_validated() -> None:
    current = parse_room_options({"name": "r", "participantLimit": 5})
    merged = merge_room_options(
        current,
        {
            "notifying": {"streamChange": False},
            "views": [{"label": "solo", "video": {"maxInput": 1}}],
        },
    )
    assert merged.participant_limit == 5  # untouched
    assert merged.notifying.stream_change is False
    assert merged.notifying.participant_activities is True  # sibling key kept
    assert [view.label for view in merged.views] == ["solo"]  # lists are replaced
    assert current.notifying.stream_change is True  # the original is unchanged

    merged = merge_room_options(current, {"views": [{"label": "common", "video": False}]})
    merged = merge_room_options(merged, {"views": [{"label": "common"}]})
    assert merged.views[0].video is not None

    with pytest.raises(OptionsError, match="participantLimit"):
        merge_room_options(current, {"participantLimit": -9})
    with pytest.raises(OptionsError, match="must be a JSON object"):
        merge_room_options(current, [])  # type: ignore[arg-type]


def test_merge_nested_view_parameters() -> None:
    current = RoomOptions()
    view = current.to_json()["views"][0]
    view["video"]["parameters"]["framerate"] = 15
    merged = merge_room_options(current, {"views": [view]})
    common = merged.view("common")
    assert common is not None and common.video is not None
    assert common.video.parameters.framerate == 15


def test_enable_bandwidth_adaptation_false_is_accepted_and_left_out() -> None:
    # OWT 5.x room bodies carry it (false by default): false is what Tessera does.
    options = parse_room_options({"enableBandwidthAdaptation": False})
    assert "enableBandwidthAdaptation" not in options.to_json()

"""Pure REST shapes: OWT's stream formats (/v1, /v1.1) and its SubscriptionControlInfo."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tessera.portal.rest.errors import RestError
from tessera.portal.rest.streamformat import API_V1, API_V11, rest_stream
from tessera.portal.rest.subscriptionupdate import subscription_update

FORWARD: dict[str, Any] = {
    "id": "s1",
    "type": "forward",
    "media": {
        "tracks": [
            {
                "id": "t0",
                "type": "audio",
                "source": "mic",
                "mid": "0",
                "format": {"codec": "opus", "sampleRate": 48000, "channelNum": 2},
                "status": "active",
            },
            {
                "id": "t1",
                "type": "video",
                "source": "camera",
                "mid": "1",
                "format": {"codec": "vp8"},
                "parameters": {"resolution": {"width": 320, "height": 240}},
                "optional": {"format": [{"codec": "h264"}], "parameters": {"framerate": [15]}},
                "status": "inactive",
            },
        ]
    },
    "info": {"owner": "p1", "type": "webrtc", "inViews": ["common"], "attributes": {}},
}

MIXED: dict[str, Any] = {
    "id": "r-common",
    "type": "mixed",
    "media": {
        "tracks": [
            {"type": "audio", "format": {"codec": "opus"}},
            {
                "type": "video",
                "format": {"codec": "vp8"},
                "parameters": {"resolution": {"width": 1280, "height": 720}, "framerate": 30},
            },
        ]
    },
    "info": {"label": "common", "layout": []},
}


def test_v1_1_has_one_entry_per_kind_and_the_video_original() -> None:
    before = copy.deepcopy(FORWARD)
    stream = rest_stream(FORWARD, API_V11)
    assert FORWARD == before  # the StreamInfo is not touched
    assert stream["media"] == {
        "audio": {
            "status": "active",
            "source": "mic",
            "format": {"codec": "opus", "sampleRate": 48000, "channelNum": 2},
        },
        "video": {
            "status": "inactive",
            "source": "camera",
            "original": [
                {
                    "format": {"codec": "vp8"},
                    "parameters": {"resolution": {"width": 320, "height": 240}},
                }
            ],
            "optional": {"format": [{"codec": "h264"}], "parameters": {"framerate": [15]}},
        },
    }
    assert stream["info"] == FORWARD["info"] and stream["id"] == "s1"


def test_v1_has_the_video_format_and_parameters_in_place() -> None:
    stream = rest_stream(MIXED, API_V1)
    # A mixed stream's tracks have no status or source: left out, as OWT's undefined.
    assert stream["media"] == {
        "audio": {"format": {"codec": "opus"}},
        "video": {
            "format": {"codec": "vp8"},
            "parameters": {"resolution": {"width": 1280, "height": 720}, "framerate": 30},
        },
    }


def test_keep_tracks_and_streams_without_tracks() -> None:
    both = rest_stream(FORWARD, API_V11, keep_tracks=True)
    assert both["media"]["tracks"] == FORWARD["media"]["tracks"]
    assert "audio" in both["media"] and "video" in both["media"]
    audio_only = {"id": "a", "media": {"tracks": [FORWARD["media"]["tracks"][0]]}}
    assert set(rest_stream(audio_only, API_V1)["media"]) == {"audio"}
    odd = {"id": "x", "media": None}
    assert rest_stream(odd, API_V1) == odd


def replace(path: str, value: Any) -> dict[str, Any]:
    return {"op": "replace", "path": path, "value": value}


def test_subscription_update_reads_every_path_of_owt() -> None:
    update = subscription_update(
        [
            replace("/media/audio/status", "inactive"),
            replace("/media/video/status", "active"),
            replace("/media/audio/from", "s2"),
            replace("/media/video/from", "s3"),
            replace("/media/video/parameters/resolution", {"width": 640, "height": 360}),
            replace("/media/video/parameters/framerate", 15),
            replace("/media/video/parameters/bitrate", "x0.6"),
            replace("/media/video/parameters/keyFrameInterval", 30),
        ]
    )
    assert update.active == {"audio": False, "video": True}
    assert update.sources == {"audio": "s2", "video": "s3"}
    assert update.video_parameters == {
        "resolution": {"width": 640, "height": 360},
        "framerate": 15,
        "bitrate": "x0.6",
        "keyFrameInterval": 30,
    }


@pytest.mark.parametrize(
    ("operations", "words"),
    [
        ([{"op": "add", "path": "/media/audio/status", "value": "active"}], ["[0].op", "replace"]),
        ([replace("/media/audio/status", True)], ["[0].value", "inactive"]),
        ([replace("/media/audio", {})], ["[0].path", "cannot be changed"]),
        ([replace("/media/video/from", "")], ["stream id"]),
        ([replace("/media/video/from", 5)], ["stream id"]),
        ([replace("/media/video/parameters/framerate", 25)], ["framerate", "60"]),
        ([replace("/media/video/parameters/framerate", True)], ["framerate"]),
        ([replace("/media/video/parameters/bitrate", 0.6)], ["bitrate", "x0.6"]),
        ([replace("/media/video/parameters/keyFrameInterval", 3)], ["keyFrameInterval"]),
        ([replace("/media/video/parameters/resolution", {"width": 640})], ["resolution"]),
        (
            [replace("/media/video/parameters/resolution", {"width": 6.5, "height": 2})],
            ["[0].value.width"],
        ),
        (
            [replace("/media/video/parameters/resolution", {"width": 1, "height": 2})],
            ["[0].value.width"],
        ),
        (
            [replace("/media/audio/status", "active"), replace("/media/audio/status", "inactive")],
            ["[1].path", "twice"],
        ),
    ],
)
def test_subscription_update_refusals_name_the_operation(
    operations: list[dict[str, Any]], words: list[str]
) -> None:
    with pytest.raises(RestError) as refused:
        subscription_update(operations)
    assert refused.value.status == 400 and refused.value.code == 1201
    for word in words:
        assert word in refused.value.message, refused.value.message

"""Pure REST shapes: OWT's stream formats under /v1 and /v1.1."""

from __future__ import annotations

import copy
from typing import Any

from tessera.portal.rest.streamformat import API_V1, API_V11, rest_stream

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

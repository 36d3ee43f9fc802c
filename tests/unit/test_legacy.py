"""Pushes and login results written for protocol 1.0/1.1 clients, as OWT's portal adapter does."""

from __future__ import annotations

import copy

from tessera.portal.legacy import downgrade_login, downgrade_notification, downgrade_stream

QVGA = {"width": 320, "height": 240}
FORWARD = {
    "id": "s1",
    "type": "forward",
    "data": False,
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
                "status": "inactive",
            },
        ]
    },
    "info": {"owner": "p1", "type": "webrtc", "inViews": [], "attributes": {}},
}


def test_1_2_is_left_alone() -> None:
    assert downgrade_stream("1.2", FORWARD) is FORWARD
    message = {"id": "t", "sessionId": "s", "status": "ready"}
    assert downgrade_notification("1.2", "progress", message) is message


def test_1_1_reads_audio_and_video_original() -> None:
    before = copy.deepcopy(FORWARD)
    media = downgrade_stream("1.1", FORWARD)["media"]
    assert FORWARD == before  # the shared StreamInfo is not changed
    assert media == {
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
        },
    }


def test_1_0_reads_video_format_and_parameters_directly() -> None:
    video = downgrade_stream("1.0", FORWARD)["media"]["video"]
    assert video["format"] == {"codec": "vp8"} and "original" not in video
    assert video["parameters"] == {"resolution": {"width": 320, "height": 240}}


def test_progress_loses_session_id_and_stream_pushes_are_converted() -> None:
    progress = {"id": "s", "sessionId": "s", "status": "error", "data": "Source stream loss"}
    assert downgrade_notification("1.1", "progress", progress) == {
        "id": "s",
        "status": "error",
        "data": "Source stream loss",
    }
    added = downgrade_notification("1.1", "stream", {"id": "s1", "status": "add", "data": FORWARD})
    assert "audio" in added["data"]["media"] and "tracks" not in added["data"]["media"]
    update = {"id": "s1", "status": "update", "data": {"field": ".", "value": FORWARD}}
    assert "tracks" not in downgrade_notification("1.0", "stream", update)["data"]["value"]["media"]
    status = {"id": "s1", "status": "update", "data": {"field": "video.status", "value": "active"}}
    assert downgrade_notification("1.1", "stream", status) is status
    text = {"from": "p", "to": "all", "message": "hi"}
    assert downgrade_notification("1.0", "text", text) is text


def test_login_result_streams_are_converted() -> None:
    result = {"id": "p", "room": {"id": "r", "streams": [FORWARD], "participants": []}}
    converted = downgrade_login("1.1", result)
    assert "tracks" not in converted["room"]["streams"][0]["media"]
    assert result["room"]["streams"][0] is FORWARD

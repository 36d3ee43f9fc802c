"""StreamInfo update application: pure functions on the protocol's dicts."""

from __future__ import annotations

import copy
from typing import Any

from tessera_client.streaminfo import apply_stream_update, stream_track_kinds, stream_tracks


def forward_stream() -> dict[str, Any]:
    return {
        "id": "s1",
        "type": "forward",
        "data": False,
        "media": {
            "tracks": [
                {"id": "a", "type": "audio", "source": "mic", "status": "active"},
                {"id": "v", "type": "video", "source": "camera", "status": "active"},
            ]
        },
        "info": {"owner": "p1", "type": "webrtc", "inViews": [], "attributes": {"name": "cam"}},
    }


def mixed_stream() -> dict[str, Any]:
    return {
        "id": "room-common",
        "type": "mixed",
        "data": None,
        "media": {"tracks": [{"type": "audio"}, {"type": "video"}]},
        "info": {"label": "common", "activeInput": "unknown", "layout": []},
    }


def test_audio_and_video_status() -> None:
    stream = forward_stream()
    muted = apply_stream_update(stream, "video.status", "inactive")
    assert [t["status"] for t in muted["media"]["tracks"]] == ["active", "inactive"]
    both = apply_stream_update(muted, "audio.status", "inactive")
    assert [t["status"] for t in both["media"]["tracks"]] == ["inactive", "inactive"]


def test_input_is_not_modified() -> None:
    stream = forward_stream()
    before = copy.deepcopy(stream)
    apply_stream_update(stream, "video.status", "inactive")
    apply_stream_update(stream, ".", {"id": "s1", "media": {"tracks": []}})
    assert stream == before


def test_layout_and_active_input() -> None:
    layout = [
        {
            "stream": "s1",
            "region": {
                "id": "1",
                "shape": "rectangle",
                "area": {"left": "0/1", "top": "0/1", "width": "1/1", "height": "1/1"},
            },
        }
    ]
    updated = apply_stream_update(mixed_stream(), "video.layout", layout)
    assert updated["info"]["layout"] == layout
    assert updated["info"]["label"] == "common"
    updated = apply_stream_update(updated, "activeInput", "s1")
    assert updated["info"]["activeInput"] == "s1"
    assert updated["info"]["layout"] == layout


def test_layout_value_is_copied() -> None:
    layout: list[dict[str, Any]] = [{"stream": "s1"}]
    updated = apply_stream_update(mixed_stream(), "video.layout", layout)
    layout.append({"stream": "s2"})
    assert len(updated["info"]["layout"]) == 1


def test_dot_replaces_the_whole_streaminfo() -> None:
    replacement = forward_stream()
    replacement["info"]["inViews"] = ["common"]
    replacement["media"]["tracks"] = replacement["media"]["tracks"][:1]
    updated = apply_stream_update(forward_stream(), ".", replacement)
    assert updated == replacement


def test_dot_keeps_the_id_when_the_value_has_none() -> None:
    updated = apply_stream_update(forward_stream(), ".", {"type": "forward", "media": {}})
    assert updated["id"] == "s1"
    assert updated["media"] == {}


def test_dot_with_an_info_object_replaces_info() -> None:
    info = {"owner": "p1", "type": "webrtc", "inViews": ["common"], "attributes": {}}
    updated = apply_stream_update(forward_stream(), ".", info)
    assert updated["info"] == info
    assert updated["media"] == forward_stream()["media"]


def test_unknown_dotted_field_is_set_as_a_path() -> None:
    updated = apply_stream_update(forward_stream(), "info.attributes", {"name": "screen"})
    assert updated["info"]["attributes"] == {"name": "screen"}
    updated = apply_stream_update({"id": "x"}, "info.activeInput", "s9")
    assert updated["info"] == {"activeInput": "s9"}


def test_missing_info_is_created() -> None:
    updated = apply_stream_update({"id": "x", "media": {"tracks": []}}, "activeInput", "s1")
    assert updated["info"] == {"activeInput": "s1"}


def test_track_helpers() -> None:
    assert stream_track_kinds(forward_stream()) == {"audio", "video"}
    audio_only = forward_stream()
    audio_only["media"]["tracks"] = audio_only["media"]["tracks"][:1]
    assert stream_track_kinds(audio_only) == {"audio"}
    assert stream_tracks({"id": "x"}) == []
    assert stream_tracks({"media": {"tracks": None}}) == []
    assert stream_track_kinds({"media": {"tracks": ["bad", {"type": "video"}]}}) == {"video"}

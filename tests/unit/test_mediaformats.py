"""CodecFormat: OWT's format of a negotiated codec, and the room's mediaIn check."""

from __future__ import annotations

from typing import Any

import pytest

from tessera.conference.roomoptions import MediaIn
from tessera.webrtc_agent.mediaformats import CodecFormat, h264_profile


@pytest.mark.parametrize(
    ("level_id", "profile"),
    [
        ("42e01f", "CB"),  # what browsers and aiortc offer first
        ("42001f", "B"),
        ("4d001f", "M"),
        ("4d8032", "CB"),  # Main with constraint_set0: Constrained Baseline
        ("58c01f", "CB"),
        ("58801f", "B"),
        ("64001f", "H"),
        ("f4001f", None),  # High 4:4:4: no OWT name
        ("42e0", None),
        ("zz001f", None),
    ],
)
def test_h264_profile_of_a_profile_level_id(level_id: str, profile: str | None) -> None:
    assert h264_profile(level_id) == profile


def h264(level_id: str) -> CodecFormat:
    return CodecFormat.from_sdp(
        "video", "H264", 90000, None, {"packetization-mode": 1, "profile-level-id": level_id}
    )


def test_formats_as_owt_names_them() -> None:
    assert CodecFormat.from_sdp("video", "VP8", 90000, None, {}).to_json() == {"codec": "vp8"}
    assert h264("42e01f").to_json() == {"codec": "h264", "profile": "CB"}
    opus = CodecFormat.from_sdp("audio", "opus", 48000, 2, {})
    assert opus.to_json() == {"codec": "opus", "sampleRate": 48000, "channelNum": 2}
    pcmu = CodecFormat.from_sdp("audio", "PCMU", 8000, None, {})
    assert (pcmu.sample_rate, pcmu.channels) == (8000, 1)
    assert pcmu.to_json() == {"codec": "pcmu"}


def test_the_default_media_in_accepts_what_webrtc_publishers_send() -> None:
    default = MediaIn().model_dump(mode="json", by_alias=True)
    for fmt in (
        CodecFormat.from_sdp("audio", "opus", 48000, 2, {}),
        CodecFormat.from_sdp("audio", "PCMU", 8000, None, {}),
        CodecFormat.from_sdp("audio", "PCMA", 8000, None, {}),
    ):
        assert fmt.accepted_by(default["audio"]), fmt
    for fmt in (CodecFormat.from_sdp("video", "VP8", 90000, None, {}), h264("42e01f")):
        assert fmt.accepted_by(default["video"]), fmt


def test_codec_sample_rate_and_channels_must_match_what_a_format_names() -> None:
    opus = CodecFormat.from_sdp("audio", "opus", 48000, 2, {})
    assert opus.accepted_by([{"codec": "opus"}])
    assert opus.accepted_by([{"codec": "opus", "sampleRate": 48000, "channelNum": 2}])
    assert not opus.accepted_by([{"codec": "opus", "channelNum": 1}])
    assert not opus.accepted_by([{"codec": "pcmu"}, {"codec": "isac", "sampleRate": 16000}])
    assert not opus.accepted_by([])
    pcmu = CodecFormat.from_sdp("audio", "PCMU", 8000, None, {})
    assert pcmu.accepted_by([{"codec": "pcmu"}])
    assert not pcmu.accepted_by([{"codec": "pcmu", "sampleRate": 16000}])


@pytest.mark.parametrize(
    ("level_id", "accepted", "expected"),
    [
        ("42e01f", [{"codec": "h264"}], True),
        ("42e01f", [{"codec": "h264", "profile": "CB"}], True),
        ("42e01f", [{"codec": "h264", "profile": "H"}], True),  # up to High: CB too
        ("42001f", [{"codec": "h264", "profile": "CB"}], False),  # Baseline is more than CB
        ("64001f", [{"codec": "h264", "profile": "M"}], False),
        ("f4001f", [{"codec": "h264", "profile": "CB"}], True),  # unknown profile: as OWT
        ("42e01f", [{"codec": "vp8"}, {"codec": "vp9"}], False),
    ],
)
def test_h264_profiles_are_accepted_up_to_the_named_one(
    level_id: str, accepted: list[dict[str, Any]], expected: bool
) -> None:
    assert h264(level_id).accepted_by(accepted) is expected

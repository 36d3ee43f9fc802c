"""StreamInfo helpers: what a forward stream offers and which requests fit."""

from __future__ import annotations

import pytest

from tessera.media.mediasource import ParameterError, VideoFormat, is_keyframe
from tessera.media.streaminfo import (
    optional_resolutions,
    optional_video,
    resolve_video_codec,
    resolve_video_request,
)

MEDIA_OUT = {
    "video": {
        "format": [{"codec": "vp8"}, {"codec": "h264", "profile": "CB"}],
        "parameters": {
            "resolution": ["x3/4", "x1/2", "hd1080p", "vga", "qvga"],
            "framerate": [6, 15, 24, 30],
            "bitrate": ["x0.8", "x0.6"],
            "keyFrameInterval": [100, 30, 5],
        },
    }
}
TRANSCODING = {
    "video": {
        "format": True,
        "parameters": {
            "resolution": True,
            "framerate": True,
            "bitrate": True,
            "keyFrameInterval": True,
        },
    }
}


def track() -> dict[str, object]:
    info = {
        "type": "video",
        "format": {"codec": "vp8"},
        "parameters": {"resolution": {"width": 1280, "height": 720}, "framerate": 30},
    }
    info["optional"] = optional_video("vp8", (1280, 720), 30, MEDIA_OUT, TRANSCODING)
    return info


def test_optional_resolutions_scale_and_only_smaller_named_sizes() -> None:
    sizes = optional_resolutions((1280, 720), ["x3/4", "x1/2", "hd1080p", "vga", "qvga"])
    assert sizes == [
        {"width": 960, "height": 540},
        {"width": 640, "height": 360},
        {"width": 640, "height": 480},
        {"width": 320, "height": 240},
    ]


def test_optional_block_has_all_four_arrays_and_other_codecs_only() -> None:
    optional = track()["optional"]
    assert isinstance(optional, dict)
    assert optional["format"] == [{"codec": "h264", "profile": "CB"}]
    assert set(optional["parameters"]) == {"resolution", "framerate", "bitrate", "keyFrameInterval"}
    assert 30 not in optional["parameters"]["framerate"]  # not above or equal to the source


def test_no_transcoding_means_no_optional() -> None:
    assert optional_video("vp8", (640, 360), 30, MEDIA_OUT, {"video": False}) is None


def test_no_parameters_is_the_original() -> None:
    fmt = resolve_video_request(track(), None)
    assert fmt == VideoFormat(codec="vp8") and fmt.is_original


def test_own_values_are_the_original() -> None:
    params = {"resolution": {"width": 1280, "height": 720}, "framerate": 30}
    assert resolve_video_request(track(), params).is_original


def test_offered_values_resolve() -> None:
    fmt = resolve_video_request(
        track(),
        {
            "resolution": {"width": 640, "height": 360},
            "framerate": 15,
            "bitrate": "x0.6",
            "keyFrameInterval": 5,
        },
    )
    assert (fmt.width, fmt.height, fmt.framerate, fmt.bitrate, fmt.keyframe_interval) == (
        640,
        360,
        15,
        0.6,
        5,
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"resolution": {"width": 1000, "height": 10}}, "Resolution is not acceptable"),
        ({"resolution": "vga"}, "Resolution is not acceptable"),
        ({"framerate": 29}, "Framerate is not acceptable"),
        ({"bitrate": "x9"}, "Bitrate is not acceptable"),
        ({"keyFrameInterval": 7}, "KeyFrameInterval is not acceptable"),
        ("fast", "Video parameters must be an object"),
    ],
)
def test_unoffered_values_are_refused_by_name(params: object, message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        resolve_video_request(track(), params)


def test_codec_must_be_own_or_offered() -> None:
    assert resolve_video_codec(track(), None) == "vp8"
    assert resolve_video_codec(track(), {"codec": "h264"}) == "h264"
    with pytest.raises(ParameterError, match="Format is not acceptable"):
        resolve_video_codec(track(), {"codec": "av1"})


def test_keyframe_detection() -> None:
    assert is_keyframe("vp8", bytes([0x10, 0x02, 0x00]))
    assert not is_keyframe("vp8", bytes([0x11, 0x02, 0x00]))
    assert is_keyframe("h264", b"\x00\x00\x00\x01\x67\x42" + b"\x00\x00\x01\x65\x88")
    assert not is_keyframe("h264", b"\x00\x00\x00\x01\x41\x9a")
    assert not is_keyframe("vp8", b"")


def test_owt_default_bitrate() -> None:
    from tessera.media.videoencoder import default_bitrate

    # 720p30: 2000 kbit/s x 1.0 (h264) x 0.8 (motion factor), as OWT computes it.
    assert default_bitrate(1280, 720, 30, "h264") == 1_600_000
    assert default_bitrate(1280, 720, 30, "vp8") == 1_920_000
    assert default_bitrate(640, 480, 30, "h264", 1.0) == 800_000
    assert default_bitrate(1280, 720, 15, "h264", 1.0) < default_bitrate(1280, 720, 30, "h264", 1.0)


def test_an_audio_request_must_name_the_tracks_own_format() -> None:
    from tessera.media.mediasource import ParameterError
    from tessera.media.streaminfo import check_audio_format

    track = {"type": "audio", "format": {"codec": "opus", "sampleRate": 48000, "channelNum": 2}}
    check_audio_format(track, None)
    check_audio_format(track, {"codec": "OPUS"})
    check_audio_format(track, {"codec": "opus", "sampleRate": 48000, "channelNum": 2})
    for wrong in (
        {"codec": "pcmu"},
        {"codec": "opus", "channelNum": 1},
        {"sampleRate": 48000},
        "x",
    ):
        with pytest.raises(ParameterError, match="Format is not acceptable"):
            check_audio_format(track, wrong)

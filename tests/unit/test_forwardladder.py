"""A forward stream's ladder and the publisher's received bitrate (pure)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from tessera.media.bandwidth import Rung, RungChooser
from tessera.media.mediasource import ParameterError, VideoFormat
from tessera.webrtc_agent.forwardladder import ReceivedRate, forward_ladder
from tessera.webrtc_agent.forwardstream import ForwardStream, TrackSpec, VideoTranscoder


def test_a_720p_publisher_gets_half_and_quarter_rungs() -> None:
    assert forward_ladder(1280, 720, 2_500_000, "vp8") == (
        Rung(1280, 720, 2_500_000),
        Rung(640, 360, 640_000),
        Rung(320, 180, 288_000),
    )


def test_rungs_under_90_pixels_are_left_out() -> None:
    rungs = forward_ladder(320, 180, 600_000, "vp8")
    assert [(r.width, r.height) for r in rungs] == [(320, 180), (160, 90)]
    assert forward_ladder(240, 160, 600_000, "vp8") == (Rung(240, 160, 600_000),)


def test_the_sizes_do_not_move_with_the_publishers_bitrate() -> None:
    # A subscriber's rung index must name the same size whatever the publisher sends now.
    for bitrate in (30_000, 100_000, 300_000, 1_500_000, 21_000_000):
        rungs = forward_ladder(640, 360, bitrate, "vp8")
        assert [(r.width, r.height) for r in rungs] == [(640, 360), (320, 180), (160, 90)]
        # Highest first, as RungChooser requires; the top at least OWT's 640 kbit/s.
        assert rungs[0].bitrate == max(bitrate, 640_000)
        assert rungs[0].bitrate > rungs[1].bitrate > rungs[2].bitrate


def test_every_ladder_falls_from_rung_to_rung() -> None:
    for width, height in ((1920, 1080), (1280, 720), (640, 480), (352, 288), (200, 180)):
        for bitrate in (10_000, 500_000, 5_000_000):
            rungs = forward_ladder(width, height, bitrate, "vp8")
            RungChooser(tuple(r.bitrate for r in rungs))  # raises unless highest first
            assert all(a.bitrate > b.bitrate for a, b in itertools.pairwise(rungs))


def test_odd_sizes_give_even_rungs() -> None:
    rungs = forward_ladder(1366, 766, 3_000_000, "vp8")
    assert all(r.width % 2 == 0 and r.height % 2 == 0 for r in rungs)
    assert [r.height for r in rungs] == [766, 384, 192]


def test_received_rate_over_its_window() -> None:
    rate = ReceivedRate(window=2.0)
    assert rate.bitrate(0.0) is None
    for i in range(61):  # 30 frames/s of 2500 bytes for 2 s: 600 kbit/s
        rate.add(i / 30, 2500)
    assert rate.bitrate(2.0) is not None
    assert 580_000 <= (rate.bitrate(2.0) or 0) <= 640_000
    # Nothing for a while: the old frames leave the window and the figure goes away.
    assert rate.bitrate(10.0) is None


def test_received_rate_needs_half_a_window() -> None:
    rate = ReceivedRate(window=2.0)
    rate.add(0.0, 1000)
    rate.add(0.5, 1000)
    assert rate.bitrate(0.5) is None
    assert rate.bitrate(1.0) == 16_000


def forward_stream(transcoding: dict[str, Any]) -> ForwardStream:
    spec = TrackSpec("video", "1", "camera", {"resolution": {"width": 1280, "height": 720}})
    stream = ForwardStream(
        "s", "p", [spec], None, media_in={}, media_out={}, transcoding=transcoding
    )
    stream.tracks["video"].codec = "vp8"  # as bind() sets it once negotiated
    return stream


ALLOWED = {"video": {"format": True, "parameters": {"resolution": True}}}


def test_a_forward_stream_offers_its_ladder_to_subscribers_of_it_as_it_is() -> None:
    stream = forward_stream(ALLOWED)
    # Nothing received yet: the top rung is OWT's bitrate for the size.
    assert [(r.width, r.height) for r in stream.ladder(VideoFormat("vp8"))] == [
        (1280, 720),
        (640, 360),
        (320, 180),
    ]
    # A subscriber who asked for a size, another codec: no ladder to move along.
    assert len(stream.ladder(VideoFormat("vp8", width=640, height=360))) == 1
    assert stream.ladder(VideoFormat("h264")) == ()
    with pytest.raises(ParameterError, match="no rung 3"):
        stream.rung_source(VideoFormat("vp8"), 3)
    assert stream.rung_source(VideoFormat("vp8"), 0) is stream.tracks["video"]
    low = stream.rung_source(VideoFormat("vp8"), 2)
    assert isinstance(low, VideoTranscoder) and (low.format.width, low.format.height) == (320, 180)
    assert stream.rung_source(VideoFormat("vp8"), 2) is low  # one transcode per rung
    stream.close()


def test_a_room_without_resolution_transcoding_keeps_forward_subscribers_on_top() -> None:
    for transcoding in ({}, {"video": {"parameters": {"resolution": False}}}):
        stream = forward_stream(transcoding)
        assert len(stream.ladder(VideoFormat("vp8"))) == 1
        stream.close()

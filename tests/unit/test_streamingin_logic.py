"""The pure parts of streaming-ins: the request, the plan per track, the clock, the delays."""

from __future__ import annotations

from typing import Any

import pytest

from tessera.conference.streaminginrequest import (
    StreamingInRequestError,
    parse_streaming_in,
)
from tessera.ingest.clock import IngestClock
from tessera.ingest.plan import (
    IngestPlanError,
    SourceTrack,
    h264_profile_name,
    plan_tracks,
)
from tessera.ingest.puller import SourceOptions, reconnect_delay, redact

OWT_MEDIA_IN: dict[str, Any] = {
    "audio": [{"codec": "opus", "sampleRate": 48000, "channelNum": 2}, {"codec": "aac"}],
    "video": [{"codec": "h264"}, {"codec": "vp8"}, {"codec": "vp9"}],
}
AUTO = {"audio": "auto", "video": "auto"}


def test_owt_body_parses_with_owt_defaults() -> None:
    request = parse_streaming_in(
        {"connection": {"url": "rtsp://cam/x"}, "media": {"audio": "auto", "video": True}}
    )
    assert request.url == "rtsp://cam/x" and request.scheme == "rtsp"
    assert request.transport_protocol == "tcp" and request.buffer_size == 8192
    assert (request.audio, request.video) == ("auto", "yes")
    assert parse_streaming_in({"connection": {"url": "/srv/a.mp4"}}).scheme == "file"
    udp = parse_streaming_in(
        {"connection": {"url": "rtsp://c/x", "transportProtocol": "udp", "bufferSize": 2048}}
    )
    assert (udp.transport_protocol, udp.buffer_size) == ("udp", 2048)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ([], "JSON object"),
        ({}, "connection: an object"),
        ({"connection": {"url": ""}}, "connection.url"),
        ({"connection": {"url": 5}}, "connection.url"),
        ({"connection": {"url": "ftp://x/y"}}, "scheme 'ftp'"),
        ({"connection": {"url": "rtsp://x/\n"}}, "control characters"),
        ({"connection": {"url": "rtsp://x", "transportProtocol": "sctp"}}, "transportProtocol"),
        ({"connection": {"url": "https://x/a.m3u8", "transportProtocol": "udp"}}, "RTSP"),
        ({"connection": {"url": "rtsp://x", "bufferSize": True}}, "bufferSize"),
        ({"connection": {"url": "rtsp://x", "bufferSize": 0}}, "bufferSize"),
        ({"connection": {"url": "rtsp://x", "port": 1}}, "connection.port: unknown"),
        ({"connection": {"url": "rtsp://x"}, "media": []}, "media: an object"),
        ({"connection": {"url": "rtsp://x"}, "media": {"data": 1}}, "media.data"),
        ({"connection": {"url": "rtsp://x"}, "media": {"video": "on"}}, "media.video"),
        ({"connection": {"url": "rtsp://x"}, "media": {"audio": False, "video": False}}, "both"),
        ({"connection": {"url": "rtsp://x"}, "attributes": 3}, "attributes"),
        ({"connection": {"url": "rtsp://x"}, "type": "webrtc"}, "type"),
    ],
)
def test_refusals_name_the_field(body: Any, words: str) -> None:
    with pytest.raises(StreamingInRequestError, match=words.replace("(", r"\(")):
        parse_streaming_in(body)


def test_webrtc_formats_pass_through_others_are_transcoded_once() -> None:
    vp8 = SourceTrack("video", "vp8")
    opus = SourceTrack("audio", "opus", sample_rate=48000, channels=2)
    plans = plan_tracks([vp8, opus], AUTO, OWT_MEDIA_IN)
    assert plans["video"].passthrough and plans["video"].codec == "vp8"
    assert plans["audio"].passthrough and plans["audio"].codec == "opus"

    baseline = SourceTrack("video", "h264", profile="Constrained Baseline")
    plan = plan_tracks([baseline], AUTO, OWT_MEDIA_IN)["video"]
    assert plan.passthrough and plan.profile == "CB"
    # B-frames, or a profile no browser decodes: transcoded (VP8 first, if accepted).
    for track in (
        SourceTrack("video", "h264", profile="High", b_frames=True),
        SourceTrack("video", "h264", profile="High 4:4:4 Predictive"),
        SourceTrack("video", "hevc"),
        SourceTrack("video", "mpeg4"),
    ):
        plan = plan_tracks([track], AUTO, OWT_MEDIA_IN)["video"]
        assert plan.transcode and plan.codec == "vp8", track
    for track in (
        SourceTrack("audio", "aac", sample_rate=44100, channels=2),
        SourceTrack("audio", "opus", sample_rate=48000, channels=1),
    ):
        plan = plan_tracks([track], AUTO, OWT_MEDIA_IN)["audio"]
        assert plan.transcode and plan.codec == "opus", track


def test_the_room_media_in_decides() -> None:
    h264_only = {"audio": OWT_MEDIA_IN["audio"], "video": [{"codec": "h264", "profile": "B"}]}
    vp8 = SourceTrack("video", "vp8")
    plan = plan_tracks([vp8], AUTO, h264_only)["video"]
    assert plan.transcode and (plan.codec, plan.profile) == ("h264", "CB")
    high = SourceTrack("video", "h264", profile="High")
    plan = plan_tracks([high], AUTO, h264_only)["video"]
    assert plan.transcode and plan.codec == "h264"
    with pytest.raises(IngestPlanError, match="no video format"):
        plan_tracks([vp8], AUTO, {"audio": [], "video": [{"codec": "vp9"}]})
    with pytest.raises(IngestPlanError, match="does not accept Opus"):
        plan_tracks([SourceTrack("audio", "aac")], AUTO, {"audio": [{"codec": "aac"}]})
    # A kind the room refuses outright: skipped when "auto", refused when asked for.
    no_video = {"audio": OWT_MEDIA_IN["audio"], "video": []}
    tone = SourceTrack("audio", "aac")
    assert list(plan_tracks([vp8, tone], AUTO, no_video)) == ["audio"]
    with pytest.raises(IngestPlanError, match="Video is forbidden"):
        plan_tracks([vp8, tone], {"audio": "auto", "video": "yes"}, no_video)


def test_asked_media_and_unsupported_codecs() -> None:
    tone = SourceTrack("audio", "aac")
    with pytest.raises(IngestPlanError, match="no video"):
        plan_tracks([tone], {"audio": "auto", "video": "yes"}, OWT_MEDIA_IN)
    assert list(plan_tracks([tone], AUTO, OWT_MEDIA_IN)) == ["audio"]
    with pytest.raises(IngestPlanError, match="has no video"):
        plan_tracks([tone], {"audio": "no", "video": "auto"}, OWT_MEDIA_IN)
    with pytest.raises(IngestPlanError, match="Unsupported video codec ffv1"):
        plan_tracks([SourceTrack("video", "ffv1")], AUTO, OWT_MEDIA_IN)
    with pytest.raises(IngestPlanError, match="Unsupported audio codec flac"):
        plan_tracks([SourceTrack("audio", "flac")], AUTO, OWT_MEDIA_IN)
    # An unsupported track not asked for is left out, not refused.
    only_video = plan_tracks(
        [SourceTrack("video", "vp8"), SourceTrack("audio", "flac")],
        {"audio": "no", "video": "auto"},
        OWT_MEDIA_IN,
    )
    assert list(only_video) == ["video"]
    assert h264_profile_name("Main") == "M" and h264_profile_name(None) is None


def test_the_clock_continues_across_loops_and_outages() -> None:
    clock = IngestClock()
    # First segment: source times from 10 s map to 0 s.
    assert clock.timeline(10.0, now=100.0) == 0.0
    assert clock.timeline(10.5, now=100.5) == 0.5
    assert clock.place(10.25) == 0.25
    assert clock.wait(1.0, now=100.5) == pytest.approx(0.5)
    # A file that loops: its times start again; the timeline goes on one tick later.
    clock.new_segment()
    looped = clock.timeline(0.0, now=100.5)
    assert 0.5 < looped < 0.5001
    # An outage of 10 s: the next segment starts where the wall clock is.
    clock.new_segment()
    assert clock.timeline(3.0, now=111.0) == pytest.approx(11.0)
    assert clock.segments == 3
    # A jump of the source's clock (wrapped, reset) is anchored again, not waited for.
    jumped = clock.timeline(5000.0, now=111.1)
    assert jumped == pytest.approx(11.1) and clock.wait(jumped, now=111.1) < 1e-6
    back = clock.timeline(1.0, now=111.2)
    assert back == pytest.approx(11.2)


def test_delays_urls_and_source_options() -> None:
    assert [reconnect_delay(a) for a in range(7)] == [0.5, 1, 2, 4, 8, 15, 15]
    assert reconnect_delay(1000) == 15
    assert redact("rtsp://user:secret@cam:554/x?y=1") == "rtsp://cam:554/x?y=1"
    assert redact("rtmp://host/app") == "rtmp://host/app"
    udp = SourceOptions(url="rtsp://c/x", scheme="rtsp", transport_protocol="udp", buffer_size=9)
    assert udp.container_options() == {"rtsp_transport": "udp", "buffer_size": "9"}
    tcp = SourceOptions(url="rtsp://c/x", scheme="rtsp")
    assert tcp.container_options() == {"rtsp_transport": "tcp"}
    assert SourceOptions(url="rtmp://c/x", scheme="rtmp").container_options() == {}
    # Servers of live protocols send in real time; files and HLS are held to it.
    assert not tcp.paced and SourceOptions(url="https://h/a.m3u8", scheme="https").paced

"""Room option mediaIn: the formats a room accepts from publishers, with real aiortc peers."""

from __future__ import annotations

from typing import Any

from aiortc import sdp

from tessera_client import ClientError, ConferenceClient
from tests.eventually import eventually
from tests.support import RunningServer, api, joined, room_with
from tests.synthetic import ColorVideoTrack, ToneTrack, next_video_frame


def answered_codecs(client: ConferenceClient, mid: str) -> list[str]:
    """The codec names the server's answer lists for an m-line (RTX left out)."""
    assert client.pc is not None and client.pc.remoteDescription is not None
    answer = sdp.SessionDescription.parse(client.pc.remoteDescription.sdp)
    media = next(m for m in answer.media if m.rtp.muxId == mid)
    return [c.name.lower() for c in media.rtp.codecs if c.name.lower() != "rtx"]


def track_format(client: ConferenceClient, stream_id: str, kind: str) -> dict[str, Any]:
    stream = client.streams[stream_id]
    return dict(next(t for t in stream["media"]["tracks"] if t["type"] == kind)["format"])


async def test_a_room_taking_only_h264_refuses_vp8_and_negotiates_h264(
    tessera: RunningServer,
) -> None:
    room = await room_with(tessera, "h264-only", mediaIn={"video": [{"codec": "h264"}]})
    vp8_only = await joined(tessera, "vp8-camera", room=room)
    refused = await vp8_only.publish(
        video=ColorVideoTrack((200, 30, 30)), codecs={"video": ["vp8"]}
    )
    try:
        await refused.wait_ready()
        raise AssertionError("a VP8-only publication was accepted by an H.264-only room")
    except ClientError as exc:
        assert str(exc) == "Video format unacceptable"
    loaded = tessera.server.rooms[room]
    assert not [s for s in loaded.streams.values() if s.type == "forward"]
    assert refused.id not in loaded.participants[vp8_only.participant_id].publications  # type: ignore[index]

    # Offering both (VP8 first, aiortc's own order): the answer lists one H.264 format only,
    # the first the publisher offered (aiortc: profile-level-id 42001f, Baseline).
    both = await joined(tessera, "any-camera", room=room)
    pub = await both.publish(video=ColorVideoTrack((30, 30, 200)))
    await pub.wait_ready()
    assert answered_codecs(both, pub.mids["video"]) == ["h264"]
    await eventually(lambda: pub.id in both.streams, what="the stream's add event")
    assert track_format(both, pub.id, "video") == {"codec": "h264", "profile": "B"}

    # What was advertised is what flows: a forward subscriber gets H.264 frames.
    viewer = await joined(tessera, "viewer", room=room)
    assert track_format(viewer, pub.id, "video") == {"codec": "h264", "profile": "B"}
    sub = await viewer.subscribe(pub.id)
    await sub.wait_ready()
    assert sub.video_track is not None
    frame = await next_video_frame(sub.video_track, timeout=20)
    assert frame.width > 0
    assert answered_codecs(viewer, sub.mids["video"])[0] == "h264"
    for client in (vp8_only, both, viewer):
        await client.leave()


async def test_audio_formats_of_the_room_only(tessera: RunningServer) -> None:
    room = await room_with(tessera, "pcmu-only", mediaIn={"audio": [{"codec": "pcmu"}]})
    client = await joined(tessera, "phone", room=room)
    pub = await client.publish(audio=ToneTrack(440))  # aiortc offers opus, PCMU, PCMA
    await pub.wait_ready()
    assert answered_codecs(client, pub.mids["audio"]) == ["pcmu"]
    await eventually(lambda: pub.id in client.streams, what="the stream's add event")
    assert track_format(client, pub.id, "audio") == {"codec": "pcmu"}

    # Opus only, where Opus at one channel is all the room takes: refused.
    mono = await room_with(
        tessera,
        "mono-opus",
        mediaIn={"audio": [{"codec": "opus", "sampleRate": 48000, "channelNum": 1}]},
    )
    other = await joined(tessera, "stereo", room=mono)
    refused = await other.publish(audio=ToneTrack(440), codecs={"audio": ["opus"]})
    try:
        await refused.wait_ready()
        raise AssertionError("stereo Opus was accepted by a room that takes mono Opus only")
    except ClientError as exc:
        assert str(exc) == "Audio format unacceptable"
    for c in (client, other):
        await c.leave()


async def test_a_kind_the_room_takes_in_no_format_is_refused_at_publish(
    tessera: RunningServer,
) -> None:
    room = await room_with(tessera, "no-video", mediaIn={"video": []})
    client = await joined(tessera, "cam", room=room)
    try:
        await client.publish(video=ColorVideoTrack((10, 200, 10)))
        raise AssertionError("video was published into a room that takes none")
    except ClientError as exc:
        assert str(exc) == "Video is forbidden in this room (mediaIn)"
    # Audio is still welcome.
    pub = await client.publish(audio=ToneTrack(300))
    await pub.wait_ready()
    await client.leave()


async def test_bad_media_in_values_are_refused_by_field(tessera: RunningServer) -> None:
    for media_in, field in (
        ({"video": [{"codec": "h263"}]}, "options.mediaIn.video.0.codec"),
        ({"video": [{"codec": "vp8", "profile": "CB"}]}, "options.mediaIn.video.0"),
        ({"audio": "opus"}, "options.mediaIn.audio"),
        (
            {"audio": [{"codec": "opus", "sampleRate": "48000"}]},
            "options.mediaIn.audio.0.sampleRate",
        ),
    ):
        status, body = await api(
            tessera, "POST", "/v1/rooms", {"name": "bad", "options": {"mediaIn": media_in}}
        )
        assert status == 400, body
        assert field in body["error"]["message"], (field, body)

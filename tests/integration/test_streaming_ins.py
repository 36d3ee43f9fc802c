"""REST streaming-ins: real sources on loopback pulled into a room, frames decoded by a peer.

Each source kind (a file, an HLS folder, RTMP served by FFmpeg, RTSP served by
GStreamer) becomes a forward stream whose frames a real aiortc subscriber
decodes; a dropped source is reconnected; refusals leave nothing behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tessera.ingest.streamingin import StreamingIn
from tessera.media.videoencoder import VideoEncoder
from tessera_client import ConferenceClient
from tests.eventually import eventually
from tests.ingest_sources import (
    RtmpSource,
    RtspSource,
    ffmpeg_or_skip,
    serving_folder,
    system_gstreamer_or_skip,
    write_hls,
    write_source,
)
from tests.receivers import free_port
from tests.support import RunningServer, api, joined
from tests.synthetic import close_to, collect_audio, mean_rgb, next_video_frame, tone_energy

RED = (230, 30, 30)
BLUE = (30, 30, 230)
GREEN = (30, 200, 30)


def recordings_dir(tessera: RunningServer) -> Path:
    path: Path = tessera.server.conference.settings.recording_dir
    path.mkdir(parents=True, exist_ok=True)
    return path


async def add(tessera: RunningServer, url: str, **body: Any) -> tuple[int, Any]:
    connection = {"url": url, **body.pop("connection", {})}
    return await api(
        tessera, "POST", "/v1/rooms/default/streaming-ins", {"connection": connection, **body}
    )


async def sees_colour(
    client: ConferenceClient, stream_id: str, colour: tuple[int, int, int], *, audio: bool
) -> None:
    """Subscribe to the stream: its decoded frames are of `colour` (and its audio the tone)."""
    subscription = await client.subscribe(stream_id, audio=audio)
    await subscription.wait_ready()
    assert subscription.video_track is not None
    frame = await next_video_frame(subscription.video_track, 30)
    for _ in range(5):
        frame = await next_video_frame(subscription.video_track, 30)
    assert (frame.width, frame.height) == (320, 240)
    assert close_to(mean_rgb(frame), colour), mean_rgb(frame)
    if audio:
        assert subscription.audio_track is not None
        samples = await collect_audio(subscription.audio_track, 1.0)
        assert tone_energy(samples[-24000:], 440) > 0.5
    await subscription.unsubscribe()


def live(tessera: RunningServer) -> list[StreamingIn]:
    return [s for room in tessera.server.rooms.values() for s in room.streaming_ins.values()]


def tracks(info: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["type"]: t for t in info["media"]["tracks"]}


async def test_a_file_is_transcoded_once_mixed_recorded_and_removed(
    tessera: RunningServer,
) -> None:
    # MPEG-4 Part 2 video and AAC audio: neither is a WebRTC format, both are transcoded.
    source = write_source(
        recordings_dir(tessera) / "clip.mp4", video="mpeg4", audio="aac", colour=RED
    )
    viewer = await joined(tessera, "viewer", role="viewer")
    status, info = await add(tessera, str(source))
    assert status == 200, info
    assert info["type"] == "forward" and info["info"]["owner"] == "admin"
    assert info["info"]["type"] == "streaming" and info["info"]["status"] == "streaming"
    assert info["info"]["inViews"] == ["common"]
    kinds = tracks(info)
    assert kinds["video"]["format"] == {"codec": "vp8"}
    assert kinds["video"]["parameters"]["resolution"] == {"width": 320, "height": 240}
    assert kinds["audio"]["format"] == {"codec": "opus", "sampleRate": 48000, "channelNum": 2}
    added = await viewer.next_event("stream", lambda d: d["status"] == "add")
    assert added["id"] == info["id"] and added["data"]["info"]["type"] == "streaming"

    # Two subscribers: one transcode for both (the puller's encoder is the only new one).
    encoders = VideoEncoder.created
    other = await joined(tessera, "other", role="viewer")
    await sees_colour(viewer, info["id"], RED, audio=True)
    # The 3 s file plays again from its start (a loop), and goes on being seen.
    stream = next(s for s in live(tessera) if s.id == info["id"])
    await eventually(lambda: stream.segments >= 2, what="the file played a second time")
    await sees_colour(other, info["id"], RED, audio=False)
    assert VideoEncoder.created - encoders == 1

    # Mixed into the view (autoMix): the view shows the colour.
    view = await viewer.subscribe(f"{viewer.room_id}-common", audio=False)
    await view.wait_ready()
    assert view.video_track is not None

    async def view_is_red() -> bool:
        assert view.video_track is not None
        return close_to(mean_rgb(await next_video_frame(view.video_track)), RED, 60)

    await eventually(view_is_red, what="the streaming-in in the mixed view")
    await view.unsubscribe()

    # Recordable: a recording of the stream decodes.
    status, recording = await api(
        tessera,
        "POST",
        f"/v1/rooms/{viewer.room_id}/recordings",
        {"media": {"video": {"from": info["id"]}, "audio": {"from": info["id"]}}},
    )
    assert status == 200, recording

    # Listed, then deleted: the stream goes, its recording ends, the puller stops.
    status, listed = await api(tessera, "GET", "/v1/rooms/default/streaming-ins")
    assert status == 200 and [s["id"] for s in listed] == [info["id"]], listed
    assert listed[0]["connection"]["url"] == str(source)
    status, body = await api(tessera, "DELETE", f"/v1/rooms/default/streaming-ins/{info['id']}")
    assert status == 200 and body in (b"", ""), body
    removed = await viewer.next_event("stream", lambda d: d["status"] == "remove")
    assert removed["id"] == info["id"]
    assert live(tessera) == []
    status, listed = await api(tessera, "GET", "/v1/rooms/default/streaming-ins")
    assert status == 200 and listed == []
    status, error = await api(tessera, "DELETE", f"/v1/rooms/default/streaming-ins/{info['id']}")
    assert status == 404, error
    await other.leave()
    await viewer.leave()


async def test_an_hls_folder_passes_h264_through(tessera: RunningServer, tmp_path: Path) -> None:
    ffmpeg = ffmpeg_or_skip()
    source = write_source(
        tmp_path / "blue.ts",
        container="mpegts",
        video="libx264",
        colour=BLUE,
        video_options={"profile": "baseline", "bf": "0"},
    )
    playlist = write_hls(ffmpeg, source, tmp_path / "hls")
    viewer = await joined(tessera, "viewer", role="viewer")
    async with serving_folder(playlist.parent) as base:
        encoders = VideoEncoder.created
        status, info = await add(tessera, f"{base}/index.m3u8", media={"video": True})
        assert status == 200, info
        kinds = tracks(info)
        assert kinds["video"]["format"]["codec"] == "h264"
        assert kinds["audio"]["format"]["codec"] == "opus"
        await sees_colour(viewer, info["id"], BLUE, audio=True)
        # The video was not transcoded (only the mixer's encoders may exist).
        stream = next(s for s in live(tessera) if s.id == info["id"])
        assert stream.plans["video"].passthrough and stream.plans["audio"].transcode
        assert VideoEncoder.created - encoders <= 1  # the view's own, if it started
    await viewer.leave()


async def test_rtmp_passes_through_and_reconnects_when_the_source_comes_back(
    tessera: RunningServer, tmp_path: Path
) -> None:
    ffmpeg = ffmpeg_or_skip()
    source = write_source(
        tmp_path / "green.flv",
        container="flv",
        colour=GREEN,
        video_options={"profile": "baseline", "bf": "0"},
    )
    rtmp = RtmpSource(ffmpeg, source)
    await rtmp.start()
    viewer = await joined(tessera, "viewer", role="viewer")
    try:
        status, info = await add(tessera, rtmp.url)
        assert status == 200, info
        assert tracks(info)["video"]["format"]["codec"] == "h264"
        await sees_colour(viewer, info["id"], GREEN, audio=False)
        subscription = await viewer.subscribe(info["id"], audio=False)
        await subscription.wait_ready()
        assert subscription.video_track is not None
        await next_video_frame(subscription.video_track, 30)

        rtmp.kill()
        update = await viewer.next_event(
            "stream",
            lambda d: (
                d["status"] == "update" and d["data"]["value"]["info"]["status"] == "reconnecting"
            ),
        )
        assert update["data"]["field"] == "."
        status, got = await api(tessera, "GET", f"/v1/rooms/default/streaming-ins/{info['id']}")
        assert status == 200 and got["info"]["status"] == "reconnecting", got
        assert got["info"]["reason"]

        await rtmp.start()  # the same url again
        back = await viewer.next_event(
            "stream",
            lambda d: (
                d["status"] == "update" and d["data"]["value"]["info"]["status"] == "streaming"
            ),
            timeout=60,
        )
        assert back["id"] == info["id"]
        # Frames come back on the same subscription.
        frame = await next_video_frame(subscription.video_track, 30)
        for _ in range(3):
            frame = await next_video_frame(subscription.video_track, 30)
        assert close_to(mean_rgb(frame), GREEN)
        status, got = await api(tessera, "GET", f"/v1/rooms/default/streaming-ins/{info['id']}")
        assert got["info"]["status"] == "streaming" and got["reconnects"] >= 1, got
    finally:
        rtmp.kill()
        await viewer.leave()


async def test_rtsp_from_gstreamer_passes_vp8_and_opus_through(tessera: RunningServer) -> None:
    system_gstreamer_or_skip()
    rtsp = RtspSource()
    await rtsp.start()
    viewer = await joined(tessera, "viewer", role="viewer")
    try:
        encoders = VideoEncoder.created
        status, info = await add(
            tessera, rtsp.url, connection={"transportProtocol": "udp", "bufferSize": 65536}
        )
        assert status == 200, info
        kinds = tracks(info)
        assert kinds["video"]["format"] == {"codec": "vp8"}
        assert kinds["audio"]["format"]["codec"] == "opus"
        await sees_colour(viewer, info["id"], BLUE, audio=True)
        stream = next(s for s in live(tessera) if s.id == info["id"])
        assert stream.plans["video"].passthrough and stream.plans["audio"].passthrough
        assert VideoEncoder.created - encoders == 0
        # Mixed: the passed-through video is decoded for the view (only while it is mixed).
        view = await viewer.subscribe(f"{viewer.room_id}-common", audio=False)
        await view.wait_ready()

        async def view_is_blue() -> bool:
            assert view.video_track is not None
            return close_to(mean_rgb(await next_video_frame(view.video_track)), BLUE, 60)

        await eventually(view_is_blue, what="the RTSP source in the mixed view")
    finally:
        await rtsp.kill()
        await viewer.leave()


async def test_refusals_name_the_problem_and_leave_nothing(
    tessera: RunningServer, tmp_path: Path
) -> None:
    viewer = await joined(tessera, "viewer", role="viewer")
    folder = recordings_dir(tessera)
    audio_only = write_source(folder / "tone.mka", container="matroska", video=None)
    ffv1_video = write_source(folder / "ffv1.mkv", container="matroska", video="ffv1", audio=None)
    outside = write_source(tmp_path / "outside.mp4", video="mpeg4")
    cases: list[tuple[dict[str, Any], int, str]] = [
        # Unreachable: nothing listens there (refused at once, or after the open timeout).
        (
            {"connection": {"url": f"rtmp://127.0.0.1:{free_port()}/live/x"}},
            502,
            "Cannot open rtmp://127.0.0.1",
        ),
        ({"connection": {"url": str(audio_only)}, "media": {"video": True}}, 400, "no video"),
        ({"connection": {"url": str(ffv1_video)}}, 400, "Unsupported video codec ffv1"),
        ({"connection": {"url": str(outside)}}, 403, "recording directory"),
        ({"connection": {"url": "gopher://x"}}, 400, "connection.url"),
        ({"connection": {"url": "rtmp://x/y", "transportProtocol": "udp"}}, 400, "RTSP"),
        ({"connection": {"url": "rtsp://x/y", "bufferSize": -1}}, 400, "bufferSize"),
        ({"connection": {"url": "rtsp://x/y"}, "media": {"audio": "yes"}}, 400, "media.audio"),
        (
            {"connection": {"url": "rtsp://x/y"}, "media": {"audio": False, "video": False}},
            400,
            "nothing to take",
        ),
        ({"connection": {"url": "rtsp://x/y"}, "extra": 1}, 400, "extra: unknown field"),
        ({"url": "rtsp://x/y"}, 400, "url: unknown field"),
    ]
    for body, code, words in cases:
        status, error = await api(tessera, "POST", "/v1/rooms/default/streaming-ins", body)
        assert status == code and words in error["error"]["message"], (body, status, error)
        assert error["error"]["code"] in (1201, 1301, 1102), error
    status, error = await api(
        tessera,
        "POST",
        "/v1/rooms/nosuchroom/streaming-ins",
        {"connection": {"url": str(audio_only)}},
    )
    assert status == 404, error
    room = tessera.server.rooms[viewer.room_id]  # type: ignore[index]
    assert live(tessera) == []
    assert not any(isinstance(s, StreamingIn) for s in room.streams.values())
    assert [s for s in viewer.streams.values() if s["info"].get("type") == "streaming"] == []
    # An audio-only source is fine when video is not required.
    status, info = await api(
        tessera, "POST", "/v1/rooms/default/streaming-ins", {"connection": {"url": str(audio_only)}}
    )
    assert status == 200 and list(tracks(info)) == ["audio"], info
    await viewer.leave()


@pytest.mark.parametrize("limit", [1])
async def test_streaming_ins_count_as_inputs_and_keep_their_room(
    tessera: RunningServer, limit: int
) -> None:
    source = write_source(recordings_dir(tessera) / "red.mp4", video="mpeg4")
    status, room = await api(
        tessera, "POST", "/v1/rooms", {"name": "limited", "options": {"inputLimit": limit}}
    )
    assert status == 200, room
    path = f"/v1/rooms/{room['_id']}/streaming-ins"
    status, first = await api(tessera, "POST", path, {"connection": {"url": str(source)}})
    assert status == 200, first
    status, error = await api(tessera, "POST", path, {"connection": {"url": str(source)}})
    assert status == 400 and error["error"]["message"] == "Too many inputs", error
    # The room runs with nobody in it while it pulls; removing the source (as any stream,
    # over /v1.1/.../streams) unloads it.
    assert room["_id"] in tessera.server.rooms
    status, _ = await api(tessera, "DELETE", f"/v1.1/rooms/{room['_id']}/streams/{first['id']}")
    assert status == 200
    await eventually(lambda: room["_id"] not in tessera.server.rooms, what="the room unloaded")
    assert live(tessera) == []

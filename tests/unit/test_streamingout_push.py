"""Streaming-outs pushed to real receivers: HLS/DASH to an HTTP server, RTSP to FFmpeg."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import av
import pytest

from tessera.media.mediasource import ParameterError
from tessera.recorder.httppush import RetryPolicy
from tessera.recorder.recording import MediaChoice
from tessera.recorder.roomoutput import SOURCE_LOSS
from tessera.recorder.streamingout import StreamingOut
from tests.eventually import eventually
from tests.receivers import (
    Receiver,
    Store,
    ffmpeg_or_skip,
    free_port,
    playlist_names,
    running_receiver,
    running_store,
)
from tests.synthetic import tone_energy
from tests.unit.test_streamingout import (
    FPS,
    HEIGHT,
    TONE,
    WIDTH,
    Media,
    VP8Stream,
    decoded_audio,
    play,
)

FAST_RETRY = RetryPolicy(attempts=3, first_delay=0.05)


@pytest.fixture(scope="module")
def media() -> Media:
    return Media()


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    async with running_store() as kept:
        yield kept


def decode_bytes(data: bytes, tmp: Path, suffix: str) -> tuple[list[Any], Any]:
    path = tmp / f"check{suffix}"
    path.write_bytes(data)
    with av.open(str(path)) as f:
        frames = list(f.decode(video=0))
    samples, _ = decoded_audio(path)
    return frames, samples


# -- HLS and DASH over HTTP -----------------------------------------------------------


@pytest.mark.parametrize("method", ["PUT", "POST"])
async def test_hls_is_pushed_as_owt_names_it(
    store: Store, media: Media, tmp_path: Path, method: str
) -> None:
    stream = VP8Stream("s1")
    out = StreamingOut(
        "h1",
        "room1",
        "hls",
        f"{store.url}/show.m3u8",
        MediaChoice("s1", "s1"),
        parameters={"method": method.lower(), "hlsTime": 1, "hlsListSize": 2},
    )
    out.start({"s1": stream})
    await play(stream, media, 4.0)
    await eventually(lambda: "show.m3u8" in store.files, what="the playlist on the server")
    live = store.files["show.m3u8"].decode()
    assert "#EXT-X-ENDLIST" not in live
    await out.stop()
    assert out.state == "stopped" and out.reason is None

    # Each segment went up before the playlist that lists it, with the method asked for.
    sent = store.uploads(method)
    assert sent[0] == "show_00000.ts"
    for name in set(sent) - {"show.m3u8"}:
        assert name.startswith("show_") and name.endswith(".ts")
        listing = sent.index("show.m3u8", sent.index(name))
        assert listing > sent.index(name)
    # Segments that left the list were deleted, as OWT's delete_segments does.
    assert store.deleted and all(name.startswith("show_") for name in store.deleted)
    final = store.files["show.m3u8"].decode()
    assert final.rstrip().endswith("#EXT-X-ENDLIST")
    listed = playlist_names(final)
    assert 1 <= len(listed) <= 2 and all(name in store.files for name in listed)
    frames, samples = decode_bytes(b"".join(store.files[n] for n in listed), tmp_path, ".ts")
    assert frames and frames[0].key_frame
    assert {(fr.width, fr.height) for fr in frames} == {(WIDTH, HEIGHT)}
    assert tone_energy(samples, TONE) > 0.5

    info = out.describe()
    assert info["url"] == f"{store.url}/show.m3u8"
    assert info["parameters"] == {"method": method, "hlsTime": 1, "hlsListSize": 2}


async def test_dash_is_pushed_and_removed_at_exit(
    store: Store, media: Media, tmp_path: Path
) -> None:
    stream = VP8Stream("s1")
    out = StreamingOut(
        "d1",
        "room1",
        "dash",
        f"{store.url}/show.mpd",
        MediaChoice("s1", "s1"),
        parameters={"dashSegDuration": 1, "dashWindowSize": 3},
    )
    out.start({"s1": stream})
    # While it runs the manifest, the init segments and media segments are there.
    await play(stream, media, 3.5)
    await eventually(
        lambda: "show.mpd" in store.files and any("chunk-stream0" in name for name in store.files),
        what="the manifest and a segment on the server",
    )
    snapshot = dict(store.files)
    mpd = snapshot["show.mpd"].decode()
    assert "urn:mpeg:dash" in mpd and 'type="dynamic"' in mpd
    assert "show-init-stream0.m4s" in snapshot and "show-init-stream1.m4s" in snapshot
    chunk = sorted(n for n in snapshot if n.startswith("show-chunk-stream0-"))[0]
    assert chunk.endswith(".m4s") and len(chunk) == len("show-chunk-stream0-00001.m4s")
    path = tmp_path / "joined.mp4"
    path.write_bytes(snapshot["show-init-stream0.m4s"] + snapshot[chunk])
    with av.open(str(path)) as f:
        frames = list(f.decode(video=0))
    assert frames and (frames[0].width, frames[0].height) == (WIDTH, HEIGHT)
    audio_chunk = sorted(n for n in snapshot if n.startswith("show-chunk-stream1-"))[0]
    path.write_bytes(snapshot["show-init-stream1.m4s"] + snapshot[audio_chunk])
    samples, _ = decoded_audio(path)
    assert tone_energy(samples, TONE) > 0.5

    await out.stop()
    assert out.state == "stopped"
    # OWT's remove_at_exit: the segments and the manifest are deleted at the end.
    assert "show.mpd" in store.deleted and store.files == {}
    assert out.describe()["parameters"] == {
        "method": "PUT",
        "dashSegDuration": 1,
        "dashWindowSize": 3,
    }


async def test_a_server_answering_errors_fails_with_the_reason(store: Store, media: Media) -> None:
    store.fail_with = 503
    stream = VP8Stream("s1")
    out = StreamingOut(
        "e1",
        "room1",
        "hls",
        f"{store.url}/show.m3u8",
        MediaChoice("s1", "s1"),
        parameters={"hlsTime": 1},
        retry=FAST_RETRY,
    )
    out.start({"s1": stream})
    await play(stream, media, 3.0, until=lambda: out.state == "failed")
    await eventually(lambda: out.state == "failed", what="the push to fail")
    assert out.reason == (
        f"cannot push to {store.url}/show.m3u8: PUT show_00000.ts answered 503 "
        "Service Unavailable (after 3 tries)"
    )
    assert store.log == [("PUT", "show_00000.ts")] * 3  # tried again, then gave up
    assert stream.h264.sink_count == stream.opus.sink_count == 0
    await out.stop()
    assert out.describe()["state"] == "failed" and out.describe()["reason"] == out.reason


async def test_a_refusal_is_not_retried(store: Store, media: Media) -> None:
    store.fail_with = 403
    stream = VP8Stream("s1")
    out = StreamingOut(
        "e2",
        "room1",
        "dash",
        f"{store.url}/show.mpd",
        MediaChoice(None, "s1"),
        parameters={"method": "POST", "dashSegDuration": 1},
        retry=FAST_RETRY,
    )
    out.start({"s1": stream})
    await play(stream, media, 3.0, until=lambda: out.state == "failed")
    await eventually(lambda: out.state == "failed", what="the push to fail")
    assert out.reason is not None and "POST show-init-stream0.m4s answered 403" in out.reason
    assert len(store.log) == 1
    await out.stop()


async def test_an_unreachable_server_fails_after_retries(media: Media) -> None:
    url = f"http://127.0.0.1:{free_port()}/live/show.m3u8"
    stream = VP8Stream("s1")
    out = StreamingOut(
        "e3",
        "room1",
        "hls",
        url,
        MediaChoice("s1", "s1"),
        parameters={"hlsTime": 1},
        retry=FAST_RETRY,
    )
    out.start({"s1": stream})
    await play(stream, media, 3.0, until=lambda: out.state == "failed")
    await eventually(lambda: out.state == "failed", what="the push to fail")
    assert out.reason == (
        f"cannot push to {url}: PUT show_00000.ts failed: connection refused (after 3 tries)"
    )
    await out.stop()


@pytest.mark.parametrize(
    ("protocol", "url", "parameters", "words"),
    [
        ("hls", "file:///tmp/x.m3u8", None, "pushed over HTTP"),
        ("hls", "/var/www/x.m3u8", None, "pushed over HTTP"),
        ("hls", "http://127.0.0.1/live/x.ts", None, "names its playlist"),
        ("dash", None, None, "needs a url"),
        ("dash", "http://127.0.0.1/live/x.m3u8", None, "names its playlist"),
        ("hls", "http://u:p@127.0.0.1/x.m3u8", None, "credentials"),
        ("hls", "http://127.0.0.1/x.m3u8", {"method": "PATCH"}, "parameters.method"),
        ("hls", "http://127.0.0.1/x.m3u8", {"hlsTime": 0}, "parameters.hlsTime"),
        ("hls", "http://127.0.0.1/x.m3u8", {"hlsListSize": "5"}, "parameters.hlsListSize"),
        ("dash", "http://127.0.0.1/x.mpd", {"hlsTime": 2}, "parameters.hlsTime: unknown"),
        ("dash", "http://127.0.0.1/x.mpd", {"dashWindowSize": 61}, "parameters.dashWindowSize"),
        ("rtmp", "rtmp://127.0.0.1/live/x", {"hlsTime": 2}, "rtmp takes none"),
        ("rtsp", "rtsp://127.0.0.1", None, "names no path"),
        ("rtsp", "rtmp://127.0.0.1/live/x", None, "not an rtsp:// url"),
        ("rtsp", "rtsp://u:p@127.0.0.1/x", None, "credentials"),
    ],
)
async def test_refused_targets_bind_nothing(
    protocol: str, url: str | None, parameters: Any, words: str
) -> None:
    stream = VP8Stream("s1")
    out = StreamingOut("r", "room1", protocol, url, MediaChoice("s1", "s1"), parameters=parameters)
    with pytest.raises(ParameterError) as refused:
        out.start({"s1": stream})
    assert words in str(refused.value)
    assert stream.asked == [] and out.pusher is None


# -- RTSP --------------------------------------------------------------------------------


@pytest.fixture
def ffmpeg() -> str:
    return ffmpeg_or_skip()


@pytest.fixture
async def rtsp_receiver(ffmpeg: str, tmp_path: Path) -> AsyncIterator[Receiver]:
    async with running_receiver(ffmpeg, tmp_path / "received.mkv", "rtsp") as running:
        yield running


async def test_rtsp_push_to_a_real_receiver(rtsp_receiver: Receiver, media: Media) -> None:
    stream = VP8Stream("s1")
    out = StreamingOut("r1", "room1", "rtsp", rtsp_receiver.url, MediaChoice("s1", "s1"))
    out.start({"s1": stream})
    await play(stream, media, 3.0)
    assert out.state == "streaming"
    await out.stop()
    assert out.state == "stopped" and out.reason is None
    await rtsp_receiver.finished()
    with av.open(str(rtsp_receiver.out)) as f:
        v, a = f.streams.video[0], f.streams.audio[0]
        assert (v.codec_context.name, a.codec_context.name) == ("h264", "aac")
    with av.open(str(rtsp_receiver.out)) as f:
        frames = list(f.decode(video=0))
    assert len(frames) >= 3 * FPS - 10
    assert {(fr.width, fr.height) for fr in frames} == {(WIDTH, HEIGHT)}
    samples, _ = decoded_audio(rtsp_receiver.out)
    assert abs(len(samples) / 48000 - 3.0) < 0.3
    assert tone_energy(samples[24000:72000], TONE) > 0.5


async def test_rtsp_receiver_that_goes_away_fails_the_push(
    rtsp_receiver: Receiver, media: Media
) -> None:
    stream = VP8Stream("s1")
    out = StreamingOut("r2", "room1", "rtsp", rtsp_receiver.url, MediaChoice("s1", "s1"))
    out.start({"s1": stream})

    async def kill_when_streaming() -> None:
        await eventually(lambda: out.state == "streaming", what="the push to start")
        rtsp_receiver.close()

    killer = asyncio.ensure_future(kill_when_streaming())
    await play(stream, media, 4.0, until=lambda: out.state == "failed")
    await killer
    await eventually(lambda: out.state == "failed", what="the push to fail")
    assert out.reason == f"cannot push to {rtsp_receiver.url}: the server closed the connection"
    await out.stop()


async def test_rtsp_to_a_closed_port_fails_at_once(media: Media) -> None:
    url = f"rtsp://127.0.0.1:{free_port()}/live/x"
    stream = VP8Stream("s1")
    out = StreamingOut("r3", "room1", "rtsp", url, MediaChoice("s1", "s1"))
    out.start({"s1": stream})
    await eventually(lambda: out.state == "failed", what="the push to fail")
    assert out.reason == f"cannot push to {url}: connection refused"
    await out.stop()


async def test_a_lost_source_stops_with_a_reason(store: Store, media: Media) -> None:
    stream = VP8Stream("s1")
    out = StreamingOut(
        "l1",
        "room1",
        "hls",
        f"{store.url}/show.m3u8",
        MediaChoice("s1", "s1"),
        parameters={"hlsTime": 1},
    )
    out.start({"s1": stream})
    await play(stream, media, 1.5)
    assert out.source_gone("s1") is True
    await out.stop()
    assert out.state == "stopped" and out.reason == SOURCE_LOSS
    assert out.describe()["reason"] == SOURCE_LOSS

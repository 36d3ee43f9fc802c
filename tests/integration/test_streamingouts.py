"""REST streaming-outs as OWT's API has them: real peers, real receivers, frames decoded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest

from tessera_client import ConferenceClient
from tests.eventually import eventually
from tests.integration.test_recording import publishers, read_file
from tests.receivers import Receiver, Store, ffmpeg_or_skip, playlist_names, running_store
from tests.support import RunningServer, api
from tests.synthetic import next_video_frame


@pytest.fixture
def ffmpeg() -> str:
    return ffmpeg_or_skip()


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    async with running_store() as kept:
        yield kept


async def get_out(tessera: RunningServer, room: str, out_id: str) -> dict[str, Any]:
    status, info = await api(tessera, "GET", f"/v1/rooms/{room}/streaming-outs/{out_id}")
    assert status == 200, info
    return info  # type: ignore[no-any-return]


def segment_sizes(store: Store, tmp_path: Path) -> set[tuple[int, int]]:
    """Picture sizes of the segments the playlist lists now."""
    sizes: set[tuple[int, int]] = set()
    for name in playlist_names(store.files["view.m3u8"].decode()):
        path = tmp_path / name
        path.write_bytes(store.files[name])
        with av.open(str(path)) as f:
            sizes |= {(fr.width, fr.height) for fr in f.decode(video=0)}
    return sizes


async def test_hls_pushed_then_patched_then_deleted(
    tessera: RunningServer, store: Store, tmp_path: Path
) -> None:
    pubs = await publishers(tessera)
    room = pubs[0][0].room_id
    mixed = f"{room}-common"
    try:
        status, out = await api(
            tessera,
            "POST",
            f"/v1/rooms/{room}/streaming-outs",
            {
                # No protocol: OWT guesses it from the url.
                "url": f"{store.url}/view.m3u8",
                "parameters": {"method": "PUT", "hlsTime": 1, "hlsListSize": 3},
                "media": {"audio": {"from": mixed}, "video": {"from": mixed}},
            },
        )
        assert status == 200, out
        assert out["protocol"] == "hls" and out["url"] == f"{store.url}/view.m3u8"
        assert out["parameters"] == {"method": "PUT", "hlsTime": 1, "hlsListSize": 3}
        path = f"/v1/rooms/{room}/streaming-outs/{out['id']}"
        await eventually(
            lambda: "view.m3u8" in store.files and segment_sizes(store, tmp_path),
            what="segments of the mixed view on the user's server",
        )
        assert segment_sizes(store, tmp_path) == {(1280, 720)}

        # PATCH: another resolution of the view (a shared output of that format).
        status, streams = await api(tessera, "GET", f"/v1/rooms/{room}/streams/{mixed}")
        assert status == 200, streams
        video = next(t for t in streams["media"]["tracks"] if t["type"] == "video")
        smaller = next(
            r for r in video["optional"]["parameters"]["resolution"] if r["width"] < 1280
        )
        status, info = await api(
            tessera,
            "PATCH",
            path,
            [{"op": "replace", "path": "/media/video/parameters/resolution", "value": smaller}],
        )
        assert status == 200, info
        assert info["media"]["video"]["parameters"] == {"resolution": smaller}
        wanted = (smaller["width"], smaller["height"])
        await eventually(
            lambda: wanted in segment_sizes(store, tmp_path),
            what="segments at the new resolution",
        )

        # Bad paths and values: a 400 naming them, nothing changes.
        for body, words in (
            ([{"op": "replace", "path": "/media/video/x", "value": 1}], "[0].path"),
            ([{"op": "add", "path": "/media/audio/from", "value": mixed}], "[0].op"),
            (
                [{"op": "replace", "path": "/media/video/parameters/framerate", "value": 7}],
                "Framerate is not acceptable (/media/video/parameters/framerate)",
            ),
            (
                [{"op": "replace", "path": "/media/video/parameters/resolution", "value": 5}],
                "[0].value",
            ),
            ([{"op": "replace", "path": "/media/audio/status", "value": "off"}], "[0].value"),
            ([{"op": "replace", "path": "/media/video/from", "value": "nope"}], "nope"),
            ([], "non-empty list"),
        ):
            status, error = await api(tessera, "PATCH", path, body)
            assert status == 400 and words in error["error"]["message"], (body, error)
        assert (await get_out(tessera, room, out["id"]))["media"]["video"]["parameters"] == {
            "resolution": smaller
        }

        # PATCH status: the audio track is paused and resumed.
        status, info = await api(
            tessera,
            "PATCH",
            path,
            [{"op": "replace", "path": "/media/audio/status", "value": "inactive"}],
        )
        assert status == 200 and info["media"]["audio"]["status"] == "inactive", info
        status, info = await api(
            tessera,
            "PATCH",
            path,
            [{"op": "replace", "path": "/media/audio/status", "value": "active"}],
        )
        assert status == 200 and "status" not in info["media"]["audio"], info

        # DELETE: OWT answers an empty body; the playlist is ended on the server.
        async with aiohttp.ClientSession() as session:
            headers = {"Authorization": f"Bearer {tessera.server.default_service.key}"}
            async with session.delete(tessera.url + path, headers=headers) as resp:
                assert resp.status == 200 and await resp.read() == b""
        assert store.files["view.m3u8"].decode().rstrip().endswith("#EXT-X-ENDLIST")
        assert (await get_out(tessera, room, out["id"]))["state"] == "stopped"
    finally:
        for client, _ in pubs:
            await client.leave()


async def test_rtsp_rtmp_and_local_hls(tessera: RunningServer, ffmpeg: str, tmp_path: Path) -> None:
    pubs = await publishers(tessera)
    room = pubs[0][0].room_id
    mixed = f"{room}-common"
    rtsp = Receiver(ffmpeg, tmp_path / "rtsp.mkv", "rtsp")
    rtmp = Receiver(ffmpeg, tmp_path / "rtmp.flv", "rtmp")
    try:
        await rtsp.wait_listening()
        await rtmp.wait_listening()
        media = {"audio": {"from": mixed}, "video": {"from": mixed}}
        ids = []
        for body in (
            {"protocol": "rtsp", "url": rtsp.url, "media": media},
            {"url": rtmp.url, "media": media},  # protocol guessed: rtmp
            {"protocol": "hls", "parameters": {"hlsTime": 1}, "media": media},
        ):
            status, out = await api(tessera, "POST", f"/v1/rooms/{room}/streaming-outs", body)
            assert status == 200, out
            ids.append(out["id"])
        assert out["url"].startswith("/hls/") and out["parameters"] == {
            "hlsTime": 1,
            "hlsListSize": 5,
        }
        for out_id in ids:
            await eventually(
                lambda out_id=out_id: _streaming(tessera, room, out_id),
                what="every output streaming",
            )

        async def served_segment() -> bool:
            async with aiohttp.ClientSession() as session:
                async with session.get(tessera.url + out["url"]) as resp:
                    if resp.status != 200:
                        return False
                    names = playlist_names(await resp.text())
                if not names:
                    return False
                base = tessera.url + out["url"].rsplit("/", 1)[0]
                async with session.get(f"{base}/{names[0]}") as resp:
                    return resp.status == 200 and len(await resp.read()) > 1000

        await eventually(served_segment, what="the local HLS served over HTTP")
        for out_id in ids:
            status, body = await api(tessera, "DELETE", f"/v1/rooms/{room}/streaming-outs/{out_id}")
            assert status == 200 and body == b"", body
        await rtsp.finished()
        await rtmp.finished()
        for path, container in ((rtsp.out, "matroska"), (rtmp.out, "flv")):
            got = read_file(path)
            assert got["video"] == "h264" and got["audio"] == "aac", container
            assert got["size"] == (1280, 720) and got["frames"] > 10
            assert len(got["samples"]) > 24000
    finally:
        rtsp.close()
        rtmp.close()
        for client, _ in pubs:
            await client.leave()


async def _streaming(tessera: RunningServer, room: str, out_id: str) -> bool:
    info = await get_out(tessera, room, out_id)
    assert info["state"] != "failed", info
    return bool(info["state"] == "streaming")


async def test_a_source_that_leaves_and_a_receiver_that_goes_away(
    tessera: RunningServer, ffmpeg: str, store: Store, tmp_path: Path
) -> None:
    pubs = await publishers(tessera)
    room = pubs[0][0].room_id
    leaving, forward = pubs[1]
    rtsp = Receiver(ffmpeg, tmp_path / "rtsp.mkv", "rtsp")
    try:
        await rtsp.wait_listening()
        status, from_forward = await api(
            tessera,
            "POST",
            f"/v1/rooms/{room}/streaming-outs",
            {
                "protocol": "dash",
                "url": f"{store.url}/bob.mpd",
                "media": {"audio": {"from": forward}, "video": {"from": forward}},
            },
        )
        assert status == 200, from_forward
        assert from_forward["parameters"] == {
            "method": "PUT",
            "dashSegDuration": 2,
            "dashWindowSize": 5,
        }
        status, to_rtsp = await api(
            tessera,
            "POST",
            f"/v1/rooms/{room}/streaming-outs",
            {"url": rtsp.url, "media": {"video": {"from": f"{room}-common"}}},
        )
        assert status == 200 and to_rtsp["protocol"] == "rtsp", to_rtsp
        await eventually(
            lambda: any(name.startswith("bob-chunk-stream0") for name in store.files),
            what="DASH segments of the forward stream",
        )
        await eventually(lambda: _streaming(tessera, room, to_rtsp["id"]), what="RTSP streaming")

        # The publisher leaves: the DASH output stops with OWT's reason.
        await leaving.leave()
        info = await eventually(
            lambda: _state(tessera, room, from_forward["id"], "stopped"),
            what="the DASH output stopped",
        )
        assert info["reason"] == "Source stream loss"
        await eventually(lambda: "bob.mpd" in store.deleted, what="DASH removed at exit")

        # The receiver goes away: the RTSP output fails with the reason.
        rtsp.close()
        info = await eventually(
            lambda: _state(tessera, room, to_rtsp["id"], "failed"),
            what="the RTSP output failed",
        )
        assert info["reason"] == f"cannot push to {rtsp.url}: the server closed the connection"

        # The room keeps going: someone new joins and gets the view.
        late = ConferenceClient()
        await late.join(tessera.token(room=room, user="Cy"))
        subscription = await late.subscribe(f"{room}-common")
        await subscription.wait_ready()
        assert subscription.video_track is not None
        frame = await next_video_frame(subscription.video_track, 20)
        assert (frame.width, frame.height) == (1280, 720)
        await late.leave()
    finally:
        rtsp.close()
        await pubs[0][0].leave()


async def _state(
    tessera: RunningServer, room: str, out_id: str, state: str
) -> dict[str, Any] | None:
    info = await get_out(tessera, room, out_id)
    return info if info["state"] == state else None


async def test_create_refusals_name_the_field(tessera: RunningServer) -> None:
    pubs = await publishers(tessera)
    room = pubs[0][0].room_id
    media = {"audio": {"from": f"{room}-common"}}
    try:
        for body, words in (
            ({"url": "ftp://x/y", "media": media}, "protocol: missing, and the url does not tell"),
            ({"protocol": "srt", "url": "srt://x", "media": media}, "protocol: expected one of"),
            ({"protocol": "hls", "url": "file:///etc/x.m3u8", "media": media}, "url:"),
            ({"protocol": "rtsp", "url": "rtsp://h", "media": media}, "names no path"),
            (
                {"url": "http://h/x.mpd", "parameters": {"method": "GET"}, "media": media},
                "parameters.method",
            ),
            ({"url": 5, "media": media}, "url: a string"),
            ({"url": "rtmp://h/a/b", "media": media, "extra": 1}, "extra: unknown field"),
        ):
            status, error = await api(tessera, "POST", f"/v1/rooms/{room}/streaming-outs", body)
            assert status == 400 and words in error["error"]["message"], (body, error)
        status, listed = await api(tessera, "GET", f"/v1/rooms/{room}/streaming-outs")
        assert status == 200 and listed == []
    finally:
        for client, _ in pubs:
            await client.leave()

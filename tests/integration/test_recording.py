"""Recording rooms and streams: real peers, the real muxer, files read back with PyAV."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from tessera_client import ConferenceClient
from tests.eventually import eventually
from tests.integration.test_mixing import wait_layout
from tests.support import RunningServer, api, region_box, rest_call, start_server
from tests.synthetic import ColorVideoTrack, ToneTrack, close_to, mean_rgb, tone_energy

RED = (220, 30, 30)
BLUE = (30, 30, 220)
ROOT = Path(__file__).resolve().parents[2]


def read_file(path: Path) -> dict[str, Any]:
    """Codecs, size, duration, the last decoded frame and the audio samples of a file."""
    with av.open(str(path)) as container:
        info: dict[str, Any] = {"video": None, "audio": None, "frames": 0}
        video = container.streams.video[0] if container.streams.video else None
        audio = container.streams.audio[0] if container.streams.audio else None
        if video is not None:
            info["video"] = video.codec_context.name
        if audio is not None:
            info["audio"] = audio.codec_context.name
        samples = []
        last = None
        first_video = last_video = None
        streams = [s for s in (video, audio) if s is not None]
        for packet in container.demux(*streams):
            for frame in packet.decode():
                if isinstance(frame, av.VideoFrame):
                    info["frames"] += 1
                    last = frame
                    t = float(frame.pts * frame.time_base) if frame.pts is not None else None
                    if t is not None:
                        first_video = t if first_video is None else first_video
                        last_video = t
                elif isinstance(frame, av.AudioFrame):
                    samples.append(frame.to_ndarray().reshape(-1))
        info["last"] = last
        info["size"] = (last.width, last.height) if last is not None else None
        info["video_span"] = (first_video, last_video)
        info["samples"] = np.concatenate(samples) if samples else np.zeros(0)
    return info


async def publishers(
    tessera: RunningServer, room: str = "default"
) -> list[tuple[ConferenceClient, str]]:
    out = []
    for user, colour, tone in (("Ada", RED, 440), ("Bob", BLUE, 880)):
        client = ConferenceClient()
        await client.join(tessera.token(room=room, user=user))
        pub = await client.publish(video=ColorVideoTrack(colour), audio=ToneTrack(tone, 0.2))
        await pub.wait_ready()
        out.append((client, pub.id))
    return out


async def wait_state(tessera: RunningServer, room: str, rec_id: str, state: str) -> dict[str, Any]:
    async def reached() -> dict[str, Any]:
        status, info = await api(tessera, "GET", f"/v1/rooms/{room}/recordings/{rec_id}")
        assert status == 200
        assert info["state"] == state, info
        return info  # type: ignore[no-any-return]

    return await eventually(reached, what=f"recording {state}")


async def recorded(url: str, key: str, room: str, rec_id: str, seconds: float) -> float:
    """Wait until the recording holds `seconds` of media (its own count); returns it."""

    async def enough() -> float:
        status, info = await rest_call(url, key, "GET", f"/v1/rooms/{room}/recordings/{rec_id}")
        assert status == 200, info
        duration = float(info["duration"])
        assert duration >= seconds, f"{duration} s of media"
        return duration

    return await eventually(enough, what=f"{seconds} s of media recorded")


async def test_record_the_mixed_view_with_timeline(tessera: RunningServer) -> None:
    pubs = await publishers(tessera)
    client = pubs[0][0]
    room = client.room_id
    assert room is not None
    mixed = f"{room}-common"
    layout = await wait_layout(client, 2)
    status, rec = await api(
        tessera,
        "POST",
        f"/v1/rooms/{room}/recordings",
        {"container": "webm", "media": {"audio": {"from": mixed}, "video": {"from": mixed}}},
    )
    assert status == 200, rec
    assert rec["storage"]["file"].endswith(".webm") and rec["media"]["video"]["from"] == mixed
    key = tessera.server.default_service.key
    # Times below are on the recording's own clock: the media it has written.
    before_join = await recorded(tessera.url, key, room, rec["id"], 1.5)
    late = ConferenceClient()
    await late.join(tessera.token(user="Late Comer"))
    after_join = await recorded(tessera.url, key, room, rec["id"], 0)
    await recorded(tessera.url, key, room, rec["id"], after_join + 2.0)
    status, body = await api(tessera, "DELETE", f"/v1/rooms/{room}/recordings/{rec['id']}")
    assert status == 200 and body == b""  # OWT's DELETE: an empty body
    status, info = await api(tessera, "GET", f"/v1/rooms/{room}/recordings/{rec['id']}")
    assert status == 200 and info["state"] == "stopped"
    path = Path(rec["storage"]["file"])
    media = read_file(path)
    assert media["video"] == "vp8" and media["audio"] == "opus"
    assert media["size"] == (1280, 720)
    # The file holds what the server said it wrote, and its video and audio agree: neither
    # is squeezed nor stretched.
    first, last = media["video_span"]
    span = last - first
    assert abs(span - info["duration"]) < 0.1 * span + 0.5, (first, last, info["duration"])
    with av.open(str(path)) as container:
        channels = container.streams.audio[0].codec_context.channels
    heard = len(media["samples"]) / channels / 48000
    # (A busy mixer skips the audio ticks it fell behind on: a margin for those.)
    assert abs(heard - span) < 0.25 * span + 0.5, (heard, span)
    frame = media["last"]
    colours = {pubs[0][1]: RED, pubs[1][1]: BLUE}
    for entry in layout:
        assert close_to(mean_rgb(frame, region_box(entry["region"])), colours[entry["stream"]]), (
            entry
        )
    samples = media["samples"]
    assert len(samples) > 48000
    assert (
        tone_energy(samples[-48000 * 2 : -48000], 440) > 0.05
    )  # interleaved stereo halves the rate
    # The timeline sidecar: the late join at the right time, the layout, everyone present.
    sidecar = json.loads(path.with_name(f"{rec['id']}.timeline.json").read_text())
    events = sidecar["events"]
    joins = [e for e in events if e["type"] == "join"]
    assert {e["user"] for e in joins} >= {"Ada", "Bob", "Late Comer"}
    late_join = next(e for e in joins if e["user"] == "Late Comer")
    # Between the media written before the join and after it. Both clocks start at the
    # first keyframe's arrival; media time then follows the packets' own timestamps, so it
    # may run ahead of arrival (a late first frame) or behind it (the muxer's queue): within
    # a second either way.
    assert before_join - 1.0 <= late_join["t"] <= after_join + 1.0, (late_join, before_join)
    assert any(e["type"] == "layout" for e in events)
    # Download over HTTP, with the same authentication.
    status, body = await api(tessera, "GET", f"/v1/rooms/{room}/recordings/{rec['id']}/file")
    assert status == 200 and body == path.read_bytes()
    status, _ = await rest_call(
        tessera.url, "wrong-key", "GET", f"/v1/rooms/{room}/recordings/{rec['id']}/file"
    )
    assert status == 401
    # As OWT's, the list is of the recordings that run; ?state=all keeps the finished ones.
    status, listing = await api(tessera, "GET", f"/v1/rooms/{room}/recordings")
    assert status == 200 and listing == []
    status, listing = await api(tessera, "GET", f"/v1/rooms/{room}/recordings?state=all")
    assert [r["id"] for r in listing] == [rec["id"]] and listing[0]["size"] == path.stat().st_size
    for c, _ in pubs:
        await c.leave()
    await late.leave()


async def test_record_a_forward_stream_and_mp4_of_h264_view(tessera: RunningServer) -> None:
    pubs = await publishers(tessera)
    client, stream_id = pubs[0]
    room = client.room_id
    status, rec = await api(
        tessera,
        "POST",
        f"/v1/rooms/{room}/recordings",
        {
            "container": "auto",
            "media": {"audio": {"from": stream_id}, "video": {"from": stream_id}},
        },
    )
    assert status == 200, rec
    # OWT's "auto": Matroska unless the audio is AAC.
    assert rec["container"] == "mkv" and rec["storage"]["file"].endswith(".mkv")
    status, mp4 = await api(
        tessera,
        "POST",
        f"/v1/rooms/{room}/recordings",
        {
            "container": "mp4",
            "media": {
                "audio": False,
                "video": {"from": f"{room}-common", "format": {"codec": "h264"}},
            },
        },
    )
    assert status == 200, mp4
    key = tessera.server.default_service.key
    for r in (rec, mp4):
        await recorded(tessera.url, key, str(room), r["id"], 2.5)
    for r in (rec, mp4):
        status, _ = await api(tessera, "DELETE", f"/v1/rooms/{room}/recordings/{r['id']}")
        assert status == 200
    forward = read_file(Path(rec["storage"]["file"]))
    assert forward["video"] == "vp8" and forward["size"] == (320, 240)
    assert close_to(mean_rgb(forward["last"]), RED)
    h264 = read_file(Path(mp4["storage"]["file"]))
    assert mp4["storage"]["file"].endswith(".mp4") and h264["video"] == "h264"
    assert h264["frames"] > 30
    for c, _ in pubs:
        await c.leave()


async def test_impossible_container_is_refused_without_a_file(tessera: RunningServer) -> None:
    pubs = await publishers(tessera)
    room = pubs[0][0].room_id
    status, error = await api(
        tessera,
        "POST",
        f"/v1/rooms/{room}/recordings",
        {
            "container": "webm",
            "media": {"video": {"from": f"{room}-common", "format": {"codec": "h264"}}},
        },
    )
    assert status == 400 and "webm" in error["error"]["message"].lower()
    directory = tessera.server.config.recording_dir() / str(room)
    assert not directory.exists() or not any(directory.iterdir())
    for bad in (
        {"container": "avi", "media": {}},
        {"media": {"audio": False, "video": False}},
        [1],
    ):
        status, error = await api(tessera, "POST", f"/v1/rooms/{room}/recordings", bad)
        assert status == 400, bad
    for c, _ in pubs:
        await c.leave()


async def test_unwritable_directory_fails_the_recording_not_the_room(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    tessera = await start_server(tmp_path / "data", **{"recording.directory": str(blocker / "rec")})
    try:
        pubs = await publishers(tessera)
        room = pubs[0][0].room_id
        status, error = await api(
            tessera,
            "POST",
            f"/v1/rooms/{room}/recordings",
            {"media": {"audio": {"from": pubs[0][1]}, "video": {"from": pubs[0][1]}}},
        )
        assert status in (200, 400)
        if status == 200:
            info = await wait_state(tessera, room, error["id"], "failed")  # type: ignore[arg-type]
            assert info["reason"]
        else:
            assert "Cannot" in error["error"]["message"] or "directory" in error["error"]["message"]
        # The room still works: a subscriber gets media.
        viewer = ConferenceClient()
        await viewer.join(tessera.token(user="viewer"))
        sub = await viewer.subscribe(pubs[0][1])
        await sub.wait_ready()
        assert sub.video_track is not None
        await asyncio.wait_for(sub.video_track.recv(), 10)
        await viewer.leave()
        for c, _ in pubs:
            await c.leave()
    finally:
        await tessera.stop()


async def test_auto_record_and_service_switch(tessera: RunningServer) -> None:
    status, room = await api(
        tessera, "POST", "/v1/rooms", {"name": "auto", "options": {"autoRecord": True}}
    )
    assert status == 200, room
    pubs = await publishers(tessera, room=room["id"])

    async def one_recording() -> list[dict[str, Any]]:
        status, listing = await api(tessera, "GET", f"/v1/rooms/{room['id']}/recordings")
        assert status == 200 and len(listing) == 1, listing
        return listing  # type: ignore[no-any-return]

    listing = await eventually(one_recording, what="the automatic recording")
    assert listing[0]["state"] == "recording"
    assert listing[0]["media"]["video"]["from"] == f"{room['id']}-common"
    key = tessera.server.default_service.key
    await recorded(tessera.url, key, room["id"], listing[0]["id"], 1.5)
    for c, _ in pubs:
        await c.leave()
    # The room emptied: the automatic recording is finished.
    info = await wait_state(tessera, room["id"], listing[0]["id"], "stopped")
    assert read_file(Path(info["storage"]["file"]))["frames"] > 10
    # A service that forbids recording gets 403.
    service = tessera.server.default_service
    service.recording = False
    tessera.server.store.put_service(service)
    pubs = await publishers(tessera)
    status, error = await api(
        tessera,
        "POST",
        f"/v1/rooms/{pubs[0][0].room_id}/recordings",
        {"media": {"audio": {"from": pubs[0][1]}}},
    )
    assert status == 403 and "switched off" in error["error"]["message"]
    for c, _ in pubs:
        await c.leave()


@pytest.mark.parametrize("container", ["mkv", "webm", "mp4"])
async def test_killed_server_leaves_a_playable_file(tmp_path: Path, container: str) -> None:
    config = tmp_path / "tessera.toml"
    config.write_text(
        f'[server]\nport = 0\n[storage]\ndata_dir = "{tmp_path}"\n[log]\nlevel = "WARNING"\n'
    )
    port_file = tmp_path / "port"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.serve_for_test", str(config), str(port_file)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        await eventually(
            lambda: port_file.exists() and port_file.read_text().strip(), what="the port file"
        )
        port, key, token_room = port_file.read_text().split()
        url = f"http://127.0.0.1:{port}"
        status, token = await rest_call(
            url, key, "POST", f"/v1/rooms/{token_room}/tokens", {"user": "a", "role": "presenter"}
        )
        assert status == 200, token
        client = ConferenceClient(reconnect=False)
        await client.join(token)
        pub = await client.publish(video=ColorVideoTrack(RED), audio=ToneTrack(440))
        await pub.wait_ready()
        room = client.room_id
        # MP4 takes no VP8: the mixed view's H.264 output.
        video: dict[str, Any] = {"from": pub.id}
        if container == "mp4":
            video = {"from": f"{room}-common", "format": {"codec": "h264"}}
        status, rec = await rest_call(
            url,
            key,
            "POST",
            f"/v1/rooms/{room}/recordings",
            {"container": container, "media": {"audio": {"from": pub.id}, "video": video}},
        )
        assert status == 200, rec
        assert rec["container"] == container
        # The figure: the file plays at least the duration reported at the kill - 2 s.
        duration = await recorded(url, key, str(room), rec["id"], 5.0)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        path = Path(rec["storage"]["file"])
        media = read_file(path)
        first, last = media["video_span"]
        assert first is not None and last is not None
        assert last - first >= duration - 2.0, (container, duration, media["video_span"])
        print(f"{container}: killed at {duration:.2f} s of media, plays {last - first:.2f} s")
        if container != "mp4":  # the view has the tile among its margins
            assert close_to(mean_rgb(media["last"]), RED)
        await client.leave()
        # The next start of the server lists it, stopped with the reason, with the file's duration.
        again = await start_server(tmp_path)
        try:
            status, listing = await api(again, "GET", f"/v1/rooms/{room}/recordings?state=stopped")
            assert status == 200 and [r["id"] for r in listing] == [rec["id"]]
            assert listing[0]["state"] == "stopped" and "server stopped" in listing[0]["reason"]
            told = float(listing[0]["duration"])
            assert duration - 2.0 <= told <= duration + 1.0, (container, told, duration)
            # Read from the file at the start, and stored (not read again on each request).
            assert again.server.store is not None
            stored = again.server.store.list_recordings("default", str(room))
            assert stored[0][1]["duration"] == told, stored
            assert abs(told - (last - first)) < 1.0, (container, told, media["video_span"])
            status, body = await api(again, "GET", f"/v1/rooms/{room}/recordings/{rec['id']}/file")
            assert status == 200 and len(body) == path.stat().st_size
        finally:
            await again.stop()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


@contextlib.contextmanager
def tiny_disk(path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs at ``path`` (needs root and mount rights; the test is skipped otherwise)."""
    path.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=False)


async def test_a_recording_failed_on_a_full_disk_stops_its_housekeeping(tmp_path: Path) -> None:
    with tiny_disk(tmp_path / "tiny") as disk:
        # No reserve: the disk really fills (test_storage_full.py has the reserve).
        overrides = {"recording.directory": str(disk), "recording.disk_reserve_mb": 0}
        tessera = await start_server(tmp_path / "data", **overrides)
        try:
            pubs = await publishers(tessera)
            room = str(pubs[0][0].room_id)
            status, rec = await api(
                tessera,
                "POST",
                f"/v1/rooms/{room}/recordings",
                {"media": {"audio": {"from": pubs[0][1]}, "video": {"from": pubs[0][1]}}},
            )
            assert status == 200, rec
            recording = tessera.server.rooms[room].recordings[rec["id"]]
            info = await wait_state(tessera, room, rec["id"], "failed")
            assert "disk full" in info["reason"], info
            # It left the room like a stopped one; its timeline task ended; no partial files.
            await eventually(lambda: rec["id"] not in tessera.server.rooms[room].recordings)
            assert recording._sidecar_task is not None and recording._sidecar_task.done()
            assert not list(disk.rglob("*.partial")), list(disk.rglob("*"))
            status, listed = await api(tessera, "GET", f"/v1/rooms/{room}/recordings?state=failed")
            assert [r["id"] for r in listed] == [rec["id"]]
            for client, _ in pubs:
                await client.leave()
        finally:
            await tessera.stop()

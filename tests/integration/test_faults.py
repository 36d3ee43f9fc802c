"""Faults: clients that vanish, are killed, come back, stall or freeze; the room survives."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import av
import pytest
from aiortc.mediastreams import MediaStreamTrack

from tessera_client import ConferenceClient
from tests.support import RunningServer, api, start_server
from tests.synthetic import ColorVideoTrack, close_to, mean_rgb, next_video_frame

ROOT = Path(__file__).resolve().parents[2]
KEEP = 1.0  # portal.reconnection_keep
PING = 0.5  # portal.ping_interval and ping_timeout
# A small view so that the figures measure the room's behaviour, not a busy machine's encoder.
VIEW_FPS = 15
SMALL_VIEW = {
    "views": [
        {
            "label": "common",
            "video": {
                "parameters": {"resolution": {"width": 320, "height": 240}, "framerate": VIEW_FPS}
            },
        }
    ]
}


@pytest.fixture
async def faulty(tmp_path: Path) -> AsyncIterator[RunningServer]:
    running = await start_server(
        tmp_path,
        **{
            "portal.reconnection_keep": KEEP,
            "portal.ping_interval": PING,
            "portal.ping_timeout": PING,
            "mixer.frame_timeout": 0.5,
        },
    )
    try:
        yield running
    finally:
        await running.stop()


async def small_room(tessera: RunningServer) -> str:
    status, room = await api(tessera, "POST", "/v1/rooms", {"name": "f", "options": SMALL_VIEW})
    assert status == 200, room
    return str(room["_id"])


async def client_in(tessera: RunningServer, room: str, user: str, **kw: Any) -> ConferenceClient:
    client = ConferenceClient(**kw)
    await client.join(tessera.token(room=room, user=user))
    return client


def layout_streams(client: ConferenceClient, room: str) -> list[str]:
    info = client.streams.get(f"{room}-common", {})
    return [region["stream"] for region in info.get("info", {}).get("layout", [])]


async def wait_for(condition: Any, timeout: float, what: str) -> float:
    """Seconds until `condition()` held; fails after `timeout`."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


class ClientProcess:
    """tests/fault_client.py in a subprocess, to be killed (SIGKILL) or frozen (SIGSTOP)."""

    def __init__(self, token: str, *args: str) -> None:
        self.args = [sys.executable, "-m", "tests.fault_client", token, *args]
        self.proc: asyncio.subprocess.Process | None = None
        self.ready: dict[str, str] = {}

    async def start(self) -> dict[str, str]:
        self.proc = await asyncio.create_subprocess_exec(
            *self.args,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL,
        )
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 30)
        self.ready = json.loads(line)
        return self.ready

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


async def test_publisher_vanishes_without_logout(faulty: RunningServer) -> None:
    room = await small_room(faulty)
    watcher = await client_in(faulty, room, "watcher")
    alice = await client_in(faulty, room, "alice", reconnect=False)
    publication = await alice.publish(video=ColorVideoTrack((200, 0, 0), 160, 120, 15))
    await publication.wait_ready()
    await wait_for(lambda: publication.id in layout_streams(watcher, room), 5, "mixed")
    # The tab dies: the socket and the peer connection stop, nobody logs out.
    vanished = time.monotonic()
    await alice.sio.eio.disconnect(abort=True)
    if alice.pc is not None:
        await alice.pc.close()
    await watcher.next_event(
        "stream", lambda d: d["id"] == publication.id and d["status"] == "remove", timeout=10
    )
    removed = time.monotonic() - vanished
    await wait_for(lambda: publication.id not in layout_streams(watcher, room), 2, "layout")
    assert removed < KEEP + 1.0, removed
    # The participant itself is kept for reconnection_keep, then removed.
    await watcher.next_event(
        "participant", lambda d: d["action"] == "leave", timeout=KEEP + 2 * PING + 2
    )
    assert time.monotonic() - vanished < KEEP + 2.0
    server_room = faulty.server.rooms[room]
    assert list(server_room.participants) == [watcher.participant_id]
    assert faulty.server.agent.transports == {}
    await watcher.leave()


async def test_killed_client_process_is_removed(faulty: RunningServer) -> None:
    room = await small_room(faulty)
    watcher = await client_in(faulty, room, "watcher")
    killed = ClientProcess(faulty.token(room=room, user="doomed"), "publish")
    try:
        ready = await killed.start()
        stream = ready["stream"]
        await wait_for(lambda: stream in layout_streams(watcher, room), 5, "mixed")
        started = time.monotonic()
        await killed.kill()  # SIGKILL: the kernel closes its sockets, nothing is said
        await watcher.next_event(
            "stream", lambda d: d["id"] == stream and d["status"] == "remove", timeout=10
        )
        await wait_for(lambda: stream not in layout_streams(watcher, room), 2, "layout")
        elapsed = time.monotonic() - started
        assert elapsed < KEEP + 1.0, elapsed
        assert ready["participant"] not in faulty.server.conference.participants
        assert faulty.server.agent.transports == {}
    finally:
        await killed.kill()
    await watcher.leave()


async def test_reconnect_within_keep_time_keeps_publication_and_subscription(
    faulty: RunningServer,
) -> None:
    room = await small_room(faulty)
    alice = await client_in(faulty, room, "alice")
    bob = await client_in(faulty, room, "bob")
    pub_a = await alice.publish(video=ColorVideoTrack((220, 30, 30), 160, 120, 15))
    pub_b = await bob.publish(video=ColorVideoTrack((30, 30, 220), 160, 120, 15))
    await pub_a.wait_ready()
    await pub_b.wait_ready()
    await alice.next_event("stream", lambda d: d["id"] == pub_b.id and d["status"] == "add")
    await bob.next_event("stream", lambda d: d["id"] == pub_a.id and d["status"] == "add")
    sub_a = await alice.subscribe(pub_b.id, audio=False)
    sub_b = await bob.subscribe(pub_a.id, audio=False)
    await sub_a.wait_ready()
    await sub_b.wait_ready()
    alice_id = alice.participant_id
    # Alice's signalling connection drops; her peer connection keeps running.
    await alice.sio.eio.disconnect(abort=True)
    await wait_for(lambda: alice.reconnections == 1, KEEP * 0.9 + 5, "relogin")
    assert alice.participant_id == alice_id
    participant = faulty.server.conference.participants[alice_id]  # type: ignore[index]
    assert list(participant.publications) == [pub_a.id]
    assert list(participant.subscriptions) == [sub_a.id]
    await asyncio.sleep(KEEP + 0.5)  # past the keep time: nothing is removed after all
    assert pub_a.id in faulty.server.rooms[room].streams
    assert pub_a.id in layout_streams(bob, room)
    assert sub_a.video_track is not None and sub_b.video_track is not None
    for _ in range(5):
        frame_a = await next_video_frame(sub_a.video_track)
        frame_b = await next_video_frame(sub_b.video_track)
    assert close_to(mean_rgb(frame_a), (30, 30, 220))
    assert close_to(mean_rgb(frame_b), (220, 30, 30))
    await alice.leave()
    await bob.leave()


class StallingTrack(MediaStreamTrack):
    """Video that stops after `seconds`: the camera froze, the connection stays up."""

    kind = "video"

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.source = ColorVideoTrack((0, 200, 0), 160, 120, 15)
        self.until = time.monotonic() + seconds
        self.stalled = asyncio.Event()

    async def recv(self) -> av.VideoFrame:
        if time.monotonic() >= self.until:
            self.stalled.set()
            await asyncio.Event().wait()
        return await self.source.recv()


async def count_frames(track: MediaStreamTrack, seconds: float) -> int:
    frames = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            await asyncio.wait_for(track.recv(), max(0.01, deadline - time.monotonic()))
        except TimeoutError:
            break
        frames += 1
    return frames


async def test_input_that_stops_sending_never_stalls_the_view(faulty: RunningServer) -> None:
    room = await small_room(faulty)
    steady = await client_in(faulty, room, "steady")
    frozen = await client_in(faulty, room, "frozen")
    viewer = await client_in(faulty, room, "viewer")
    pub = await steady.publish(video=ColorVideoTrack((200, 0, 0), 160, 120, 15))
    stalling = StallingTrack(2.0)
    stuck = await frozen.publish(video=stalling)
    await pub.wait_ready()
    await stuck.wait_ready()
    sub = await viewer.subscribe(f"{room}-common", audio=False)
    await sub.wait_ready()
    assert sub.video_track is not None
    await asyncio.wait_for(stalling.stalled.wait(), 10)
    view = faulty.server.rooms[room].views["common"]
    before = view.stats.frames
    received = await count_frames(sub.video_track, 3.0)
    made = view.stats.frames - before
    # The view ticks on its own clock: the stalled input costs it nothing.
    assert made >= 0.9 * VIEW_FPS * 3.0, made
    assert received >= 0.8 * VIEW_FPS * 3.0, received
    assert stuck.id in layout_streams(viewer, room)  # still listed, shown as its avatar
    for client in (steady, frozen, viewer):
        await client.leave()


async def test_frozen_subscriber_is_dropped_and_others_keep_their_frames(
    faulty: RunningServer,
) -> None:
    room = await small_room(faulty)
    publisher = await client_in(faulty, room, "publisher")
    pub = await publisher.publish(video=ColorVideoTrack((200, 0, 0), 160, 120, 15))
    await pub.wait_ready()
    healthy = await client_in(faulty, room, "healthy")
    sub = await healthy.subscribe(f"{room}-common", audio=False)
    await sub.wait_ready()
    assert sub.video_track is not None
    frozen = ClientProcess(faulty.token(room=room, user="frozen"), "subscribe", f"{room}-common")
    try:
        ready = await frozen.start()
        baseline = await count_frames(sub.video_track, 2.0)
        # SIGSTOP: it reads nothing, answers no ping, no ICE check, no RTCP.
        frozen.signal(signal.SIGSTOP)
        started = time.monotonic()
        during = await count_frames(sub.video_track, 3.0)
        await healthy.next_event(
            "participant",
            lambda d: d["action"] == "leave" and d["data"] == ready["participant"],
            timeout=2 * PING + KEEP + 5,
        )
        dropped = time.monotonic() - started
        assert ready["participant"] not in faulty.server.conference.participants
        # Its peer connection went with it; the publisher's and the healthy one's remain.
        assert len(faulty.server.agent.transports) == 2
        # Frames kept coming to the healthy subscriber all along.
        assert during >= 0.8 * VIEW_FPS * 3.0, (baseline, during)
        assert dropped < 2 * PING + KEEP + 3.0, dropped
        after = await count_frames(sub.video_track, 1.0)
        assert after >= 0.7 * VIEW_FPS, after
    finally:
        frozen.signal(signal.SIGCONT)
        await frozen.kill()
    await healthy.leave()
    await publisher.leave()

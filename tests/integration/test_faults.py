"""Faults: clients that vanish, are killed, come back, stall or freeze; the room survives."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import av
import pytest
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from tessera_client import ConferenceClient
from tests.eventually import eventually
from tests.support import RunningServer, api, start_server
from tests.synthetic import ColorVideoTrack, close_to, mean_rgb, next_video_frame

ROOT = Path(__file__).resolve().parents[2]
KEEP = 1.0  # portal.reconnection_keep
LONG_KEEP = 5.0  # where a test must see the participant still kept
PING = 0.5  # portal.ping_interval and ping_timeout
FAULTY = {
    "portal.reconnection_keep": KEEP,
    "portal.ping_interval": PING,
    "portal.ping_timeout": PING,
    "mixer.frame_timeout": 0.5,
}
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
    running = await start_server(tmp_path, **FAULTY)
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


async def test_publisher_vanishes_without_logout(tmp_path: Path) -> None:
    # A keep time long enough to tell "removed at once" from "removed when the keep ends".
    keeping = await start_server(tmp_path, **{**FAULTY, "portal.reconnection_keep": LONG_KEEP})
    try:
        room = await small_room(keeping)
        watcher = await client_in(keeping, room, "watcher")
        alice = await client_in(keeping, room, "alice", reconnect=False)
        publication = await alice.publish(video=ColorVideoTrack((200, 0, 0), 160, 120, 15))
        await publication.wait_ready()
        await eventually(lambda: publication.id in layout_streams(watcher, room), what="mixed")
        # The tab dies: the socket and the peer connection stop, nobody logs out.
        await alice.sio.eio.disconnect(abort=True)
        if alice.pc is not None:
            await alice.pc.close()
        await watcher.next_event(
            "stream", lambda d: d["id"] == publication.id and d["status"] == "remove", timeout=20
        )
        # Its media went at once, while the participant itself is still kept.
        assert alice.participant_id in keeping.server.conference.participants
        await eventually(lambda: publication.id not in layout_streams(watcher, room), what="layout")
        # The participant is removed when the keep time ends.
        await watcher.next_event(
            "participant", lambda d: d["action"] == "leave", timeout=LONG_KEEP + 20
        )
        server_room = keeping.server.rooms[room]
        assert list(server_room.participants) == [watcher.participant_id]
        assert keeping.server.agent.transports == {}
        await watcher.leave()
    finally:
        await keeping.stop()


async def test_killed_client_process_is_removed(faulty: RunningServer) -> None:
    room = await small_room(faulty)
    watcher = await client_in(faulty, room, "watcher")
    killed = ClientProcess(faulty.token(room=room, user="doomed"), "publish")
    try:
        ready = await killed.start()
        stream = ready["stream"]
        await eventually(lambda: stream in layout_streams(watcher, room), what="mixed")
        await killed.kill()  # SIGKILL: the kernel closes its sockets, nothing is said
        # Its peer connection says nothing either: all goes when the keep time ends.
        await watcher.next_event(
            "stream", lambda d: d["id"] == stream and d["status"] == "remove", timeout=KEEP + 20
        )
        await eventually(lambda: stream not in layout_streams(watcher, room), what="layout")
        await eventually(
            lambda: ready["participant"] not in faulty.server.conference.participants,
            what="the killed participant removed",
        )
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
    carol = await client_in(faulty, room, "carol", reconnect=False)
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
    await eventually(lambda: alice.reconnections == 1, what="relogin")
    assert alice.participant_id == alice_id
    participant = faulty.server.conference.participants[alice_id]  # type: ignore[index]
    assert list(participant.publications) == [pub_a.id]
    assert list(participant.subscriptions) == [sub_a.id]
    # Carol's connection drops for good after Alice's: once Carol is removed, the keep time
    # Alice's drop started is over too, and the relogin must have cancelled it.
    await carol.sio.eio.disconnect(abort=True)
    await bob.next_event(
        "participant",
        lambda d: d["action"] == "leave" and d["data"] == carol.participant_id,
        timeout=KEEP + 20,
    )
    assert alice_id in faulty.server.conference.participants
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
    """Video that stops after `frames` frames: the camera froze, the connection stays up."""

    kind = "video"

    def __init__(self, frames: int) -> None:
        super().__init__()
        self.source = ColorVideoTrack((0, 200, 0), 160, 120, 15)
        self.frames = frames
        self.stalled = asyncio.Event()

    async def recv(self) -> av.VideoFrame:
        if self.frames <= 0:
            self.stalled.set()
            await asyncio.Event().wait()
        self.frames -= 1
        return await self.source.recv()


class FrameCounter:
    """Reads a subscription's video all along and counts the frames."""

    def __init__(self, track: MediaStreamTrack) -> None:
        self.frames = 0
        self._reader = asyncio.ensure_future(self._read(track))

    async def _read(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                await track.recv()
                self.frames += 1
        except MediaStreamError:
            pass  # the subscription ended: the count stays where it is

    async def more(self, count: int) -> None:
        """Wait until `count` more frames have arrived."""
        target = self.frames + count
        await eventually(lambda: self.frames >= target, what=f"{count} more frames")

    def stop(self) -> None:
        self._reader.cancel()


async def test_input_that_stops_sending_never_stalls_the_view(faulty: RunningServer) -> None:
    room = await small_room(faulty)
    steady = await client_in(faulty, room, "steady")
    frozen = await client_in(faulty, room, "frozen")
    viewer = await client_in(faulty, room, "viewer")
    pub = await steady.publish(video=ColorVideoTrack((200, 0, 0), 160, 120, 15))
    stalling = StallingTrack(30)
    stuck = await frozen.publish(video=stalling)
    await pub.wait_ready()
    await stuck.wait_ready()
    sub = await viewer.subscribe(f"{room}-common", audio=False)
    await sub.wait_ready()
    assert sub.video_track is not None
    # Read from the start: frames nobody reads pile up in the track and would count later.
    counter = FrameCounter(sub.video_track)
    try:
        await asyncio.wait_for(stalling.stalled.wait(), 20)
        view = faulty.server.rooms[room].views["common"]
        made, skipped = view.stats.frames, view.stats.dropped
        await counter.more(3 * VIEW_FPS)
    finally:
        counter.stop()
    # The view ticks on its own clock: the stalled input costs it nothing. A view that
    # waited for the input would skip most of its ticks (it skips the ones it fell behind).
    # (The subscriber's count includes a few frames made before the view's was read, in
    # flight then: hence 2 s of frames made for 3 s received, not 3 for 3.)
    made, skipped = view.stats.frames - made, view.stats.dropped - skipped
    assert made >= 2 * VIEW_FPS and skipped <= made, (made, skipped)
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
    view = faulty.server.rooms[room].views["common"]
    counter = FrameCounter(sub.video_track)
    frozen = ClientProcess(faulty.token(room=room, user="frozen"), "subscribe", f"{room}-common")
    try:
        ready = await frozen.start()
        await counter.more(VIEW_FPS)
        # SIGSTOP: it reads nothing, answers no ping, no ICE check, no RTCP.
        frozen.signal(signal.SIGSTOP)
        received, made = counter.frames, view.stats.frames
        # Pings find it gone (far sooner than ICE consent would).
        await healthy.next_event(
            "participant",
            lambda d: d["action"] == "leave" and d["data"] == ready["participant"],
            timeout=2 * PING + KEEP + 15,
        )
        received, made = counter.frames - received, view.stats.frames - made
        assert ready["participant"] not in faulty.server.conference.participants
        # Its peer connection went with it; the publisher's and the healthy one's remain.
        assert len(faulty.server.agent.transports) == 2
        # Frames kept coming to the healthy subscriber all along: most of what the view
        # made while the frozen one held on (pings and the keep time: a dozen frames at least).
        assert made >= 10 and received >= 0.7 * made, (received, made)
        await counter.more(VIEW_FPS)
    finally:
        counter.stop()
        frozen.signal(signal.SIGCONT)
        await frozen.kill()
    await healthy.leave()
    await publisher.leave()


async def test_sub_second_pings_are_advertised_so_healthy_clients_stay(
    faulty: RunningServer,
) -> None:
    # Engine.IO advertises its ping interval in whole seconds, cut down: 0.5 s went out as
    # 0, and every client expected the next ping sooner than it came and dropped a healthy
    # connection each cycle (the fault tests' watchers reconnected every second).
    client = await client_in(faulty, await small_room(faulty), "steady")
    assert client.sio.eio.ping_interval >= PING
    await client.leave()

"""The unmodified OWT Python client (`owt` 0.1.9 from PyPI, "pyowt") against a real server.

pyowt makes one peer connection per publication and subscription, names a new
transport with an empty id, routes `progress` by the id of its first session,
and reads a subscription's tracks from its transceivers. Nothing of it is
patched: where it needs something of the server, the server provides it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiortc import MediaStreamTrack

from tests.eventually import eventually
from tests.support import RunningServer, start_server
from tests.synthetic import (
    ColorVideoTrack,
    ToneTrack,
    close_to,
    collect_audio,
    mean_rgb,
    next_video_frame,
    tone_energy,
)

owt_client = pytest.importorskip("owt.client", reason="the test extra installs owt==0.1.9")
owt_stream = pytest.importorskip("owt.stream")

RED = (230, 30, 30)
# pyowt's leave emits `logout` and at once closes the socket (python-socketio's disconnect
# closes the websocket before its queue is written), so the server never reads the logout
# and keeps the participant for a reconnection, as OWT's portal does. Short here.
RECONNECTION_KEEP = 2.0


@pytest.fixture
async def tessera(tmp_path: Path) -> AsyncIterator[RunningServer]:
    running = await start_server(tmp_path, **{"portal.reconnection_keep": RECONNECTION_KEEP})
    try:
        yield running
    finally:
        await running.stop()


class Recorder:
    """The events one pyowt object dispatched, in order."""

    def __init__(self, target: Any, *names: str) -> None:
        self.events: list[tuple[str, Any]] = []
        for name in names:
            target.addEventListener(name, self._keeper(name))

    def _keeper(self, name: str) -> Any:
        def keep(event: Any) -> None:
            self.events.append((name, event))

        return keep

    def named(self, name: str) -> list[Any]:
        return [event for kind, event in self.events if kind == name]


async def _frames_of(track: MediaStreamTrack, count: int) -> Any:
    frame = await next_video_frame(track)
    for _ in range(count):
        frame = await next_video_frame(track)
    return frame


async def test_pyowt_joins_publishes_subscribes_chats_and_leaves(tessera: RunningServer) -> None:
    alice = owt_client.ConferenceClient()
    bob = owt_client.ConferenceClient()
    bob_events = Recorder(bob, "messagereceived", "participantjoined")
    try:
        alice_info = await alice.join(tessera.token(user="alice"))
        assert alice_info.self.userId == "alice" and alice_info.self.role == "presenter"
        mixed_id = f"{alice_info.id}-common"
        assert any(s.id == mixed_id for s in alice_info.remoteStreams)
        bob_info = await bob.join(tessera.token(user="bob"))
        assert {p.userId for p in bob_info.participants} == {"alice", "bob"}

        local = owt_stream.LocalStream(
            tracks=[ToneTrack(440), ColorVideoTrack(RED)],
            quic_stream=None,
            source=owt_stream.StreamSourceInfo(audio="mic", video="camera"),
            attributes={"name": "alice's camera"},
        )
        publication = await alice.publish(local)  # transport {"id": ""} on the wire

        remote = await bob.wait_for_stream(lambda s: s.id == publication.id, timeout=30)
        assert remote.origin == alice_info.self.id
        assert remote.attributes == {"name": "alice's camera"}
        assert remote.source.audio == "mic" and remote.source.video == "camera"
        remote_ended = Recorder(remote, "ended")

        # The forward stream: decodable frames of the publisher's colour, and its tone.
        forward = await bob.subscribe(remote)
        forward_events = Recorder(forward, "error", "ended")
        video, audio = forward.video_track(), forward.audio_track()
        assert video is not None and audio is not None
        frame = await _frames_of(video, 5)
        assert (frame.width, frame.height) == (320, 240)
        assert close_to(mean_rgb(frame), RED)
        samples = await collect_audio(audio, 1.0)
        assert tone_energy(samples[-24000:], 440) > 0.5

        # The mixed view: decodable frames of the view's size, with the red camera in it.
        mixed = next(s for s in bob.remoteStreams.values() if s.id == mixed_id)
        view = await bob.subscribe(mixed)
        view_video = view.video_track()
        assert view_video is not None and view.audio_track() is not None
        room = tessera.server.rooms[alice_info.id]
        common = room.views["common"]

        async def red_in_the_mix() -> bool:
            frame = await next_video_frame(view_video)
            assert (frame.width, frame.height) == (common.width, common.height)
            return close_to(mean_rgb(frame), RED, tolerance=60)

        await eventually(red_in_the_mix, timeout=30, what="the red camera in the view")

        # Text to everyone and to one participant.
        await alice.send("hello all")
        await alice.send("hello bob", bob_info.self.id)
        messages = await eventually(
            lambda: (
                len(bob_events.named("messagereceived")) >= 2
                and bob_events.named("messagereceived")
            ),
            what="two messages",
        )
        assert [(m.message, m.origin, m.to) for m in messages] == [
            ("hello all", alice_info.self.id, "all"),
            ("hello bob", alice_info.self.id, "me"),
        ]

        # Unpublish: the stream ends for bob, and his subscription ends with OWT's reason.
        await publication.stop()
        await eventually(lambda: remote_ended.named("ended"), what="the remote stream ended")
        await eventually(lambda: forward_events.named("ended"), what="the subscription ended")
        errors = forward_events.named("error")
        assert [str(e.error) for e in errors] == ["Source stream loss"]
        assert publication.id not in room.streams
        assert all(
            forward.id not in p.subscriptions
            for p in tessera.server.conference.participants.values()
        )
    finally:
        await alice.leave()
        await bob.leave()
    await eventually(lambda: not tessera.server.conference.participants, what="both left")
    await eventually(lambda: not tessera.server.agent.transports, what="transports closed")


async def test_pyowt_leave_is_seen_by_others(tessera: RunningServer) -> None:
    alice = owt_client.ConferenceClient()
    bob = owt_client.ConferenceClient()
    try:
        await alice.join(tessera.token(user="alice"))
        bob_info = await bob.join(tessera.token(user="bob"))
        alice_bob = await eventually(
            lambda: alice.participants.get(bob_info.self.id), what="bob seen by alice"
        )
        left = Recorder(alice_bob, "left")
        await bob.leave()
        await eventually(lambda: left.named("left"), what="bob left")
        assert bob_info.self.id not in alice.participants
    finally:
        await alice.leave()
        await bob.leave()

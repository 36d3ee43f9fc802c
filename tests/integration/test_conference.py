"""The conference core end to end: real aiortc peers over loopback, the real portal."""

from __future__ import annotations

import asyncio

import pytest

from tessera.media.videoencoder import VideoEncoder
from tessera_client import ClientError, ConferenceClient
from tests.eventually import eventually
from tests.support import RunningServer, joined
from tests.synthetic import (
    ColorVideoTrack,
    ToneTrack,
    close_to,
    collect_audio,
    mean_rgb,
    next_video_frame,
    tone_energy,
)

RED = (230, 30, 30)
BLUE = (30, 30, 230)


async def test_publish_subscribe_pause_unpublish_leave(tessera: RunningServer) -> None:
    alice = await joined(tessera, "alice")
    bob = await joined(tessera, "bob")
    join = await alice.next_event("participant", lambda d: d["action"] == "join")
    assert join["data"]["user"] == "bob"

    publication = await alice.publish(audio=ToneTrack(440), video=ColorVideoTrack(RED))
    await publication.wait_ready()
    added = await bob.next_event("stream", lambda d: d["status"] == "add")
    assert added["id"] == publication.id
    info = added["data"]
    assert info["type"] == "forward" and info["info"]["owner"] == alice.participant_id
    kinds = {t["type"]: t for t in info["media"]["tracks"]}
    assert kinds["video"]["format"]["codec"] == "vp8"
    assert kinds["audio"]["format"]["codec"] == "opus"
    assert kinds["video"]["parameters"]["resolution"] == {"width": 320, "height": 240}

    subscription = await bob.subscribe(publication.id)
    await subscription.wait_ready()
    assert subscription.video_track is not None and subscription.audio_track is not None
    frame = await next_video_frame(subscription.video_track)
    for _ in range(5):
        frame = await next_video_frame(subscription.video_track)
    assert (frame.width, frame.height) == (320, 240)
    assert close_to(mean_rgb(frame), RED)
    samples = await collect_audio(subscription.audio_track, 1.0)
    assert tone_energy(samples[-24000:], 440) > 0.5

    # Pass-through: no server-side encoder exists for this stream.
    room = tessera.server.rooms[alice.room_id]  # type: ignore[index]
    stream = room.streams[publication.id]
    assert stream.transcoders == {}  # type: ignore[attr-defined]

    await publication.pause("video")
    update = await bob.next_event("stream", lambda d: d["id"] == publication.id)
    assert update["data"] == {"field": "video.status", "value": "inactive"}
    assert bob.streams[publication.id]["media"]["tracks"][1]["status"] == "inactive"
    await publication.play("video")
    update = await bob.next_event("stream", lambda d: d["id"] == publication.id)
    assert update["data"] == {"field": "video.status", "value": "active"}

    await publication.unpublish()
    removed = await bob.next_event("stream", lambda d: d["status"] == "remove")
    assert removed["id"] == publication.id
    assert publication.id not in room.streams

    await bob.leave()
    left = await alice.next_event("participant", lambda d: d["action"] == "leave")
    assert left["data"] == bob.participant_id
    await alice.leave()
    # The default room is unloaded, not deleted.
    await eventually(
        lambda: tessera.server.agent.transports == {} and tessera.server.rooms == {},
        what="transports closed and the room unloaded",
    )


async def test_forward_subscription_does_not_encode(tessera: RunningServer) -> None:
    alice = await joined(tessera, "alice")
    bob = await joined(tessera, "bob")
    carol = await joined(tessera, "carol")
    before = VideoEncoder.created
    publication = await alice.publish(video=ColorVideoTrack(BLUE))
    await publication.wait_ready()
    await bob.next_event("stream", lambda d: d["status"] == "add")
    await carol.next_event("stream", lambda d: d["status"] == "add")
    subs = [await bob.subscribe(publication.id), await carol.subscribe(publication.id)]
    for sub in subs:
        await sub.wait_ready()
        assert sub.video_track is not None
        for _ in range(10):
            frame = await next_video_frame(sub.video_track)
        assert close_to(mean_rgb(frame), BLUE)
    assert VideoEncoder.created == before
    # aiortc's own per-sender encoder never opened a codec either: packets pass through.
    for transport in tessera.server.agent.transports.values():
        for transceiver in transport.pc.getTransceivers():
            encoder = getattr(transceiver.sender, "_RTCRtpSender__encoder", None)
            assert encoder is None or getattr(encoder, "codec", None) is None
    for client in (alice, bob, carol):
        await client.leave()


async def test_transcoded_format_is_encoded_once_and_shared(tessera: RunningServer) -> None:
    alice = await joined(tessera, "alice")
    viewers = [await joined(tessera, name) for name in ("bob", "carol")]
    publication = await alice.publish(video=ColorVideoTrack(RED, width=640, height=360))
    await publication.wait_ready()
    for viewer in viewers:
        await viewer.next_event("stream", lambda d: d["status"] == "add")
    wanted = {"resolution": {"width": 320, "height": 180}, "framerate": 15}
    before = VideoEncoder.created
    subs = [
        await v.subscribe(publication.id, audio=False, video_parameters=wanted) for v in viewers
    ]
    for sub in subs:
        await sub.wait_ready()
        assert sub.video_track is not None
        for _ in range(5):
            frame = await next_video_frame(sub.video_track)
        assert (frame.width, frame.height) == (320, 180)
        assert close_to(mean_rgb(frame), RED)
    stream = tessera.server.rooms[alice.room_id].streams[publication.id]  # type: ignore[index]
    assert len(stream.transcoders) == 1  # type: ignore[attr-defined]
    assert VideoEncoder.created == before + 1
    for sub in subs:
        await sub.unsubscribe()
    # No receivers: stopped.
    await eventually(lambda: stream.transcoders == {}, what="the transcoder stopped")  # type: ignore[attr-defined]
    for client in (alice, *viewers):
        await client.leave()


async def test_unacceptable_parameters_are_refused_by_name(tessera: RunningServer) -> None:
    alice = await joined(tessera, "alice")
    bob = await joined(tessera, "bob")
    publication = await alice.publish(video=ColorVideoTrack(RED))
    await publication.wait_ready()
    await bob.next_event("stream", lambda d: d["status"] == "add")
    with pytest.raises(ClientError, match="Resolution is not acceptable"):
        await bob.subscribe(
            publication.id, video_parameters={"resolution": {"width": 1, "height": 3}}
        )
    with pytest.raises(ClientError, match="Framerate is not acceptable"):
        await bob.subscribe(publication.id, video_parameters={"framerate": 7})
    sub = await bob.subscribe(publication.id)
    await sub.wait_ready()
    await alice.leave()
    await bob.leave()


async def test_subscription_update_switches_source(tessera: RunningServer) -> None:
    alice = await joined(tessera, "alice")
    carol = await joined(tessera, "carol")
    bob = await joined(tessera, "bob")
    red = await alice.publish(video=ColorVideoTrack(RED))
    blue = await carol.publish(video=ColorVideoTrack(BLUE))
    await red.wait_ready()
    await blue.wait_ready()
    await bob.next_event("stream", lambda d: d["id"] == red.id)
    await bob.next_event("stream", lambda d: d["id"] == blue.id)
    sub = await bob.subscribe(red.id)
    await sub.wait_ready()
    assert sub.video_track is not None
    for _ in range(5):
        frame = await next_video_frame(sub.video_track)
    assert close_to(mean_rgb(frame), RED)
    await sub.update(video_from=blue.id)
    for _ in range(60):
        frame = await next_video_frame(sub.video_track)
        if close_to(mean_rgb(frame), BLUE):
            break
    assert close_to(mean_rgb(frame), BLUE)

    async def estimated() -> bool:
        # aiortc's receiver sends its first REMB once its estimator has one.
        try:
            return await sub.query_bwe() > 0
        except ClientError:
            return False

    await eventually(estimated, what="the subscriber's bandwidth estimate", interval=0.25)
    await sub.pause("video")
    await sub.play("video")
    for client in (alice, carol, bob):
        await client.leave()


async def test_text_to_all_and_to_one(tessera: RunningServer) -> None:
    alice, bob, carol = [await joined(tessera, n) for n in ("alice", "bob", "carol")]
    await alice.send_text("hello all")
    for other in (bob, carol):
        text = await other.next_event("text")
        assert text == {"from": alice.participant_id, "to": "all", "message": "hello all"}
    assert carol.participant_id is not None
    await bob.send_text("psst", to=carol.participant_id)
    text = await carol.next_event("text")
    assert text == {"from": bob.participant_id, "to": "me", "message": "psst"}
    with pytest.raises(ClientError, match="Target participant does NOT exist"):
        await bob.send_text("?", to="nobody")
    with pytest.raises(ClientError, match="too long"):
        await bob.send_text("x" * 2049)
    for client in (alice, bob, carol):
        await client.leave()


async def test_viewer_cannot_publish_and_reused_token_is_refused(tessera: RunningServer) -> None:
    viewer = await joined(tessera, "vera", role="viewer")
    with pytest.raises(ClientError, match="Permission denied"):
        await viewer.publish(video=ColorVideoTrack(RED))
    token = tessera.token(user="mallory")
    first = ConferenceClient()
    await first.join(token)
    second = ConferenceClient()
    with pytest.raises(ClientError, match="already been used"):
        await second.join(token)
    # The server still serves valid requests.
    publication = await first.publish(video=ColorVideoTrack(RED))
    await publication.wait_ready()
    await viewer.leave()
    await first.leave()


async def test_reconnect_with_ticket_keeps_subscription(tessera: RunningServer) -> None:
    alice = await joined(tessera, "alice")
    bob = await joined(tessera, "bob")
    publication = await alice.publish(video=ColorVideoTrack(RED))
    await publication.wait_ready()
    await bob.next_event("stream", lambda d: d["status"] == "add")
    sub = await bob.subscribe(publication.id)
    await sub.wait_ready()
    bob_id = bob.participant_id
    participant = tessera.server.conference.participants[bob_id]  # type: ignore[index]
    # The network drops: the socket dies without a logout.
    await bob.sio.eio.disconnect(abort=True)
    # Once the server knows, a text to Bob waits for his return (if he is not back already).
    await eventually(
        lambda: participant.address is None or bob.reconnections, what="the drop seen by the server"
    )
    await alice.send_text("while you were away")
    await asyncio.wait_for(bob.connected.wait(), 20)
    await eventually(lambda: bob.reconnections, what="Bob logged in again")
    text = await bob.next_event("text")
    assert text["message"] == "while you were away"
    assert bob.participant_id == bob_id
    assert tessera.server.conference.participants[bob_id] is participant  # type: ignore[index]
    assert sub.id in participant.subscriptions
    assert sub.video_track is not None
    for _ in range(5):
        frame = await next_video_frame(sub.video_track)
    assert close_to(mean_rgb(frame), RED)
    await alice.leave()
    await bob.leave()


async def test_rooms_of_two_services_are_isolated(tessera: RunningServer) -> None:
    from tessera.conference.store import ServiceRecord

    other = ServiceRecord(id="acme", key="k" * 40, allowed_origins=[], adhoc_rooms=True)
    tessera.server.store.put_service(other)
    a = await joined(tessera, "alice", room="standup")
    b = ConferenceClient()
    await b.join(tessera.token(user="bob", room="standup", service=other))
    assert a.room_id != b.room_id
    assert [p["user"] for p in b.info["room"]["participants"]] == ["bob"]
    publication = await a.publish(video=ColorVideoTrack(RED))
    await publication.wait_ready()
    with pytest.raises(ClientError, match="Stream does NOT exist"):
        await b.subscribe(publication.id, audio=False)
    await a.leave()
    await b.leave()


async def test_origin_not_allowed_is_refused(tessera: RunningServer) -> None:
    from tessera.conference.store import ServiceRecord

    strict = ServiceRecord(id="strict", key="s" * 40, allowed_origins=["https://app.example"])
    tessera.server.store.put_service(strict)
    client = ConferenceClient()
    with pytest.raises(ClientError, match=r"Origin https://evil\.example is not allowed"):
        await client.join(tessera.token(service=strict), origin="https://evil.example")
    ok = ConferenceClient()
    await ok.join(tessera.token(service=strict), origin="https://app.example")
    await ok.leave()


async def test_older_client_with_one_transport_per_session(tessera: RunningServer) -> None:
    """OWT 4.x clients: media {audio, video} without mids, a peer connection per session."""
    from aiortc import RTCPeerConnection, RTCSessionDescription

    from tests.integration.test_bad_inputs import raw

    old = await raw(tessera)
    status, _ = await old.login(tessera.token(user="legacy"))
    assert status == "ok"
    progress: list[dict[str, object]] = []
    old.sio.on("progress", lambda data: progress.append(data))
    pc = RTCPeerConnection()
    pc.addTransceiver(ColorVideoTrack(BLUE), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    status, reply = await old.request(
        "publish",
        {"media": {"audio": False, "video": {"source": "camera"}}, "attributes": {"v": 4}},
    )
    assert status == "ok"
    session = reply["id"]
    status, _ = await old.request(
        "soac", {"id": session, "signaling": {"type": "offer", "sdp": pc.localDescription.sdp}}
    )
    assert status == "ok"
    answers = await eventually(
        lambda: [p for p in progress if p.get("status") == "soac"], what="the answer"
    )
    answer = answers[0]["data"]
    assert isinstance(answer, dict)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
    viewer = await joined(tessera, "viewer")
    # The stream is in the room once its ICE and DTLS are done: before the viewer's login
    # (in its room info) or after it (a stream add), slowly on a loaded machine.
    await eventually(lambda: session in viewer.streams, 30, "the stream in the viewer's room")
    sub = await viewer.subscribe(session)
    await sub.wait_ready()
    assert sub.video_track is not None
    for _ in range(5):
        frame = await next_video_frame(sub.video_track)
    assert close_to(mean_rgb(frame), BLUE)
    await viewer.leave()
    await pc.close()
    await old.sio.disconnect()


async def test_client_that_wants_no_reconnection_leaves_at_once(tessera: RunningServer) -> None:
    from tests.integration.test_bad_inputs import raw

    watcher = await joined(tessera, "watcher")
    client = await raw(tessera)
    status, info = await client.request(
        "login",
        {
            "token": tessera.token(user="oneshot"),
            "userAgent": {"sdk": {"type": "JavaScript", "version": "5.1"}},
            "protocol": "1.2",
            "reconnection": False,
        },
    )
    assert status == "ok" and "reconnectionTicket" not in info
    await client.sio.disconnect()
    left = await watcher.next_event("participant", lambda d: d["action"] == "leave", timeout=5)
    assert left["data"] == info["id"]
    await watcher.leave()

"""The client against a behaving fake portal on loopback (real Socket.IO, real aiortc)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from aiortc import AudioStreamTrack, VideoStreamTrack
from av import AudioFrame, VideoFrame
from client_eventually import eventually

from client_fakeportal import FakePortal
from tessera_client import (
    ClientConnectionError,
    ClientError,
    ConferenceClient,
    RequestTimeout,
    encode_b64_json,
)

MakeClient = Callable[..., ConferenceClient]


def m_lines(sdp: str) -> list[tuple[str, str]]:
    """(kind, direction) for each m-line of an SDP."""
    result: list[tuple[str, str]] = []
    for line in sdp.splitlines():
        if line.startswith("m="):
            result.append((line[2:].split()[0], ""))
        elif line[2:] in ("sendonly", "recvonly", "sendrecv", "inactive") and result:
            result[-1] = (result[-1][0], line[2:])
    return result


async def test_join_sends_login_and_keeps_room_state(
    portal: FakePortal, make_client: MakeClient
) -> None:
    alice = make_client()
    info = await alice.join(portal.token("alice"), origin="http://app.test")
    login = portal.requests_named("login")[0]
    assert login["token"] == portal.token("alice")
    assert login["userAgent"] == {"sdk": {"type": "Python", "version": "5.1"}}
    assert login["protocol"] == "1.2"
    assert portal.origins == ["http://app.test"]
    assert info["user"] == "alice"
    assert alice.participant_id == info["id"]
    assert alice.room_id == "room1"
    assert alice.participants[info["id"]]["user"] == "alice"
    assert alice.reconnection_ticket is not None
    assert alice.connected.is_set()

    bob = make_client()
    await bob.join(portal.token("bob", "viewer"))
    joined = await alice.next_event("participant", lambda e: e["action"] == "join")
    assert joined["data"]["user"] == "bob"
    assert bob.participant_id in alice.participants
    assert set(bob.participants) == {alice.participant_id, bob.participant_id}

    await bob.leave()
    await bob.leave()  # idempotent
    assert portal.requests_named("logout") == [None]
    left = await alice.next_event("participant", lambda e: e["action"] == "leave")
    assert left["data"] == bob.participant_id
    assert bob.participant_id not in alice.participants


async def test_request_errors_and_timeouts(portal: FakePortal, make_client: MakeClient) -> None:
    client = make_client()
    with pytest.raises(ClientError, match="Not joined"):
        await client.request("text", {"to": "all", "message": "x"})
    await client.join(portal.token("alice"))
    with pytest.raises(ClientError) as caught:
        await client.request("stream-control", {"id": "nope", "operation": "pause", "data": "av"})
    assert str(caught.value) == "Stream does NOT exist"
    with pytest.raises(RequestTimeout, match="timed out"):
        await client.request("slow", {}, timeout=0.2)
    with pytest.raises(TimeoutError):
        await client.request("slow", {}, timeout=0.1)


async def test_publish_then_subscribe_on_one_transport(
    portal: FakePortal, make_client: MakeClient
) -> None:
    alice = make_client()
    await alice.join(portal.token("alice"))
    publication = await alice.publish(
        audio=AudioStreamTrack(), video=VideoStreamTrack(), attributes={"name": "cam"}
    )
    publish = portal.requests_named("publish")[0]
    assert publish["transport"] == {"type": "webrtc"}
    assert publish["attributes"] == {"name": "cam"}
    assert [(t["type"], t["source"]) for t in publish["media"]["tracks"]] == [
        ("audio", "mic"),
        ("video", "camera"),
    ]
    assert [t["mid"] for t in publish["media"]["tracks"]] == list(publication.mids.values())
    offer = portal.requests_named("soac")[0]
    assert offer["id"] == alice.transport_id == publication.id
    assert offer["signaling"]["type"] == "offer"
    assert "a=candidate:" in offer["signaling"]["sdp"]
    assert m_lines(offer["signaling"]["sdp"]) == [("audio", "sendonly"), ("video", "sendonly")]

    await publication.wait_ready()
    await alice.transport_ready.wait()
    added = await alice.next_event("stream", lambda e: e["status"] == "add")
    assert added["id"] == publication.id
    assert alice.streams[publication.id]["info"]["owner"] == alice.participant_id

    # The portal receives the published media.
    assert alice.participant_id is not None
    participant = portal.participants[alice.participant_id]
    received = {t.kind: t for t in participant.received_tracks}
    assert isinstance(await asyncio.wait_for(received["video"].recv(), 10), VideoFrame)

    subscription = await alice.subscribe(
        publication.id, video_parameters={"resolution": {"width": 640, "height": 360}}
    )
    subscribe = portal.requests_named("subscribe")[0]
    assert subscribe["transport"] == {"type": "webrtc", "id": alice.transport_id}
    assert [(t["type"], t["from"]) for t in subscribe["media"]["tracks"]] == [
        ("audio", publication.id),
        ("video", publication.id),
    ]
    assert "parameters" not in subscribe["media"]["tracks"][0]
    assert subscribe["media"]["tracks"][1]["parameters"] == {
        "resolution": {"width": 640, "height": 360}
    }
    second_offer = portal.requests_named("soac")[1]["signaling"]["sdp"]
    assert m_lines(second_offer) == [
        ("audio", "sendonly"),
        ("video", "sendonly"),
        ("audio", "recvonly"),
        ("video", "recvonly"),
    ]
    await subscription.wait_ready()
    assert subscription.audio_track is not None and subscription.audio_track.kind == "audio"
    assert subscription.video_track is not None and subscription.video_track.kind == "video"
    assert isinstance(await asyncio.wait_for(subscription.video_track.recv(), 10), VideoFrame)
    assert isinstance(await asyncio.wait_for(subscription.audio_track.recv(), 10), AudioFrame)
    assert await subscription.query_bwe() == 1234567


async def test_unpublish_and_unsubscribe_keep_m_lines_inactive(
    portal: FakePortal, make_client: MakeClient
) -> None:
    alice = make_client()
    await alice.join(portal.token("alice"))
    publication = await alice.publish(video=VideoStreamTrack())
    await publication.wait_ready()
    await alice.next_event("stream", lambda e: e["status"] == "add")
    subscription = await alice.subscribe(publication.id, audio=True)
    assert [t["type"] for t in portal.requests_named("subscribe")[0]["media"]["tracks"]] == [
        "video"
    ]  # the stream has no audio: not asked for
    await subscription.wait_ready()
    assert subscription.audio_track is None

    await subscription.unsubscribe()
    await subscription.unsubscribe()
    assert portal.requests_named("unsubscribe") == [{"id": subscription.id}]
    assert m_lines(portal.requests_named("soac")[-1]["signaling"]["sdp"]) == [
        ("video", "sendonly"),
        ("video", "inactive"),
    ]
    assert subscription.ended.is_set()
    assert subscription.id not in alice.subscriptions

    await publication.unpublish()
    assert portal.requests_named("unpublish") == [{"id": publication.id}]
    assert m_lines(portal.requests_named("soac")[-1]["signaling"]["sdp"]) == [
        ("video", "inactive"),
        ("video", "inactive"),
    ]
    removed = await alice.next_event("stream", lambda e: e["status"] == "remove")
    assert removed["id"] == publication.id
    assert publication.id not in alice.streams

    again = await alice.publish(audio=AudioStreamTrack())
    assert portal.requests_named("publish")[-1]["transport"] == {
        "type": "webrtc",
        "id": alice.transport_id,
    }
    assert m_lines(portal.requests_named("soac")[-1]["signaling"]["sdp"]) == [
        ("video", "inactive"),
        ("video", "inactive"),
        ("audio", "sendonly"),
    ]
    await again.wait_ready()


async def test_failed_subscribe_raises_and_leaves_an_inactive_m_line(
    portal: FakePortal, make_client: MakeClient
) -> None:
    alice = make_client()
    await alice.join(portal.token("alice"))
    publication = await alice.publish(video=VideoStreamTrack())
    await alice.next_event("stream", lambda e: e["status"] == "add")
    with pytest.raises(ClientError, match="Stream does NOT exist"):
        await alice.subscribe("missing")
    with pytest.raises(ClientError, match="Resolution is not acceptable"):
        await alice.subscribe(
            publication.id, video_parameters={"resolution": {"width": 9999, "height": 1}}
        )
    subscription = await alice.subscribe(publication.id)
    assert m_lines(portal.requests_named("soac")[-1]["signaling"]["sdp"]) == [
        ("video", "sendonly"),
        ("audio", "inactive"),
        ("video", "inactive"),
        ("video", "inactive"),
        ("video", "recvonly"),
    ]
    await subscription.wait_ready()


async def test_answer_after_ack(portal: FakePortal, make_client: MakeClient) -> None:
    portal.answer_before_ack = False
    alice = make_client()
    await alice.join(portal.token("alice"))
    first, second = await asyncio.gather(
        alice.publish(video=VideoStreamTrack()), alice.publish(audio=AudioStreamTrack())
    )
    # Serialized: the second offer went out after the first answer was applied.
    offers = [m_lines(s["signaling"]["sdp"]) for s in portal.requests_named("soac")]
    assert len(offers) == 2
    assert len(offers[1]) == 2
    await first.wait_ready()
    await second.wait_ready()


async def test_stream_updates_text_and_controls(
    portal: FakePortal, make_client: MakeClient
) -> None:
    alice, bob = make_client(), make_client()
    await alice.join(portal.token("alice"))
    await bob.join(portal.token("bob"))
    publication = await alice.publish(audio=AudioStreamTrack(), video=VideoStreamTrack())
    await publication.wait_ready()
    await bob.next_event("stream", lambda e: e["status"] == "add")
    await publication.pause("video")
    assert portal.requests_named("stream-control")[-1] == {
        "id": publication.id,
        "operation": "pause",
        "data": "video",
    }
    await bob.next_event("stream", lambda e: e["status"] == "update")
    tracks = bob.streams[publication.id]["media"]["tracks"]
    assert {t["type"]: t["status"] for t in tracks} == {"audio": "active", "video": "inactive"}
    await publication.play()
    assert await publication.control("get-region", "common") == {"region": "1"}
    with pytest.raises(ValueError):
        await publication.pause("everything")

    await bob.send_text("hello")
    text = await alice.next_event("text")
    assert text == {"from": bob.participant_id, "to": "all", "message": "hello"}
    assert bob.participant_id is not None
    await alice.send_text("psst", to=bob.participant_id)
    assert (await bob.next_event("text"))["to"] == "me"
    with pytest.raises(ClientError, match="Participant does NOT exist"):
        await alice.send_text("x", to="nobody")


async def test_reconnect_relogin_replays_queued_messages(
    portal: FakePortal, make_client: MakeClient
) -> None:
    alice, bob = make_client(), make_client()
    await alice.join(portal.token("alice"))
    await bob.join(portal.token("bob"))
    publication = await alice.publish(video=VideoStreamTrack())
    await publication.wait_ready()
    first_ticket = alice.reconnection_ticket

    await alice.sio.eio.disconnect(abort=True)
    assert not alice.connected.is_set()
    await bob.send_text("while you were away")
    await bob.next_event("stream", lambda e: e["status"] == "add")

    await asyncio.wait_for(alice.connected.wait(), 20)
    assert alice.reconnections == 1
    assert portal.requests_named("relogin") == [first_ticket]
    assert alice.reconnection_ticket != first_ticket
    text = await alice.next_event("text", timeout=5)
    assert text["message"] == "while you were away"
    assert not alice.dropped.is_set()
    # The session is usable again, on the same transport.
    subscription = await alice.subscribe(publication.id)
    assert portal.requests_named("subscribe")[-1]["transport"]["id"] == alice.transport_id
    await subscription.wait_ready()


async def test_request_during_reconnection_waits(
    portal: FakePortal, make_client: MakeClient
) -> None:
    alice = make_client()
    await alice.join(portal.token("alice"))
    await alice.sio.eio.disconnect(abort=True)
    await alice.send_text("sent after the drop")
    assert portal.requests_named("text")[-1]["message"] == "sent after the drop"
    assert alice.reconnections == 1


async def test_failed_relogin_sets_dropped(portal: FakePortal, make_client: MakeClient) -> None:
    alice = make_client()
    await alice.join(portal.token("alice"))
    portal.refused_relogin = True
    await alice.sio.eio.disconnect(abort=True)
    await asyncio.wait_for(alice.dropped.wait(), 20)
    assert alice.on_drop is alice.dropped
    with pytest.raises(ClientError):
        await alice.send_text("too late")


async def test_no_reconnect_when_disabled(portal: FakePortal, make_client: MakeClient) -> None:
    alice = make_client(reconnect=False)
    await alice.join(portal.token("alice"))
    await alice.sio.eio.disconnect(abort=True)
    await asyncio.wait_for(alice.dropped.wait(), 20)
    assert portal.requests_named("relogin") == []


async def test_drop_from_the_portal(portal: FakePortal, make_client: MakeClient) -> None:
    alice = make_client()
    await alice.join(portal.token("alice"))
    publication = await alice.publish(video=VideoStreamTrack())
    await portal.drop(alice.participant_id or "")
    await asyncio.wait_for(alice.dropped.wait(), 20)
    assert await alice.next_event("drop") is None
    # The session is lost for good, its socket closed: a lost client never logs in again.
    await eventually(
        lambda: not alice.is_joined and not alice.sio.connected and alice.pc is None,
        what="the session lost",
    )
    assert portal.requests_named("relogin") == []
    assert publication.ended.is_set()


async def test_ticket_is_refreshed(make_client: MakeClient) -> None:
    portal = FakePortal(ticket_lifetime=0.6)
    await portal.start()
    try:
        alice = make_client()
        await alice.join(portal.token("alice"))
        await eventually(
            lambda: len(portal.requests_named("refreshReconnectionTicket")) >= 2,
            what="two refreshes",
        )
        await alice.sio.eio.disconnect(abort=True)
        await asyncio.wait_for(alice.connected.wait(), 20)
        assert not alice.dropped.is_set()
    finally:
        await alice.leave()
        await portal.stop()


async def test_join_errors() -> None:
    client = ConferenceClient()
    with pytest.raises(ValueError, match="Invalid token"):
        await client.join("garbage")
    closed_port = encode_b64_json({"host": "127.0.0.1:1", "secure": False})
    with pytest.raises(ClientConnectionError, match="Cannot connect"):
        await client.join(closed_port)
    await client.leave()

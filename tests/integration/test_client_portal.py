"""The Client-Portal protocol on the wire, as OWT's own clients use it.

A bare Socket.IO client and a bare aiortc peer connection do what the OWT
JavaScript SDK 5.1 and pyowt do (their requests, field by field), and every
push is kept in arrival order, so the tests can check fields, values and order.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import socketio
from aiortc import RTCPeerConnection, RTCRtpTransceiver, RTCSessionDescription
from aiortc.sdp import SessionDescription

from tessera_client import ConferenceClient
from tests.eventually import eventually
from tests.support import RunningServer, api, joined
from tests.synthetic import ColorVideoTrack, ToneTrack

RED = (230, 30, 30)
BLUE = (30, 30, 230)
PUSHES = ("participant", "stream", "progress", "text", "drop")


class WireClient:
    """A Client-Portal client with nothing of its own: OWT's requests, pushes kept in order."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient()
        self.pushes: list[tuple[str, Any]] = []
        self.pc = RTCPeerConnection()
        self.transport_id: str | None = None
        self.login_result: dict[str, Any] = {}
        for name in PUSHES:
            self.sio.on(name, self._keeper(name))

    def _keeper(self, name: str) -> Any:
        async def keep(data: Any = None) -> None:
            self.pushes.append((name, data))

        return keep

    async def login(
        self, tessera: RunningServer, user: str, protocol: str = "1.2"
    ) -> dict[str, Any]:
        await self.sio.connect(tessera.url, transports=["websocket"])
        status, result = await self.request(
            "login",
            {
                "token": tessera.token(user=user),
                "userAgent": {"sdk": {"type": "JavaScript", "version": "5.1"}},
                "protocol": protocol,
            },
        )
        assert status == "ok", result
        self.login_result = result
        return dict(result)

    async def request(self, name: str, data: Any = None) -> tuple[str, Any]:
        done: asyncio.Future[tuple[Any, ...]] = asyncio.get_running_loop().create_future()
        await self.sio.emit(name, data, callback=lambda *reply: done.set_result(reply))
        reply = await asyncio.wait_for(done, 30)
        return reply[0], reply[1] if len(reply) > 1 else None

    async def push(self, name: str, match: dict[str, Any]) -> Any:
        """The first push `name` whose data has every key/value of `match`."""

        def found() -> Any:
            for event, data in self.pushes:
                if event == name and all(data.get(k) == v for k, v in match.items()):
                    return data
            return None

        return await eventually(found, what=f"{name} {match}")

    def index(self, name: str, match: dict[str, Any]) -> int:
        for i, (event, data) in enumerate(self.pushes):
            if event == name and all(data.get(k) == v for k, v in match.items()):
                return i
        raise AssertionError(f"no {name} {match} in {self.pushes}")

    async def subscribe(self, stream_id: str, transport: dict[str, Any]) -> tuple[str, list[str]]:
        """As the JS SDK 5.1: add recvonly transceivers, offer, subscribe with the mids, soac.

        Returns the subscription id and its mids; the answer is applied.
        """
        transceivers: list[RTCRtpTransceiver] = [
            self.pc.addTransceiver("audio", direction="recvonly"),
            self.pc.addTransceiver("video", direction="recvonly"),
        ]
        await self.pc.setLocalDescription(await self.pc.createOffer())
        mids = [str(t.mid) for t in transceivers]
        status, reply = await self.request(
            "subscribe",
            {
                "media": {
                    "tracks": [
                        {"type": t.kind, "mid": str(t.mid), "from": stream_id} for t in transceivers
                    ]
                },
                "transport": transport,
            },
        )
        assert status == "ok", reply
        self.transport_id = self.transport_id or reply["transportId"]
        assert reply["transportId"] == self.transport_id
        await self.offer()
        return str(reply["id"]), mids

    async def offer(self) -> None:
        answers = sum(1 for e, d in self.pushes if e == "progress" and d.get("status") == "soac")
        local = self.pc.localDescription
        status, reply = await self.request(
            "soac",
            {"id": self.transport_id, "signaling": {"type": "offer", "sdp": local.sdp}},
        )
        assert status == "ok", reply

        def answer() -> Any:
            found = [d for e, d in self.pushes if e == "progress" and d.get("status") == "soac"]
            return found[answers] if len(found) > answers else None

        message = await eventually(answer, what="the answer")
        assert message["id"] == self.transport_id
        assert message["data"]["type"] == "answer"
        await self.pc.setRemoteDescription(RTCSessionDescription(**message["data"]))

    def answer_msids(self) -> dict[str, str]:
        """mid -> the msid stream id of that m-line in the last answer."""
        description = SessionDescription.parse(self.pc.remoteDescription.sdp)
        return {
            str(media.rtp.muxId): media.msid.split()[0] for media in description.media if media.msid
        }

    async def close(self) -> None:
        await self.sio.disconnect()
        await self.pc.close()


async def _publish(tessera: RunningServer, user: str, color: tuple[int, int, int]) -> Any:
    client = await joined(tessera, user)
    publication = await client.publish(audio=ToneTrack(440), video=ColorVideoTrack(color))
    await publication.wait_ready()
    return client, publication


async def test_an_empty_or_null_transport_id_creates_a_transport(tessera: RunningServer) -> None:
    alice, publication = await _publish(tessera, "alice", RED)
    for transport in ({"type": "webrtc", "id": ""}, {"type": "webrtc", "id": None}, {}):
        wire = WireClient()
        try:
            await wire.login(tessera, "pyowt")
            subscription_id, _ = await wire.subscribe(publication.id, transport)
            # A new transport is named after its first session (pyowt routes by that id).
            assert wire.transport_id == subscription_id
            await wire.push("progress", {"sessionId": subscription_id, "status": "ready"})
        finally:
            await wire.close()
    # A transport id that names nothing is still refused, and nothing is created.
    wire = WireClient()
    try:
        await wire.login(tessera, "bad")
        status, reply = await wire.request(
            "subscribe",
            {
                "media": {"tracks": [{"type": "video", "mid": "0", "from": publication.id}]},
                "transport": {"type": "webrtc", "id": "nosuchtransport"},
            },
        )
        assert (status, reply) == ("error", "Transport does NOT exist")
        participant = tessera.server.conference.participants[wire.login_result["id"]]
        assert participant.transports == {} and participant.subscriptions == {}
    finally:
        await wire.close()
    await alice.leave()


async def test_each_subscription_has_its_own_msid_stream(tessera: RunningServer) -> None:
    alice, red = await _publish(tessera, "alice", RED)
    bob, blue = await _publish(tessera, "bob", BLUE)
    wire = WireClient()
    streams: dict[str, set[str]] = {}

    @wire.pc.on("track")
    def on_track(track: Any) -> None:
        streams.setdefault(track.kind, set()).add(track.id)

    try:
        await wire.login(tessera, "carol")
        first, first_mids = await wire.subscribe(red.id, {"type": "webrtc"})
        second, second_mids = await wire.subscribe(blue.id, {"type": "webrtc", "id": first})
        mixed = f"{wire.login_result['room']['id']}-common"
        third, third_mids = await wire.subscribe(mixed, {"type": "webrtc", "id": first})
        msids = wire.answer_msids()
        assert {msids[mid] for mid in first_mids} == {first}
        assert {msids[mid] for mid in second_mids} == {second}
        assert {msids[mid] for mid in third_mids} == {third}
        for subscription_id in (first, second, third):
            await wire.push("progress", {"sessionId": subscription_id, "status": "ready"})
    finally:
        await wire.close()
    await alice.leave()
    await bob.leave()


async def test_source_stream_loss_ends_each_subscription(tessera: RunningServer) -> None:
    alice, red = await _publish(tessera, "alice", RED)
    bob, blue = await _publish(tessera, "bob", BLUE)
    wire = WireClient()
    try:
        await wire.login(tessera, "carol")
        red_sub, _ = await wire.subscribe(red.id, {"type": "webrtc"})
        blue_sub, _ = await wire.subscribe(blue.id, {"type": "webrtc", "id": red_sub})
        await wire.push("progress", {"sessionId": blue_sub, "status": "ready"})
        participant = tessera.server.conference.participants[wire.login_result["id"]]

        await red.unpublish()  # the publisher unpublishes
        loss = await wire.push("progress", {"sessionId": red_sub, "status": "error"})
        assert loss == {
            "id": wire.transport_id,
            "sessionId": red_sub,
            "status": "error",
            "data": "Source stream loss",
        }
        assert wire.index("stream", {"id": red.id, "status": "remove"}) < wire.index(
            "progress", {"sessionId": red_sub, "status": "error"}
        )
        # The server ended the subscription (the SDK's unsubscribe then finds nothing).
        assert red_sub not in participant.subscriptions
        assert await wire.request("unsubscribe", {"id": red_sub}) == (
            "error",
            "Subscription does NOT exist",
        )

        await bob.leave()  # the publisher leaves
        await wire.push("progress", {"sessionId": blue_sub, "status": "error"})
        assert wire.index("stream", {"id": blue.id, "status": "remove"}) < wire.index(
            "progress", {"sessionId": blue_sub, "status": "error"}
        )
        assert participant.subscriptions == {}
        # The transport lives on: a new subscription on it works.
        again, _ = await wire.subscribe(
            f"{wire.login_result['room']['id']}-common",
            {
                "type": "webrtc",
                "id": wire.transport_id,
            },
        )
        await wire.push("progress", {"sessionId": again, "status": "ready"})
    finally:
        await wire.close()
    await alice.leave()


async def test_a_stream_deleted_over_rest_ends_its_subscriptions(tessera: RunningServer) -> None:
    alice, red = await _publish(tessera, "alice", RED)
    bob = ConferenceClient()
    await bob.join(tessera.token(user="bob"))
    subscription = await bob.subscribe(red.id)
    await subscription.wait_ready()
    room = alice.room_id
    status, _ = await api(tessera, "DELETE", f"/v1.1/rooms/{room}/streams/{red.id}")
    assert status == 200
    loss = await bob.next_event(
        "progress", lambda d: d["sessionId"] == subscription.id and d["status"] == "error"
    )
    assert loss["data"] == "Source stream loss"
    await bob.leave()
    await alice.leave()


async def test_removed_candidates_are_refused_by_name(tessera: RunningServer) -> None:
    alice, publication = await _publish(tessera, "alice", RED)
    wire = WireClient()
    try:
        await wire.login(tessera, "native")
        subscription_id, _ = await wire.subscribe(publication.id, {"type": "webrtc"})
        status, reply = await wire.request(
            "soac",
            {
                "id": wire.transport_id,
                "signaling": {
                    "type": "removed-candidates",
                    "candidates": [{"candidate": "a=candidate:1 1 udp 1 127.0.0.1 9 typ host"}],
                },
            },
        )
        assert status == "error" and reply.startswith("removed-candidates is not supported")
        # Nothing else changed: the subscription is still there and gets ready.
        await wire.push("progress", {"sessionId": subscription_id, "status": "ready"})
    finally:
        await wire.close()
    await alice.leave()


async def test_login_result_and_pushes_have_the_fields_the_sdk_reads(
    tessera: RunningServer,
) -> None:
    """Field by field what the JS SDK 5.1 (client.js, channel.js, streamutils.js) reads."""
    alice, publication = await _publish(tessera, "alice", RED)
    wire = WireClient()
    try:
        result = await wire.login(tessera, "carol")
        assert set(result) >= {"id", "user", "role", "permission", "room", "reconnectionTicket"}
        assert (result["user"], result["role"]) == ("carol", "presenter")
        assert result["permission"] == {
            "publish": {"audio": True, "video": True},
            "subscribe": {"audio": True, "video": True},
        }
        room = result["room"]
        assert room["views"] == ["common"]
        people = {p["id"]: p for p in room["participants"]}
        assert people[result["id"]] == {"id": result["id"], "user": "carol", "role": "presenter"}
        assert people[alice.participant_id]["user"] == "alice"
        streams = {s["id"]: s for s in room["streams"]}
        mixed = streams[f"{room['id']}-common"]
        assert mixed["type"] == "mixed" and mixed["info"]["label"] == "common"
        assert {"activeInput", "layout"} <= set(mixed["info"])
        forward = streams[publication.id]
        assert forward["type"] == "forward"
        assert forward["info"]["owner"] == alice.participant_id
        assert forward["info"]["type"] == "webrtc"
        assert forward["info"]["inViews"] == ["common"]
        assert isinstance(forward["info"]["attributes"], dict)
        for track in forward["media"]["tracks"]:
            assert {"id", "type", "mid", "source", "format", "status"} <= set(track)
            assert track["status"] == "active"
        sources = {t["type"]: t["source"] for t in forward["media"]["tracks"]}
        assert sources == {"audio": "mic", "video": "camera"}
        for stream in (mixed, forward):
            for track in stream["media"]["tracks"]:
                optional = track.get("optional")
                if optional and "parameters" in optional:  # the SDK iterates all four
                    assert set(optional["parameters"]) == {
                        "resolution",
                        "framerate",
                        "bitrate",
                        "keyFrameInterval",
                    }
        ticket = json.loads(base64.b64decode(result["reconnectionTicket"]))
        assert {"participantId", "ticketId", "notBefore", "notAfter", "signature"} <= set(ticket)
        assert ticket["participantId"] == result["id"]
        assert ticket["notAfter"] > time.time() * 1000  # milliseconds, as OWT's

        # participant join/leave as others see them
        dave = await joined(tessera, "dave")
        joined_push = await wire.push("participant", {"action": "join"})
        assert joined_push["data"] == {
            "id": dave.participant_id,
            "user": "dave",
            "role": "presenter",
        }
        await dave.leave()
        left = await wire.push("participant", {"action": "leave"})
        assert left == {"action": "leave", "data": dave.participant_id}

        # a subscription's progress, in order: answer, transport ready, session ready
        subscription_id, _ = await wire.subscribe(publication.id, {"type": "webrtc"})
        await wire.push("progress", {"sessionId": subscription_id, "status": "ready"})
        transport = wire.transport_id
        answer = wire.index("progress", {"id": transport, "status": "soac"})
        ready = wire.index("progress", {"id": transport, "status": "ready"})
        session = wire.index("progress", {"sessionId": subscription_id, "status": "ready"})
        assert answer < ready < session
        assert "sessionId" not in wire.pushes[ready][1]

        # stream updates: paused video
        await publication.pause("video")
        update = await wire.push("stream", {"id": publication.id, "status": "update"})
        assert update["data"] == {"field": "video.status", "value": "inactive"}

        # text to all and to one
        await alice.send_text("to all")
        await alice.send_text("to carol", to=result["id"])
        assert await wire.push("text", {"message": "to all"}) == {
            "from": alice.participant_id,
            "to": "all",
            "message": "to all",
        }
        assert (await wire.push("text", {"message": "to carol"}))["to"] == "me"

        # refreshReconnectionTicket, then logout
        status, fresh = await wire.request("refreshReconnectionTicket")
        assert (
            status == "ok"
            and json.loads(base64.b64decode(fresh))["participantId"] == (result["id"])
        )
        assert await wire.request("logout") == ("ok", None)
        assert result["id"] not in tessera.server.conference.participants
    finally:
        await wire.close()
    await alice.leave()


async def test_a_participant_removed_over_rest_gets_drop(tessera: RunningServer) -> None:
    wire = WireClient()
    try:
        result = await wire.login(tessera, "carol")
        status, _ = await api(
            tessera, "DELETE", f"/v1/rooms/{result['room']['id']}/participants/{result['id']}"
        )
        assert status == 200
        await eventually(lambda: ("drop", None) in wire.pushes, what="drop")
        await eventually(lambda: not wire.sio.connected, what="disconnected")
    finally:
        await wire.close()


class ResizingVideoTrack(ColorVideoTrack):
    """A colour track that switches to another frame size when told (as a camera may)."""

    def __init__(self) -> None:
        super().__init__(RED, 320, 240)
        self.small = ColorVideoTrack(RED, 160, 120)

    def resize(self) -> None:
        self._frame = self.small._frame


async def test_a_new_publisher_resolution_is_announced_as_stream_update_dot(
    tessera: RunningServer,
) -> None:
    alice = await joined(tessera, "alice")
    track = ResizingVideoTrack()
    publication = await alice.publish(video=track)
    await publication.wait_ready()
    wire = WireClient()
    try:
        result = await wire.login(tessera, "carol")
        forward = next(s for s in result["room"]["streams"] if s["id"] == publication.id)
        assert forward["media"]["tracks"][0]["parameters"]["resolution"] == {
            "width": 320,
            "height": 240,
        }
        track.resize()  # aiortc's encoder starts again with a keyframe of the new size
        update = await wire.push("stream", {"id": publication.id, "status": "update"})
        assert update["data"]["field"] == "."
        value = update["data"]["value"]
        assert value["id"] == publication.id and value["type"] == "forward"
        assert value["media"]["tracks"][0]["parameters"]["resolution"] == {
            "width": 160,
            "height": 120,
        }
    finally:
        await wire.close()
    await alice.leave()


async def test_a_protocol_1_1_client_reads_the_1_1_forms(tessera: RunningServer) -> None:
    """OWT 4.x SDKs: media.audio / media.video.original, progress without sessionId."""
    alice, red = await _publish(tessera, "alice", RED)
    wire = WireClient()
    try:
        result = await wire.login(tessera, "legacy", protocol="1.1")
        forward = next(s for s in result["room"]["streams"] if s["id"] == red.id)
        assert "tracks" not in forward["media"]
        assert forward["media"]["audio"]["source"] == "mic"
        assert forward["media"]["video"]["original"][0]["format"]["codec"] == "vp8"
        # a 4.x client subscribes with media {audio, video} on a transport of its own
        wire.pc.addTransceiver("audio", direction="recvonly")
        wire.pc.addTransceiver("video", direction="recvonly")
        await wire.pc.setLocalDescription(await wire.pc.createOffer())
        status, reply = await wire.request(
            "subscribe", {"media": {"audio": {"from": red.id}, "video": {"from": red.id}}}
        )
        assert status == "ok"
        wire.transport_id = reply["id"]
        await wire.offer()
        ready = await wire.push("progress", {"id": reply["id"], "status": "ready"})
        assert "sessionId" not in ready
        bob, blue = await _publish(tessera, "bob", BLUE)
        added = await wire.push("stream", {"id": blue.id, "status": "add"})
        assert set(added["data"]["media"]) == {"audio", "video"}
        await bob.leave()
    finally:
        await wire.close()
    await alice.leave()


async def test_an_audio_format_the_stream_does_not_have_is_refused(tessera: RunningServer) -> None:
    # Audio is not transcoded for subscribers: asking for another format is an error, not
    # a subscription that silently delivers Opus anyway.
    alice, publication = await _publish(tessera, "alice", RED)
    wire = WireClient()
    try:
        await wire.login(tessera, "native")
        for wrong in ({"codec": "pcmu"}, {"codec": "opus", "sampleRate": 16000}):
            status, reply = await wire.request(
                "subscribe",
                {
                    "media": {
                        "tracks": [
                            {"type": "audio", "mid": "0", "from": publication.id, "format": wrong}
                        ]
                    },
                    "transport": {"type": "webrtc"},
                },
            )
            assert (status, reply) == ("error", "Format is not acceptable"), wrong
        status, reply = await wire.request(
            "subscribe",
            {
                "media": {
                    "tracks": [
                        {
                            "type": "audio",
                            "mid": "0",
                            "from": publication.id,
                            "format": {"codec": "opus", "sampleRate": 48000, "channelNum": 2},
                        }
                    ]
                },
                "transport": {"type": "webrtc"},
            },
        )
        assert status == "ok", reply
    finally:
        await wire.close()
    await alice.leave()

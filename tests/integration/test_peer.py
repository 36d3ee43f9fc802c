"""The PeerJS-compatible endpoint against a real server: raw WebSocket clients and PeerClient."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiortc import RTCDataChannel, RTCPeerConnection, RTCSessionDescription

from tessera.conference.store import ServiceRecord
from tessera.conference.tokens import issue_token
from tessera.portal import roompeer
from tessera.portal.binarypack import BinaryPackCodec, pack, unpack
from tessera.webrtc_agent.transport import Transport
from tessera_client import ClientError, PeerClient, PeerError, PeerUnavailable
from tests.eventually import eventually
from tests.integration.test_mixing import frame_where, wait_layout
from tests.support import RunningServer, api, joined, region_box, start_server
from tests.synthetic import ColorVideoTrack, close_to, mean_rgb, next_video_frame

pytestmark = pytest.mark.timeout(60)

KEY = "k" * 43
RED = (220, 30, 30)
GREEN = (30, 200, 30)
BLUE = (30, 30, 220)


class RawPeer:
    """A bare PeerServer client: one aiohttp WebSocket, JSON frames in and out."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, session: aiohttp.ClientSession):
        self.ws = ws
        self.session = session

    async def send(self, **message: Any) -> None:
        await self.ws.send_str(json.dumps(message))

    async def recv(self, timeout: float = 20.0) -> dict[str, Any]:
        frame = await asyncio.wait_for(self.ws.receive(), timeout)
        assert frame.type == aiohttp.WSMsgType.TEXT, frame
        result: dict[str, Any] = json.loads(frame.data)
        return result

    async def closed(self, timeout: float = 20.0) -> bool:
        frame = await asyncio.wait_for(self.ws.receive(), timeout)
        return frame.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)

    async def close(self) -> None:
        await self.ws.close()
        await self.session.close()


async def raw_peer(
    tessera: RunningServer,
    peer_id: str,
    *,
    key: str | None = None,
    token: str = "secret",
    headers: dict[str, str] | None = None,
    query: str | None = None,
) -> RawPeer:
    session = aiohttp.ClientSession()
    key = tessera.server.default_service.id if key is None else key
    url = f"ws://127.0.0.1:{tessera.port}/peerjs/peerjs?" + (
        query if query is not None else f"key={key}&id={peer_id}&token={token}&version=1.5.5"
    )
    ws = await session.ws_connect(url, headers=headers)
    return RawPeer(ws, session)


@pytest.fixture
async def quick(tmp_path: Path) -> AsyncIterator[RunningServer]:
    """A server with short peer timeouts."""
    running = await start_server(
        tmp_path, **{"peer.alive_timeout": 1.5, "peer.expire_timeout": 0.5}
    )
    try:
        yield running
    finally:
        await running.stop()


async def test_id_and_open_and_relay_with_src(tessera: RunningServer) -> None:
    service = tessera.server.default_service.id
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{tessera.url}/peerjs/{service}/id?ts=1&version=1.5.5") as resp:
            assert resp.status == 200
            generated = await resp.text()
        async with session.get(f"{tessera.url}/peerjs/") as resp:
            assert "PeerServer" in (await resp.json())["name"]
        async with session.get(f"{tessera.url}/peerjs/{service}/peers") as resp:
            assert resp.status == 401  # allow_discovery is off
    assert len(generated) == 16 and generated.isalnum()
    alice = await raw_peer(tessera, generated)
    bob = await raw_peer(tessera, "bob")
    try:
        assert await alice.recv() == {"type": "OPEN"}
        assert await bob.recv() == {"type": "OPEN"}
        offer = {"sdp": {"type": "offer", "sdp": "v=0"}, "type": "media", "connectionId": "mc_x"}
        await alice.send(type="OFFER", dst="bob", payload=offer)
        assert await bob.recv() == {
            "type": "OFFER",
            "src": generated,
            "dst": "bob",
            "payload": offer,
        }
        await bob.send(type="ANSWER", dst=generated, payload={"connectionId": "mc_x"})
        assert (await alice.recv())["src"] == "bob"
        # Heartbeats are silent.
        await alice.send(type="HEARTBEAT")
        await alice.send(type="CANDIDATE", dst="bob", payload={"candidate": {}})
        assert (await bob.recv())["type"] == "CANDIDATE"
    finally:
        await alice.close()
        await bob.close()


async def test_id_taken_invalid_key_and_missing_parameters(tessera: RunningServer) -> None:
    alice = await raw_peer(tessera, "alice", token="one")
    assert await alice.recv() == {"type": "OPEN"}
    intruder = await raw_peer(tessera, "alice", token="two")
    assert await intruder.recv() == {"type": "ID-TAKEN", "payload": {"msg": "ID is taken"}}
    assert await intruder.closed()
    wrong = await raw_peer(tessera, "carol", key="no-such-service")
    assert await wrong.recv() == {"type": "INVALID-KEY", "payload": {"msg": "Invalid key provided"}}
    assert await wrong.closed()
    bare = await raw_peer(tessera, "dave", query="key=default")
    message = await bare.recv()
    assert message["type"] == "ERROR" and "No id, token, or key" in message["payload"]["msg"]
    for peer in (alice, intruder, wrong, bare):
        await peer.close()


async def keep_alive(peer: RawPeer) -> None:
    """Heartbeats, as peerjs sends them (the stimulus: this peer stays alive)."""
    while True:
        await peer.send(type="HEARTBEAT")
        await asyncio.sleep(0.3)  # stimulus: beats well inside the 1.5 s alive timeout


async def test_expire_for_unknown_destination(quick: RunningServer) -> None:
    alice = await raw_peer(quick, "alice")
    await alice.recv()
    beating = asyncio.ensure_future(keep_alive(alice))
    try:
        await alice.send(type="OFFER", dst="nobody", payload={"connectionId": "mc_1"})
        # The message waits 0.5 s for "nobody", then alice hears that it expired.
        message = await alice.recv(timeout=20)
        assert message == {"type": "EXPIRE", "src": "nobody", "dst": "alice"}
    finally:
        beating.cancel()
        await alice.close()


async def test_silent_peer_expires_and_its_contact_hears_leave(quick: RunningServer) -> None:
    alice = await raw_peer(quick, "alice")
    bob = await raw_peer(quick, "bob")
    await alice.recv()
    await bob.recv()
    await alice.send(type="OFFER", dst="bob", payload={"connectionId": "mc_1"})
    await bob.recv()
    beating = asyncio.ensure_future(keep_alive(alice))
    try:
        assert await alice.recv(timeout=20) == {"type": "LEAVE", "src": "bob", "dst": "alice"}
        assert await bob.closed()
        assert quick.server.peers.registry.peer_ids(quick.server.default_service.id) == ["alice"]
    finally:
        beating.cancel()
        await alice.close()
        await bob.close()


async def test_malformed_frames_are_dropped_with_a_log_line_and_no_error(
    tessera: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    # As PeerServer: the peerjs client destroys its whole peer on ERROR, so a frame from an
    # app bug (peer.connect(undefined) sends an OFFER without dst) gets no answer at all.
    caplog.set_level(logging.INFO, logger="tessera.portal.peergateway")
    alice = await raw_peer(tessera, "alice")
    bob = await raw_peer(tessera, "bob")
    await alice.recv()
    await bob.recv()
    bad_frames = ("{", "[]", '{"type": 3}', '{"type": "OFFER", "dst": "bob"}', '{"type": "NOPE"}')
    for bad in bad_frames:
        await alice.ws.send_str(bad)
    await alice.ws.send_str('{"type": "OFFER", "payload": {"connectionId": "dc_undefined"}}')
    await alice.ws.send_bytes(b"\x01\x02")
    await alice.send(type="OFFER", dst="bob", payload={"connectionId": "mc_ok"})
    assert (await bob.recv())["payload"] == {"connectionId": "mc_ok"}
    await bob.send(type="ANSWER", dst="alice", payload={"connectionId": "mc_ok"})
    # The answer is alice's next frame: nothing (no ERROR) came for the bad ones before it.
    assert await alice.recv() == {
        "type": "ANSWER",
        "src": "bob",
        "dst": "alice",
        "payload": {"connectionId": "mc_ok"},
    }
    dropped = [r for r in caplog.records if r.getMessage().startswith("peer frame dropped")]
    assert len(dropped) == len(bad_frames) + 2
    assert any("needs a destination" in r.getMessage() for r in dropped)
    assert all(getattr(r, "peer", None) == "alice" for r in dropped)
    await alice.close()
    await bob.close()


async def test_a_peer_that_stops_reading_is_cut_off_and_the_sender_goes_on(
    tessera: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tessera.portal.peergateway")
    gateway = tessera.server.peers
    gateway.send_timeout = 0.5
    stuck = await raw_peer(tessera, "stuck")
    assert await stuck.recv() == {"type": "OPEN"}
    alice = await raw_peer(tessera, "alice")
    bob = await raw_peer(tessera, "bob")
    assert await alice.recv() == await bob.recv() == {"type": "OPEN"}
    try:
        # "stuck" reads nothing more: OFFERs to it fill the socket buffers until it stalls.
        payload = {"pad": "x" * 60000}
        for _ in range(1000):
            if (
                tessera.server.peers.registry.get(tessera.server.default_service.id, "stuck")
                is None
            ):
                break
            await alice.send(type="OFFER", dst="stuck", payload=payload)
            await asyncio.sleep(0)
        await eventually(
            lambda: gateway.registry.get(tessera.server.default_service.id, "stuck") is None
        )
        cut = [r for r in caplog.records if r.msg == "peer socket stalled, cut off"]
        assert [getattr(r, "peer", None) for r in cut] == ["stuck"]
        # The sender's frames are still read and relayed.
        await alice.send(type="OFFER", dst="bob", payload={"n": 1})
        assert (await bob.recv())["payload"] == {"n": 1}
    finally:
        for peer in (stuck, alice, bob):
            await peer.close()


async def test_two_services_are_isolated(tessera: RunningServer) -> None:
    tessera.server.store.put_service(ServiceRecord(id="other", key=KEY))
    a = await raw_peer(tessera, "alice")
    b = await raw_peer(tessera, "alice", key="other")  # same id, another namespace
    await a.recv()
    assert await b.recv() == {"type": "OPEN"}
    c = await raw_peer(tessera, "carol", key="other")
    await c.recv()
    await c.send(type="OFFER", dst="alice", payload={"connectionId": "mc_1"})
    assert (await b.recv())["src"] == "carol"
    # The next thing the other alice hears is a later message of her own service, not
    # carol's offer (relayed before that one, had it gone to both).
    d = await raw_peer(tessera, "dave")
    await d.recv()
    await d.send(type="OFFER", dst="alice", payload={"connectionId": "mc_2"})
    assert (await a.recv())["src"] == "dave"
    for peer in (a, b, c, d):
        await peer.close()


async def test_allowed_origins_apply(tessera: RunningServer) -> None:
    tessera.server.store.put_service(
        ServiceRecord(id="strict", key=KEY, allowed_origins=["https://app.example"])
    )
    refused = await raw_peer(tessera, "x", key="strict", headers={"Origin": "https://evil.example"})
    message = await refused.recv()
    assert message["type"] == "ERROR" and "evil.example" in message["payload"]["msg"]
    allowed = await raw_peer(tessera, "y", key="strict", headers={"Origin": "https://app.example"})
    assert await allowed.recv() == {"type": "OPEN"}
    async with aiohttp.ClientSession() as session:
        url = f"{tessera.url}/peerjs/strict/id"
        async with session.get(url, headers={"Origin": "https://evil.example"}) as resp:
            assert resp.status == 403
        async with session.get(url, headers={"Origin": "https://app.example"}) as resp:
            assert resp.status == 200
            assert resp.headers["Access-Control-Allow-Origin"] == "https://app.example"
    await refused.close()
    await allowed.close()


async def test_token_required_when_the_service_says_so(tessera: RunningServer) -> None:
    service = ServiceRecord(id="locked", key=KEY, peer_tokens=True)
    tessera.server.store.put_service(service)
    anonymous = await raw_peer(tessera, "anon", key="locked", token="random123")
    message = await anonymous.recv()
    assert message["type"] == "ERROR" and "join token" in message["payload"]["msg"]
    foreign = tessera.token(room="r")  # signed by the default service
    wrong = await raw_peer(tessera, "w", key="locked", token=foreign)
    assert "not issued by this service" in (await wrong.recv())["payload"]["msg"]
    token = tessera.token(room="r", user="ann", service=service)
    ok = await raw_peer(tessera, "ann", key="locked", token=token)
    assert await ok.recv() == {"type": "OPEN"}
    # peerjs does not escape the token in the URL: a "+" of base64 arrives as is; a client
    # that escapes it sends "%2B". ("~~~" in the envelope puts a "+" into the base64.)
    for user, escape in (("plus", False), ("escaped", True)):
        plus = issue_token(
            service_id=service.id,
            key=service.key,
            room="r",
            user=user,
            role="presenter",
            host="~~~",
            secure=False,
            lifetime=60,
        )
        assert "+" in plus
        sent_token = plus.replace("+", "%2B") if escape else plus
        other = await raw_peer(tessera, user, key="locked", token=sent_token)
        assert await other.recv() == {"type": "OPEN"}, user
        await other.close()
    await ok.close()
    await eventually(
        lambda: tessera.server.peers.registry.get(service.id, "ann") is None, what="ann gone"
    )
    # The same peer may come back with its token (peerjs reconnect); another may not.
    again = await raw_peer(tessera, "ann", key="locked", token=token)
    assert await again.recv() == {"type": "OPEN"}
    thief = await raw_peer(tessera, "thief", key="locked", token=token)
    assert "already been used" in (await thief.recv())["payload"]["msg"]
    for peer in (anonymous, wrong, again, thief):
        await peer.close()


async def test_discovery_lists_a_services_peers(tmp_path: Path) -> None:
    running = await start_server(tmp_path, **{"peer.allow_discovery": True})
    try:
        alice = await raw_peer(running, "alice")
        await alice.recv()
        async with aiohttp.ClientSession() as session:
            service = running.server.default_service.id
            async with session.get(f"{running.url}/peerjs/{service}/peers") as resp:
                assert await resp.json() == ["alice"]
        await alice.close()
    finally:
        await running.stop()


# -- media with PeerClient (aiortc) ------------------------------------------


def peer(tessera: RunningServer, peer_id: str | None = None, **kw: Any) -> PeerClient:
    return PeerClient(tessera.url, tessera.server.default_service.id, peer_id=peer_id, **kw)


async def test_two_python_peers_call_and_talk(tessera: RunningServer) -> None:
    alice, bob = peer(tessera), peer(tessera, "bob")
    await alice.open()
    assert alice.id is not None and len(alice.id) == 16
    await bob.open()
    try:
        calling = asyncio.ensure_future(alice.call("bob", video=ColorVideoTrack((255, 0, 0))))
        incoming = await bob.next_call()
        assert incoming.peer == alice.id
        await incoming.answer(video=ColorVideoTrack((0, 0, 255)))
        call = await calling
        red = await next_video_frame(await incoming.track("video"))
        blue = await next_video_frame(await call.track("video"))
        assert close_to(mean_rgb(red), (255, 0, 0)) and close_to(mean_rgb(blue), (0, 0, 255))
        link = await alice.connect("bob")
        remote = await bob.next_connection()
        link.send({"hello": "bob"})
        assert await remote.recv() == {"hello": "bob"}
        remote.send(["hi", 1])
        assert await link.recv() == ["hi", 1]
        # The server carried signaling only.
        assert tessera.server.agent.transports == {}
        with pytest.raises(PeerUnavailable):
            await alice.call("nobody", video=ColorVideoTrack((0, 255, 0)), timeout=8)
    finally:
        await alice.close()
        await bob.close()


async def test_wrong_key_is_refused_for_python_peer(tessera: RunningServer) -> None:
    client = PeerClient(tessera.url, "nope", peer_id="x")
    with pytest.raises(PeerError) as refused:
        await client.open()
    assert refused.value.kind == "INVALID-KEY"


async def test_python_peer_open_failure_leaks_no_session(tessera: RunningServer) -> None:
    # Nothing listens on this port: the GET of an id fails inside open().
    client = PeerClient("http://127.0.0.1:9", tessera.server.default_service.id)
    with pytest.raises(aiohttp.ClientError):
        await client.open(timeout=2)
    assert client._session is None and client._ws is None and not client._tasks


async def test_python_peer_refuses_binarypack_without_a_peer_connection(
    tessera: RunningServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    made: list[object] = []
    real_init = RTCPeerConnection.__init__

    def counted(self: RTCPeerConnection, *args: Any, **kw: Any) -> None:
        made.append(self)
        real_init(self, *args, **kw)

    monkeypatch.setattr(RTCPeerConnection, "__init__", counted)
    caplog.set_level(logging.WARNING, logger="tessera_client.peer")
    bob = peer(tessera, "bob")
    await bob.open()
    raw = await raw_peer(tessera, "raw")
    await raw.recv()
    try:
        with pytest.raises(ClientError, match="'binary' is not supported"):
            await bob.connect("raw", serialization="binary")
        # An incoming offer without serialization is peerjs's default, BinaryPack.
        offer = {"sdp": {"type": "offer", "sdp": "v=0"}, "type": "data", "connectionId": "dc_1"}
        await raw.send(type="OFFER", dst="bob", payload=offer)
        await eventually(lambda: "data connection from raw refused" in caplog.text)
        assert "'binary' is not supported" in caplog.text
        assert made == [] and bob.connections == {} and bob.incoming_data.empty()
    finally:
        await raw.close()
        await bob.close()


async def test_python_peer_joins_a_mesh_room_past_a_member_that_does_not_answer(
    tessera: RunningServer,
) -> None:
    silent = await raw_peer(tessera, "silent")  # joins, then never answers a call
    await silent.recv()
    await silent.send(type="ROOM-JOIN", payload={"room": "huddle"})
    assert (await silent.recv())["type"] == "ROOM-MEMBERS"
    p1, p2 = peer(tessera, "p1"), peer(tessera, "p2")
    await p1.open()
    await p2.open()
    try:
        # The silent member costs each join its timeout (the stimulus); the other answers.
        await p1.join_room("huddle", video=ColorVideoTrack(RED), timeout=4)
        room = await p2.join_room("huddle", video=ColorVideoTrack(GREEN), timeout=4)
        assert p2.rooms == {"huddle": room} and set(room.calls) == {"p1"}
        calls = await room.wait_for_streams(1)
        frame = await next_video_frame(calls["p1"].remote_tracks["video"])
        assert close_to(mean_rgb(frame), RED)
    finally:
        await silent.close()
        await p1.close()
        await p2.close()


# -- the room peer ------------------------------------------------------------


async def test_calling_the_room_peer_joins_the_room_and_returns_the_mixed_view(
    tessera: RunningServer,
) -> None:
    member = await joined(tessera, "Ada", room="town")
    await (await member.publish(video=ColorVideoTrack(GREEN))).wait_ready()
    caller = peer(tessera, "caller")
    await caller.open()
    try:
        call = await caller.call("room:town", video=ColorVideoTrack(RED))
        # The caller is a participant of the room, with its stream published and mixed.
        joined_event = await member.next_event("participant", lambda d: d["action"] == "join")
        assert joined_event["data"]["user"] == "caller"
        added = await member.next_event("stream", lambda d: d["status"] == "add")
        assert added["data"]["type"] == "forward"
        room = tessera.server.rooms[member.room_id]  # type: ignore[index]
        assert len(room.participants) == 2
        layout = await wait_layout(member, 2)
        track = await call.track("video")

        def both_colours(frame: Any) -> bool:
            colours = [mean_rgb(frame, region_box(e["region"])) for e in layout]
            return any(close_to(c, RED) for c in colours) and any(
                close_to(c, GREEN) for c in colours
            )

        frame = await frame_where(track, both_colours)
        assert (frame.width, frame.height) == (1280, 720)
        assert both_colours(frame)

        # A data connection to the room peer carries the room's text chat both ways.
        chat = await caller.connect("room:town", serialization="json")
        await member.send_text("hello peers")
        message = await chat.recv()
        assert message["message"] == "hello peers" and message["to"] == "all"
        chat.send("hello room")
        text = await member.next_event("text")
        assert text["message"] == "hello room"
        assert text["from"] == joined_event["data"]["id"]

        # A serialization the room peer does not speak is refused with a reason; so is
        # an offer that is not SDP. The room goes on.
        raw = await raw_peer(tessera, "raw")
        await raw.recv()
        offer = {"sdp": {"type": "offer", "sdp": "v=0"}, "connectionId": "dc_1"}
        await raw.send(
            type="OFFER",
            dst="room:town",
            payload={**offer, "type": "data", "serialization": "MsgPack"},
        )
        expired = await raw.recv()
        assert expired["type"] == "EXPIRE" and expired["src"] == "room:town"
        assert "'MsgPack' is not supported" in expired["payload"]["msg"]
        garbage = {"sdp": {"type": "offer", "sdp": "hello"}, "connectionId": "mc_1"}
        await raw.send(type="OFFER", dst="room:town", payload={**garbage, "type": "media"})
        expired = await raw.recv()
        assert expired["type"] == "EXPIRE" and "Invalid offer" in expired["payload"]["msg"]
        await raw.close()
        assert len(room.participants) == 2

        # Hanging up leaves the room.
        await call.close()
        await chat.close()
        left = await member.next_event("participant", lambda d: d["action"] == "leave")
        assert left["data"] == joined_event["data"]["id"]
    finally:
        await caller.close()
        await member.leave()


class BinaryLink:
    """A peerjs-style data connection with serialization "binary", from aiortc.

    PeerClient speaks json and raw only; this is the signaling peerjs does for
    ``peer.connect(dst)`` with its defaults, over a bare PeerServer socket.
    """

    def __init__(self, signaling: RawPeer, pc: RTCPeerConnection, channel: RTCDataChannel):
        self.signaling = signaling
        self.pc = pc
        self.channel = channel
        self.received: asyncio.Queue[bytes | str] = asyncio.Queue()
        self.closed = asyncio.Event()
        channel.on("message", self.received.put_nowait)
        channel.on("close", self.closed.set)

    @classmethod
    async def open(
        cls,
        tessera: RunningServer,
        peer_id: str,
        dst: str,
        before_answer: Callable[[], Awaitable[None]] | None = None,
    ) -> BinaryLink:
        """Offer, take the answer (after `before_answer()`, if given) and wait until open."""
        signaling = await raw_peer(tessera, peer_id)
        assert await signaling.recv() == {"type": "OPEN"}
        pc = RTCPeerConnection()
        channel = pc.createDataChannel("dc_bin", ordered=True)
        opened = asyncio.Event()
        channel.on("open", opened.set)
        await pc.setLocalDescription(await pc.createOffer())
        payload = {
            "sdp": {"type": "offer", "sdp": pc.localDescription.sdp},
            "type": "data",
            "connectionId": "dc_bin",
            "label": "dc_bin",
            "reliable": True,
            "serialization": "binary",
        }
        await signaling.send(type="OFFER", dst=dst, payload=payload)
        answer = await signaling.recv()
        assert answer["type"] == "ANSWER" and answer["payload"]["connectionId"] == "dc_bin"
        if before_answer is not None:
            await before_answer()
        sdp = answer["payload"]["sdp"]
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp["sdp"], type=sdp["type"]))
        link = cls(signaling, pc, channel)
        await asyncio.wait_for(opened.wait(), 20)
        return link

    async def recv(self, timeout: float = 20.0) -> Any:
        frame = await asyncio.wait_for(self.received.get(), timeout)
        assert isinstance(frame, bytes), "BinaryPack messages are binary"
        return unpack(frame)

    async def close(self) -> None:
        await self.pc.close()
        await self.signaling.close()


async def test_room_text_before_the_data_channel_opens_reaches_the_peer(
    tessera: RunningServer,
) -> None:
    # The peer joins the room with its offer; its channel opens only after the answer.
    # Text the room sends meanwhile waits for the channel (it was once dropped, and a
    # page that chatted at once lost the first message when the machine was busy).
    member = await joined(tessera, "Ada", room="town")

    async def text_before_the_channel() -> None:
        await member.next_event("participant", lambda d: d["action"] == "join")
        await member.send_text("before the channel opened")

    link = await BinaryLink.open(tessera, "early", "room:town", text_before_the_channel)
    try:
        assert (await link.recv())["message"] == "before the channel opened"
        await member.send_text("after")
        assert (await link.recv())["message"] == "after"
    finally:
        await link.close()
        await member.leave()


async def test_binarypack_data_connection_carries_the_room_chat(
    tessera: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tessera.portal.roompeer")
    member = await joined(tessera, "Ada", room="town")
    link = await BinaryLink.open(tessera, "bin", "room:town")
    try:
        joined_event = await member.next_event("participant", lambda d: d["action"] == "join")
        peer_participant = joined_event["data"]["id"]
        # Room to peer: the text event, packed.
        await member.send_text("hello binary peer")
        assert await link.recv() == {
            "from": member.participant_id,
            "to": "all",
            "message": "hello binary peer",
            "name": "Ada",
        }
        await member.send_text("just you", to=peer_participant)
        assert (await link.recv())["to"] == "me"
        # Peer to room: a packed string, then {message, to}.
        link.channel.send(pack("hello room, packed"))
        text = await member.next_event("text")
        assert text == {"from": peer_participant, "to": "all", "message": "hello room, packed"}
        link.channel.send(pack({"message": "to Ada", "to": member.participant_id}))
        assert (await member.next_event("text"))["message"] == "to Ada"
        # Garbage, a text frame and a non-text value are dropped; the link goes on.
        link.channel.send(b"\xc1\xc1\xff")
        link.channel.send("not binary")
        link.channel.send(pack([1, 2, 3]))
        # A message in peerjs chunks (small ones here) is reassembled.
        long_text = "é😀" * 600
        frames = BinaryPackCodec(mtu=1000).encode(long_text)
        assert len(frames) == 4
        for frame in frames:
            link.channel.send(frame)
        assert (await member.next_event("text"))["message"] == long_text
        dropped = [r for r in caplog.records if r.msg == "peer data message undecodable, dropped"]
        assert {r.serialization for r in dropped} == {"binary"}  # type: ignore[attr-defined]
        assert [r.reason for r in dropped] == [  # type: ignore[attr-defined]
            "2 bytes after the value",
            "text message on a BinaryPack connection",
        ]
        # peerjs's close({flush: true}) message ends the connection and the membership.
        link.channel.send(pack({"__peerData": {"type": "close"}}))
        left = await member.next_event("participant", lambda d: d["action"] == "leave")
        assert left["data"] == peer_participant
    finally:
        await link.close()
        await member.leave()


async def test_a_room_peer_participant_kicked_over_rest_hears_leave(
    tessera: RunningServer,
) -> None:
    caller = peer(tessera, "kicked")
    await caller.open()
    try:
        await caller.call("room:hall", video=ColorVideoTrack(RED))
        room = next(r for r in tessera.server.rooms.values() if r.name == "hall")
        (participant_id,) = room.participants
        status, _ = await api(
            tessera, "DELETE", f"/v1/rooms/{room.id}/participants/{participant_id}"
        )
        assert status == 200
        event = await caller.events.get("LEAVE")
        assert event.src == "room:hall"
        await eventually(lambda: not caller.connections)
        assert room.closed and tessera.server.agent.transports == {}
    finally:
        await caller.close()


async def test_room_peer_checks_a_data_offer_before_joining(tessera: RunningServer) -> None:
    pc = RTCPeerConnection()
    pc.createDataChannel("chat")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    unsigned = "".join(line for line in sdp.splitlines(True) if "fingerprint" not in line)
    raw = await raw_peer(tessera, "raw")
    await raw.recv()
    try:
        for text, reason in ((unsigned, "no DTLS fingerprint"), ("v=0 hello", "does not parse")):
            payload = {
                "sdp": {"type": "offer", "sdp": text},
                "type": "data",
                "connectionId": "dc_1",
                "serialization": "json",
            }
            await raw.send(type="OFFER", dst="room:checked", payload=payload)
            expired = await raw.recv()
            assert expired["type"] == "EXPIRE" and expired["src"] == "room:checked"
            assert "Invalid offer" in expired["payload"]["msg"], expired
            assert reason in expired["payload"]["msg"], expired
        # Refused before joining: the ad-hoc room was never made.
        assert not any(r.name == "checked" for r in tessera.server.rooms.values())
    finally:
        await raw.close()


async def test_a_failure_taking_a_call_leaves_nothing_behind(
    tessera: RunningServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tessera.portal.roompeer")
    member = await joined(tessera, "Ada", room="town")
    room = tessera.server.rooms[member.room_id]  # type: ignore[index]
    caller = peer(tessera, "caller")
    await caller.open()

    async def broken(self: Transport, sdp: str) -> None:
        raise RuntimeError("injected failure")

    try:
        # An internal failure (not a refused offer) while the call is set up.
        monkeypatch.setattr(Transport, "handle_offer", broken)
        with pytest.raises(PeerUnavailable, match="could not take this connection"):
            await caller.call("room:town", video=ColorVideoTrack(RED))
        assert any(r.msg == "room peer failed to take a connection" for r in caplog.records)
        await eventually(lambda: not tessera.server.peers.room_peer.members)
        await eventually(lambda: len(room.participants) == 1)
        assert tessera.server.agent.transports == {}
        # The next call works.
        monkeypatch.undo()
        call = await caller.call("room:town", video=ColorVideoTrack(RED))
        await call.track("video")
        assert len(room.participants) == 2
    finally:
        await caller.close()
        await member.leave()


async def test_room_peer_calls_keep_the_participant_limits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(roompeer, "MAX_CONNECTIONS_PER_MEMBER", 2)
    running = await start_server(tmp_path, **{"limits.publications_per_participant": 1})
    caller = peer(running, "caller")
    await caller.open()
    try:
        call = await caller.call("room:town", video=ColorVideoTrack(RED))
        await call.track("video")
        room = next(r for r in running.server.rooms.values() if r.name == "town")
        (participant,) = room.participants.values()
        member = next(iter(running.server.peers.room_peer.members.values()))
        before = (
            list(participant.publications),
            list(participant.subscriptions),
            list(participant.transports),
            list(running.server.agent.transports),
            list(member.calls),
        )
        # A second call would be a second publication: refused, with the portal's reason.
        with pytest.raises(PeerUnavailable, match=r"Too many publications \(at most 1 per"):
            await caller.call("room:town", video=ColorVideoTrack(BLUE))
        after = (
            list(participant.publications),
            list(participant.subscriptions),
            list(participant.transports),
            list(running.server.agent.transports),
            list(member.calls),
        )
        assert after == before and list(room.participants.values()) == [participant]
        assert not call.closed
        await next_video_frame(await call.track("video"))  # the first call goes on
        # Calls and data connections together are capped per peer and room.
        chat = await caller.connect("room:town")
        with pytest.raises(PeerUnavailable, match="Too many connections to the room peer"):
            await caller.connect("room:town", timeout=20)
        assert list(member.calls) == before[-1] and len(member.links) == 1
        assert not chat.closed
    finally:
        await caller.close()
        await running.stop()


async def test_room_peer_of_a_missing_room_is_unavailable(tessera: RunningServer) -> None:
    tessera.server.store.put_service(ServiceRecord(id="closed", key=KEY, adhoc_rooms=False))
    caller = PeerClient(tessera.url, "closed", peer_id="caller")
    await caller.open()
    try:
        with pytest.raises(PeerUnavailable, match="does not exist"):
            await caller.call("room:nowhere", video=ColorVideoTrack(RED))
        assert not tessera.server.rooms
    finally:
        await caller.close()


async def test_room_peer_honours_the_tokens_room(tessera: RunningServer) -> None:
    service = ServiceRecord(id="locked", key=KEY, peer_tokens=True)
    tessera.server.store.put_service(service)
    token = tessera.token(room="allowed", user="Tom", role="viewer", service=service)
    caller = PeerClient(tessera.url, "locked", peer_id="tom", token=token)
    await caller.open()
    try:
        with pytest.raises(PeerUnavailable, match="does not grant"):
            await caller.call("room:other", video=ColorVideoTrack(RED))
        call = await caller.call("room:allowed", video=ColorVideoTrack(RED))
        room = next(r for r in tessera.server.rooms.values() if r.name == "allowed")
        (participant,) = room.participants.values()
        assert (participant.user, participant.role) == ("Tom", "viewer")
        assert not participant.publications  # a viewer does not publish
        await call.track("video")
    finally:
        await caller.close()


# -- mesh rooms ---------------------------------------------------------------


async def test_mesh_room_of_three_carries_no_media_through_the_server(
    tessera: RunningServer,
) -> None:
    colours = {"p1": RED, "p2": GREEN, "p3": BLUE}
    peers = {name: peer(tessera, name) for name in colours}
    for client in peers.values():
        await client.open()
    try:
        rooms = {}
        for name, client in peers.items():
            rooms[name] = await client.join_room("huddle", video=ColorVideoTrack(colours[name]))
        service = tessera.server.default_service.id
        mesh = tessera.server.peers.registry.mesh_room(service, "huddle")
        assert mesh is not None and mesh.members == ["p1", "p2", "p3"]
        for name, room in rooms.items():
            calls = await room.wait_for_streams(2)
            assert set(calls) == set(colours) - {name}
            for other, call in calls.items():
                frame = await next_video_frame(call.remote_tracks["video"])
                assert close_to(mean_rgb(frame), colours[other]), (name, other)
        # Media flowed peer to peer: the server has no room, publication or transport.
        assert tessera.server.agent.transports == {}
        assert not tessera.server.rooms
        # Someone leaves: the others hear it and hang up on them.
        await rooms["p3"].leave()
        for name in ("p1", "p2"):
            event = await peers[name].events.get("ROOM-PEER-LEFT")
            assert event.payload == {"room": "huddle", "peer": "p3"}
            assert "p3" not in rooms[name].calls
        await rooms["p1"].leave()
        await rooms["p2"].leave()
        await eventually(lambda: tessera.server.peers.registry.mesh_room(service, "huddle") is None)
    finally:
        for client in peers.values():
            await client.close()


async def test_python_sfu_and_mcu_rooms_go_through_the_portal(tessera: RunningServer) -> None:
    first = await PeerClient.join_portal_room(
        tessera.token(room="desk", user="one"), "sfu", video=ColorVideoTrack(RED)
    )
    second = await PeerClient.join_portal_room(
        tessera.token(room="desk", user="two"), "sfu", video=ColorVideoTrack(BLUE)
    )
    watcher = await PeerClient.join_portal_room(tessera.token(room="desk", user="w"), "mcu")
    try:
        for room, colour in ((first, BLUE), (second, RED)):
            (subscription,) = (await room.wait_for_streams(1)).values()
            assert subscription.video_track is not None
            assert close_to(mean_rgb(await next_video_frame(subscription.video_track)), colour)
        (mixed_id,) = await watcher.wait_for_streams(1)
        assert mixed_id.endswith("-common")
    finally:
        for room in (first, second, watcher):
            await room.leave()

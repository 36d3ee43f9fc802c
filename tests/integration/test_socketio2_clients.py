"""socket.io-client 2.x (Engine.IO 3, Socket.IO 4: what OWT 5.x's pages load) on the portal.

The real npm client runs in Node (tests/sio2.py) on every transport it uses:
long-polling upgraded to a WebSocket (its default), WebSocket only, and
long-polling only. Everything after the transport is the portal's one code path,
so these tests check that path's behaviour reaches a 2.x client unchanged: login,
signaling with a real aiortc peer, text with an Engine.IO 4 client, heartbeat,
`drop`, relogin after a lost transport, origins and limits.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from tessera.portal.eio3gateway import EIO3_GATEWAY, Eio3Gateway
from tests.eventually import eventually
from tests.integration.test_operations import ServeProcess
from tests.sio2 import Sio2Node, Sio2Socket
from tests.support import RunningServer, api, joined, start_server
from tests.synthetic import ColorVideoTrack, ToneTrack, close_to, mean_rgb, next_video_frame

RED = (230, 30, 30)
BLUE = (30, 30, 230)
USER_AGENT = {"sdk": {"type": "JavaScript", "version": "5.1"}}
# The transports socket.io-client 2.x uses: its default (polling, then the upgrade),
# WebSocket only (`transports: ['websocket']`), and polling only.
TRANSPORTS: dict[str, dict[str, Any]] = {
    "upgrade": {},
    "websocket": {"transports": ["websocket"]},
    "polling": {"transports": ["polling"]},
}
# Beyond ASCII, the BMP and UTF-16's single units: lengths in polling payloads count these.
UNICODE = 'héllo wörld ✓ 😀 👍🏽 𝄞 ,:[]{}"'


@pytest.fixture
async def node() -> AsyncIterator[Sio2Node]:
    running = await Sio2Node.start()
    try:
        yield running
    finally:
        await running.close()


def gateway_of(tessera: RunningServer) -> Eio3Gateway:
    return tessera.app[EIO3_GATEWAY]


def sio_sid(tessera: RunningServer, engine_id: str) -> str:
    """python-socketio's id of the connection of engine session ``engine_id``."""
    sid: str = tessera.server.sio.manager.sid_from_eio_sid(engine_id, "/")
    return sid


async def connected(
    node: Sio2Node, tessera: RunningServer, transport: str = "upgrade", **options: Any
) -> Sio2Socket:
    socket = await node.connect(tessera.url, **TRANSPORTS[transport], **options)
    await socket.wait_connected()
    if transport == "upgrade":
        await socket.wait_event("upgrade")
    return socket


async def logged_in(
    node: Sio2Node, tessera: RunningServer, user: str, transport: str = "upgrade"
) -> tuple[Sio2Socket, dict[str, Any]]:
    socket = await connected(node, tessera, transport)
    result = await socket.request(
        "login", {"token": tessera.token(user=user), "userAgent": USER_AGENT, "protocol": "1.2"}
    )
    return socket, result


async def participants(tessera: RunningServer) -> list[dict[str, Any]]:
    """The default room's participants, as REST lists them."""
    status, body = await api(tessera, "GET", "/v1/rooms/default/participants")
    assert status == 200, body
    return list(body)


async def no_sessions_left(tessera: RunningServer) -> None:
    gateway = gateway_of(tessera)
    await eventually(
        lambda: not gateway.sessions and not tessera.server.portal.connections,
        what="every Engine.IO 3 session and portal connection closed",
    )


@pytest.mark.parametrize("transport", list(TRANSPORTS))
async def test_connect_login_and_text_with_an_engine_io_4_client(
    node: Sio2Node, tessera: RunningServer, transport: str
) -> None:
    modern = await joined(tessera, "modern")  # tessera_client: python-socketio, Engine.IO 4
    socket, result = await logged_in(node, tessera, "old", transport)
    state = await socket.state()
    expected = "polling" if transport == "polling" else "websocket"
    assert state["transport"] == expected
    # The server's session is the client's engine session, on the same transport.
    session = gateway_of(tessera).sessions[state["engineId"]]
    assert session.transport == expected
    # python-socketio's view of it (its sid; the 2.x client names itself by the engine's id).
    assert tessera.server.sio.transport(sio_sid(tessera, state["engineId"])) == expected
    # The login reply is the portal's (and the 2.x client reads both ack arguments).
    assert result["user"] == "old" and result["reconnectionTicket"]
    assert {p["user"] for p in result["room"]["participants"]} == {"modern", "old"}
    joined_event = await modern.next_event("participant", lambda d: d["action"] == "join")
    assert joined_event["data"]["id"] == result["id"]

    await socket.request("text", {"to": "all", "message": UNICODE})
    heard = await modern.next_event("text")
    assert heard == {"from": result["id"], "to": "all", "message": UNICODE}
    await modern.send_text(UNICODE[::-1], to=result["id"])
    text = await socket.wait_event("text")
    assert text == ["text", {"from": modern.participant_id, "to": "me", "message": UNICODE[::-1]}]
    # An error reply is the portal's too: two arguments, status and a plain reason.
    assert await socket.emit("text", {"to": "nobody", "message": "x"}) == [
        "error",
        "Target participant does NOT exist",
    ]
    assert await socket.emit("nosuchrequest", {}) == ["error", "Unknown request: nosuchrequest"]

    assert await socket.emit("logout") == ["ok", None]
    await socket.close()
    left = await modern.next_event("participant", lambda d: d["action"] == "leave")
    assert left["data"] == result["id"]
    await no_sessions_left_but(tessera, modern)
    await modern.leave()


async def no_sessions_left_but(tessera: RunningServer, *others: Any) -> None:
    gateway = gateway_of(tessera)
    await eventually(
        lambda: not gateway.sessions and len(tessera.server.portal.connections) == len(others),
        what="the Engine.IO 3 session and its portal connection closed",
    )


@pytest.mark.parametrize("transport", ["upgrade", "polling"])
async def test_publish_and_subscribe_with_a_real_peer(
    node: Sio2Node, tessera: RunningServer, transport: str
) -> None:
    """The OWT SDK's signaling over a 2.x socket, for a real aiortc peer: media flows."""
    modern = await joined(tessera, "modern")
    blue = await modern.publish(audio=ToneTrack(440), video=ColorVideoTrack(BLUE))
    await blue.wait_ready()
    socket, _ = await logged_in(node, tessera, "old", transport)
    pc = RTCPeerConnection()
    tracks: list[Any] = []
    pc.on("track", tracks.append)
    try:
        # Publish: the client offers, the server answers with `progress` soac, then ready.
        pc.addTransceiver(ColorVideoTrack(RED), direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        published = await socket.request(
            "publish",
            {
                "media": {"tracks": [{"type": "video", "mid": "0", "source": "camera"}]},
                "attributes": {"name": UNICODE},
                "transport": {"type": "webrtc"},
            },
        )
        transport_id = published["transportId"]
        await offer(socket, pc, transport_id, answers=0)
        await progress(
            socket, {"id": transport_id, "sessionId": published["id"], "status": "ready"}
        )
        added = await modern.next_event("stream", lambda d: d["id"] == published["id"])
        assert added["data"]["info"]["attributes"] == {"name": UNICODE}
        subscription = await modern.subscribe(published["id"])
        await subscription.wait_ready()
        assert subscription.video_track is not None
        await received_colour(subscription.video_track, RED)

        # Subscribe, on the same transport: a new offer with recvonly transceivers.
        pc.addTransceiver("audio", direction="recvonly")
        pc.addTransceiver("video", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        subscribed = await socket.request(
            "subscribe",
            {
                "media": {
                    "tracks": [
                        {"type": "audio", "mid": "1", "from": blue.id},
                        {"type": "video", "mid": "2", "from": blue.id},
                    ]
                },
                "transport": {"type": "webrtc", "id": transport_id},
            },
        )
        await offer(socket, pc, transport_id, answers=1)
        await progress(
            socket, {"id": transport_id, "sessionId": subscribed["id"], "status": "ready"}
        )
        video = next(t for t in await eventually(lambda: tracks) if t.kind == "video")
        await received_colour(video, BLUE)
    finally:
        await pc.close()
        await socket.close()
        await modern.leave()


async def offer(socket: Sio2Socket, pc: RTCPeerConnection, transport_id: str, answers: int) -> None:
    assert (
        await socket.request(
            "soac",
            {"id": transport_id, "signaling": {"type": "offer", "sdp": pc.localDescription.sdp}},
        )
        is None
    )

    async def answer() -> Any:
        found = [e[1] for e in await socket.events("progress") if e[1].get("status") == "soac"]
        return found[answers] if len(found) > answers else None

    message = await eventually(answer, what="the answer")
    assert message["id"] == transport_id and message["data"]["type"] == "answer"
    await pc.setRemoteDescription(RTCSessionDescription(**message["data"]))


async def progress(socket: Sio2Socket, match: dict[str, Any]) -> dict[str, Any]:
    async def found() -> Any:
        for _, data in await socket.events("progress"):
            if all(data.get(k) == v for k, v in match.items()):
                return data
        return None

    data: dict[str, Any] = await eventually(found, what=f"progress {match}")
    return data


async def received_colour(track: Any, colour: tuple[int, int, int]) -> None:
    async def shows() -> bool:
        return close_to(mean_rgb(await next_video_frame(track)), colour)

    await eventually(shows, what=f"frames of colour {colour}")


@pytest.mark.parametrize("transport", ["websocket", "polling"])
async def test_heartbeat_keeps_an_idle_connection_alive(
    node: Sio2Node, tmp_path: Path, transport: str
) -> None:
    # A short heartbeat: the client pings every 0.5 s; interval + timeout is 2 s (room for a
    # loaded machine), and the client stays idle for twice that.
    settings = {"portal.ping_interval": 0.5, "portal.ping_timeout": 1.5}
    tessera = await start_server(tmp_path, **settings)
    try:
        socket, result = await logged_in(node, tessera, "idle", transport)
        engine_id = (await socket.state())["engineId"]
        session = gateway_of(tessera).sessions[engine_id]
        assert json.loads(str(session.handshake([]).data))["pingTimeout"] == 1500
        # The client pings, the server pongs: 8 pings span 4 s.
        await eventually(lambda: session.pings >= 8, what="eight pings from the client")
        await socket.wait_event("pong", count=8)
        state = await socket.state()
        assert state["connected"] and state["engineId"] == engine_id
        assert await socket.events("disconnect") == []
        assert not session.finished and gateway_of(tessera).sessions[engine_id] is session
        assert await socket.request("refreshReconnectionTicket")
        assert [p["id"] for p in await participants(tessera)] == [result["id"]]
        await socket.close()
        await no_sessions_left(tessera)
    finally:
        await tessera.stop()


@pytest.mark.parametrize("transport", ["upgrade", "polling"])
async def test_drop_then_disconnect(node: Sio2Node, tessera: RunningServer, transport: str) -> None:
    socket, result = await logged_in(node, tessera, "dropped", transport)
    status, _ = await api(tessera, "DELETE", f"/v1/rooms/default/participants/{result['id']}")
    assert status == 200
    await socket.wait_event("disconnect")
    heard = [
        e for e in await socket.events() if e[0] in ("drop", "disconnect", "reconnect_attempt")
    ]
    # `drop` first, then the server's disconnect; socket.io-client 2 does not reconnect after it.
    assert heard == [["drop"], ["disconnect", "io server disconnect"]]
    assert not (await socket.state())["connected"]
    await no_sessions_left(tessera)
    assert result["id"] not in [p["id"] for p in await participants(tessera)]
    assert [e for e in await socket.events() if e[0] == "reconnect_attempt"] == []


@pytest.mark.parametrize("transport", ["upgrade", "websocket", "polling"])
async def test_relogin_after_a_dropped_transport(
    node: Sio2Node, tessera: RunningServer, transport: str
) -> None:
    modern = await joined(tessera, "modern")
    socket, result = await logged_in(node, tessera, "mobile", transport)
    first_engine = (await socket.state())["engineId"]
    await socket.drop_transport()  # as a network failure: socket.io-client 2 reconnects
    await socket.wait_event("reconnect")
    state = await socket.wait_connected()
    assert state["engineId"] != first_engine
    assert first_engine not in gateway_of(tessera).sessions  # the old session ended
    # As the OWT SDK does on `connect` after a reconnection: relogin with the ticket.
    again = await socket.request("relogin", result["reconnectionTicket"])
    assert set(again) == {"ticket", "messages"}
    # The same participant, reached on the new connection.
    assert {p["id"] for p in await participants(tessera)} == {modern.participant_id, result["id"]}
    await modern.send_text("still there?", to=result["id"])
    text = await socket.wait_event("text")
    assert text[1]["message"] == "still there?"
    await socket.request("logout")
    await socket.close()
    await modern.leave()


async def test_origins_are_checked_as_for_engine_io_4_clients(
    node: Sio2Node, tmp_path: Path
) -> None:
    tessera = await start_server(tmp_path, **{"service.allowed_origins": ["https://app.example"]})
    try:
        login = {"userAgent": USER_AGENT, "protocol": "1.2"}
        for transport in ("upgrade", "websocket", "polling"):
            evil = await connected(
                node, tessera, transport, extraHeaders={"Origin": "https://evil.example"}
            )
            reply = await evil.emit("login", {**login, "token": tessera.token(user="evil")})
            assert reply == ["error", "Origin https://evil.example is not allowed"], transport
            await evil.close()
            good = await connected(
                node, tessera, transport, extraHeaders={"Origin": "https://app.example"}
            )
            await good.request("login", {**login, "token": tessera.token(user="good")})
            await good.request("logout")
            await good.close()
        await no_sessions_left(tessera)
    finally:
        await tessera.stop()


async def test_size_and_rate_limits_are_the_portals(node: Sio2Node, tmp_path: Path) -> None:
    tessera = await start_server(
        tmp_path, **{"limits.requests_per_second": 0.5, "limits.request_burst": 4}
    )
    try:
        socket, _ = await logged_in(node, tessera, "noisy", "polling")
        limit = tessera.server.config.portal.max_message_bytes
        reply = await socket.emit("text", {"to": "all", "message": "x" * limit})
        assert reply[0] == "error" and reply[1].startswith("Request is too large")
        replies = [await socket.emit("text", {"to": "all", "message": "hi"}) for _ in range(6)]
        assert ["error", "Too many requests: slow down"] in replies
        assert (await socket.state())["connected"]  # refused, not disconnected
        await socket.close()
    finally:
        await tessera.stop()


async def test_sigterm_drops_2x_clients_and_exits(node: Sio2Node, tmp_path: Path) -> None:
    """`tessera serve` on SIGTERM: 2.x clients on each transport get `drop`, nothing lingers."""
    serve = ServeProcess(tmp_path, shutdown_timeout=5.0)
    await serve.start()
    try:
        sockets = []
        for transport in ("polling", "websocket", "upgrade"):
            socket = await node.connect(serve.url, **TRANSPORTS[transport])
            login = {"token": serve.token("default", transport), "userAgent": USER_AGENT}
            await socket.request("login", {**login, "protocol": "1.2"})
            sockets.append(socket)
        idle = await node.connect(serve.url)  # connected, not logged in
        await idle.wait_connected()
        # 0, not 1: the shutdown finished before the server's own 5 s deadline.
        status = await serve.terminate()
        assert status == 0, serve.lines[-5:]
        for socket in sockets:
            assert ["drop"] in await socket.events()
        problems = [line for line in serve.lines if line.get("exc") or line.get("unstructured")]
        assert problems == [], problems
        assert not [line for line in serve.lines if line.get("level") in ("error", "critical")]
    finally:
        serve.kill()

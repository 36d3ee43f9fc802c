"""Wrong and hostile Client-Portal requests: a clear error, and the server keeps serving."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import socketio

from tessera_client import ConferenceClient
from tests.eventually import eventually
from tests.support import RunningServer
from tests.synthetic import ColorVideoTrack


class RawClient:
    """A bare Socket.IO connection, for requests no well-behaved client sends."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)

    async def connect(self, url: str) -> None:
        await self.sio.connect(url, transports=["websocket"])

    async def request(self, name: str, *args: Any) -> tuple[Any, ...]:
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[tuple[Any, ...]] = loop.create_future()
        await self.sio.emit(
            name,
            args[0] if len(args) == 1 else args or None,
            callback=lambda *a: reply.set_result(a),
        )
        return await asyncio.wait_for(reply, 20)

    async def login(self, token: str) -> tuple[Any, ...]:
        return await self.request(
            "login",
            {
                "token": token,
                "userAgent": {"sdk": {"type": "Raw", "version": "1"}},
                "protocol": "1.2",
            },
        )


async def raw(tessera: RunningServer) -> RawClient:
    client = RawClient()
    await client.connect(tessera.url)
    return client


async def assert_still_serves(tessera: RunningServer) -> None:
    """A fresh client can still join and publish."""
    client = ConferenceClient()
    await client.join(tessera.token(user="check"))
    publication = await client.publish(video=ColorVideoTrack((0, 200, 0)))
    await publication.wait_ready()
    await client.leave()


async def test_requests_before_login_are_refused(tessera: RunningServer) -> None:
    client = await raw(tessera)
    for name, data in [
        ("publish", {"media": {"tracks": [{"type": "video", "mid": "0"}]}}),
        ("subscribe", {}),
        ("soac", {"id": "x", "signaling": {"type": "offer", "sdp": "v=0"}}),
        ("text", {"to": "all", "message": "hi"}),
        ("logout", None),
        ("refreshReconnectionTicket", None),
    ]:
        status, message = await client.request(name, data)
        assert (status, message) == ("error", "Not logged in"), name
    status, message = await client.request("no-such-request", {})
    assert status == "error" and "Unknown request" in message
    # The same connection can still log in.
    status, info = await client.login(tessera.token(user="late"))
    assert status == "ok" and info["user"] == "late"
    await client.sio.disconnect()


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (None, "expected an object"),
        ("a string", "expected an object"),
        ([1, 2], "expected an object"),
        ({}, "token"),
        (
            {"token": 12, "userAgent": {"sdk": {"type": "a", "version": "1"}}, "protocol": "1.2"},
            "token",
        ),
        ({"token": "x", "userAgent": {}, "protocol": "1.2"}, "userAgent.sdk"),
        (
            {"token": "x", "userAgent": {"sdk": {"type": "a", "version": "1"}}, "protocol": "9"},
            "protocol",
        ),
        (
            {
                "token": "bm90IGpzb24=",
                "userAgent": {"sdk": {"type": "a", "version": "1"}},
                "protocol": "1.2",
            },
            "malformed",
        ),
    ],
)
async def test_malformed_login(tessera: RunningServer, data: Any, fragment: str) -> None:
    client = await raw(tessera)
    status, message = await client.request("login", data)
    assert status == "error" and fragment in message
    status, _ = await client.login(tessera.token())
    assert status == "ok"
    await client.sio.disconnect()


async def test_bad_tokens_are_refused(tessera: RunningServer) -> None:
    import base64
    import json

    client = await raw(tessera)
    expired = tessera.token(lifetime=60, issued_at=time.time() - 120)
    status, message = await client.login(expired)
    assert status == "error" and "expired" in message.lower()
    envelope = json.loads(base64.b64decode(tessera.token()))
    envelope["signature"] = envelope["signature"][:-4] + "AAAA"
    status, message = await client.login(base64.b64encode(json.dumps(envelope).encode()).decode())
    assert status == "error" and "signature" in message.lower()
    status, _ = await client.request("relogin", "garbage")
    assert status == "error"
    status, _ = await client.login(tessera.token())
    assert status == "ok"
    status, message = await client.login(tessera.token())
    assert (status, message) == ("error", "Already logged in")
    await client.sio.disconnect()


async def test_malformed_requests_after_login(tessera: RunningServer) -> None:
    client = await raw(tessera)
    status, _ = await client.login(tessera.token())
    assert status == "ok"
    cases: list[tuple[str, Any, str]] = [
        ("publish", {}, "media"),
        ("publish", {"media": {"tracks": []}}, "media.tracks"),
        ("publish", {"media": {"tracks": [{"type": "smell", "mid": "0"}]}}, "type"),
        ("publish", {"media": {"tracks": [{"type": "video", "mid": 5}]}}, "mid"),
        (
            "publish",
            {"media": {"tracks": [{"type": "video", "mid": "0"}]}, "transport": {"id": "nope"}},
            "Transport does NOT exist",
        ),
        (
            "subscribe",
            {"media": {"tracks": [{"type": "video", "mid": "0", "from": "nope"}]}},
            "Stream does NOT exist",
        ),
        ("subscribe", {"media": {"tracks": [{"type": "video", "mid": "0"}]}}, "from"),
        ("unpublish", {"id": "nope"}, "Stream does NOT exist"),
        ("unpublish", "nope", "expected an object"),
        ("unsubscribe", {"id": "nope"}, "Subscription does NOT exist"),
        (
            "soac",
            {"id": "nope", "signaling": {"type": "offer", "sdp": "v=0"}},
            "Transport does NOT exist",
        ),
        ("soac", {"id": "x", "signaling": {"type": "answer"}}, "signaling.type"),
        (
            "stream-control",
            {"id": "nope", "operation": "pause", "data": "av"},
            "Stream does NOT exist",
        ),
        ("stream-control", {"id": "x", "operation": "explode"}, "operation"),
        (
            "subscription-control",
            {"id": "nope", "operation": "pause", "data": "av"},
            "Subscription does NOT exist",
        ),
        ("text", {"to": "all"}, "message"),
        ("text", {"to": "all", "message": 42}, "message"),
    ]
    for name, data, fragment in cases:
        status, message = await client.request(name, data)
        assert status == "error", (name, data)
        assert fragment in message, (name, message)
    # A 1 MB message is refused with an error, and the connection stays usable.
    status, message = await client.request("text", {"to": "all", "message": "x" * 1_000_000})
    assert status == "error" and "too large" in message
    status, _ = await client.request("text", {"to": "all", "message": "still here"})
    assert status == "ok"
    await client.sio.disconnect()
    await assert_still_serves(tessera)


async def test_bad_sdp_and_candidates(tessera: RunningServer) -> None:
    client = ConferenceClient()
    await client.join(tessera.token())
    publication = await client.publish(video=ColorVideoTrack((0, 0, 200)))
    await publication.wait_ready()
    transport = (
        publication.transport_id if hasattr(publication, "transport_id") else client.transport_id
    )
    for signaling, fragment in [
        ({"type": "offer", "sdp": "this is not sdp"}, "Invalid offer"),
        ({"type": "offer"}, "sdp is missing"),
        (
            {"type": "candidate", "candidate": {"candidate": "a=candidate:garbage", "sdpMid": "0"}},
            "Invalid candidate",
        ),
        ({"type": "candidate"}, "candidate is missing"),
    ]:
        with pytest.raises(Exception, match=fragment):
            await client.request("soac", {"id": transport, "signaling": signaling})
    # The publication still works: a subscriber receives it.
    viewer = ConferenceClient()
    await viewer.join(tessera.token(user="viewer"))
    sub = await viewer.subscribe(publication.id)
    await sub.wait_ready()
    assert sub.video_track is not None
    await asyncio.wait_for(sub.video_track.recv(), 10)
    await viewer.leave()
    await client.leave()


async def test_connection_without_login_is_closed(tmp_path: Any) -> None:
    from tests.support import start_server

    tessera = await start_server(tmp_path, **{"portal.login_timeout": 0.5})
    try:
        client = await raw(tessera)
        await eventually(lambda: not client.sio.connected, what="closed for want of a login")
    finally:
        await tessera.stop()


async def test_vanished_client_is_cleaned_up(tmp_path: Any) -> None:
    from tests.support import start_server

    tessera = await start_server(tmp_path, **{"portal.reconnection_keep": 0.5})
    try:
        alice = ConferenceClient(reconnect=False)
        await alice.join(tessera.token(user="alice"))
        bob = ConferenceClient()
        await bob.join(tessera.token(user="bob"))
        publication = await alice.publish(video=ColorVideoTrack((200, 0, 0)))
        await publication.wait_ready()
        await bob.next_event("stream", lambda d: d["status"] == "add")
        sub = await bob.subscribe(publication.id)
        await sub.wait_ready()
        # Alice's tab dies: no logout, the socket and the peer connection just stop.
        await alice.sio.eio.disconnect(abort=True)
        if alice.pc is not None:
            await alice.pc.close()
        removed = await bob.next_event("stream", lambda d: d["status"] == "remove", timeout=20)
        assert removed["id"] == publication.id
        left = await bob.next_event("participant", lambda d: d["action"] == "leave", timeout=20)
        assert left["data"] == alice.participant_id
        room = tessera.server.rooms[bob.room_id]  # type: ignore[index]
        assert list(room.participants) == [bob.participant_id]
        assert list(tessera.server.agent.transports) == [
            sub.transport_id if hasattr(sub, "transport_id") else bob.transport_id
        ]
        await bob.leave()
        await eventually(
            lambda: (
                tessera.server.agent.transports == {}
                and tessera.server.conference.participants == {}
            ),
            what="transports and participants gone",
        )
    finally:
        await tessera.stop()


async def test_limits_refuse_with_clear_errors(tmp_path: Any) -> None:
    from tests.support import start_server

    tessera = await start_server(
        tmp_path,
        **{
            "limits.requests_per_second": 5.0,
            "limits.request_burst": 10,
            "limits.publications_per_participant": 1,
            "limits.login_attempts_per_minute": 6,
        },
    )
    try:
        flooder = await raw(tessera)
        status, _ = await flooder.login(tessera.token(user="flooder"))
        assert status == "ok"
        replies = [await flooder.request("text", {"to": "all", "message": "x"}) for _ in range(30)]
        assert ("error", "Too many requests: slow down") in replies
        # Another client is not affected by the flood.
        calm = ConferenceClient()
        await calm.join(tessera.token(user="calm"))
        publication = await calm.publish(video=ColorVideoTrack((0, 90, 0)))
        await publication.wait_ready()
        with pytest.raises(Exception, match="Too many publications"):
            await calm.publish(video=ColorVideoTrack((0, 0, 90)))
        await calm.leave()
        # Logins from one address are counted (6 a minute here, 3 used so far).
        errors = []
        for _ in range(5):
            probe = await raw(tessera)
            status, message = await probe.login("bad-token")
            errors.append(message)
            await probe.sio.disconnect()
        assert any("Too many login attempts" in m for m in errors)
        await flooder.sio.disconnect()
    finally:
        await tessera.stop()

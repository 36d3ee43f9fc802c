"""Security matrix: every Client-Portal request against every role, hostile tokens, tenants.

What test_rest.py already covers is not repeated here: REST without, with a
malformed, a wrongly signed, an old or a replayed MAuth header, Bearer keys and
JWTs, and REST from a browser Origin not on the service's list. Portal logins
from such an Origin are in test_conference.py; this file adds relogin.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tessera.conference.store import ServiceRecord
from tessera_client import ConferenceClient
from tests.integration.test_bad_inputs import RawClient
from tests.support import RunningServer, api, joined
from tests.synthetic import ColorVideoTrack, ToneTrack
from tests.unit.test_tokens import b64url, hs256_by_hand, wrap

# (role, publish audio, publish video, subscribe audio, subscribe video); "listener" is custom.
ROLES = [
    ("presenter", True, True, True, True),
    ("viewer", False, False, True, True),
    ("audio_only_presenter", True, False, True, False),
    ("video_only_viewer", False, False, False, True),
    ("sip", True, True, True, True),
    ("guest", False, False, True, True),
    ("listener", False, False, True, False),
]


def room_roles() -> list[dict[str, Any]]:
    return [
        {
            "role": role,
            "publish": {"audio": pa, "video": pv},
            "subscribe": {"audio": sa, "video": sv},
        }
        for role, pa, pv, sa, sv in ROLES
    ]


@dataclass
class Scene:
    """A room with an owner who publishes audio+video and subscribes to it."""

    room: str
    owner: ConferenceClient
    stream: str
    subscription: str
    owner_transport: str


async def scene(tessera: RunningServer) -> Scene:
    status, room = await api(
        tessera, "POST", "/v1/rooms", {"name": "matrix", "options": {"roles": room_roles()}}
    )
    assert status == 200, room
    owner = ConferenceClient()
    await owner.join(tessera.token(room=room["_id"], user="owner", role="presenter"))
    publication = await owner.publish(video=ColorVideoTrack((90, 90, 90)), audio=ToneTrack(440))
    await publication.wait_ready()
    subscription = await owner.subscribe(publication.id)
    await subscription.wait_ready()
    assert owner.transport_id is not None
    return Scene(room["_id"], owner, publication.id, subscription.id, owner.transport_id)


def publish(*kinds: str) -> dict[str, Any]:
    tracks = [
        {"type": kind, "mid": str(i), "source": "mic" if kind == "audio" else "camera"}
        for i, kind in enumerate(kinds)
    ]
    return {"media": {"tracks": tracks}, "transport": {"type": "webrtc"}}


def subscribe(stream: str, *kinds: str) -> dict[str, Any]:
    tracks = [{"type": kind, "mid": str(i), "from": stream} for i, kind in enumerate(kinds)]
    return {"media": {"tracks": tracks}, "transport": {"type": "webrtc"}}


@pytest.mark.parametrize(("role", "pub_a", "pub_v", "sub_a", "sub_v"), ROLES)
async def test_every_request_against_role(
    tessera: RunningServer, role: str, pub_a: bool, pub_v: bool, sub_a: bool, sub_v: bool
) -> None:
    s = await scene(tessera)
    client = RawClient()
    await client.connect(tessera.url)
    status, info = await client.login(tessera.token(room=s.room, user="who", role=role))
    assert status == "ok", info
    assert info["permission"] == {
        "publish": {"audio": pub_a, "video": pub_v},
        "subscribe": {"audio": sub_a, "video": sub_v},
    }
    # (request, data, expected: True = "ok", or a fragment of the error)
    denied = "Permission denied"
    cases: list[tuple[str, Any, bool | str]] = [
        ("publish", publish("audio"), pub_a or denied),
        ("publish", publish("video"), pub_v or denied),
        ("publish", publish("audio", "video"), (pub_a and pub_v) or denied),
        ("subscribe", subscribe(s.stream, "audio"), sub_a or denied),
        ("subscribe", subscribe(s.stream, "video"), sub_v or denied),
        ("subscribe", subscribe(s.stream, "audio", "video"), (sub_a and sub_v) or denied),
        ("subscribe", subscribe(f"{s.room}-common", "video"), sub_v or denied),
        # Someone else's stream, subscription and transport: refused whatever the role.
        ("unpublish", {"id": s.stream}, "Stream does NOT exist"),
        ("unsubscribe", {"id": s.subscription}, "Subscription does NOT exist"),
        ("stream-control", {"id": s.stream, "operation": "pause", "data": "av"}, "not the owner"),
        ("stream-control", {"id": s.stream, "operation": "unmix", "data": "common"}, "owner"),
        (
            "subscription-control",
            {"id": s.subscription, "operation": "pause", "data": "av"},
            "Subscription does NOT exist",
        ),
        (
            "soac",
            {"id": s.owner_transport, "signaling": {"type": "offer", "sdp": "v=0\r\n"}},
            "Transport does NOT exist",
        ),
        # Allowed to everyone in the room.
        ("stream-control", {"id": s.stream, "operation": "get-region", "data": "common"}, True),
        ("text", {"to": "all", "message": "hello"}, True),
        ("text", {"to": s.owner.participant_id, "message": "hi"}, True),
        ("refreshReconnectionTicket", None, True),
    ]
    mismatches = []
    own_sessions: list[tuple[str, str]] = []
    for name, data, expected in cases:
        status, reply = await client.request(name, data)
        ok = status == "ok"
        if ok and name in ("publish", "subscribe"):
            own_sessions.append((name, reply["id"]))
        if expected is True and not ok:
            mismatches.append((name, data, "expected ok", reply))
        elif expected is not True and (ok or str(expected) not in reply):
            mismatches.append((name, data, f"expected error {expected!r}", reply))
    assert mismatches == [], mismatches
    # What one was allowed to start, one may control and end.
    for name, session in own_sessions:
        if name == "publish":
            control = ("stream-control", {"id": session, "operation": "pause", "data": "av"})
            end = ("unpublish", {"id": session})
        else:
            control = ("subscription-control", {"id": session, "operation": "pause", "data": "av"})
            end = ("unsubscribe", {"id": session})
        for request, data in (control, end):
            assert await client.request(request, data) == ("ok", None), (request, data)
    # The owner's media was not touched by any of it.
    room = tessera.server.rooms[s.room]
    assert s.stream in room.streams
    assert all(track.active for track in room.streams[s.stream].tracks.values())  # type: ignore[attr-defined]
    assert await client.request("logout", None) == ("ok", None)
    await client.sio.disconnect()
    await s.owner.leave()


async def test_permissions_follow_a_rest_patch(tessera: RunningServer) -> None:
    s = await scene(tessera)
    client = RawClient()
    await client.connect(tessera.url)
    status, info = await client.login(tessera.token(room=s.room, user="p", role="presenter"))
    assert status == "ok"
    status, _ = await api(
        tessera,
        "PATCH",
        f"/v1/rooms/{s.room}/participants/{info['id']}",
        [{"op": "replace", "path": "/permission/publish/video", "value": False}],
    )
    assert status == 200
    status, message = await client.request("publish", publish("video"))
    assert status == "error" and "Permission denied" in message
    assert (await client.request("publish", publish("audio")))[0] == "ok"
    await client.sio.disconnect()
    await s.owner.leave()


# -- hostile tokens ------------------------------------------------------------------


def claims(tessera: RunningServer, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    payload: dict[str, Any] = {
        "iss": tessera.server.default_service.id,
        "room": "default",
        "user": "mallory",
        "role": "presenter",
        "iat": now,
        "exp": now + 60,
        "jti": uuid.uuid4().hex,
        **changes,
    }
    return payload


def signed(payload: dict[str, Any], key: str, algorithm: str = "HS256") -> str:
    return wrap(jwt.encode(payload, key, algorithm=algorithm), payload["jti"])


def rsa_signed(payload: dict[str, Any]) -> str:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return wrap(jwt.encode(payload, pem, algorithm="RS256"), payload["jti"])


def tampered_role(tessera: RunningServer) -> str:
    # A viewer's genuine token with its payload edited to presenter, signature kept.
    payload = claims(tessera, role="viewer")
    header, _, signature = jwt.encode(payload, tessera.server.default_service.key, "HS256").split(
        "."
    )
    forged = f"{header}.{b64url({**payload, 'role': 'presenter'})}.{signature}"
    return wrap(forged, payload["jti"])


HOSTILE_TOKENS: dict[str, tuple[Callable[[Any], str], str]] = {
    "signed with another key": (
        lambda t: signed(claims(t), "another-key-" + "x" * 40),
        "Token signature is invalid",
    ),
    "expired": (
        lambda t: signed(claims(t, iat=int(time.time()) - 600, exp=int(time.time()) - 300), t.key),
        "expired",
    ),
    "alg none": (
        lambda t: wrap(f"{b64url({'alg': 'none', 'typ': 'JWT'})}.{b64url(claims(t))}."),
        "Token algorithm is not accepted",
    ),
    "RS256 (asymmetric) instead of HS256": (
        lambda t: rsa_signed(claims(t)),
        "Token algorithm is not accepted",
    ),
    "HS256 bytes under an RS256 header": (
        lambda t: wrap(hs256_by_hand(claims(t), t.key, alg="RS256")),
        "Token algorithm is not accepted",
    ),
    "HS512 with the right key": (
        lambda t: signed(claims(t), t.key, "HS512"),
        "Token algorithm is not accepted",
    ),
    "payload edited after signing (role)": (tampered_role, "Token signature is invalid"),
    "a service that does not exist": (
        lambda t: signed(claims(t, iss="ghost"), t.key),
        "not issued by a known service",
    ),
    "another service's name, signed with its own key": (
        lambda t: signed(claims(t, iss="acme"), t.key),
        "Token signature is invalid",
    ),
    "not a token": (lambda t: "bm90IGEgdG9rZW4=", "malformed"),
}


class _Keyed:
    """The running server plus its default service key, for the token builders."""

    def __init__(self, tessera: RunningServer) -> None:
        self.tessera = tessera
        self.server = tessera.server
        self.key = tessera.server.default_service.key


@pytest.mark.parametrize("attack", sorted(HOSTILE_TOKENS))
async def test_hostile_token_is_refused(tessera: RunningServer, attack: str) -> None:
    tessera.server.store.put_service(ServiceRecord(id="acme", key="a" * 40))
    build, fragment = HOSTILE_TOKENS[attack]
    client = RawClient()
    await client.connect(tessera.url)
    status, message = await client.login(build(_Keyed(tessera)))
    assert status == "error" and fragment in message, message
    assert tessera.server.conference.participants == {}
    # The same connection still logs in with a good token.
    status, _ = await client.login(tessera.token(user="good"))
    assert status == "ok"
    await client.sio.disconnect()


async def test_reused_token_is_refused_even_after_the_first_user_left(
    tessera: RunningServer,
) -> None:
    token = tessera.token(user="once")
    first = RawClient()
    await first.connect(tessera.url)
    assert (await first.login(token))[0] == "ok"
    assert await first.request("logout", None) == ("ok", None)
    await first.sio.disconnect()
    second = RawClient()
    await second.connect(tessera.url)
    status, message = await second.login(token)
    assert (status, message) == ("error", "Token has already been used")
    await second.sio.disconnect()


async def test_a_token_opens_only_its_own_room(tessera: RunningServer) -> None:
    # Alice publishes in room A; Mallory holds a valid token for room B and knows the ids.
    alice = await joined(tessera, "alice", room="room-a")
    publication = await alice.publish(video=ColorVideoTrack((200, 0, 0)))
    await publication.wait_ready()
    mallory = RawClient()
    await mallory.connect(tessera.url)
    status, info = await mallory.login(tessera.token(room="room-b", user="mallory"))
    assert status == "ok" and info["room"]["id"] != alice.room_id
    assert info["room"]["streams"] == [s for s in info["room"]["streams"] if s["type"] == "mixed"]
    for name, data in [
        ("subscribe", subscribe(publication.id, "video")),
        ("subscribe", subscribe(f"{alice.room_id}-common", "video")),
        ("stream-control", {"id": publication.id, "operation": "pause", "data": "av"}),
        ("text", {"to": alice.participant_id, "message": "psst"}),
    ]:
        status, message = await mallory.request(name, data)
        assert status == "error" and "does NOT exist" in message, (name, message)
    await mallory.sio.disconnect()
    await alice.leave()


async def test_a_service_token_never_enters_another_services_room(
    tessera: RunningServer,
) -> None:
    acme = ServiceRecord(id="acme", key="a" * 40, adhoc_rooms=False)
    tessera.server.store.put_service(acme)
    default_room = tessera.server.store.find_room_by_name("default", "default")
    assert default_room is not None
    client = RawClient()
    await client.connect(tessera.url)
    # acme's own, genuine token naming the default service's room by id and by name.
    for ref in (default_room.id, "default"):
        status, message = await client.login(tessera.token(room=ref, service=acme))
        assert (status, message) == ("error", "Room does NOT exist"), ref
    await client.sio.disconnect()


async def test_relogin_from_an_origin_not_allowed_is_refused(tessera: RunningServer) -> None:
    strict = ServiceRecord(id="strict", key="s" * 40, allowed_origins=["https://app.example"])
    tessera.server.store.put_service(strict)
    client = ConferenceClient(reconnect=False)
    await client.join(tessera.token(service=strict), origin="https://app.example")
    ticket = client.reconnection_ticket
    assert ticket is not None
    thief = RawClient()
    thief.sio.connection_headers = {}
    await thief.sio.connect(
        tessera.url, transports=["websocket"], headers={"Origin": "https://evil.example"}
    )
    status, message = await thief.request("relogin", ticket)
    assert (status, message) == ("error", "Origin https://evil.example is not allowed")
    await thief.sio.disconnect()
    await client.leave()

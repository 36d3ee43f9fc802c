"""The REST API route by route and shape by shape against OWT 5.x's management API.

What each test checks comes from OWT's RESTAPI.md and, where they disagree, from
its code (``source/management_api/``): routes of ``resource/v1/index.js`` and
``v1.1/index.js``, answers of ``resource/*.js``, ``streamAdapter.js``, the
request validator and ``errors.js``. Requests are signed as OWT's own REST
client (``rest.js``) signs them (tests/owt_rest.py).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest

from tessera_client import ConferenceClient
from tests.eventually import DEFAULT_TIMEOUT, eventually
from tests.owt_rest import Answer, OwtRest, mauth_header
from tests.support import RunningServer, joined, start_server
from tests.synthetic import ColorVideoTrack, ToneTrack

OBJECT_ID = re.compile(r"[0-9a-f]{24}")
ACME_KEY = "acme-secret-key-of-at-least-32-bytes"


@pytest.fixture
async def owt(tessera: RunningServer) -> AsyncIterator[OwtRest]:
    service = tessera.server.default_service
    async with aiohttp.ClientSession() as session:
        yield OwtRest(session, tessera.url, service.id, service.key)


def error_of(answer: Answer, status: int, code: int, *words: str) -> dict[str, Any]:
    """OWT's error body ``{"error": {"code", "message"}}`` with that status and code."""
    assert answer.status == status, (answer.status, answer.text)
    body = answer.json
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    for word in words:
        assert word in body["error"]["message"], body
    return body  # type: ignore[no-any-return]


def token_claims(token: str) -> dict[str, Any]:
    """The room, user and role signed into a Tessera token (inside its JWT)."""
    envelope = json.loads(base64.b64decode(token))
    payload = envelope["signature"].split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))  # type: ignore[no-any-return]


# -- tokens -----------------------------------------------------------------------


async def test_token_body_is_the_token_text_and_joins_as_it_is(
    owt: OwtRest, tessera: RunningServer
) -> None:
    room = (await owt.send("POST", "v1/rooms", {"name": "sample", "options": {}})).json
    answer = await owt.send(
        "POST",
        f"v1/rooms/{room['_id']}/tokens",
        {"user": "ada", "role": "presenter", "preference": {"isp": "isp", "region": "region"}},
    )
    # OWT: res.send(tokenString), the token itself; the sample app server relays it as is.
    assert answer.status == 200 and answer.content_type == "text/plain"
    token = answer.text
    assert not token.startswith('"') and token == token.strip()
    envelope = json.loads(base64.b64decode(token, validate=True))
    assert envelope["host"] == tessera.server.advertised_host() and envelope["secure"] is False
    client = ConferenceClient()
    info = await client.join(token)
    assert info["room"]["id"] == room["_id"] and info["user"] == "ada"
    await client.leave()
    # Read raw (bytes) it joins too.
    raw = await owt.send(
        "POST", f"v1.1/rooms/{room['_id']}/tokens", {"user": "bo", "role": "viewer"}
    )
    client = ConferenceClient()
    info = await client.join(raw.text.encode("ascii"))
    assert info["role"] == "viewer"
    await client.leave()


async def test_token_user_and_role_from_the_mauth_header(owt: OwtRest) -> None:
    # OWT's tokensResource: authData.user || body.user (mauth_username is base64 in the header).
    answer = await owt.send("POST", "v1/rooms/default/tokens", {}, user="Zoë", role="viewer")
    assert answer.status == 200, answer.text
    claims = token_claims(answer.text)
    assert (claims["user"], claims["role"]) == ("Zoë", "viewer")
    same = await owt.send(
        "POST", "v1/rooms/default/tokens", {"user": "Zoë"}, user="Zoë", role="viewer"
    )
    assert same.status == 200
    # The body saying otherwise is not ignored: it is refused, naming both.
    clash = await owt.send(
        "POST", "v1/rooms/default/tokens", {"role": "presenter"}, user="Zoë", role="viewer"
    )
    error_of(clash, 400, 1201, "presenter", "viewer")


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"role": "presenter"}, ["user"]),
        ({"user": "a"}, ["role"]),
        ({"user": "a", "role": "janitor"}, ["janitor", "roles"]),
        ({"user": "a", "role": "viewer", "preference": "near"}, ["preference"]),
        ({"user": "a", "role": "viewer", "preference": {"isp": 3}}, ["preference.isp"]),
        ({"user": "a", "role": "viewer", "room": "x"}, ["room"]),
    ],
)
async def test_token_refusals_name_the_field(owt: OwtRest, body: Any, words: list[str]) -> None:
    error_of(await owt.send("POST", "v1/rooms/default/tokens", body), 400, 1201, *words)


# -- /v1.1 ------------------------------------------------------------------------


async def test_v1_1_mounts_every_v1_route(owt: OwtRest) -> None:
    # OWT 5.x: the v1.1 router ends with router.use(routerV1).
    room = (await owt.send("POST", "v1.1/rooms", {"name": "twin"})).json
    rid = room["_id"]
    for method, resource, body in [
        ("GET", "rooms", None),
        ("GET", f"rooms/{rid}", None),
        ("PUT", f"rooms/{rid}", {"participantLimit": 5}),
        ("GET", f"rooms/{rid}/participants", None),
        ("GET", f"rooms/{rid}/streams", None),
        ("GET", f"rooms/{rid}/recordings", None),
        ("GET", f"rooms/{rid}/streaming-outs", None),
    ]:
        one = await owt.send(method, f"v1/{resource}", body)
        other = await owt.send(method, f"v1.1/{resource}", body)
        assert one.status == other.status == 200, (resource, one.text, other.text)
        assert one.json == other.json, resource
    token = await owt.send("POST", f"v1.1/rooms/{rid}/tokens", {"user": "u", "role": "viewer"})
    assert token.status == 200 and token.content_type == "text/plain"
    gone = await owt.send("DELETE", f"v1.1/rooms/{rid}")
    assert gone.status == 200 and gone.text == "Room deleted"


# -- rooms ------------------------------------------------------------------------


async def test_room_object_paging_put_and_delete_as_owt(owt: OwtRest) -> None:
    created = await owt.send("POST", "v1/rooms", {"name": "hall", "options": {"inputLimit": 3}})
    assert created.status == 200 and created.content_type == "application/json"
    room = created.json
    # OWT's room object (roomModel.js, with roomInterface.js's defaults).
    assert OBJECT_ID.fullmatch(room["_id"]) and room["name"] == "hall"
    assert room["inputLimit"] == 3 and room["participantLimit"] == -1
    assert [r["role"] for r in room["roles"]][:4] == [
        "presenter",
        "viewer",
        "audio_only_presenter",
        "video_only_viewer",
    ]
    assert room["views"][0]["label"] == "common"
    for field in ("mediaIn", "mediaOut", "transcoding", "notifying"):
        assert isinstance(room[field], dict), field
    assert set(room["mediaOut"]["video"]["parameters"]) == {
        "resolution",
        "framerate",
        "bitrate",
        "keyFrameInterval",
    }
    # PUT: Object.assign of the top-level fields given; the others keep their values.
    put = await owt.send("PUT", f"v1/rooms/{room['_id']}", {"participantLimit": 8})
    assert put.status == 200 and put.json["participantLimit"] == 8 and put.json["inputLimit"] == 3
    # Paging: ?page (1-based) and ?per_page, in creation order.
    for name in ("p1", "p2", "p3"):
        assert (await owt.send("POST", "v1/rooms", {"name": name})).status == 200
    names = [r["name"] for r in (await owt.send("GET", "v1/rooms")).json]
    assert names == ["default", "hall", "p1", "p2", "p3"]
    page = await owt.send("GET", "v1/rooms?page=2&per_page=2")
    assert [r["name"] for r in page.json] == ["p1", "p2"]
    # DELETE: OWT's roomResource answers the text "Room deleted".
    deleted = await owt.send("DELETE", f"v1/rooms/{room['_id']}")
    assert (deleted.status, deleted.content_type, deleted.text) == (
        200,
        "text/plain",
        "Room deleted",
    )
    error_of(await owt.send("GET", f"v1/rooms/{room['_id']}"), 404, 1003, "Room not found")


# -- room names (issue 21) --------------------------------------------------------


async def test_a_room_is_found_by_its_unambiguous_name(
    owt: OwtRest, tessera: RunningServer
) -> None:
    weekly = (await owt.send("POST", "v1/rooms", {"name": "weekly"})).json
    token = await owt.send("POST", "v1/rooms/weekly/tokens", {"user": "ada", "role": "presenter"})
    assert token.status == 200, token.text
    assert token_claims(token.text)["room"] == weekly["_id"]  # the token names the room's id
    got = await owt.send("GET", "v1/rooms/weekly")
    assert got.status == 200 and got.json["_id"] == weekly["_id"]
    patched = await owt.send("PATCH", "v1/rooms/weekly", {"participantLimit": 4})
    assert patched.status == 200 and patched.json["_id"] == weekly["_id"]
    # Every route under a room takes the name (all resolve {room} in one place).
    for route in ("participants", "streams", "recordings", "streaming-outs"):
        listed = await owt.send("GET", f"v1/rooms/weekly/{route}")
        assert listed.status == 200 and listed.json == [], (route, listed.text)
    # An ad-hoc room (made by a join token) is found by its name too.
    adhoc = await joined(tessera, "walker", room="drop-in")
    listed = await owt.send("GET", "v1/rooms/drop-in/participants")
    assert [p["user"] for p in listed.json] == ["walker"]
    await adhoc.leave()
    # Two rooms with one name: a clear 409 naming both ids; nothing is issued or changed.
    second = (await owt.send("POST", "v1/rooms", {"name": "weekly"})).json
    clash = await owt.send("POST", "v1/rooms/weekly/tokens", {"user": "bo", "role": "presenter"})
    error_of(clash, 409, 1201, "ambiguous", weekly["_id"], second["_id"])
    error_of(await owt.send("DELETE", "v1/rooms/weekly"), 409, 1201, "ambiguous")
    assert (await owt.send("GET", f"v1/rooms/{second['_id']}")).status == 200
    # The id keeps working.
    by_id = await owt.send("GET", f"v1/rooms/{weekly['_id']}")
    assert by_id.status == 200 and by_id.json["participantLimit"] == 4
    error_of(await owt.send("GET", "v1/rooms/monthly"), 404, 1003, "Room not found")


# -- participants -----------------------------------------------------------------


async def test_participant_detail_patch_and_drop_as_owt(
    owt: OwtRest, tessera: RunningServer
) -> None:
    alice = await joined(tessera, "alice")
    bob = await joined(tessera, "bob", role="viewer")
    room = alice.room_id
    listed = await owt.send("GET", f"v1/rooms/{room}/participants")
    assert listed.status == 200
    detail = next(p for p in listed.json if p["user"] == "bob")
    # OWT's participant.getDetail(): exactly {id, user, role, permission}; and Tessera's
    # webrtc subscriptions (bob has none; test_subscription_estimate.py).
    assert detail == {
        "id": bob.participant_id,
        "user": "bob",
        "role": "viewer",
        "permission": {
            "publish": {"audio": False, "video": False},
            "subscribe": {"audio": True, "video": True},
        },
        "subscriptions": [],
    }
    one = await owt.send("GET", f"v1/rooms/{room}/participants/{bob.participant_id}")
    assert one.json == detail
    patched = await owt.send(
        "PATCH",
        f"v1/rooms/{room}/participants/{bob.participant_id}",
        [
            {
                "op": "replace",
                "path": "/permission/publish",
                "value": {"audio": True, "video": False},
            }
        ],
    )
    assert patched.status == 200
    assert patched.json["permission"]["publish"] == {"audio": True, "video": False}
    dropped = await owt.send("DELETE", f"v1/rooms/{room}/participants/{bob.participant_id}")
    assert (dropped.status, dropped.content_type, dropped.text) == (200, None, "")
    await bob.next_event("drop")
    error_of(
        await owt.send("GET", f"v1/rooms/{room}/participants/{bob.participant_id}"),
        404,
        1005,
        "Participant not found",
    )
    await alice.leave()
    await bob.leave()


# -- streams ----------------------------------------------------------------------


async def test_streams_in_owt_v1_and_v1_1_formats(owt: OwtRest, tessera: RunningServer) -> None:
    alice = await joined(tessera, "alice")
    publication = await alice.publish(
        audio=ToneTrack(440), video=ColorVideoTrack((200, 0, 0)), attributes={"name": "cam"}
    )
    await publication.wait_ready()
    room = alice.room_id
    mixed_id = f"{room}-common"

    # /v1.1 (streamAdapter.convertToV11Stream): media.audio and media.video, no tracks.
    streams = {s["id"]: s for s in (await owt.send("GET", f"v1.1/rooms/{room}/streams")).json}
    forward = streams[publication.id]
    assert forward["type"] == "forward" and "tracks" not in forward["media"]
    assert forward["info"]["owner"] == alice.participant_id
    assert forward["info"]["attributes"] == {"name": "cam"}
    audio, video = forward["media"]["audio"], forward["media"]["video"]
    assert audio["status"] == "active" and audio["source"] == "mic"
    assert audio["format"]["codec"] == "opus"
    assert video["status"] == "active" and video["source"] == "camera"
    assert video["original"][0]["format"]["codec"] == "vp8"
    assert "format" not in video
    mixed = streams[mixed_id]
    assert mixed["type"] == "mixed" and mixed["info"]["label"] == "common"
    original = mixed["media"]["video"]["original"][0]
    assert original["parameters"]["resolution"] == {"width": 1280, "height": 720}
    assert set(mixed["media"]["video"]["optional"]["parameters"]) == {
        "resolution",
        "framerate",
        "bitrate",
        "keyFrameInterval",
    }

    # /v1 (convertToV10Stream): the video's format and parameters in place of original.
    v1 = {s["id"]: s for s in (await owt.send("GET", f"v1/rooms/{room}/streams")).json}
    assert v1[mixed_id]["media"]["video"]["format"] == original["format"]
    assert v1[mixed_id]["media"]["video"]["parameters"] == original["parameters"]
    assert "original" not in v1[mixed_id]["media"]["video"]
    assert "tracks" not in v1[publication.id]["media"]

    # GET one: OWT 5.x answers the portal's format there (its handler converts the wrong
    # variable); Tessera answers both, so either reader works.
    one = (await owt.send("GET", f"v1.1/rooms/{room}/streams/{publication.id}")).json
    assert one["media"]["video"] == video
    assert [t["type"] for t in one["media"]["tracks"]] == ["audio", "video"]

    # PATCH answers the converted stream; DELETE an empty body.
    paused = await owt.send(
        "PATCH",
        f"v1.1/rooms/{room}/streams/{publication.id}",
        [{"op": "replace", "path": "/media/audio/status", "value": "inactive"}],
    )
    assert paused.status == 200 and paused.json["media"]["audio"]["status"] == "inactive"
    assert "tracks" not in paused.json["media"]
    removed = await owt.send("DELETE", f"v1.1/rooms/{room}/streams/{publication.id}")
    assert (removed.status, removed.text) == (200, "")
    error_of(
        await owt.send("GET", f"v1.1/rooms/{room}/streams/{publication.id}"),
        404,
        1004,
        "Stream not found",
    )
    await alice.leave()


# -- recordings -------------------------------------------------------------------


async def wait_recorded(owt: OwtRest, room: str, rec_id: str, seconds: float) -> dict[str, Any]:
    """The recording's description once its file holds `seconds` more of media."""
    start = (await owt.send("GET", f"v1/rooms/{room}/recordings/{rec_id}")).json["duration"]

    async def grown() -> dict[str, Any] | None:
        info = (await owt.send("GET", f"v1/rooms/{room}/recordings/{rec_id}")).json
        return info if info["duration"] >= start + seconds else None  # type: ignore[no-any-return]

    return await eventually(grown, what=f"{seconds} s more recorded")


async def test_recording_shapes_containers_and_delete_as_owt(
    owt: OwtRest, tessera: RunningServer
) -> None:
    alice = await joined(tessera, "alice")
    publication = await alice.publish(audio=ToneTrack(440), video=ColorVideoTrack((0, 0, 200)))
    await publication.wait_ready()
    room = alice.room_id
    mixed = f"{room}-common"

    # "ts" (OWT's validator: mp4, mkv, ts, auto): H.264 of the view with its Opus audio.
    ts = await owt.send(
        "POST",
        f"v1/rooms/{room}/recordings",
        {
            "container": "ts",
            "media": {
                "audio": {"from": mixed},
                "video": {"from": mixed, "format": {"codec": "h264"}},
            },
        },
    )
    assert ts.status == 200 and ts.content_type == "application/json", ts.text
    rec = ts.json
    # OWT's subscriptionAbstract: {id, media: {kind: {from, format, status}}, storage}.
    assert rec["media"] == {
        "audio": {
            "from": mixed,
            "format": {"codec": "opus", "sampleRate": 48000, "channelNum": 2},
            "status": "active",
        },
        "video": {"from": mixed, "format": {"codec": "h264"}, "status": "active"},
    }
    assert rec["storage"]["host"] == tessera.server.advertised_host()
    assert rec["storage"]["file"].endswith(f"{rec['id']}.ts") and rec["container"] == "ts"

    # "auto" as OWT's conference agent picks it: Matroska unless the audio is AAC.
    auto = await owt.send(
        "POST",
        f"v1/rooms/{room}/recordings",
        {"container": "auto", "media": {"audio": False, "video": {"from": publication.id}}},
    )
    assert auto.status == 200, auto.text
    assert auto.json["container"] == "mkv" and auto.json["storage"]["file"].endswith(".mkv")
    assert set(auto.json["media"]) == {"video"}  # a kind not recorded is absent, as OWT's

    # Only the running ones are listed (OWT: "all the ongoing recordings").
    listed = (await owt.send("GET", f"v1/rooms/{room}/recordings")).json
    assert sorted(r["id"] for r in listed) == sorted([rec["id"], auto.json["id"]])

    await wait_recorded(owt, room, rec["id"], 1.0)
    for rec_id in (rec["id"], auto.json["id"]):
        stopped = await owt.send("DELETE", f"v1/rooms/{room}/recordings/{rec_id}")
        assert (stopped.status, stopped.content_type, stopped.text) == (200, None, "")
    assert (await owt.send("GET", f"v1/rooms/{room}/recordings")).json == []
    everything = (await owt.send("GET", f"v1/rooms/{room}/recordings?state=all")).json
    assert {r["state"] for r in everything} == {"stopped"} and len(everything) == 2
    with av.open(rec["storage"]["file"]) as container:
        assert container.format.name == "mpegts"
        assert container.streams.video[0].codec_context.name == "h264"
        assert container.streams.audio[0].codec_context.name == "opus"
        # Decodable H.264 pictures; how many a second of the view holds depends on the
        # machine's load (the frame rate is bench's and test_media_paths' concern).
        assert sum(1 for _ in container.decode(video=0)) >= 2
    await alice.leave()


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"container": "avi", "media": {"audio": {"from": "{mixed}"}}}, ["container", "ts"]),
        (
            {"media": {"audio": {"from": "{mixed}", "format": {"codec": "aac"}}}},
            ["Opus", "aac"],
        ),
        (
            {"media": {"audio": {"from": "{mixed}", "format": {"codec": "opus", "sampleRate": 8}}}},
            ["sampleRate"],
        ),
        ({"container": "ts", "media": {"video": {"from": "{mixed}"}}}, ["MPEG-TS", "VP8"]),
        ({"media": {"audio": False, "video": False}}, ["at least one"]),
    ],
)
async def test_recording_refusals_create_nothing(
    owt: OwtRest, tessera: RunningServer, body: dict[str, Any], words: list[str]
) -> None:
    alice = await joined(tessera, "alice")
    room = alice.room_id
    text = json.dumps(body).replace("{mixed}", f"{room}-common")
    error_of(
        await owt.send("POST", f"v1/rooms/{room}/recordings", json.loads(text)), 400, 1201, *words
    )
    assert (await owt.send("GET", f"v1/rooms/{room}/recordings?state=all")).json == []
    directory = tessera.server.config.recording_dir() / str(room)
    assert not directory.exists() or not any(directory.iterdir())
    await alice.leave()


async def test_recording_patch_status_and_video_parameters(
    owt: OwtRest, tessera: RunningServer
) -> None:
    alice = await joined(tessera, "alice")
    publication = await alice.publish(audio=ToneTrack(440), video=ColorVideoTrack((0, 160, 0)))
    await publication.wait_ready()
    room = alice.room_id
    mixed = f"{room}-common"
    rec = (
        await owt.send(
            "POST",
            f"v1/rooms/{room}/recordings",
            {"container": "mkv", "media": {"audio": {"from": mixed}, "video": {"from": mixed}}},
        )
    ).json
    path = f"v1/rooms/{room}/recordings/{rec['id']}"
    await wait_recorded(owt, room, rec["id"], 1.0)

    # A bad patch anywhere changes nothing (OWT's SubscriptionControlInfo, checked first).
    for bad, words in [
        (
            [{"op": "replace", "path": "/media/video/parameters/framerate", "value": 25}],
            ["Framerate is not acceptable"],
        ),
        ([{"op": "add", "path": "/media/audio/status", "value": "inactive"}], ["replace"]),
        ([{"op": "replace", "path": "/media/video/status", "value": "off"}], ["active"]),
        ([{"op": "replace", "path": "/media/colour", "value": "red"}], ["[0].path"]),
        ({"op": "replace"}, ["list"]),
        (
            [
                {"op": "replace", "path": "/media/audio/status", "value": "inactive"},
                {
                    "op": "replace",
                    "path": "/media/video/parameters/resolution",
                    "value": {"width": 999, "height": 333},
                },
            ],
            ["Resolution is not acceptable"],
        ),
    ]:
        error_of(await owt.send("PATCH", path, bad), 400, 1201, *words)
    assert (await owt.send("GET", path)).json["media"]["audio"]["status"] == "active"

    # Pause the audio, and take a smaller picture (one of the view's optional resolutions).
    view = tessera.server.rooms[room].views["common"]
    track = next(t for t in view.info()["media"]["tracks"] if t["type"] == "video")
    smaller = track["optional"]["parameters"]["resolution"][0]
    patched = await owt.send(
        "PATCH",
        path,
        [
            {"op": "replace", "path": "/media/audio/status", "value": "inactive"},
            {"op": "replace", "path": "/media/video/parameters/resolution", "value": smaller},
            {"op": "replace", "path": "/media/video/parameters/framerate", "value": 15},
        ],
    )
    assert patched.status == 200, patched.text
    media = patched.json["media"]
    assert media["audio"]["status"] == "inactive" and media["video"]["status"] == "active"
    assert media["video"]["parameters"] == {"resolution": smaller, "framerate": 15}
    await wait_recorded(owt, room, rec["id"], 1.5)
    resumed = await owt.send(
        "PATCH", path, [{"op": "replace", "path": "/media/audio/status", "value": "active"}]
    )
    assert resumed.json["media"]["audio"]["status"] == "active"
    await wait_recorded(owt, room, rec["id"], 1.0)
    assert (await owt.send("DELETE", path)).status == 200

    file = Path(rec["storage"]["file"])
    with av.open(str(file)) as container:
        sizes = {(f.width, f.height) for f in container.decode(video=0)}
    assert sizes == {(1280, 720), (smaller["width"], smaller["height"])}
    # The audio has a hole where it was paused (1.5 s of video were recorded meanwhile).
    with av.open(str(file)) as container:
        times = [float(f.pts * f.time_base) for f in container.decode(audio=0)]
    assert max(b - a for a, b in itertools.pairwise(times)) > 1.0
    timeline = json.loads(file.with_name(f"{rec['id']}.timeline.json").read_text())
    kinds = [(e["type"], e.get("track")) for e in timeline["events"]]
    assert ("pause", "audio") in kinds and ("play", "audio") in kinds
    await alice.leave()


# -- services -----------------------------------------------------------------------


async def test_services_are_managed_by_the_super_service(
    owt: OwtRest, tessera: RunningServer
) -> None:
    created = await owt.send("POST", "services", {"name": "acme", "key": ACME_KEY})
    assert created.status == 200 and created.content_type == "application/json", created.text
    assert created.json["_id"] == "acme" and created.json["name"] == "acme"
    assert created.json["rooms"] == [] and "key" not in created.json
    # The new service signs with its own id and key, as with OWT's.
    acme = OwtRest(owt.session, owt.url, "acme", ACME_KEY)
    room = (await acme.send("POST", "v1/rooms", {"name": "board"})).json
    listed = (await owt.send("GET", "services")).json
    assert [s["_id"] for s in listed] == ["acme", "default"]
    assert [r["_id"] for r in next(s for s in listed if s["_id"] == "acme")["rooms"]] == [
        room["_id"]
    ]
    # A service reads itself; only the super service lists, creates and deletes.
    assert (await acme.send("GET", "services/acme")).json["_id"] == "acme"
    error_of(await acme.send("GET", "services/default"), 403, 1102, "Permission denied")
    error_of(await acme.send("GET", "services"), 403, 1102, "super service")
    error_of(await acme.send("POST", "services", {"name": "x", "key": "y"}), 403, 1102)
    error_of(await acme.send("DELETE", "services/acme"), 403, 1102)
    error_of(await owt.send("DELETE", "services/default"), 403, 1102, "super service")
    # Refusals name the field and create nothing.
    for body, words in [
        ({"name": "acme", "key": "k"}, ["already exists"]),
        ({"name": "bad name", "key": "k"}, ["name"]),
        ({"name": "ok", "key": ""}, ["key"]),
        ({"name": "ok", "key": "has space"}, ["key"]),
        ({"name": "ok", "key": "k", "rooms": []}, ["rooms"]),
    ]:
        answer = await owt.send("POST", "services", body)
        assert answer.status in (400, 409), answer.text
        error_of(answer, answer.status, 1201, *words)
    assert [s["_id"] for s in (await owt.send("GET", "services")).json] == ["acme", "default"]

    # Deleting a service drops its participants, its peers and its rooms; its key opens
    # nothing more.
    token = await acme.send("POST", "v1/rooms/board/tokens", {"user": "cy", "role": "presenter"})
    member = ConferenceClient()
    await member.join(token.text)
    peer = await owt.session.ws_connect(
        owt.url.replace("http", "ws") + "/peerjs/peerjs?key=acme&id=acme-peer&token=t"
    )
    assert json.loads((await peer.receive()).data)["type"] == "OPEN"
    deleted = await owt.send("DELETE", "services/acme")
    assert (deleted.status, deleted.content_type, deleted.text) == (
        200,
        "text/plain",
        "Service deleted",
    )
    await member.next_event("drop")
    # Closed by the deletion, well before the peer's own 60 s alive timeout.
    closing = await asyncio.wait_for(peer.receive(), DEFAULT_TIMEOUT)
    assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    error_of(await acme.send("GET", "v1/rooms"), 401, 1101)
    error_of(await owt.send("GET", "services/acme"), 404, 1002, "Service not found")
    assert tessera.server.store.get_room("acme", room["_id"]) is None
    await member.leave()


# -- outside Tessera ----------------------------------------------------------------


async def test_sipcalls_and_analytics_answer_that_they_are_outside(owt: OwtRest) -> None:
    for resource, words in [("sipcalls", ["SIP", "outside"]), ("analytics", ["analytics"])]:
        for method, path, body in [
            ("GET", f"v1/rooms/default/{resource}", None),
            ("POST", f"v1/rooms/default/{resource}", {"peerURI": "sip:a@b"}),
            ("PATCH", f"v1.1/rooms/default/{resource}/x", []),
            ("DELETE", f"v1/rooms/default/{resource}/x", None),
        ]:
            error_of(await owt.send(method, path, body), 501, 2001, *words)
        error_of(await owt.send("GET", f"v1/rooms/nowhere/{resource}"), 404, 1003)


# -- errors -------------------------------------------------------------------------


async def test_error_bodies_as_owt(owt: OwtRest) -> None:
    error_of(await owt.send("GET", "v1/nothing-here"), 404, 1001, "Resource not found")
    async with owt.session.get(owt.url + "/v1/rooms") as unsigned:
        assert unsigned.status == 401
        assert (await unsigned.json())["error"]["code"] == 1101
    async with owt.session.post(
        owt.url + "/v1/rooms",
        data="{",
        headers={"Authorization": mauth_header(owt.service_id, owt.key)},
    ) as broken:
        body = await broken.json()
        assert broken.status == 400 and body["error"]["code"] == 1201
    wrong = OwtRest(owt.session, owt.url, owt.service_id, "not-the-key")
    error_of(await wrong.send("GET", "v1/rooms"), 401, 1101)


async def test_a_restarted_server_keeps_created_services(tmp_path: Path) -> None:
    first = await start_server(tmp_path)
    try:
        async with aiohttp.ClientSession() as session:
            service = first.server.default_service
            owt = OwtRest(session, first.url, service.id, service.key)
            created = await owt.send("POST", "services", {"name": "kept", "key": ACME_KEY})
            assert created.status == 200
    finally:
        await first.stop()
    again = await start_server(tmp_path)
    try:
        async with aiohttp.ClientSession() as session:
            kept = OwtRest(session, again.url, "kept", ACME_KEY)
            assert (await kept.send("GET", "services/kept")).status == 200
    finally:
        await again.stop()

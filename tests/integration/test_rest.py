"""REST management API over real HTTP: a real server on loopback, real SQLite, aiohttp client."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web

from tessera.conference.events import ClientAddress
from tessera.conference.participant import Participant
from tessera.conference.requests import JoinRequest
from tessera.conference.store import ServiceRecord
from tessera.conference.tokens import issue_token, verify_token
from tessera.portal.config import load_config
from tessera.portal.mauth import sign
from tessera.portal.rest import REST_API_KEY
from tessera.portal.server import SERVER_KEY, Server, create_app
from tests.eventually import eventually

OTHER_KEY = "other-service-key-" + "k" * 32


class Api:
    """A running Tessera and an HTTP client that signs requests as a given service."""

    def __init__(self, runner: web.AppRunner, session: aiohttp.ClientSession) -> None:
        self.runner = runner
        self.session = session
        self.app = runner.app
        self.server: Server = self.app[SERVER_KEY]
        host, port = runner.addresses[0][:2]
        self.port = port
        self.server.port = port
        self.base = f"http://{host}:{port}"
        self.service = self.server.default_service

    def mauth(
        self,
        service: ServiceRecord | None = None,
        *,
        key: str | None = None,
        timestamp: int | None = None,
        cnonce: str | None = None,
        username: str | None = None,
        role: str | None = None,
    ) -> dict[str, str]:
        """An Authorization header as OWT's icsREST.js builds it."""
        service = service or self.service
        ts = int(time.time() * 1000) if timestamp is None else timestamp
        nonce = cnonce or secrets.token_hex(8)
        header = "MAuth realm=http://marte3.dit.upm.es,mauth_signature_method=HMAC_SHA256"
        if username is not None and role is not None:
            header += f",mauth_username={username},mauth_role={role}"
        signature = sign(key or service.key, ts, nonce, username, role)
        header += (
            f",mauth_serviceid={service.id},mauth_cnonce={nonce},"
            f"mauth_timestamp={ts},mauth_signature={signature}"
        )
        return {"Authorization": header}

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        data: bytes | str | None = None,
        service: ServiceRecord | None = None,
    ) -> tuple[int, Any]:
        """(status, decoded JSON or text) of a request, MAuth-signed unless headers are given."""
        all_headers = self.mauth(service) if headers is None else headers
        kwargs: dict[str, Any] = {"headers": all_headers}
        if data is not None:
            kwargs["data"] = data
        elif body is not None:
            kwargs["json"] = body
        async with self.session.request(method, self.base + path, **kwargs) as response:
            text = await response.text()
            if response.content_type == "application/json":
                return response.status, json.loads(text)
            return response.status, text

    def add_service(
        self, service_id: str = "other", key: str = OTHER_KEY, **kw: Any
    ) -> ServiceRecord:
        service = ServiceRecord(id=service_id, key=key, **kw)
        self.server.store.put_service(service)
        return service


async def start(data_dir: Path) -> web.AppRunner:
    config = load_config(
        None, env={}, overrides={"storage.data_dir": str(data_dir), "server.port": 0}
    )
    runner = web.AppRunner(create_app(config))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    runner = await start(tmp_path)
    async with aiohttp.ClientSession() as session:
        try:
            yield Api(runner, session)
        finally:
            await runner.cleanup()


def assert_error(status: int, body: Any, expected_status: int, code: int, *words: str) -> None:
    assert status == expected_status, body
    assert isinstance(body, dict) and set(body) == {"error"}, body
    assert body["error"]["code"] == code, body
    message = body["error"]["message"]
    assert isinstance(message, str) and message
    for word in words:
        assert word in message, message


async def create_room(api: Api, name: str = "room", **options: Any) -> dict[str, Any]:
    status, room = await api.call("POST", "/v1/rooms", {"name": name, "options": options})
    assert status == 200, room
    return room  # type: ignore[no-any-return]


# -- authentication -----------------------------------------------------------


async def test_mauth_good(api: Api) -> None:
    status, rooms = await api.call("GET", "/v1/rooms")
    assert status == 200
    assert [room["name"] for room in rooms] == ["default"]


async def test_mauth_bad_signature(api: Api) -> None:
    status, body = await api.call("GET", "/v1/rooms", headers=api.mauth(key="wrong-key"))
    assert_error(status, body, 401, 1101, "mauth_signature does not match")


async def test_mauth_unknown_service(api: Api) -> None:
    ghost = ServiceRecord(id="ghost", key="x" * 40)
    status, body = await api.call("GET", "/v1/rooms", headers=api.mauth(ghost))
    assert_error(status, body, 401, 1101, "names no service")


async def test_mauth_signed_with_another_services_key(api: Api) -> None:
    other = api.add_service()
    headers = api.mauth(api.service, key=other.key)
    status, body = await api.call("GET", "/v1/rooms", headers=headers)
    assert_error(status, body, 401, 1101, "does not match")


async def test_mauth_old_timestamp(api: Api) -> None:
    old = int(time.time() * 1000) - 10 * 60 * 1000
    status, body = await api.call("GET", "/v1/rooms", headers=api.mauth(timestamp=old))
    assert_error(status, body, 401, 1101, "mauth_timestamp", "old")


async def test_mauth_replayed_nonce(api: Api) -> None:
    headers = api.mauth()
    status, _ = await api.call("GET", "/v1/rooms", headers=headers)
    assert status == 200
    status, body = await api.call("GET", "/v1/rooms", headers=headers)
    assert_error(status, body, 401, 1101, "replayed")
    # A fresh nonce is fine.
    status, _ = await api.call("GET", "/v1/rooms")
    assert status == 200


async def test_malformed_mauth_header(api: Api) -> None:
    headers = {"Authorization": "MAuth realm=x,mauth_serviceid=default"}
    status, body = await api.call("GET", "/v1/rooms", headers=headers)
    assert_error(status, body, 401, 1101, "missing")


async def test_bearer_service_key(api: Api) -> None:
    headers = {"Authorization": f"Bearer {api.service.key}"}
    status, rooms = await api.call("GET", "/v1/rooms", headers=headers)
    assert status == 200 and rooms[0]["name"] == "default"
    status, body = await api.call("GET", "/v1/rooms", headers={"Authorization": "Bearer nope"})
    assert_error(status, body, 401, 1101)


async def test_bearer_service_key_picks_the_right_service(api: Api) -> None:
    other = api.add_service()
    room = await create_room(api, "mine")
    status, _ = await api.call(
        "GET", f"/v1/rooms/{room['_id']}", headers={"Authorization": f"Bearer {other.key}"}
    )
    assert status == 404


async def test_bearer_jwt(api: Api) -> None:
    now = int(time.time())
    token = jwt.encode({"iss": api.service.id, "exp": now + 60}, api.service.key, "HS256")
    status, rooms = await api.call("GET", "/v1/rooms", headers={"Authorization": f"Bearer {token}"})
    assert status == 200 and rooms[0]["name"] == "default"


@pytest.mark.parametrize(
    ("claims", "key", "message"),
    [
        ({"exp": -60}, None, "expired"),
        ({"exp": 60}, "wrong-key-wrong-key-wrong-key-wrong", "signature does not match"),
        ({}, None, "'exp'"),
        ({"exp": 60, "iss": "ghost"}, None, "names no service"),
        ({"exp": 60, "iss": None}, None, "'iss'"),
    ],
)
async def test_bearer_jwt_refused(
    api: Api, claims: dict[str, Any], key: str | None, message: str
) -> None:
    payload: dict[str, Any] = {"iss": api.service.id, **claims}
    if payload["iss"] is None:
        del payload["iss"]
    if "exp" in payload:
        payload["exp"] += int(time.time())
    token = jwt.encode(payload, key or api.service.key, "HS256")
    status, body = await api.call("GET", "/v1/rooms", headers={"Authorization": f"Bearer {token}"})
    assert_error(status, body, 401, 1101, message)


async def test_join_token_jwt_does_not_open_the_api(api: Api) -> None:
    # A participant holds a join token whose inner JWT is signed with the service key.
    token = issue_token(
        service_id=api.service.id,
        key=api.service.key,
        room="r",
        user="mallory",
        role="presenter",
        host="h:1",
        secure=False,
        lifetime=60,
    )
    inner = json.loads(base64.b64decode(token))["signature"]
    status, body = await api.call("GET", "/v1/rooms", headers={"Authorization": f"Bearer {inner}"})
    assert_error(status, body, 401, 1101, "join token")


async def test_no_auth(api: Api) -> None:
    for method, path in [
        ("GET", "/v1/rooms"),
        ("POST", "/v1/rooms"),
        ("DELETE", "/v1/rooms/whatever"),
        ("GET", "/v1.1/rooms/x/streams"),
        ("GET", "/v1/no-such-thing"),
    ]:
        async with api.session.request(method, api.base + path) as response:
            body = await response.json()
            assert_error(response.status, body, 401, 1101, "Authorization header is missing")
            assert "MAuth" in response.headers["WWW-Authenticate"]
    status, body = await api.call("GET", "/v1/rooms", headers={"Authorization": "Basic Zm9v"})
    assert_error(status, body, 401, 1101, "not supported")


# -- rooms ----------------------------------------------------------------------


async def test_room_crud(api: Api) -> None:
    room = await create_room(api, "Lobby", participantLimit=10)
    room_id = room["_id"]
    assert room["id"] == room_id and len(room_id) == 24
    assert room["name"] == "Lobby"
    assert room["participantLimit"] == 10
    assert room["inputLimit"] == -1  # defaults filled in, OWT's shape
    assert {r["role"] for r in room["roles"]} >= {"presenter", "viewer"}
    assert room["views"][0]["label"] == "common"

    status, got = await api.call("GET", f"/v1/rooms/{room_id}")
    assert status == 200 and got == room
    status, got = await api.call("GET", f"/v1/rooms/{room_id}/")  # OWT clients add a slash
    assert status == 200 and got == room

    # PATCH merges.
    status, patched = await api.call(
        "PATCH", f"/v1/rooms/{room_id}", {"inputLimit": 4, "notifying": {"streamChange": False}}
    )
    assert status == 200, patched
    assert patched["inputLimit"] == 4 and patched["participantLimit"] == 10
    assert patched["notifying"] == {"participantActivities": True, "streamChange": False}
    assert patched["name"] == "Lobby"

    # PUT replaces each top-level field it gives, whole (OWT's Object.assign), keeps the rest.
    status, replaced = await api.call(
        "PUT", f"/v1/rooms/{room_id}", {"options": {"inputLimit": 2, "notifying": {}}}
    )
    assert status == 200, replaced
    assert replaced["inputLimit"] == 2 and replaced["participantLimit"] == 10
    assert replaced["notifying"]["streamChange"] is True and replaced["name"] == "Lobby"
    status, renamed = await api.call("PUT", f"/v1/rooms/{room_id}", {"name": "Hall", "options": {}})
    assert status == 200 and renamed["name"] == "Hall"
    # A room object fetched with GET can be sent back as it is (OWT's PUT takes the room).
    renamed["participantLimit"] = 3
    status, again = await api.call("PUT", f"/v1/rooms/{room_id}", renamed)
    assert status == 200 and again == renamed

    status, got = await api.call("GET", f"/v1/rooms/{room_id}")
    assert got == again

    status, text = await api.call("DELETE", f"/v1/rooms/{room_id}")
    assert status == 200 and text == "Room deleted"
    status, body = await api.call("GET", f"/v1/rooms/{room_id}")
    assert_error(status, body, 404, 1003, "Room not found")
    status, body = await api.call("DELETE", f"/v1/rooms/{room_id}")
    assert_error(status, body, 404, 1003)


async def test_update_reaches_a_loaded_room(api: Api) -> None:
    room = await create_room(api, "live")
    loaded = await api.server.conference.find_room(api.service.id, room["_id"], create=False)
    assert loaded is not None
    status, _ = await api.call("PATCH", f"/v1/rooms/{room['_id']}", {"participantLimit": 1})
    assert status == 200
    assert loaded.options.participant_limit == 1
    status, _ = await api.call("DELETE", f"/v1/rooms/{room['_id']}")
    assert status == 200
    assert loaded.closed and room["_id"] not in api.server.rooms


async def test_concurrent_adhoc_lookups_make_one_room(api: Api) -> None:
    # A name and its id, looked up at once, load one room: the store gives the name its id.
    conference = api.server.conference
    first = await conference.find_room(api.service.id, "x", create=True)
    assert first is not None
    rooms = await asyncio.gather(
        *(conference.find_room(api.service.id, ref, create=True) for ref in ["y", "y", "y"]),
        conference.find_room(api.service.id, first.id, create=False),
    )
    assert len({id(r) for r in rooms[:3]}) == 1 and rooms[3] is first
    assert api.server.store.adhoc_room(api.service.id, "y", create=False) == rooms[0].id


async def test_a_join_while_its_room_empties_keeps_the_room(api: Api) -> None:
    # The last participant leaves while a join that found the room runs: the room stays.
    conference = api.server.conference
    service_id = api.service.id

    def request(user: str) -> JoinRequest:
        client = ClientAddress(front_end="portal", key=f"no-such-socket-{user}")
        return JoinRequest(
            service_id=service_id, room="hall", user=user, role="presenter", client=client
        )

    first = await conference.join(request("ann"))
    service = conference.service(service_id)
    room = service.rooms[first.participant.room_id]
    loading = service._loading
    async with loading:  # another room is loading: the two calls below wait their turn
        second = asyncio.ensure_future(conference.join(request("bob")))
        await eventually(lambda: len(loading._waiters or ()) == 1, what="the join waits")
        leaving = asyncio.ensure_future(conference.leave(first.participant))
        await eventually(lambda: len(loading._waiters or ()) == 2, what="the unload waits")
    joined = await second
    await leaving
    assert joined.participant.room_id == room.id
    assert not room.closed and service.rooms.get(room.id) is room
    assert list(room.participants) == [joined.participant.participant_id]
    await conference.leave(joined.participant)
    assert room.closed and room.id not in service.rooms


async def test_room_paging(api: Api) -> None:
    names = [f"r{i}" for i in range(7)]
    for name in names:
        await create_room(api, name)
    everything = ["default", *names]
    status, rooms = await api.call("GET", "/v1/rooms")
    assert [r["name"] for r in rooms] == everything
    pages = []
    for page in (1, 2, 3, 4):
        status, rooms = await api.call("GET", f"/v1/rooms?page={page}&per_page=3")
        assert status == 200
        pages.append([r["name"] for r in rooms])
    assert pages == [everything[0:3], everything[3:6], everything[6:8], []]
    status, rooms = await api.call("GET", "/v1/rooms?per_page=2")
    assert [r["name"] for r in rooms] == everything[:2]
    for query, field in [
        ("page=0", "page"),
        ("page=x", "page"),
        ("per_page=-1", "per_page"),
        ("per_page=100000", "per_page"),
    ]:
        status, body = await api.call("GET", f"/v1/rooms?{query}")
        assert_error(status, body, 400, 1201, field)


async def test_adhoc_rooms_are_listed_readable_deletable_not_editable(api: Api) -> None:
    for name in ("a", "b"):
        await create_room(api, name)
    adhoc = await api.server.conference.find_room(api.service.id, "drop-in", create=True)
    assert adhoc is not None and not adhoc.persistent
    status, rooms = await api.call("GET", "/v1/rooms")
    assert [r["name"] for r in rooms] == ["default", "a", "b", "drop-in"]
    status, rooms = await api.call("GET", "/v1/rooms?page=2&per_page=3")
    assert [r["name"] for r in rooms] == ["drop-in"]
    status, rooms = await api.call("GET", "/v1/rooms?page=2&per_page=2")
    assert [r["name"] for r in rooms] == ["b", "drop-in"]
    status, rooms = await api.call("GET", "/v1/rooms?page=3&per_page=2")
    assert rooms == []

    status, room = await api.call("GET", f"/v1/rooms/{adhoc.id}")
    assert status == 200 and room["_id"] == adhoc.id and room["name"] == "drop-in"
    for method in ("PUT", "PATCH"):
        status, body = await api.call(method, f"/v1/rooms/{adhoc.id}", {"inputLimit": 1})
        assert_error(status, body, 409, 1201, "ad-hoc")
    status, _ = await api.call("DELETE", f"/v1/rooms/{adhoc.id}")
    assert status == 200
    assert adhoc.closed and adhoc.id not in api.server.rooms


@pytest.mark.parametrize(
    ("method", "body", "status", "words"),
    [
        ("PATCH", {"participantLimit": "ten"}, 400, ["participantLimit"]),
        ("PATCH", {"inputLimt": 3}, 400, ["inputLimt"]),
        ("PATCH", {"views": [{"label": "bad label!"}]}, 400, ["views.0.label"]),
        (
            "PATCH",
            {"views": [{"video": {"parameters": {"framerate": 1000}}}]},
            400,
            ["views.0.video.parameters.framerate"],
        ),
        ("PATCH", {"options": {"participantLimit": -5}}, 400, ["options.participantLimit"]),
        ("PATCH", {"options": [], "name": "x"}, 400, ["options must be a JSON object"]),
        ("PATCH", {"options": {}, "colour": "red"}, 400, ["colour"]),
        ("PATCH", {"name": ""}, 400, ["name"]),
        ("PATCH", {"name": 5}, 400, ["name"]),
        ("PATCH", {"_id": "000000000000000000000000"}, 400, ["_id"]),
        ("PUT", {"options": {"roles": [{"role": "a"}, {"role": "a"}]}}, 400, ["duplicate role"]),
        ("PUT", {"name": "x" * 300}, 400, ["name"]),
    ],
)
async def test_room_update_validation(
    api: Api, method: str, body: Any, status: int, words: list[str]
) -> None:
    room = await create_room(api, "strict", inputLimit=7)
    got_status, got = await api.call(method, f"/v1/rooms/{room['_id']}", body)
    assert_error(got_status, got, status, 1201, *words)
    status2, unchanged = await api.call("GET", f"/v1/rooms/{room['_id']}")
    assert status2 == 200 and unchanged == room


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({}, ["name"]),
        ({"name": ""}, ["name"]),
        ({"name": ["x"]}, ["name"]),
        ({"name": "x\u0000y"}, ["name"]),
        ({"name": "x", "options": "big"}, ["options must be a JSON object"]),
        ({"name": "x", "options": {"views": 3}}, ["options.views"]),
        ({"name": "x", "options": {}, "extra": 1}, ["extra"]),
        ({"name": "x", "_id": "abc"}, ["_id"]),
    ],
)
async def test_room_create_validation(api: Api, body: Any, words: list[str]) -> None:
    status, got = await api.call("POST", "/v1/rooms", body)
    assert_error(status, got, 400, 1201, *words)
    status, rooms = await api.call("GET", "/v1/rooms")
    assert [r["name"] for r in rooms] == ["default"]


async def test_room_survives_restart(tmp_path: Path) -> None:
    async with aiohttp.ClientSession() as session:
        runner = await start(tmp_path)
        try:
            api = Api(runner, session)
            room = await create_room(api, "durable", inputLimit=5)
            status, _ = await api.call("PATCH", f"/v1/rooms/{room['_id']}", {"participantLimit": 9})
            assert status == 200
        finally:
            await runner.cleanup()

        runner = await start(tmp_path)
        try:
            api = Api(runner, session)
            status, got = await api.call("GET", f"/v1/rooms/{room['_id']}")
            assert status == 200, got
            assert got["name"] == "durable"
            assert got["inputLimit"] == 5 and got["participantLimit"] == 9
        finally:
            await runner.cleanup()


# -- services are isolated ----------------------------------------------------


async def test_services_are_isolated(api: Api) -> None:
    other = api.add_service()
    mine = await create_room(api, "same-name")
    status, theirs = await api.call(
        "POST", "/v1/rooms", {"name": "same-name"}, headers=api.mauth(other)
    )
    assert status == 200 and theirs["_id"] != mine["_id"]

    status, rooms = await api.call("GET", "/v1/rooms", service=other)
    assert [r["_id"] for r in rooms] == [theirs["_id"]]

    room_path = f"/v1/rooms/{mine['_id']}"
    requests: list[tuple[str, str, Any]] = [
        ("GET", room_path, None),
        ("PATCH", room_path, {"inputLimit": 1}),
        ("PUT", room_path, {"options": {}}),
        ("DELETE", room_path, None),
        ("POST", f"{room_path}/tokens", {"user": "eve", "role": "presenter"}),
        ("GET", f"{room_path}/participants", None),
        ("GET", f"/v1.1/rooms/{mine['_id']}/streams", None),
    ]
    for method, path, body in requests:
        status, body = await api.call(method, path, body, service=other)
        assert_error(status, body, 404, 1003, "Room not found")

    # Ad-hoc rooms are scoped too.
    adhoc = await api.server.conference.find_room(api.service.id, "drop-in", create=True)
    assert adhoc is not None
    status, body = await api.call("GET", f"/v1/rooms/{adhoc.id}", service=other)
    assert status == 404
    status, rooms = await api.call("GET", "/v1/rooms", service=other)
    assert [r["_id"] for r in rooms] == [theirs["_id"]]

    status, got = await api.call("GET", room_path)
    assert status == 200 and got == mine


# -- tokens ---------------------------------------------------------------------


async def test_token(api: Api) -> None:
    room = await create_room(api, "meet")
    status, token = await api.call(
        "POST",
        f"/v1/rooms/{room['_id']}/tokens",
        {"user": "alice", "role": "presenter", "preference": {"isp": "isp", "region": "region"}},
    )
    assert status == 200 and isinstance(token, str), token
    claims = verify_token(token, api.service.key)
    assert (claims.service, claims.room, claims.user, claims.role) == (
        api.service.id,
        room["_id"],
        "alice",
        "presenter",
    )
    envelope = json.loads(base64.b64decode(token))
    assert envelope["host"] == f"127.0.0.1:{api.port}" and envelope["secure"] is False


async def test_token_user_and_role_from_mauth_header(api: Api) -> None:
    room = await create_room(api, "meet")
    username = base64.b64encode("Zoë".encode()).decode()
    headers = api.mauth(username=username, role="viewer")
    status, token = await api.call("POST", f"/v1/rooms/{room['_id']}/tokens", {}, headers=headers)
    assert status == 200, token
    claims = verify_token(token, api.service.key)
    assert (claims.user, claims.role) == ("Zoë", "viewer")


async def test_token_for_adhoc_room(api: Api) -> None:
    adhoc = await api.server.conference.find_room(api.service.id, "drop-in", create=True)
    assert adhoc is not None
    status, token = await api.call(
        "POST", f"/v1/rooms/{adhoc.id}/tokens", {"user": "bob", "role": "viewer"}
    )
    assert status == 200
    assert verify_token(token, api.service.key).room == adhoc.id


async def test_token_custom_role(api: Api) -> None:
    room = await create_room(api, "meet", roles=[{"role": "host", "publish": {"audio": True}}])
    path = f"/v1/rooms/{room['_id']}/tokens"
    status, token = await api.call("POST", path, {"user": "h", "role": "host"})
    assert status == 200 and verify_token(token, api.service.key).role == "host"
    status, body = await api.call("POST", path, {"user": "p", "role": "presenter"})
    assert_error(status, body, 400, 1201, "presenter", "roles: host")


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"user": "alice", "role": "emperor"}, ["role 'emperor' is not a role"]),
        ({"user": "alice"}, ["role"]),
        ({"role": "presenter"}, ["user"]),
        ({"user": "", "role": "presenter"}, ["user"]),
        ({"user": 7, "role": "presenter"}, ["user"]),
        ({"user": "alice", "role": ["presenter"]}, ["role"]),
        ({"user": "alice", "role": "presenter", "preference": "fast"}, ["preference"]),
        ({"user": "alice", "role": "presenter", "room": "x"}, ["room", "unknown field"]),
        (["alice", "presenter"], ["JSON object", "array"]),
    ],
)
async def test_token_refused(api: Api, body: Any, words: list[str]) -> None:
    room = await create_room(api, "meet")
    status, got = await api.call("POST", f"/v1/rooms/{room['_id']}/tokens", body)
    assert_error(status, got, 400, 1201, *words)


async def test_token_unknown_room(api: Api) -> None:
    status, body = await api.call(
        "POST", "/v1/rooms/0123456789abcdef01234567/tokens", {"user": "a", "role": "presenter"}
    )
    assert_error(status, body, 404, 1003, "Room not found")


# -- origins --------------------------------------------------------------------


async def test_origin_refused(api: Api) -> None:
    other = api.add_service(allowed_origins=["https://app.example"])
    headers = api.mauth(other)
    headers["Origin"] = "https://evil.example"
    status, body = await api.call("GET", "/v1/rooms", headers=headers)
    assert_error(status, body, 403, 1102, "https://evil.example")

    headers = api.mauth(other)
    headers["Origin"] = "https://app.example"
    async with api.session.get(api.base + "/v1/rooms", headers=headers) as response:
        assert response.status == 200
        assert response.headers["Access-Control-Allow-Origin"] == "https://app.example"

    # No Origin (a server, curl) is not a browser: allowed.
    status, _ = await api.call("GET", "/v1/rooms", service=other)
    assert status == 200
    # A service without a list accepts any origin.
    headers = api.mauth()
    headers["Origin"] = "https://evil.example"
    status, _ = await api.call("GET", "/v1/rooms", headers=headers)
    assert status == 200


async def test_cors_preflight(api: Api) -> None:
    headers = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    async with api.session.options(api.base + "/v1/rooms", headers=headers) as response:
        assert response.status == 204
        assert response.headers["Access-Control-Allow-Origin"] == "https://app.example"
        assert "Authorization" in response.headers["Access-Control-Allow-Headers"]


# -- participants and streams (no clients yet: 404 and validation paths) ---------


async def test_participants_and_streams_of_a_room_nobody_is_in(api: Api) -> None:
    room = await create_room(api, "empty")
    base = f"/v1/rooms/{room['_id']}"
    status, participants = await api.call("GET", f"{base}/participants")
    assert status == 200 and participants == []
    for prefix in ("/v1", "/v1.1"):
        status, streams = await api.call("GET", f"{prefix}/rooms/{room['_id']}/streams")
        assert status == 200 and streams == []

    patch = [{"op": "replace", "path": "/permission/publish/audio", "value": False}]
    calls: list[tuple[str, Any]] = [("GET", None), ("PATCH", patch), ("DELETE", None)]
    for method, body in calls:
        status, got = await api.call(method, f"{base}/participants/nobody", body)
        assert_error(status, got, 404, 1005, "Participant not found")
    status_patch = [{"op": "replace", "path": "/media/audio/status", "value": "inactive"}]
    calls = [("GET", None), ("PATCH", status_patch), ("DELETE", None)]
    for method, body in calls:
        status, got = await api.call(method, f"/v1.1/rooms/{room['_id']}/streams/nothing", body)
        assert_error(status, got, 404, 1004, "Stream not found")

    status, got = await api.call("GET", "/v1/rooms/0123456789abcdef01234567/participants")
    assert_error(status, got, 404, 1003)
    status, got = await api.call("GET", "/v1.1/rooms/0123456789abcdef01234567/streams/s")
    assert_error(status, got, 404, 1003)


async def test_participant_get_patch_and_drop(api: Api) -> None:
    # A participant whose Socket.IO connection is away (no sid): everything but media is real.
    room_json = await create_room(api, "people")
    room = await api.server.conference.find_room(api.service.id, room_json["_id"], create=False)
    assert room is not None
    permission = room.permission_for("presenter")
    assert permission is not None
    context = api.server.conference.context
    alice = Participant("alice-id", "alice", "presenter", permission, room, context, None)
    room.add_participant(alice)
    base = f"/v1/rooms/{room.id}/participants"

    status, listed = await api.call("GET", base)
    # OWT's ParticipantDetail, exactly, and Tessera's webrtc subscriptions.
    assert status == 200 and listed == [
        {
            "id": alice.id,
            "user": "alice",
            "role": "presenter",
            "permission": alice.permission,
            "subscriptions": [],
        }
    ]
    assert listed[0]["permission"]["publish"] == {"audio": True, "video": True}
    status, one = await api.call("GET", f"/v1.1/rooms/{room.id}/participants/{alice.id}")
    assert status == 200 and one["user"] == "alice" and one["role"] == "presenter"

    patch = [
        {"op": "replace", "path": "/permission/publish/video", "value": False},
        {
            "op": "replace",
            "path": "/permission/subscribe",
            "value": {"audio": True, "video": False},
        },
    ]
    status, updated = await api.call("PATCH", f"{base}/{alice.id}", patch)
    assert status == 200, updated
    assert updated["permission"] == {
        "publish": {"audio": True, "video": False},
        "subscribe": {"audio": True, "video": False},
    }
    assert alice.permission == updated["permission"]

    # A bad operation anywhere refuses the whole patch.
    bad = [
        {"op": "replace", "path": "/permission/publish/audio", "value": False},
        {"op": "replace", "path": "/permission/everything", "value": True},
    ]
    status, body = await api.call("PATCH", f"{base}/{alice.id}", bad)
    assert_error(status, body, 400, 1201, "[1].path", "/permission/everything")
    assert alice.permission["publish"]["audio"] is True
    status, body = await api.call("PATCH", f"{base}/{alice.id}", {"publish": False})
    assert_error(status, body, 400, 1201, "JSON array")

    status, text = await api.call("DELETE", f"{base}/{alice.id}")
    assert status == 200 and text == ""  # OWT's DELETE answers an empty body
    assert alice.closed and alice.id not in room.participants
    assert room.id not in api.server.rooms  # the last one left: the stored room is unloaded
    status, listed = await api.call("GET", base)
    assert status == 200 and listed == []
    status, body = await api.call("GET", f"{base}/{alice.id}")
    assert_error(status, body, 404, 1005)


async def test_patch_validation_is_pure_and_names_the_problem() -> None:
    # The JSON-patch checks run before any participant or stream is touched; test them directly.
    from tessera.conference.errors import ConferenceError
    from tessera.conference.management import _stream_change
    from tessera.conference.permissions import apply_permission as _apply_permission
    from tessera.conference.permissions import permission_copy as _permission_copy
    from tessera.portal.rest.bodies import expect_patch
    from tessera.portal.rest.errors import RestError

    permission = _permission_copy(
        {"publish": {"audio": True, "video": True}, "subscribe": {"audio": True, "video": True}}
    )
    _apply_permission(
        permission, {"op": "replace", "path": "/permission/publish/audio", "value": False}, "[0]"
    )
    _apply_permission(
        permission, {"op": "replace", "path": "/permission/subscribe", "value": False}, "[1]"
    )
    assert permission == {
        "publish": {"audio": False, "video": True},
        "subscribe": {"audio": False, "video": False},
    }
    _apply_permission(
        permission,
        {
            "op": "replace",
            "path": "/permission/subscribe",
            "value": {"audio": True, "video": False},
        },
        "[2]",
    )
    assert permission["subscribe"] == {"audio": True, "video": False}

    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({"op": "replace", "path": "/permission/speak", "value": True}, ["[0].path"]),
        ({"op": "add", "path": "/permission/publish", "value": True}, ["[0].op"]),
        ({"op": "replace", "path": "/permission/publish/audio", "value": 1}, ["[0].value"]),
        ({"op": "replace", "path": "/permission/publish", "value": {"audio": True}}, ["video"]),
        (
            {"op": "replace", "path": "/permission/publish", "value": {"audio": 1, "video": 1}},
            ["value.audio"],
        ),
        (
            {"op": "replace", "path": "/permission/publish", "value": {"screen": True}},
            ["value.screen"],
        ),
    ]
    for operation, words in cases:
        with pytest.raises(ConferenceError) as info:
            _apply_permission(permission, operation, "[0]")
        assert info.value.status == 400
        for word in words:
            assert word in info.value.message

    class FakeStream:
        id = "s1"
        type = "forward"

        def has_track(self, kind: str) -> bool:
            return kind == "video"

    class FakeRoom:
        views: dict[str, Any] = {"common": object()}

        def __init__(self) -> None:
            self.calls: list[tuple[Any, ...]] = []

        def set_track_status(self, stream_id: str, kind: str, active: bool) -> None:
            self.calls.append(("status", stream_id, kind, active))

        def mix(self, stream_id: str, label: str) -> None:
            self.calls.append(("mix", stream_id, label))

    stream: Any = FakeStream()
    room: Any = FakeRoom()
    change = _stream_change(
        room, stream, {"op": "replace", "path": "/media/video/status", "value": "inactive"}, "[0]"
    )
    assert room.calls == []  # checked, not applied yet
    change()
    assert room.calls == [("status", "s1", "video", False)]
    _stream_change(room, stream, {"op": "add", "path": "/info/inViews", "value": "common"}, "[0]")()
    assert room.calls[-1] == ("mix", "s1", "common")
    cases = [
        ({"op": "replace", "path": "/media/audio/status", "value": "inactive"}, ["no audio"]),
        ({"op": "replace", "path": "/media/video/status", "value": "off"}, ["[0].value"]),
        ({"op": "remove", "path": "/media/video/status", "value": "active"}, ["[0].op"]),
        ({"op": "add", "path": "/info/inViews", "value": "nope"}, ["does NOT exist"]),
        ({"op": "replace", "path": "/info/inViews", "value": "common"}, ["[0].op"]),
        ({"op": "replace", "path": "/info/layout", "value": []}, ["only a mixed stream"]),
        (
            {"op": "replace", "path": "/info/layout/0/stream", "value": "s1"},
            ["only a mixed stream"],
        ),
        ({"op": "replace", "path": "/info/owner", "value": "x"}, ["[0].path"]),
    ]
    for operation, words in cases:
        with pytest.raises(ConferenceError) as info:
            _stream_change(room, stream, operation, "[0]")
        assert 400 <= info.value.status < 500
        for word in words:
            assert word in info.value.message

    for data, words in [
        ({}, ["JSON array"]),
        ([], ["empty"]),
        ([1], ["[0]"]),
        ([{"op": "replace", "path": "/x"}], ["[0].value"]),
        ([{"op": "replace", "path": 3, "value": 1}], ["[0].path"]),
        ([{"op": "replace", "path": "/x", "value": 1, "from": "/y"}], ["[0].from"]),
        ([{"op": "replace", "path": "/x", "value": 1}] * 100, ["At most"]),
    ]:
        with pytest.raises(RestError) as info:
            expect_patch(data)
        for word in words:
            assert word in info.value.message


# -- bad inputs -------------------------------------------------------------------


async def test_bad_inputs_then_still_serving(api: Api) -> None:
    room = await create_room(api, "target")
    room_path = f"/v1/rooms/{room['_id']}"

    def json_headers() -> dict[str, str]:
        return {**api.mauth(), "Content-Type": "application/json"}

    status, body = await api.call("POST", "/v1/rooms", data=b'{"name": ', headers=json_headers())
    assert_error(status, body, 400, 1201, "not valid JSON")

    status, body = await api.call("POST", "/v1/rooms", ["name", "x"])
    assert_error(status, body, 400, 1201, "JSON object", "array")

    status, body = await api.call("POST", "/v1/rooms", data=b"", headers=api.mauth())
    assert_error(status, body, 400, 1201, "empty")

    status, body = await api.call(
        "POST",
        "/v1/rooms",
        data=b'{"name": "x", "options": {"inputLimit": NaN}}',
        headers=api.mauth(),
    )
    assert_error(status, body, 400, 1201, "NaN")

    status, body = await api.call(
        "POST", "/v1/rooms", data=b"[" * 100_000 + b"]" * 100_000, headers=api.mauth()
    )
    assert_error(status, body, 400, 1201)

    big = json.dumps({"name": "big", "options": {"sip": {"username": "x" * 1_000_000}}})
    status, body = await api.call("POST", "/v1/rooms", data=big, headers=json_headers())
    assert_error(status, body, 413, 1201, "larger than")

    status, body = await api.call("PATCH", room_path, data=b"\xff\xfe{", headers=api.mauth())
    assert_error(status, body, 400, 1201)

    patch = [{"op": "replace", "path": "/permission/everything", "value": True}]
    status, body = await api.call("PATCH", f"{room_path}/participants/p", patch)
    assert_error(status, body, 404, 1005)

    status, body = await api.call("GET", "/v1/rooms/" + "%00" * 10)
    assert_error(status, body, 404, 1003)
    status, body = await api.call("GET", "/v1/rooms/" + "a" * 500)
    assert_error(status, body, 404, 1003)
    status, body = await api.call("GET", "/v1/nothing/here")
    assert_error(status, body, 404, 1001)
    status, body = await api.call("POST", room_path, {"name": "x"})
    assert_error(status, body, 405, 1201, "POST")

    # The server still answers, and nothing was stored by the refused requests.
    status, rooms = await api.call("GET", "/v1/rooms")
    assert status == 200
    assert [r["name"] for r in rooms] == ["default", "target"]
    status, token = await api.call("POST", f"{room_path}/tokens", {"user": "u", "role": "viewer"})
    assert status == 200 and verify_token(token, api.service.key).room == room["_id"]


async def test_internal_error_is_a_json_500_not_a_traceback(api: Api) -> None:
    def broken() -> float:
        raise RuntimeError("boom")

    api.app[REST_API_KEY].clock = broken
    status, body = await api.call(
        "GET", "/v1/rooms", headers={"Authorization": "MAuth mauth_serviceid=default"}
    )
    assert status == 401  # parse errors come before the clock is read
    status, body = await api.call("GET", "/v1/rooms")
    assert_error(status, body, 500, 2001, "Internal error")
    assert "boom" not in json.dumps(body)


async def test_other_paths_are_left_alone(api: Api) -> None:
    # The middleware only guards the REST API; Socket.IO's endpoint answers as before.
    async with api.session.get(api.base + "/socket.io/?EIO=4&transport=polling") as response:
        assert response.status == 200

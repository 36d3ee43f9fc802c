"""Recordings stay reachable by their service for as long as their files exist, whatever
became of their room (issue 22 item 5): after an ad-hoc room ended, after a room was
deleted while recording; by the room's id, and by the service's list ``/v1/recordings``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from tessera.conference.store import ServiceRecord
from tessera_client import ConferenceClient
from tests.eventually import eventually
from tests.integration.test_recording import read_file, recorded, wait_state
from tests.support import RunningServer, api, rest_call, room_with
from tests.synthetic import ColorVideoTrack, ToneTrack

KEY = "o" * 43


async def record_a_while(tessera: RunningServer, room: str) -> tuple[ConferenceClient, str, str]:
    """A publisher in ``room`` (a name or an id) being recorded: (client, room id, rec id)."""
    client = ConferenceClient()
    await client.join(tessera.token(room=room, user="Ada"))
    pub = await client.publish(video=ColorVideoTrack((200, 40, 40)), audio=ToneTrack(440, 0.2))
    await pub.wait_ready()
    room_id = str(client.room_id)
    media = {"audio": {"from": pub.id}, "video": {"from": pub.id}}
    status, rec = await api(tessera, "POST", f"/v1/rooms/{room_id}/recordings", {"media": media})
    assert status == 200, rec
    key = tessera.server.default_service.key
    await recorded(tessera.url, key, room_id, rec["id"], 1.0)
    return client, room_id, str(rec["id"])


async def assert_reachable(tessera: RunningServer, room_id: str, rec_id: str) -> dict[str, Any]:
    """GET by the room's id and by the service, the lists, and both downloads."""
    status, info = await api(tessera, "GET", f"/v1/rooms/{room_id}/recordings/{rec_id}")
    assert status == 200, info
    assert info["id"] == rec_id and info["state"] == "stopped", info
    status, listed = await api(tessera, "GET", f"/v1/rooms/{room_id}/recordings?state=all")
    assert status == 200 and [r["id"] for r in listed] == [rec_id], listed
    status, by_service = await api(tessera, "GET", f"/v1/recordings/{rec_id}")
    assert status == 200 and by_service == {**info, "room": room_id}, by_service
    status, everything = await api(tessera, "GET", "/v1.1/recordings")
    assert status == 200 and {**info, "room": room_id} in everything, everything
    path = Path(info["storage"]["file"])
    for url in (f"/v1/rooms/{room_id}/recordings/{rec_id}/file", f"/v1/recordings/{rec_id}/file"):
        status, body = await api(tessera, "GET", url)
        assert status == 200 and body == path.read_bytes(), (url, status)
    return dict(info)


async def test_recordings_of_an_ended_adhoc_room(tessera: RunningServer) -> None:
    client, room_id, rec_id = await record_a_while(tessera, "adhoc-for-a-while")
    status, _ = await api(tessera, "DELETE", f"/v1/rooms/{room_id}/recordings/{rec_id}")
    assert status == 200
    await client.leave()
    # The ad-hoc room is gone: its id names no room any more.
    await eventually(lambda: room_id not in tessera.server.rooms, what="the ad-hoc room ended")
    status, body = await api(tessera, "GET", f"/v1/rooms/{room_id}")
    assert status == 404, body
    info = await assert_reachable(tessera, room_id, rec_id)
    assert read_file(Path(info["storage"]["file"]))["frames"] > 0
    # The download is an attachment named as the file is.
    headers = {"Authorization": f"Bearer {tessera.server.default_service.key}"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{tessera.url}/v1/recordings/{rec_id}/file", headers=headers) as response,
    ):
        assert response.status == 200
        disposition = response.headers["Content-Disposition"]
    assert disposition == f'attachment; filename="{rec_id}.mkv"'


async def test_recordings_of_a_room_deleted_while_recording(tessera: RunningServer) -> None:
    room_id = await room_with(tessera, "short-lived")
    client, _, rec_id = await record_a_while(tessera, room_id)
    status, body = await api(tessera, "DELETE", f"/v1/rooms/{room_id}")
    assert status == 200, body
    await eventually(lambda: room_id not in tessera.server.rooms, what="the room closed")
    # The recording stops with its room; its record says so once the store has it.
    await wait_state(tessera, room_id, rec_id, "stopped")
    info = await assert_reachable(tessera, room_id, rec_id)
    assert info.get("reason"), info  # stopped because its room closed
    await client.leave()


async def test_another_service_never_sees_them(tessera: RunningServer) -> None:
    client, room_id, rec_id = await record_a_while(tessera, "mine")
    tessera.server.store.put_service(ServiceRecord(id="other", key=KEY))
    for path in (
        f"/v1/recordings/{rec_id}",
        f"/v1/recordings/{rec_id}/file",
        f"/v1/rooms/{room_id}/recordings/{rec_id}",
    ):
        status, body = await rest_call(tessera.url, KEY, "GET", path)
        assert status == 404, (path, body)
    status, listed = await rest_call(tessera.url, KEY, "GET", "/v1/recordings")
    assert status == 200 and listed == [], listed
    # Its own: the running one is listed as running, and cannot be downloaded yet.
    status, listed = await api(tessera, "GET", "/v1/recordings?state=recording")
    assert [(r["id"], r["room"], r["state"]) for r in listed] == [(rec_id, room_id, "recording")]
    status, body = await api(tessera, "GET", f"/v1/recordings/{rec_id}/file")
    assert status == 409, body
    status, body = await api(tessera, "GET", "/v1/recordings?state=paused")
    assert status == 400 and "state must be one of" in body["error"]["message"], body
    status, body = await api(tessera, "GET", "/v1/recordings/nope")
    assert status == 404, body
    await client.leave()

"""REST participants and streams against real clients in a room."""

from __future__ import annotations

from tessera_client import ConferenceClient
from tests.support import RunningServer, api
from tests.synthetic import ColorVideoTrack


async def test_rest_token_participants_streams(tessera: RunningServer) -> None:
    status, room = await api(tessera, "POST", "/v1/rooms", {"name": "weekly", "options": {}})
    assert status == 200
    room_id = room["id"]
    status, token = await api(
        tessera, "POST", f"/v1/rooms/{room_id}/tokens", {"user": "alice", "role": "presenter"}
    )
    assert status == 200
    alice = ConferenceClient()
    await alice.join(token)
    assert alice.room_id == room_id
    _, token = await api(
        tessera, "POST", f"/v1/rooms/{room_id}/tokens", {"user": "bob", "role": "presenter"}
    )
    bob = ConferenceClient()
    await bob.join(token)

    status, people = await api(tessera, "GET", f"/v1/rooms/{room_id}/participants")
    assert status == 200 and {p["user"] for p in people} == {"alice", "bob"}

    publication = await alice.publish(video=ColorVideoTrack((200, 0, 0)))
    await publication.wait_ready()
    status, streams = await api(tessera, "GET", f"/v1.1/rooms/{room_id}/streams")
    assert status == 200
    assert sorted(s["id"] for s in streams) == sorted([publication.id, f"{room_id}-common"])

    # Pause over REST: everyone is told.
    status, _ = await api(
        tessera,
        "PATCH",
        f"/v1.1/rooms/{room_id}/streams/{publication.id}",
        [{"op": "replace", "path": "/media/video/status", "value": "inactive"}],
    )
    assert status == 200
    update = await bob.next_event(
        "stream", lambda d: d["status"] == "update" and d["id"] == publication.id
    )
    assert update["data"] == {"field": "video.status", "value": "inactive"}

    # Take away Bob's right to publish: his next publish is refused.
    status, info = await api(
        tessera,
        "PATCH",
        f"/v1/rooms/{room_id}/participants/{bob.participant_id}",
        [{"op": "replace", "path": "/permission/publish", "value": False}],
    )
    assert status == 200 and info["permission"]["publish"] == {"audio": False, "video": False}
    try:
        await bob.publish(video=ColorVideoTrack((0, 0, 200)))
        raise AssertionError("publish should have been refused")
    except Exception as exc:
        assert "Permission denied" in str(exc)

    # Delete the stream over REST: Bob hears it is gone.
    status, _ = await api(tessera, "DELETE", f"/v1.1/rooms/{room_id}/streams/{publication.id}")
    assert status == 200
    removed = await bob.next_event("stream", lambda d: d["status"] == "remove")
    assert removed["id"] == publication.id

    # Kick Bob: he gets `drop`, Alice sees him leave.
    status, _ = await api(
        tessera, "DELETE", f"/v1/rooms/{room_id}/participants/{bob.participant_id}"
    )
    assert status == 200
    await bob.next_event("drop")
    left = await alice.next_event("participant", lambda d: d["action"] == "leave")
    assert left["data"] == bob.participant_id
    await alice.leave()
    await bob.leave()
    # The REST room persists after everyone left.
    status, again = await api(tessera, "GET", f"/v1/rooms/{room_id}")
    assert status == 200 and again["name"] == "weekly"

"""RoomState: the room as the login reply and the participant/stream pushes describe it."""

from __future__ import annotations

from typing import Any

from tessera_client.roomstate import RoomState


def login_reply() -> dict[str, Any]:
    return {
        "id": "me",
        "user": "alice",
        "role": "presenter",
        "room": {
            "id": "r1",
            "participants": [{"id": "p2", "user": "bob", "role": "viewer"}, "junk", {"no": "id"}],
            "streams": [{"id": "s1", "type": "forward", "info": {"owner": "p2"}}, 7],
        },
    }


def test_login_lists_the_room_and_this_client() -> None:
    room = RoomState()
    room.apply_login(login_reply())
    assert room.participant_id == "me" and room.room_id == "r1"
    assert set(room.participants) == {"p2", "me"}
    assert room.participants["me"] == {"id": "me", "user": "alice", "role": "presenter"}
    assert list(room.streams) == ["s1"]


def test_participants_join_and_leave() -> None:
    room = RoomState()
    room.apply_login(login_reply())
    room.apply_participant({"action": "join", "data": {"id": "p3", "user": "carol"}})
    room.apply_participant({"action": "leave", "data": "p2"})
    room.apply_participant({"action": "leave", "data": {"id": "p3"}})
    room.apply_participant("not an object")
    room.apply_participant({"action": "join", "data": {"user": "no id"}})
    assert set(room.participants) == {"me"}


def test_streams_are_added_updated_and_removed() -> None:
    room = RoomState()
    room.apply_login(login_reply())
    added = {"id": "s2", "type": "forward", "info": {"owner": "me", "attributes": {}}}
    assert room.apply_stream({"id": "s2", "status": "add", "data": added}) is None
    update = {"field": "info.attributes", "value": {"name": "cam"}}
    assert room.apply_stream({"id": "s2", "status": "update", "data": update}) is None
    assert room.streams["s2"]["info"]["attributes"] == {"name": "cam"}
    assert added["info"]["attributes"] == {}  # an update builds a new StreamInfo
    assert room.apply_stream({"id": "s1", "status": "remove"}) == "s1"
    assert list(room.streams) == ["s2"]


def test_malformed_stream_pushes_change_nothing() -> None:
    room = RoomState()
    room.apply_login(login_reply())
    before = dict(room.streams)
    assert room.apply_stream(None) is None
    assert room.apply_stream({"id": "s1", "status": "add", "data": "not an object"}) is None
    assert room.apply_stream({"id": "s9", "status": "update", "data": {"field": "x"}}) is None
    assert room.apply_stream({"id": "s1", "status": "update", "data": "no field"}) is None
    assert room.streams == before

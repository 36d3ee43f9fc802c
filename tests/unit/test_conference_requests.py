"""The room service's requests, results, errors and events: plain data, checked (pure)."""

from __future__ import annotations

import json
import pickle
from typing import Any

import pydantic
import pytest

from tessera.conference.errors import ConferenceError, ErrorCode, conflict, not_found
from tessera.conference.events import ClientAddress, LocalRouter
from tessera.conference.permissions import updated_permission
from tessera.conference.requests import (
    JoinRequest,
    JoinResult,
    ParticipantRef,
    PublishRequest,
    PublishTrack,
    SubscribeRequest,
    SubscribeTrack,
    check_tracks,
    media_kinds,
    parse_subscription_update,
    view_label,
)
from tessera.conference.tokens import TokenError

ALL = {"publish": {"audio": True, "video": True}, "subscribe": {"audio": True, "video": True}}


def test_requests_and_results_cross_a_process_as_json() -> None:
    # What a bus between a portal and an agent would carry: JSON both ways, nothing lost.
    address = ClientAddress(front_end="portal", key="sid-1")
    messages: list[pydantic.BaseModel] = [
        JoinRequest(
            service_id="acme",
            room="town",
            user="ada",
            role="presenter",
            client=address,
            reconnection=True,
            keep_time=30,
        ),
        JoinResult(
            participant=ParticipantRef(room_id="r1", participant_id="p1"),
            user="ada",
            role="presenter",
            permission=ALL,
            room={"id": "r1", "views": ["common"], "participants": [], "streams": []},
            ticket="t",
        ),
        PublishRequest(
            tracks=[PublishTrack(kind="video", mid="0", source="camera")], attributes={"a": 1}
        ),
        SubscribeRequest(
            tracks=[SubscribeTrack(kind="audio", stream_id="s1", mid="1")], transport_id="t1"
        ),
    ]
    for message in messages:
        text = json.dumps(message.model_dump(mode="json"))
        assert type(message).model_validate(json.loads(text)) == message


def test_requests_refuse_what_they_do_not_know() -> None:
    with pytest.raises(pydantic.ValidationError):
        PublishRequest.model_validate({"tracks": [{"kind": "screen"}]})
    with pytest.raises(pydantic.ValidationError):
        ParticipantRef.model_validate({"room_id": "r", "participant_id": "p", "sid": "x"})
    with pytest.raises(pydantic.ValidationError):
        ClientAddress.model_validate({"front_end": "", "key": "k"})


def test_an_address_is_a_value() -> None:
    a = ClientAddress(front_end="peer", key="k")
    assert a == ClientAddress(front_end="peer", key="k") and {a: 1}[a] == 1
    assert a != ClientAddress(front_end="portal", key="k")


def test_track_checks_name_the_problem() -> None:
    check_tracks("publish", ["audio", "video"], ["0", "1"])
    check_tracks("publish", ["audio"], ["", ""])  # older clients name no mids
    with pytest.raises(ConferenceError, match="Invalid publish request: one track of each kind"):
        check_tracks("publish", ["video", "video"], ["0", "1"])
    with pytest.raises(ConferenceError, match="two tracks with the same mid"):
        check_tracks("subscribe", ["audio", "video"], ["0", "0"])


def test_kinds_views_and_updates_of_control_requests() -> None:
    assert media_kinds("av") == ["audio", "video"] and media_kinds("audio") == ["audio"]
    with pytest.raises(ConferenceError, match="expected 'audio', 'video' or 'av'"):
        media_kinds("both")
    assert view_label("common") == "common"
    assert view_label({"view": "common", "region": "1"}) == "common"
    assert view_label({"region": "1"}) is None and view_label(3) is None
    update = parse_subscription_update({"video": {"from": "s2", "parameters": {"framerate": 15}}})
    assert update.video is not None and update.video.from_ == "s2" and update.audio is None
    for bad, words in ((["x"], "expected an object"), ({"video": {"from": 3}}, "video.from")):
        with pytest.raises(ConferenceError, match="Invalid update request") as info:
            parse_subscription_update(bad)
        assert words in str(info.value)


def test_permission_updates_apply_whole_or_not_at_all() -> None:
    operations: list[dict[str, Any]] = [
        {"op": "replace", "path": "/permission/publish/video", "value": False},
        {"op": "replace", "path": "/permission/subscribe", "value": False},
    ]
    updated = updated_permission(ALL, operations)
    assert updated == {
        "publish": {"audio": True, "video": False},
        "subscribe": {"audio": False, "video": False},
    }
    assert ALL["publish"]["video"] is True  # the original is left as it was
    bad = [*operations, {"op": "replace", "path": "/permission/everything", "value": True}]
    with pytest.raises(ConferenceError, match=r"\[2\]\.path"):
        updated_permission(ALL, bad)


def test_errors_carry_code_and_status_even_pickled() -> None:
    error = not_found("Room not found", ErrorCode.ROOM_NOT_FOUND)
    assert (error.status, error.code, str(error)) == (404, 1003, "Room not found")
    assert conflict("busy").status == 409
    for original in (error, TokenError("Token has expired")):
        copy = pickle.loads(pickle.dumps(original))
        assert type(copy) is type(original)
        assert (copy.message, copy.code, copy.status) == (
            original.message,
            original.code,
            original.status,
        )
    assert TokenError("x").status == 401 and TokenError("x").code == ErrorCode.AUTHENTICATION


class Recorder:
    """A front end that keeps what it is told."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.events: list[tuple[str, str, Any]] = []
        self.disconnects: list[tuple[str, str, bool]] = []

    def deliver(self, key: str, event: str, data: Any) -> None:
        if self.fail:
            raise RuntimeError("front end broken")
        self.events.append((key, event, data))

    def disconnect(
        self, key: str, reason: str, *, notify: bool = True, rejoin: str | None = None
    ) -> None:
        self.disconnects.append((key, reason, notify))


def test_the_local_router_reaches_the_front_end_an_address_names(
    caplog: pytest.LogCaptureFixture,
) -> None:
    router = LocalRouter()
    portal, peer, broken = Recorder(), Recorder(), Recorder(fail=True)
    router.register("portal", portal)
    router.register("peer", peer)
    router.register("broken", broken)
    router.deliver(ClientAddress(front_end="portal", key="s1"), "text", {"message": "hi"})
    router.disconnect(ClientAddress(front_end="peer", key="m1"), "dropped over REST")
    router.disconnect(ClientAddress(front_end="peer", key="m2"), "back", notify=False)
    assert portal.events == [("s1", "text", {"message": "hi"})] and not portal.disconnects
    assert peer.disconnects == [("m1", "dropped over REST", True), ("m2", "back", False)]
    # A front end that is not there, or that fails, costs a log line, never the caller.
    router.deliver(ClientAddress(front_end="gone", key="x"), "text", None)
    router.deliver(ClientAddress(front_end="broken", key="x"), "text", None)
    messages = [r.getMessage() for r in caplog.records]
    assert any("no front end 'gone'" in m for m in messages)
    assert any("failed to deliver text" in m for m in messages)

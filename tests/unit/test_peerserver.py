"""PeerServer protocol state: opening, relaying, queues and EXPIRE, heartbeats, mesh rooms."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tessera.portal.peerserver import (
    ID_LENGTH,
    MAX_MESH_MEMBERS,
    Action,
    Close,
    Dropped,
    JoinMesh,
    LeaveMesh,
    OpenRefused,
    PeerGone,
    PeerGrant,
    PeerRegistry,
    Relay,
    Send,
    ToRoomPeer,
    valid_peer_id,
)


class Conn:
    """A stand-in for a WebSocket: identity is all the registry uses."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Conn({self.name})"


def registry(**kw: Any) -> PeerRegistry:
    settings_ = {"alive_timeout": 60.0, "expire_timeout": 5.0, "concurrent_limit": 100, **kw}
    return PeerRegistry(**settings_)


def sent(actions: list[Action], conn: Conn) -> list[dict[str, Any]]:
    return [a.message for a in actions if isinstance(a, Send) and a.connection is conn]


def opened(reg: PeerRegistry, peer_id: str, service: str = "s", now: float = 0.0) -> Conn:
    conn = Conn(peer_id)
    actions = reg.open(service, peer_id, "tok-" + peer_id, conn, now)
    assert sent(actions, conn)[0] == {"type": "OPEN"}
    return conn


def receive(
    reg: PeerRegistry, service: str, peer_id: str, data: str | bytes, now: float
) -> list[Action]:
    """A frame from the peer's current socket (or from nowhere if it is not open)."""
    peer = reg.get(service, peer_id)
    return reg.receive(service, peer_id, peer.connection if peer else Conn("none"), data, now)


def frame(**message: Any) -> str:
    return json.dumps(message)


def test_generated_ids_are_16_characters_and_unique() -> None:
    reg = registry()
    ids = {reg.new_id("s") for _ in range(200)}
    assert len(ids) == 200
    assert all(len(i) == ID_LENGTH and valid_peer_id(i) for i in ids)


def test_generated_id_skips_ids_in_use() -> None:
    names = iter(["aaaa", "aaaa", "bbbb"])
    reg = registry(random_id=lambda: next(names))
    opened(reg, "aaaa")
    assert reg.new_id("s") == "bbbb"


def test_open_validates_parameters_and_id() -> None:
    reg = registry()
    with pytest.raises(OpenRefused) as refused:
        reg.open("s", "", "t", Conn("x"), 0)
    assert refused.value.message == {
        "type": "ERROR",
        "payload": {"msg": "No id, token, or key supplied to websocket server"},
    }
    for bad in ("room:x", "a b ", "-a", "x" * 65, "é"):
        with pytest.raises(OpenRefused) as refused:
            reg.open("s", bad, "t", Conn("x"), 0)
        assert refused.value.message["type"] == "ERROR"
        assert "is invalid" in refused.value.message["payload"]["msg"]
    assert reg.count() == 0


def test_id_taken_by_another_token_and_taken_over_by_the_same() -> None:
    reg = registry()
    first = opened(reg, "alice")
    with pytest.raises(OpenRefused) as refused:
        reg.open("s", "alice", "other", Conn("intruder"), 1)
    assert refused.value.message == {"type": "ID-TAKEN", "payload": {"msg": "ID is taken"}}
    second = Conn("again")
    actions = reg.open("s", "alice", "tok-alice", second, 2)
    assert Close(first) in actions
    assert sent(actions, second) == [{"type": "OPEN"}]
    # The old socket closing later does not remove the peer.
    assert reg.closed("s", "alice", first) == []
    assert reg.get("s", "alice") is not None


def test_frames_from_a_taken_over_socket_are_ignored() -> None:
    reg = registry()
    bob = opened(reg, "bob")
    first = opened(reg, "alice")
    second = Conn("again")
    reg.open("s", "alice", "tok-alice", second, 1)
    offer = frame(type="OFFER", dst="bob", payload={})
    # The old socket's frames change nothing: no relay, no HEARTBEAT, no LEAVE.
    assert reg.receive("s", "alice", first, offer, 2) == []
    assert reg.receive("s", "alice", first, frame(type="HEARTBEAT"), 50) == []
    assert reg.receive("s", "alice", first, frame(type="LEAVE"), 3) == []
    assert reg.receive("s", "alice", first, frame(type="ROOM-JOIN", payload={"room": "m"}), 3) == []
    assert reg.receive("s", "alice", first, "not json", 3) == []
    peer = reg.get("s", "alice")
    assert peer is not None and peer.connection is second
    assert peer.last_ping == 1 and peer.rooms == set() and reg.mesh_room("s", "m") is None
    # The new socket's frames go through.
    assert sent(reg.receive("s", "alice", second, offer, 4), bob) == [
        {"type": "OFFER", "src": "alice", "dst": "bob", "payload": {}}
    ]


def test_services_are_separate_namespaces() -> None:
    reg = registry()
    a = opened(reg, "alice", service="one")
    b = opened(reg, "alice", service="two")
    assert reg.peer_ids("one") == ["alice"]
    actions = receive(reg, "one", "alice", frame(type="OFFER", dst="bob", payload={}), 0)
    assert actions == []  # bob of service one is absent: queued
    opened(reg, "bob", service="two")
    assert (
        sent(receive(reg, "two", "bob", frame(type="OFFER", dst="alice", payload={}), 0), a) == []
    )
    assert receive(reg, "two", "bob", frame(type="OFFER", dst="alice", payload={}), 0) == [
        Send(b, {"type": "OFFER", "src": "bob", "dst": "alice", "payload": {}})
    ]


def test_concurrent_limit_per_service() -> None:
    reg = registry(concurrent_limit=2)
    opened(reg, "a")
    opened(reg, "b")
    with pytest.raises(OpenRefused) as refused:
        reg.open("s", "c", "t", Conn("c"), 0)
    assert refused.value.message["payload"]["msg"] == "Server has reached its concurrent user limit"
    opened(reg, "c", service="other")


def test_relay_adds_src_and_keeps_only_protocol_fields() -> None:
    reg = registry()
    alice = opened(reg, "alice")
    bob = opened(reg, "bob")
    payload = {"sdp": {"type": "offer", "sdp": "v=0"}, "type": "media", "connectionId": "mc_1"}
    actions = receive(
        reg, "s", "alice", frame(type="OFFER", dst="bob", payload=payload, src="mallory", x=1), 0
    )
    assert actions == [
        Send(bob, {"type": "OFFER", "src": "alice", "dst": "bob", "payload": payload})
    ]
    answer = receive(reg, "s", "bob", frame(type="ANSWER", dst="alice", payload={"a": 1}), 0)
    assert sent(answer, alice) == [
        {"type": "ANSWER", "src": "bob", "dst": "alice", "payload": {"a": 1}}
    ]


def test_malformed_frames_are_dropped_with_the_reason_and_change_nothing() -> None:
    # As PeerServer: no ERROR (the peerjs client destroys its peer on one), only a log line.
    reg = registry()
    opened(reg, "alice")
    opened(reg, "bob")
    cases: list[tuple[str | bytes, str]] = [
        (b"\x00\x01", "Binary"),
        ("not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"type": 5}', "no type"),
        ('{"payload": {}}', "no type"),
        ('{"type": "SHOUT"}', "Unknown message type"),
        ('{"type": "OFFER", "payload": {}}', "destination"),  # peer.connect(undefined)
        ('{"type": "OFFER", "dst": 7, "payload": {}}', "destination"),
        ('{"type": "OFFER", "dst": "bob"}', "payload"),
        ('{"type": "CANDIDATE", "dst": "bob", "payload": "x"}', "payload"),
        ('{"type": "OFFER", "dst": "room:", "payload": {}}', "room peer"),
        (json.dumps({"type": "OFFER", "dst": "b" * 400, "payload": {}}), "too long"),
        (json.dumps({"type": "HEARTBEAT", "pad": "x" * 70000}), "too large"),
    ]
    for data, words in cases:
        actions = receive(reg, "s", "alice", data, 1)
        assert len(actions) == 1, data
        dropped = actions[0]
        assert isinstance(dropped, Dropped), (data, dropped)
        assert (dropped.service_id, dropped.peer_id) == ("s", "alice")
        assert words in dropped.reason, (data, dropped)
    assert sorted(reg.peer_ids("s")) == ["alice", "bob"]


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=200), st.binary(max_size=50)))
def test_any_frame_is_answered_or_routed_never_raises(data: Any) -> None:
    reg = registry()
    alice = opened(reg, "alice")
    for action in receive(reg, "s", "alice", data, 1):
        assert isinstance(action, Send | ToRoomPeer | Dropped)
        if isinstance(action, Send):
            assert action.connection is alice


def test_message_for_absent_peer_waits_then_expires_to_each_sender_once() -> None:
    reg = registry(expire_timeout=5.0)
    alice = opened(reg, "alice")
    bob = opened(reg, "bob")
    for src in ("alice", "alice", "bob"):
        assert receive(reg, "s", src, frame(type="OFFER", dst="carol", payload={"n": 1}), 10) == []
    assert reg.sweep(14.9) == []
    actions = reg.sweep(15.0)
    assert sent(actions, alice) == [{"type": "EXPIRE", "src": "carol", "dst": "alice"}]
    assert sent(actions, bob) == [{"type": "EXPIRE", "src": "carol", "dst": "bob"}]
    assert reg.sweep(30) == []


def test_queued_messages_are_delivered_when_the_destination_opens() -> None:
    reg = registry()
    opened(reg, "alice")
    receive(reg, "s", "alice", frame(type="OFFER", dst="carol", payload={"n": 1}), 0)
    receive(reg, "s", "alice", frame(type="CANDIDATE", dst="carol", payload={"n": 2}), 0)
    receive(reg, "s", "alice", frame(type="LEAVE", dst="carol"), 0)  # not queued
    carol = Conn("carol")
    actions = reg.open("s", "carol", "t", carol, 1)
    assert sent(actions, carol) == [
        {"type": "OPEN"},
        {"type": "OFFER", "src": "alice", "dst": "carol", "payload": {"n": 1}},
        {"type": "CANDIDATE", "src": "alice", "dst": "carol", "payload": {"n": 2}},
    ]
    assert reg.sweep(100) == [] or all(not isinstance(a, Send) for a in reg.sweep(100))


def test_heartbeats_keep_a_peer_and_silence_expires_it_telling_its_contacts() -> None:
    reg = registry(alive_timeout=2.0)
    alice = opened(reg, "alice", now=0)
    bob = opened(reg, "bob", now=0)
    carol = opened(reg, "carol", now=0)
    receive(reg, "s", "alice", frame(type="OFFER", dst="bob", payload={}), 0.5)
    for t in (1.0, 2.5, 4.0):
        receive(reg, "s", "alice", frame(type="HEARTBEAT"), t)
        receive(reg, "s", "carol", frame(type="HEARTBEAT"), t)
    actions = reg.sweep(4.1)
    # bob fell silent: his socket is closed and alice, who signalled with him, hears LEAVE.
    assert Close(bob) in actions
    assert sent(actions, alice) == [{"type": "LEAVE", "src": "bob", "dst": "alice"}]
    assert sent(actions, carol) == []
    assert PeerGone("s", "bob", expired=True) in actions
    assert sorted(reg.peer_ids("s")) == ["alice", "carol"]
    # Once gone, messages to bob wait and expire like for any absent peer.
    receive(reg, "s", "alice", frame(type="OFFER", dst="bob", payload={}), 4.2)
    receive(reg, "s", "alice", frame(type="HEARTBEAT"), 9.0)
    assert sent(reg.sweep(9.3), alice) == [{"type": "EXPIRE", "src": "bob", "dst": "alice"}]


def test_closed_socket_removes_the_peer_quietly() -> None:
    reg = registry()
    alice = opened(reg, "alice")
    bob = opened(reg, "bob")
    receive(reg, "s", "alice", frame(type="OFFER", dst="bob", payload={}), 0)
    actions = reg.closed("s", "bob", bob)
    assert actions == [PeerGone("s", "bob", expired=False)]
    assert sent(actions, alice) == []
    assert reg.get("s", "bob") is None


def test_leave_without_destination_removes_the_sender() -> None:
    reg = registry()
    alice = opened(reg, "alice")
    actions = receive(reg, "s", "alice", frame(type="LEAVE"), 0)
    assert Close(alice) in actions
    assert reg.get("s", "alice") is None


def test_room_peer_destination_goes_to_the_room_peer() -> None:
    reg = registry()
    alice = opened(reg, "alice")
    actions = receive(reg, "s", "alice", frame(type="OFFER", dst="room:town", payload={"a": 1}), 0)
    assert actions == [
        ToRoomPeer(
            "s", "town", {"type": "OFFER", "src": "alice", "dst": "room:town", "payload": {"a": 1}}
        )
    ]
    reply = reg.from_room_peer("s", "town", {"type": "ANSWER", "dst": "alice", "payload": {}})
    assert reply == [
        Send(alice, {"type": "ANSWER", "dst": "alice", "payload": {}, "src": "room:town"})
    ]
    assert reg.from_room_peer("s", "town", {"type": "ANSWER", "dst": "nobody"}) == []


def test_mesh_room_members_joins_and_leaves() -> None:
    reg = registry()
    a, b, c = (opened(reg, name) for name in ("a", "b", "c"))
    join = frame(type="ROOM-JOIN", payload={"room": "m", "mode": "mesh"})
    assert sent(receive(reg, "s", "a", join, 0), a) == [
        {"type": "ROOM-MEMBERS", "payload": {"room": "m", "members": []}}
    ]
    actions = receive(reg, "s", "b", join, 0)
    assert sent(actions, b) == [
        {"type": "ROOM-MEMBERS", "payload": {"room": "m", "members": ["a"]}}
    ]
    assert sent(actions, a) == [
        {"type": "ROOM-PEER-JOINED", "src": "b", "payload": {"room": "m", "peer": "b"}}
    ]
    actions = receive(reg, "s", "c", frame(type="ROOM-JOIN", payload={"room": "m"}), 0)
    assert sent(actions, c)[0]["payload"]["members"] == ["a", "b"]
    assert len(sent(actions, a)) == len(sent(actions, b)) == 1
    room = reg.mesh_room("s", "m")
    assert room is not None and room.members == ["a", "b", "c"]
    # Leaving by message and by closing the socket.
    actions = receive(reg, "s", "a", frame(type="ROOM-LEAVE", payload={"room": "m"}), 1)
    assert sent(actions, b) == [
        {"type": "ROOM-PEER-LEFT", "src": "a", "payload": {"room": "m", "peer": "a"}}
    ]
    actions = reg.closed("s", "b", b)
    assert sent(actions, c) == [
        {"type": "ROOM-PEER-LEFT", "src": "b", "payload": {"room": "m", "peer": "b"}}
    ]
    receive(reg, "s", "c", frame(type="ROOM-LEAVE", payload={"room": "m"}), 1)
    assert reg.mesh_room("s", "m") is None  # deleted with its last member


def test_mesh_room_errors_are_room_errors_not_fatal_errors() -> None:
    reg = registry()
    a = opened(reg, "a")
    cases = [
        ({"type": "ROOM-JOIN"}, "payload"),
        ({"type": "ROOM-JOIN", "payload": {"room": ""}}, "room must be"),
        ({"type": "ROOM-JOIN", "payload": {"room": "x", "mode": "sfu"}}, "Client-Portal"),
        ({"type": "ROOM-LEAVE", "payload": {"room": "x"}}, "Not a member"),
    ]
    for message, words in cases:
        reply = sent(receive(reg, "s", "a", json.dumps(message), 0), a)
        assert reply[0]["type"] == "ROOM-ERROR" and words in reply[0]["payload"]["msg"]
    receive(reg, "s", "a", frame(type="ROOM-JOIN", payload={"room": "x"}), 0)
    reply = sent(receive(reg, "s", "a", frame(type="ROOM-JOIN", payload={"room": "x"}), 0), a)
    assert "Already" in reply[0]["payload"]["msg"]


def test_mesh_room_is_limited_and_token_room_is_enforced() -> None:
    reg = registry()
    for i in range(MAX_MESH_MEMBERS):
        conn = opened(reg, f"p{i}")
        receive(reg, "s", f"p{i}", frame(type="ROOM-JOIN", payload={"room": "big"}), 0)
    late = opened(reg, "late")
    reply = sent(
        receive(reg, "s", "late", frame(type="ROOM-JOIN", payload={"room": "big"}), 0), late
    )
    assert "full" in reply[0]["payload"]["msg"]
    del conn
    granted = Conn("g")
    reg.open("s", "granted", "t", granted, 0, PeerGrant(user="u", role="presenter", room="r1"))
    reply = sent(
        receive(reg, "s", "granted", frame(type="ROOM-JOIN", payload={"room": "r2"}), 0), granted
    )
    assert "does not grant" in reply[0]["payload"]["msg"]
    reply = sent(
        receive(reg, "s", "granted", frame(type="ROOM-JOIN", payload={"room": "r1"}), 0), granted
    )
    assert reply[0]["type"] == "ROOM-MEMBERS"


# -- one portal of a cluster ------------------------------------------------


def test_clustered_registry_relays_for_peers_not_open_here() -> None:
    reg = registry(clustered=True)
    alice = opened(reg, "alice")
    offer = {"type": "OFFER", "dst": "bob", "payload": {"connectionId": "mc_1"}}
    actions = receive(reg, "s", "alice", json.dumps(offer), 0.0)
    relayed = {**offer, "src": "alice"}
    assert actions == [Relay("s", relayed)]
    # Nobody took it: it waits as for any absent peer, and then expires.
    assert reg.deliver_or_queue("s", relayed, 0.0) == []
    assert reg.queued_destinations() == {"s": ["bob"]}
    # Messages after it wait behind it (their order is kept), without a Relay.
    candidate = {"type": "CANDIDATE", "dst": "bob", "payload": {"candidate": {}}}
    assert receive(reg, "s", "alice", json.dumps(candidate), 0.1) == []
    since, messages = reg.take_queue("s", "bob")
    assert since == 0.0 and [m["type"] for m in messages] == ["OFFER", "CANDIDATE"]
    reg.restore_queue("s", "bob", since, messages)
    assert sent(reg.sweep(5.0), alice) == [{"type": "EXPIRE", "src": "bob", "dst": "alice"}]
    # A peer that opened here meanwhile gets the message directly.
    bob = opened(reg, "bob")
    assert sent(reg.deliver_or_queue("s", {**relayed, "dst": "bob"}, 6.0), bob) == [relayed]


def test_clustered_registry_takes_relayed_messages_and_relays_leave_on_expiry() -> None:
    reg = registry(clustered=True, alive_timeout=10.0)
    bob = opened(reg, "bob")
    from_elsewhere = {"type": "OFFER", "src": "alice", "dst": "bob", "payload": {}}
    assert reg.from_node("s", from_elsewhere) == [Send(bob, from_elsewhere)]
    assert reg.from_node("s", {**from_elsewhere, "dst": "nobody"}) is None
    # bob goes silent: alice, on another node, hears LEAVE through a Relay.
    actions = reg.sweep(20.0)
    assert Relay("s", {"type": "LEAVE", "src": "bob", "dst": "alice"}) in actions
    assert PeerGone("s", "bob", True) in actions


def test_superseded_peer_is_closed_without_leave_and_only_for_its_own_claim() -> None:
    reg = registry(clustered=True)
    conn = Conn("alice")
    reg.open("s", "alice", "tok", conn, 0.0, claim_id="c1")
    assert reg.superseded("s", "alice", "c0") == []  # an older claim: nothing happens
    actions = reg.superseded("s", "alice", "c1")
    assert actions == [PeerGone("s", "alice", False, "c1"), Close(conn)]
    assert reg.get("s", "alice") is None


def test_a_clustered_registry_keeps_mesh_rooms_in_the_directory() -> None:
    reg = registry(clustered=True)
    alice, carol = opened(reg, "alice"), opened(reg, "carol")
    join = json.dumps({"type": "ROOM-JOIN", "payload": {"room": "huddle"}})
    assert receive(reg, "s", "alice", join, 0) == [JoinMesh("s", "alice", "huddle")]
    # A second ROOM-JOIN while the directory is asked is refused at once.
    [again] = sent(receive(reg, "s", "alice", join, 0), alice)
    assert again["payload"]["msg"] == "Already a member of that room"
    # The directory's answer: carol here and bob on another portal were there first.
    actions = reg.mesh_joined("s", "alice", "huddle", ["carol", "bob"])
    assert sent(actions, alice) == [
        {"type": "ROOM-MEMBERS", "payload": {"room": "huddle", "members": ["carol", "bob"]}}
    ]
    joined = {
        "type": "ROOM-PEER-JOINED",
        "src": "alice",
        "payload": {"room": "huddle", "peer": "alice"},
    }
    assert sent(actions, carol) == [joined]
    assert Relay("s", {**joined, "dst": "bob"}) in actions
    # bob's portal relays it; bob hears it as a local member would, without dst.
    assert reg.from_node("s", {**joined, "dst": "carol"}) == [Send(carol, joined)]
    # Leaving: the directory says who remains, and they hear ROOM-PEER-LEFT.
    leave = json.dumps({"type": "ROOM-LEAVE", "payload": {"room": "huddle"}})
    assert receive(reg, "s", "alice", leave, 0) == [LeaveMesh("s", "alice", "huddle")]
    left = reg.mesh_left("s", "alice", "huddle", ["carol", "bob"])
    assert sent(left, carol)[0]["type"] == "ROOM-PEER-LEFT"
    assert Relay("s", {**sent(left, carol)[0], "dst": "bob"}) in left


def test_a_clustered_mesh_join_that_is_full_or_fails_or_outlived_its_peer() -> None:
    reg = registry(clustered=True)
    alice = opened(reg, "alice")
    join = json.dumps({"type": "ROOM-JOIN", "payload": {"room": "huddle"}})
    receive(reg, "s", "alice", join, 0)
    [full] = sent(reg.mesh_joined("s", "alice", "huddle", None), alice)
    assert full["type"] == "ROOM-ERROR" and "full" in full["payload"]["msg"]
    receive(reg, "s", "alice", join, 0)  # may try again: it is no member
    [failed] = sent(reg.mesh_join_failed("s", "alice", "huddle", "directory down"), alice)
    assert failed["payload"] == {"room": "huddle", "msg": "directory down"}
    receive(reg, "s", "alice", join, 0)
    reg.closed("s", "alice", alice)
    # The answer comes after alice went: she is taken out of the room again.
    assert reg.mesh_joined("s", "alice", "huddle", []) == [LeaveMesh("s", "alice", "huddle")]


def test_the_peer_gone_action_carries_the_claim_to_release() -> None:
    reg = registry()
    conn = Conn("alice")
    reg.open("s", "alice", "tok", conn, 0.0, claim_id="c9")
    assert reg.closed("s", "alice", conn) == [PeerGone("s", "alice", False, "c9")]

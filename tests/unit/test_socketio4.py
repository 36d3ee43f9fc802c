"""Socket.IO 4 packets beside 5: what a 2.x client may send, and what it reads of ours."""

from __future__ import annotations

from typing import Any

import pytest
import socketio

from tessera.portal.socketio4 import (
    IMPLICIT_CONNECT,
    Sio4Error,
    check_client_packet,
    to_client_packet,
)
from tests.unit.test_engineio3 import node_parsers

# What socket.io-client 2.x sends: its encoder's output for these packets is checked below.
CLIENT_PACKETS: list[dict[str, Any]] = [
    {"type": 2, "id": 0, "data": ["login", {"token": "eyJ0", "protocol": "1.2"}]},
    {"type": 2, "id": 12, "data": ["text", {"to": "all", "message": "héllo 😀 ,:[]"}]},
    {"type": 2, "data": ["logout"]},
    {"type": 2, "id": 3, "data": ["refreshReconnectionTicket"]},
    {"type": 3, "id": 7, "data": ["ok", None]},
    {"type": 1},
    {"type": 0, "nsp": "/admin"},
    {"type": 2, "nsp": "/admin", "id": 1, "data": ["x"]},
]


def test_what_socket_io_client_2_sends_is_handed_over_as_it_is() -> None:
    encoded = node_parsers({"encodeSocketIO": CLIENT_PACKETS})["encoded"]
    assert encoded[0] == '20["login",{"token":"eyJ0","protocol":"1.2"}]'
    for text in encoded:
        assert check_client_packet(text) == text
    # And python-socketio reads each as the client meant it.
    for packet, text in zip(CLIENT_PACKETS, encoded, strict=True):
        decoded = socketio.packet.Packet(encoded_packet=text)
        assert decoded.packet_type == packet["type"]
        assert decoded.id == packet.get("id")
        assert decoded.data == packet.get("data")
        assert (decoded.namespace or "/") == packet.get("nsp", "/")


def test_the_default_namespace_is_joined_as_a_protocol_5_client_asks() -> None:
    decoded = socketio.packet.Packet(encoded_packet=IMPLICIT_CONNECT)
    assert decoded.packet_type == socketio.packet.CONNECT
    assert decoded.namespace is None and decoded.data is None


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "unknown Socket.IO packet type"),
        ("7[]", "unknown Socket.IO packet type"),
        ("x", "unknown Socket.IO packet type"),
        ('51-["x",{"_placeholder":true,"num":0}]', "binary"),
        ('61-[{"_placeholder":true,"num":0}]', "binary"),
        ('4"oops"', "does not send ERROR"),
        ("2", "without its data"),
        ("2[", "not JSON"),
        ('2["x",NaN]', "not JSON"),
        ("2" + "[" * 100_000 + "]" * 100_000, "not JSON"),
        ("2{}", "starts with the event name"),
        ("2[]", "starts with the event name"),
        ("2[true]", "starts with the event name"),
        ("2[null]", "starts with the event name"),
        ('3["ok"]', "without an id"),
        ('31{"a":1}', "must be a list"),
        ("2" + "1" * 16 + '["x"]', "too long"),
        ('0{"token":"x"}', "has no id or data"),
        ("01", "has no id or data"),
        ('1["x"]', "has no id or data"),
        ("2/admin", "without its data"),
    ],
)
def test_malformed_client_packets_are_refused_by_name(text: str, problem: str) -> None:
    with pytest.raises(Sio4Error, match=problem):
        check_client_packet(text)


def test_numeric_event_names_pass_as_socket_io_2_allows_them() -> None:
    assert check_client_packet('2[42,"x"]') == '2[42,"x"]'


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        ('0{"sid":"Zx1"}', "0"),
        ('0/admin,{"sid":"Zx1"}', "0/admin,"),
        ('4{"message":"Unable to connect"}', '4"Unable to connect"'),
        ('4/admin,{"message":"Not allowed","data":{"why":"x"}}', '4/admin,{"why":"x"}'),
        ('2["stream",{"id":"s1"}]', '2["stream",{"id":"s1"}]'),
        ('31["ok",{"id":"p1"}]', '31["ok",{"id":"p1"}]'),
        ("1", "1"),
        ("1/admin,", "1/admin,"),
    ],
)
def test_python_socketio_packets_as_a_2x_client_reads_them(ours: str, theirs: str) -> None:
    assert to_client_packet(ours) == theirs


def test_socket_io_client_2_reads_our_packets() -> None:
    ours = [
        to_client_packet('0{"sid":"Zx1"}'),
        to_client_packet('4{"message":"Unable to connect"}'),
        to_client_packet('0/admin,{"sid":"Zx1"}'),
        to_client_packet('31["ok",{"message":"héllo 😀"}]'),
        to_client_packet('2["drop"]'),
    ]
    packets = node_parsers({"decodeSocketIO": ours})["packets"]
    assert packets == [
        {"type": 0, "nsp": "/", "id": None, "data": None},
        {"type": 4, "nsp": "/", "id": None, "data": "Unable to connect"},
        {"type": 0, "nsp": "/admin", "id": None, "data": None},
        {"type": 3, "nsp": "/", "id": 1, "data": ["ok", {"message": "héllo 😀"}]},
        {"type": 2, "nsp": "/", "id": None, "data": ["drop"]},
    ]

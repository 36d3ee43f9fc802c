"""Engine.IO 3 packets and payloads: lengths in UTF-16 units, hostile bodies, the JS parser."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tessera.portal.engineio3 import (
    Eio3Error,
    Packet,
    PacketType,
    decode_packet,
    decode_payload,
    encode_packet,
    encode_payload,
    utf16_length,
)
from tests.nodedriver import ROOT, run_node

NODE_SCRIPT = Path(__file__).with_name("sio2_parsers_node.mjs")

M = PacketType.MESSAGE
SAMPLES = [
    [Packet(PacketType.OPEN, '{"sid":"abc","upgrades":["websocket"]}'), Packet(M, "0")],
    [Packet(M, '2["text",{"message":"héllo wörld"}]')],
    [Packet(M, '2["text",{"message":"😀 👍🏽 𝄞"}]'), Packet(PacketType.PONG)],
    [Packet(PacketType.NOOP), Packet(PacketType.CLOSE), Packet(PacketType.PING)],
    [Packet(M, "2" + json.dumps(["x", "a:b:1:2"]))],
]


def node_parsers(request: dict[str, Any]) -> dict[str, Any]:
    """Run socket.io-client 2.x's own parsers (engine.io-parser 2, socket.io-parser 3)."""
    answer: dict[str, Any] = run_node(
        NODE_SCRIPT, request, ROOT / "node_modules" / "socket.io-client-2", "engine.io-parser"
    )
    return answer


def as_lists(packets: list[Packet]) -> list[list[Any]]:
    return [[int(p.type), p.data] for p in packets]


def test_lengths_count_utf16_units_as_javascript_does() -> None:
    assert utf16_length("abc") == 3
    assert utf16_length("é") == 1
    assert utf16_length("😀") == 2  # outside the BMP: a surrogate pair
    assert encode_payload([Packet(M, "😀")]) == "3:4😀"
    assert encode_payload([Packet(M, "hé"), Packet(PacketType.PING)]) == "3:4hé1:2"


@pytest.mark.parametrize("packets", SAMPLES)
def test_round_trip(packets: list[Packet]) -> None:
    assert decode_payload(encode_payload(packets)) == packets


@given(st.lists(st.text(max_size=40), min_size=1, max_size=5))
def test_round_trip_of_any_text(messages: list[str]) -> None:
    packets = [Packet(M, m) if m else Packet(M) for m in messages]
    assert decode_payload(encode_payload(packets)) == packets


def test_binary_messages_travel_as_base64() -> None:
    packet = Packet(M, b"\x00\xffbinary")
    assert encode_packet(packet) == "b4AP9iaW5hcnk="
    assert decode_packet("b4AP9iaW5hcnk=") == packet
    with pytest.raises(ValueError):
        encode_packet(Packet(PacketType.PING, b"x"))


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("", "empty payload"),
        ("4", "without its colon"),
        ("12345678901:4", "without its colon"),
        (":4hello", "invalid packet length"),
        ("x:4", "invalid packet length"),
        ("-1:4", "invalid packet length"),
        ("²:4", "invalid packet length"),  # a digit to str.isdigit, not a length
        ("9:4hello", "longer than the payload"),
        ("6:4hello2:4", "longer than the payload"),
        ("6:4hellox", "without its colon"),
        ("2:4😀", "splits a character"),
        ("1:7", "unknown packet type"),
        ("1:x", "unknown packet type"),
        ("2:b2", "not a message"),
        ("4:b4%%", "invalid base64"),
    ],
)
def test_malformed_payloads_are_refused_by_name(body: str, problem: str) -> None:
    with pytest.raises(Eio3Error, match=problem):
        decode_payload(body)


def test_empty_packets_in_a_payload_are_skipped_as_the_js_parser_does() -> None:
    assert decode_payload("0:") == []
    assert decode_payload("0:1:2") == [Packet(PacketType.PING)]


@given(st.text(max_size=60))
def test_any_body_decodes_or_is_refused(body: str) -> None:
    try:
        packets = decode_payload(body)
    except Eio3Error:
        return
    assert all(isinstance(p.type, PacketType) for p in packets)


# -- against socket.io-client 2.x's engine.io-parser ------------------------------


def test_the_js_parser_reads_what_python_writes() -> None:
    payloads = [encode_payload(packets) for packets in SAMPLES]
    answer = node_parsers({"decodePayload": payloads})
    for packets, decoded in zip(SAMPLES, answer["decoded"], strict=True):
        assert decoded == as_lists(packets)


def test_python_reads_what_the_js_parser_writes() -> None:
    answer = node_parsers({"encodePayload": [as_lists(packets) for packets in SAMPLES]})
    for packets, text in zip(SAMPLES, answer["payloads"], strict=True):
        assert text == encode_payload(packets)  # byte for byte
        assert decode_payload(text) == packets


def test_the_js_parser_refuses_what_python_refuses() -> None:
    bodies = ["9:4hello", "x:4", "1:7", "6:4hellox"]
    answer = node_parsers({"decodePayload": bodies})
    assert answer["decoded"] == ["error"] * len(bodies)
    for body in bodies:
        with pytest.raises(Eio3Error):
            decode_payload(body)

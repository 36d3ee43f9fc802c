"""Engine.IO protocol 3 packets and polling payloads, as socket.io-client 2.x sends them (pure).

A packet is its type digit and its data (``4hello``); a binary message travels
in a text payload as ``b4<base64>``. A polling payload is the packets one after
the other, each prefixed with its length and a colon (``6:4hello2:40``), the
length counted as JavaScript counts a string: in UTF-16 code units, so a
character outside the Basic Multilingual Plane counts two. (Engine.IO 4 joins
packets with a record separator instead.) Binary payloads (a client that sends
binary data) are not read: the OWT SDKs never send any.
"""

from __future__ import annotations

import base64
import binascii
import enum
from dataclasses import dataclass

# Digits of a packet length in a payload: far beyond any body the portal reads.
MAX_LENGTH_DIGITS = 10


class PacketType(enum.IntEnum):
    """Engine.IO packet types (the same numbers in protocols 3 and 4)."""

    OPEN = 0
    CLOSE = 1
    PING = 2
    PONG = 3
    MESSAGE = 4
    UPGRADE = 5
    NOOP = 6


class Eio3Error(ValueError):
    """Malformed Engine.IO 3 input; str() names the problem."""


@dataclass(frozen=True)
class Packet:
    """One Engine.IO packet: a type and, for some, text or (messages only) binary data."""

    type: PacketType
    data: str | bytes | None = None


def utf16_length(text: str) -> int:
    """The length of ``text`` as JavaScript counts it (UTF-16 code units)."""
    return len(text) + sum(1 for c in text if ord(c) > 0xFFFF)


def encode_packet(packet: Packet) -> str:
    """``packet`` as text: ``<type>[<data>]``, a binary message as ``b4<base64>``."""
    if isinstance(packet.data, bytes):
        if packet.type != PacketType.MESSAGE:
            raise ValueError("only a message carries binary data")
        return "b4" + base64.b64encode(packet.data).decode("ascii")
    return f"{int(packet.type)}{packet.data or ''}"


def encode_payload(packets: list[Packet]) -> str:
    """Packets for one polling response: ``<length>:<packet>`` each."""
    parts = []
    for packet in packets:
        text = encode_packet(packet)
        parts.append(f"{utf16_length(text)}:{text}")
    return "".join(parts)


def decode_packet(text: str) -> Packet:
    """One packet from its text form (a WebSocket text frame, or a part of a payload)."""
    if not text:
        raise Eio3Error("empty packet")
    if text[0] == "b":
        kind = _packet_type(text[1:2])
        if kind != PacketType.MESSAGE:
            raise Eio3Error("a base64 packet that is not a message")
        try:
            return Packet(kind, base64.b64decode(text[2:], validate=True))
        except (binascii.Error, ValueError):
            raise Eio3Error("invalid base64 in a binary message") from None
    kind = _packet_type(text[0])
    return Packet(kind, text[1:] if len(text) > 1 else None)


def decode_payload(text: str) -> list[Packet]:
    """The packets of a polling request body; raises Eio3Error for a malformed one.

    Every length must be a decimal number of UTF-16 code units that the body holds
    in full and that does not split a character; nothing may follow the last packet.
    """
    if not text:
        raise Eio3Error("empty payload")
    # Lengths count UTF-16 code units: slice the body in that encoding.
    units = text.encode("utf-16-le")
    packets: list[Packet] = []
    position = 0
    end = len(units) // 2
    while position < end:
        colon = _find_colon(units, position, end)
        digits = units[position * 2 : colon * 2].decode("utf-16-le")
        if not digits or not digits.isascii() or not digits.isdigit():
            raise Eio3Error(f"invalid packet length {digits[:MAX_LENGTH_DIGITS]!r}")
        length = int(digits)
        start = colon + 1
        if start + length > end:
            raise Eio3Error(f"packet length {length} is longer than the payload")
        try:
            packet_text = units[start * 2 : (start + length) * 2].decode("utf-16-le")
        except UnicodeDecodeError:
            raise Eio3Error("a packet length splits a character") from None
        if packet_text:
            packets.append(decode_packet(packet_text))
        position = start + length
    return packets


def _find_colon(units: bytes, position: int, end: int) -> int:
    for index in range(position, min(end, position + MAX_LENGTH_DIGITS + 1)):
        if units[index * 2 : index * 2 + 2] == b":\x00":
            return index
    raise Eio3Error("a packet length without its colon")


def _packet_type(digit: str) -> PacketType:
    if len(digit) != 1 or not "0" <= digit <= "6":
        raise Eio3Error(f"unknown packet type {digit!r}")
    return PacketType(int(digit))

"""RTP headers for shared payloads: what differs per subscriber, written in place.

A shared output packetises each encoded frame once; each subscriber's packets
differ only in their header: SSRC, sequence number, timestamp (each sender has
its own random origin), payload type and the header extensions it negotiated
(RFC 8285 one-byte form, as aiortc writes them). Pure: no sockets, no loop.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .transportcc import TRANSPORT_CC_URI

MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"

_FIXED = struct.Struct("!BBHII")
_ONE_BYTE_PROFILE = 0xBEDE


def abs_send_time(ntp: int) -> int:
    """The 24-bit abs-send-time (6.18 fixed point seconds) of a 64-bit NTP time."""
    return (ntp >> 14) & 0xFFFFFF


class RtpHeaderTemplate:
    """One sender's RTP header, rewritten in place for each packet it sends.

    `extension_ids` maps a header extension URI to the id the subscriber
    negotiated; the ones Tessera writes are the MID, abs-send-time and the
    transport-wide sequence number (the others a sender of pre-encoded packets
    has nothing for, as in aiortc).
    """

    def __init__(
        self, ssrc: int, payload_type: int, extension_ids: Mapping[str, int], mid: str | None
    ) -> None:
        if not 0 <= payload_type < 128:
            raise ValueError(f"payload type {payload_type} is not 0-127")
        if not 0 <= ssrc < 1 << 32:
            raise ValueError(f"SSRC {ssrc} is not a 32-bit number")
        elements = bytearray()
        self.abs_send_time_offset: int | None = None
        mid_id = extension_ids.get(MID_URI)
        if mid_id is not None and mid:
            value = mid.encode("utf8")
            if not 1 <= mid_id <= 14 or not 1 <= len(value) <= 16:
                raise ValueError(f"MID {mid!r} with id {mid_id} does not fit a one-byte extension")
            elements += bytes([mid_id << 4 | (len(value) - 1)]) + value
        abs_id = extension_ids.get(ABS_SEND_TIME_URI)
        if abs_id is not None:
            if not 1 <= abs_id <= 14:
                raise ValueError(f"abs-send-time id {abs_id} does not fit a one-byte extension")
            elements += bytes([abs_id << 4 | 2])
            self.abs_send_time_offset = 12 + 4 + len(elements)
            elements += b"\x00\x00\x00"
        self.transport_sequence_offset: int | None = None
        transport_id = extension_ids.get(TRANSPORT_CC_URI)
        if transport_id is not None:
            if not 1 <= transport_id <= 14:
                raise ValueError(
                    f"transport-wide sequence id {transport_id} does not fit a one-byte extension"
                )
            elements += bytes([transport_id << 4 | 1])
            self.transport_sequence_offset = 12 + 4 + len(elements)
            elements += b"\x00\x00"
        elements += b"\x00" * (-len(elements) % 4)
        self.first_byte = 0x80 | (0x10 if elements else 0)
        self.ssrc = ssrc
        self.payload_type = payload_type
        header = bytearray(12)
        if elements:
            header += struct.pack("!HH", _ONE_BYTE_PROFILE, len(elements) // 4) + elements
        self.buffer = header
        self.length = len(header)

    def set_abs_send_time(self, value: int) -> None:
        """The abs-send-time of the packets written next (one per frame: they leave together)."""
        offset = self.abs_send_time_offset
        if offset is not None:
            self.buffer[offset : offset + 3] = (value & 0xFFFFFF).to_bytes(3, "big")

    def set_transport_sequence(self, value: int) -> None:
        """The transport-wide sequence number of the packet written next (one per packet)."""
        offset = self.transport_sequence_offset
        if offset is not None:
            self.buffer[offset : offset + 2] = (value & 0xFFFF).to_bytes(2, "big")

    def packet(self, sequence_number: int, timestamp: int, marker: int, payload: bytes) -> bytes:
        """The whole RTP packet (in the clear) for one shared payload."""
        _FIXED.pack_into(
            self.buffer,
            0,
            self.first_byte,
            self.payload_type | (0x80 if marker else 0),
            sequence_number & 0xFFFF,
            timestamp & 0xFFFFFFFF,
            self.ssrc,
        )
        return bytes(self.buffer) + payload


def vp8_picture_id(payload: bytes) -> tuple[int, int, int] | None:
    """A VP8 payload's PictureID (RFC 7741 4.2): (value, offset, length in bytes), or None
    when the descriptor carries none (or is cut short)."""
    if len(payload) < 3 or not payload[0] & 0x80 or not payload[1] & 0x80:
        return None  # no extension byte (X), or no PictureID in it (I)
    if payload[2] & 0x80:  # M: 15 bits
        if len(payload) < 4:
            return None
        return (payload[2] & 0x7F) << 8 | payload[3], 2, 2
    return payload[2], 2, 1


def with_picture_id(payload: bytes, picture_id: int) -> bytes:
    """The VP8 payload with its PictureID replaced by `picture_id`, written in 15 bits.

    A subscriber moved between encodings of one view (rungs), each with its own
    PictureID sequence, must see one sequence going forward: Chromium drops a frame,
    keyframes included, whose PictureID is not newer than the last it decoded.
    """
    found = vp8_picture_id(payload)
    if found is None:
        return payload
    _, offset, length = found
    return (
        payload[:offset]
        + (0x8000 | (picture_id & 0x7FFF)).to_bytes(2, "big")
        + payload[offset + length :]
    )


def shift_picture_id(payload: bytes, offset: int) -> bytes:
    """The VP8 payload with `offset` added to its PictureID (modulo 2^15), if it has one."""
    found = vp8_picture_id(payload)
    return payload if found is None else with_picture_id(payload, found[0] + offset)


@dataclass(frozen=True)
class SentRun:
    """Consecutive packets a subscriber got from one output: its n-th to the output's index."""

    first_count: int  # the subscriber's packet count (from 0) of the run's first packet
    first_index: int  # the output's packet index of that packet
    output: Any  # whose history holds the payloads
    timestamp_offset: int  # added to the output's timestamps for this subscriber
    picture_id_offset: int = 0  # added (mod 2^15) to the output's VP8 PictureIDs


class SentRuns:
    """Which shared packet each sequence number a subscriber received carries (for NACK).

    A subscriber gets a run of consecutive shared packets until it waits for a
    keyframe, pauses or switches output; each run is one entry, so the map
    costs nothing per packet. Sequence numbers are the subscriber's packet
    count plus its random origin, modulo 2^16.
    """

    def __init__(self, origin: int, limit: int = 32) -> None:
        self.origin = origin & 0xFFFF
        self._runs: deque[SentRun] = deque(maxlen=limit)

    def start(
        self, count: int, index: int, output: Any, timestamp_offset: int, picture_id_offset: int = 0
    ) -> None:
        self._runs.append(SentRun(count, index, output, timestamp_offset, picture_id_offset))

    def sequence_number(self, count: int) -> int:
        return (self.origin + count) & 0xFFFF

    def lookup(self, sequence_number: int, sent: int) -> tuple[SentRun, int] | None:
        """The run and the output's index of `sequence_number`, given `sent` packets so far.

        A sequence number is taken as the most recent packet that had it.
        None if it was never sent or is older than the runs kept.
        """
        if sent <= 0:
            return None
        last = sent - 1
        count = last - ((self.sequence_number(last) - sequence_number) & 0xFFFF)
        if count < 0:
            return None
        for run in reversed(self._runs):
            if run.first_count <= count:
                return run, run.first_index + (count - run.first_count)
        return None

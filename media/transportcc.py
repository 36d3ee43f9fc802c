"""Transport-wide congestion control on the wire: the feedback's format and the sent log.

draft-holmer-rmcat-transport-wide-cc-extensions-01: every packet a sender
sends on one transport carries a transport-wide sequence number (a 2-byte
header extension); the receiver reports back (RTCP RTPFB, FMT 15) which of
them arrived and when, to a quarter of a millisecond. The sender matches
that with when it sent each one and how big it was (`SentPacketLog`) and
estimates the link from the delays itself (media/delaybased.py): a
receiver that sends this feedback (Chromium, once the packets carry the
numbers) sends no REMB.

Pure: parsing, building (for tests and tools) and the log; no sockets, no loop.
Feedback comes from the network: a malformed one raises ValueError naming what
is wrong, and nothing else is touched.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .delaybased import PacketResult

TRANSPORT_CC_URI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
# RTCP transport layer feedback (RTPFB, RFC 4585) and its transport-cc format.
RTCP_RTPFB = 205
RTPFB_TRANSPORT_CC = 15
# Receive deltas are in 250 us units; the reference time in 64 ms units (24 bits, signed).
DELTA_UNIT_US = 250
REFERENCE_UNIT_US = 64_000

_HEAD = struct.Struct("!IIHHI")  # sender SSRC, media SSRC, base, status count, reference+count

# Packet status symbols.
NOT_RECEIVED = 0
SMALL_DELTA = 1  # received, delta in one byte (0..63.75 ms)
LARGE_DELTA = 2  # received, delta in two signed bytes (or negative)


@dataclass(frozen=True)
class TransportFeedback:
    """One transport-cc feedback: which packets from `base_sequence` on arrived, and when.

    `arrivals[i]` is the arrival time (us, the receiver's clock: reference time
    plus the deltas) of packet `base_sequence + i` (16 bits), None if not received.
    """

    sender_ssrc: int
    media_ssrc: int
    base_sequence: int
    feedback_count: int
    arrivals: tuple[int | None, ...]

    def sequence(self, index: int) -> int:
        return (self.base_sequence + index) & 0xFFFF

    def to_bytes(self) -> bytes:
        """The RTCP packet (with its 4-byte header) a receiver would send for it.

        Statuses go in two-bit vector chunks of 7 (a long run of one status in a
        run-length chunk); the reference time is the first arrival's, rounded down.
        """
        received = [a for a in self.arrivals if a is not None]
        if not self.arrivals or len(self.arrivals) > 0xFFFF:
            raise ValueError("a feedback reports 1 to 65535 packets")
        reference = (min(received) if received else 0) // REFERENCE_UNIT_US
        previous = reference * REFERENCE_UNIT_US
        symbols: list[int] = []
        deltas = bytearray()
        for arrival in self.arrivals:
            if arrival is None:
                symbols.append(NOT_RECEIVED)
                continue
            delta = round((arrival - previous) / DELTA_UNIT_US)
            previous += delta * DELTA_UNIT_US
            if 0 <= delta <= 0xFF:
                symbols.append(SMALL_DELTA)
                deltas.append(delta)
            elif -0x8000 <= delta <= 0x7FFF:
                symbols.append(LARGE_DELTA)
                deltas += struct.pack("!h", delta)
            else:
                raise ValueError(f"an arrival delta of {delta * DELTA_UNIT_US} us does not fit")
        chunks = bytearray()
        index = 0
        while index < len(symbols):
            run = 1
            while index + run < len(symbols) and symbols[index + run] == symbols[index]:
                run += 1
            if run >= 7:
                run = min(run, 0x1FFF)
                chunks += struct.pack("!H", symbols[index] << 13 | run)
                index += run
                continue
            group = symbols[index : index + 7]
            value = 0xC000
            for position, symbol in enumerate(group):
                value |= symbol << (12 - 2 * position)
            chunks += struct.pack("!H", value)
            index += len(group)
        body = (
            _HEAD.pack(
                self.sender_ssrc,
                self.media_ssrc,
                self.base_sequence & 0xFFFF,
                len(self.arrivals),
                (reference & 0xFFFFFF) << 8 | (self.feedback_count & 0xFF),
            )
            + chunks
            + deltas
        )
        padding = -len(body) % 4
        first = 0x80 | RTPFB_TRANSPORT_CC
        if padding:
            first |= 0x20
            body += b"\x00" * (padding - 1) + bytes([padding])
        return struct.pack("!BBH", first, RTCP_RTPFB, len(body) // 4) + body


def parse_transport_feedback(body: bytes) -> TransportFeedback:
    """A transport-cc feedback from its body (after the RTCP header, padding removed)."""
    if len(body) < _HEAD.size:
        raise ValueError(f"transport-cc feedback of {len(body)} bytes is shorter than its header")
    sender_ssrc, media_ssrc, base, count, word = _HEAD.unpack_from(body)
    if count == 0:
        raise ValueError("transport-cc feedback reports no packets")
    reference = word >> 8
    if reference & 0x800000:
        reference -= 1 << 24
    position = _HEAD.size
    symbols: list[int] = []
    while len(symbols) < count:
        if position + 2 > len(body):
            raise ValueError(
                f"transport-cc feedback ends after {len(symbols)} of {count} packet statuses"
            )
        (chunk,) = struct.unpack_from("!H", body, position)
        position += 2
        if not chunk & 0x8000:  # run length: one status, up to 8191 times
            symbol = chunk >> 13 & 0x3
            if symbol == 3:
                raise ValueError("transport-cc feedback has a reserved packet status")
            symbols += [symbol] * min(chunk & 0x1FFF, count - len(symbols))
        elif not chunk & 0x4000:  # status vector of 14 one-bit symbols
            symbols += [chunk >> (13 - i) & 0x1 for i in range(14)]
        else:  # status vector of 7 two-bit symbols
            for i in range(7):
                symbol = chunk >> (12 - 2 * i) & 0x3
                if symbol == 3 and len(symbols) < count:
                    raise ValueError("transport-cc feedback has a reserved packet status")
                symbols.append(symbol)
    del symbols[count:]
    arrivals: list[int | None] = []
    time_us = reference * REFERENCE_UNIT_US
    for symbol in symbols:
        if symbol == NOT_RECEIVED:
            arrivals.append(None)
            continue
        if symbol == SMALL_DELTA:
            if position + 1 > len(body):
                raise ValueError("transport-cc feedback ends before its receive deltas")
            delta = body[position]
            position += 1
        else:
            if position + 2 > len(body):
                raise ValueError("transport-cc feedback ends before its receive deltas")
            (delta,) = struct.unpack_from("!h", body, position)
            position += 2
        time_us += delta * DELTA_UNIT_US
        arrivals.append(time_us)
    return TransportFeedback(sender_ssrc, media_ssrc, base, word & 0xFF, tuple(arrivals))


def transport_feedbacks(compound: bytes) -> list[bytes]:
    """The bodies of the transport-cc feedbacks in a compound RTCP packet (decrypted).

    Scanning stops at the first packet whose header does not fit (what follows
    cannot be framed); aiortc refuses such a compound packet as a whole.
    """
    bodies = []
    position = 0
    while position + 4 <= len(compound):
        first, packet_type, length = struct.unpack_from("!BBH", compound, position)
        end = position + 4 + length * 4
        if first >> 6 != 2 or end > len(compound):
            break
        if packet_type == RTCP_RTPFB and first & 0x1F == RTPFB_TRANSPORT_CC:
            body = compound[position + 4 : end]
            if first & 0x20 and body:  # padding: its last byte says how much
                body = body[: len(body) - body[-1]] if body[-1] <= len(body) else b""
            bodies.append(body)
        position = end
    return bodies


class SentPacketLog:
    """When each transport-wide sequence number was sent and how big it was.

    A ring of `size` entries (a power of two dividing 65536) keyed by the
    16-bit number: written by the sending thread, one entry per packet (list
    stores, atomic under the GIL), read on the event loop thread when feedback
    arrives. A number older than `size` packets is forgotten.
    """

    def __init__(self, size: int = 4096) -> None:
        if size <= 0 or size & (size - 1) or size > 65536:
            raise ValueError("the log's size must be a power of two up to 65536")
        self._mask = size - 1
        self._sequences = [-1] * size
        self._times = [0.0] * size
        self._sizes = [0] * size

    def add(self, sequence: int, send_time: float, size: int) -> None:
        slot = sequence & self._mask
        self._sequences[slot] = -1  # a reader between the stores sees no entry, not a mix
        self._times[slot] = send_time
        self._sizes[slot] = size
        self._sequences[slot] = sequence & 0xFFFF

    def lookup(self, sequence: int) -> tuple[float, int] | None:
        """(send time, size) of a 16-bit sequence number, if it is still in the log."""
        slot = sequence & self._mask
        if self._sequences[slot] != sequence & 0xFFFF:
            return None
        return self._times[slot], self._sizes[slot]

    def results(self, feedback: TransportFeedback) -> tuple[list[PacketResult], int]:
        """The feedback's packets this log knows, as the estimator takes them (arrival in s),
        and how many it named that the log does not know (never sent, or long ago)."""
        results = []
        unknown = 0
        for index, arrival in enumerate(feedback.arrivals):
            sent = self.lookup(feedback.sequence(index))
            if sent is None:
                unknown += 1
                continue
            send_time, size = sent
            results.append(
                PacketResult(send_time, None if arrival is None else arrival / 1e6, size)
            )
        return results, unknown

"""Transport-cc feedback on the wire (draft-holmer-rmcat-transport-wide-cc-extensions-01)
and the log of sent packets it is matched with."""

from __future__ import annotations

import random
import struct

import pytest
from aiortc.rtp import RtcpPacket, RtcpReceiverInfo, RtcpRrPacket

from tessera.media.delaybased import PacketResult
from tessera.media.transportcc import (
    SentPacketLog,
    TransportFeedback,
    parse_transport_feedback,
    transport_feedbacks,
)


def head(base: int, count: int, reference: int, feedback_count: int) -> bytes:
    return struct.pack(
        "!IIHHI", 0x11, 0x22, base, count, (reference & 0xFFFFFF) << 8 | feedback_count
    )


def test_a_one_bit_status_vector_and_small_deltas() -> None:
    # Five packets from 100: received, lost, received, received, received.
    body = head(100, 5, 1, 3) + struct.pack("!H", 0x8000 | 0b10111 << 9) + bytes([4, 8, 0, 255])
    feedback = parse_transport_feedback(body)
    assert (feedback.sender_ssrc, feedback.media_ssrc) == (0x11, 0x22)
    assert (feedback.base_sequence, feedback.feedback_count) == (100, 3)
    # Reference 64 ms, then deltas of 250 us units, each from the previous arrival.
    assert feedback.arrivals == (65_000, None, 67_000, 67_000, 130_750)
    assert [feedback.sequence(i) for i in range(5)] == [100, 101, 102, 103, 104]


def test_a_run_length_chunk_and_a_large_negative_delta() -> None:
    # Ten packets received with small deltas (one run), then one with a large delta.
    run = struct.pack("!H", 1 << 13 | 10)
    vector = struct.pack("!H", 0xC000 | 2 << 12)  # two-bit vector: "large delta" first
    deltas = bytes([1] * 10) + struct.pack("!h", -4)
    feedback = parse_transport_feedback(head(65530, 11, -1, 0) + run + vector + deltas)
    expected = [-64_000 + 250 * (i + 1) for i in range(10)] + [-64_000 + 2500 - 1000]
    assert feedback.arrivals == tuple(expected)
    assert feedback.sequence(6) == 0 and feedback.sequence(10) == 4  # wraps at 2^16


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"\x00" * 15, "shorter than its header"),
        (head(1, 0, 0, 0), "no packets"),
        (head(1, 20, 0, 0) + struct.pack("!H", 1 << 13 | 5), "ends after 5 of 20"),
        (head(1, 3, 0, 0) + struct.pack("!H", 1 << 13 | 3) + b"\x01", "before its receive deltas"),
        (head(1, 2, 0, 0) + struct.pack("!H", 3 << 13 | 2), "reserved packet status"),
        (head(1, 2, 0, 0) + struct.pack("!H", 0xC000 | 3 << 10), "reserved packet status"),
    ],
)
def test_a_malformed_feedback_is_refused_with_its_problem(body: bytes, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_transport_feedback(body)


def test_random_bytes_raise_value_error_or_parse() -> None:
    rng = random.Random(7)
    for _ in range(3000):
        body = head(rng.randrange(65536), rng.randrange(1, 300), rng.randrange(1 << 24), 0)
        body += rng.randbytes(rng.randrange(0, 80))
        try:
            feedback = parse_transport_feedback(body)
        except ValueError:
            continue
        assert 1 <= len(feedback.arrivals) < 300


def test_what_is_built_parses_back_from_a_compound_packet() -> None:
    rng = random.Random(3)
    arrivals: list[int | None] = []
    now = 1_000_000
    for i in range(200):
        if rng.random() < 0.1 or 50 <= i < 70:  # scattered loss and a long run of it
            arrivals.append(None)
            continue
        now += rng.choice((0, 250, 1000, 40_000, 70_000))  # small and large deltas
        arrivals.append(now)
    feedback = TransportFeedback(0x1, 0x2, 65500, 9, tuple(arrivals))
    report = RtcpRrPacket(ssrc=5, reports=[RtcpReceiverInfo(1, 0, 0, 10, 0, 0, 0)])
    compound = bytes(report) + feedback.to_bytes() + bytes(report)
    bodies = transport_feedbacks(compound)
    assert len(bodies) == 1
    assert parse_transport_feedback(bodies[0]) == feedback
    # This one is padded, as libwebrtc pads them; aiortc refuses a compound packet with a
    # padded feedback: why the feedback is read off the raw RTCP before aiortc parses it.
    assert feedback.to_bytes()[0] & 0x20
    with pytest.raises(ValueError):
        RtcpPacket.parse(compound)


def test_padding_is_removed_and_a_broken_compound_stops_the_scan() -> None:
    feedback = TransportFeedback(1, 2, 7, 0, (1_000,))  # 16 + 2 + 1 bytes: padded
    data = feedback.to_bytes()
    assert data[0] & 0x20 and len(data) % 4 == 0
    assert parse_transport_feedback(transport_feedbacks(data)[0]) == feedback
    # A header claiming more than there is: nothing after it can be framed.
    assert transport_feedbacks(data + b"\x80\xcd\xff\xff") == [transport_feedbacks(data)[0]]
    assert transport_feedbacks(b"\x00\xcd\x00\x00" + data) == []  # not RTP version 2


def test_the_log_matches_feedback_with_what_was_sent() -> None:
    log = SentPacketLog(size=8)
    for sequence in range(65533, 65536):
        log.add(sequence, sequence / 1000, 1200)
    log.add(65536, 70.0, 300)  # the counter wrapped: number 0
    feedback = TransportFeedback(1, 2, 65534, 0, (2_000_000, None, 2_030_000, 5_000))
    results, unknown = log.results(feedback)
    assert results == [
        PacketResult(65.534, 2.0, 1200),
        PacketResult(65.535, None, 1200),
        PacketResult(70.0, 2.03, 300),
    ]
    assert unknown == 1  # number 1 was never sent
    for sequence in range(1, 9):
        log.add(sequence, 80.0, 100)  # eight more: 65534 and 65535 are forgotten
    assert log.lookup(65534) is None and log.lookup(8) == (80.0, 100)


def test_a_log_size_that_does_not_divide_the_numbers_is_refused() -> None:
    with pytest.raises(ValueError):
        SentPacketLog(size=1000)

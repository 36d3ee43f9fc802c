"""RtpFrameCounter: whole frames from sequence numbers and marker bits, per SSRC."""

from __future__ import annotations

from bench.framecount import RtpFrameCounter, rtp_header_length


def test_a_frame_counts_at_its_marker_when_no_packet_is_missing() -> None:
    counter = RtpFrameCounter()
    assert not counter.packet(7, 100, False, 1000)
    assert not counter.packet(7, 101, False, 1000)
    assert counter.packet(7, 102, True, 500)
    assert counter.packet(7, 103, True, 300)  # a one-packet frame
    assert (counter.frames, counter.incomplete, counter.bytes) == (2, 0, 2800)


def test_a_frame_with_a_gap_is_incomplete_and_the_next_frame_counts_again() -> None:
    counter = RtpFrameCounter()
    counter.packet(7, 10, False, 1)
    assert not counter.packet(7, 12, True, 1)  # 11 lost
    assert counter.packet(7, 13, False, 1) is False
    assert counter.packet(7, 14, True, 1)
    assert (counter.frames, counter.incomplete) == (1, 1)


def test_a_lost_marker_packet_spoils_the_frame_that_follows_it() -> None:
    counter = RtpFrameCounter()
    counter.packet(7, 1, True, 1)
    counter.packet(7, 2, False, 1)  # 3 (the marker) lost: frames 2 and 3 merge
    assert not counter.packet(7, 4, True, 1)
    assert (counter.frames, counter.incomplete) == (1, 1)


def test_sequence_numbers_wrap_and_ssrcs_are_apart() -> None:
    counter = RtpFrameCounter()
    counter.packet(1, 65535, False, 1)
    counter.packet(2, 500, True, 1)  # another stream between the two packets
    assert counter.packet(1, 0, True, 1)
    assert (counter.frames, counter.incomplete) == (2, 0)


def test_header_length_counts_csrcs_and_the_extension() -> None:
    plain = bytes([0x80, 0x60]) + bytes(10)
    assert rtp_header_length(plain, len(plain)) == 12
    # Two CSRCs and a one-word extension (profile 0xBEDE, length 1).
    extended = bytes([0x92, 0x60]) + bytes(10) + bytes(8) + b"\xbe\xde\x00\x01" + bytes(4)
    assert rtp_header_length(extended, len(extended)) == 12 + 8 + 4 + 4

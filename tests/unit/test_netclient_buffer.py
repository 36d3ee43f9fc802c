"""The netlab subscriber's browser-like video jitter buffer (tests/netclient.py): pure."""

from __future__ import annotations

from typing import Any

from aiortc.rtp import RtpPacket

from tests.netclient import browser_like_buffer

# VP8 payload descriptors (RFC 7741): S=1 PID=0 starts a frame; 0 continues one.
START, MORE = b"\x10", b"\x00"
KEYFRAME = b"\x00\x00\x00\x9d\x01\x2a\xa0\x00\x5a\x00" + b"k" * 20  # 160x90
DELTA = b"\x01" + b"d" * 20


def packet(sequence: int, timestamp: int, data: bytes, *, first: bool, last: bool) -> RtpPacket:
    rtp = RtpPacket(
        payload_type=96,
        sequence_number=sequence,
        timestamp=timestamp,
        marker=int(last),
        payload=(START if first else MORE) + data,
    )
    rtp._data = data  # type: ignore[attr-defined]  # what aiortc's receiver depayloads
    return rtp


def feed(buffer: Any, packets: list[RtpPacket]) -> list[tuple[int, bytes]]:
    frames = []
    for rtp in packets:
        _, frame = buffer.add(rtp)
        if frame is not None:
            frames.append((frame.timestamp, frame.data))
    return frames


def test_a_whole_keyframe_behind_an_unfinished_frame_comes_out_at_once() -> None:
    buffer = browser_like_buffer(128)
    frames = feed(
        buffer,
        [
            packet(1, 1000, DELTA, first=True, last=False),  # 2 never comes (a left rung's)
            packet(3, 1000, b"d", first=False, last=True),
            packet(4, 2000, KEYFRAME[:12], first=True, last=False),  # a rung's keyframe
            packet(5, 2000, KEYFRAME[12:], first=False, last=True),
            packet(6, 3000, DELTA, first=True, last=True),
        ],
    )
    assert frames == [(2000, KEYFRAME)]
    assert buffer.jumped == 1 and buffer.gave_up == 0


def test_a_keyframe_missing_its_first_packet_is_no_jump() -> None:
    buffer = browser_like_buffer(128)
    frames = feed(
        buffer,
        [
            packet(1, 1000, DELTA, first=True, last=False),
            packet(5, 2000, KEYFRAME[12:], first=False, last=True),  # 4 is missing
            packet(6, 3000, DELTA, first=True, last=True),
        ],
    )
    assert frames == [] and buffer.jumped == 0


def test_an_unfinished_frame_is_given_up_then_frames_wait_for_a_keyframe() -> None:
    buffer = browser_like_buffer(128, give_up=-1.0)  # gives up on the second stall
    first = [
        packet(1, 1000, DELTA, first=True, last=False),  # 2 is lost
        packet(3, 1000, b"d", first=False, last=True),
    ]
    assert feed(buffer, first) == []
    pli, frame = buffer.add(packet(4, 2000, DELTA, first=True, last=True))
    assert pli and frame is None and buffer.gave_up == 1
    frames = feed(
        buffer,
        [
            packet(5, 3000, DELTA, first=True, last=True),  # a delta frame: not decodable
            packet(6, 4000, KEYFRAME, first=True, last=True),
            packet(7, 5000, DELTA, first=True, last=True),
            packet(8, 6000, DELTA, first=True, last=True),  # aiortc: a frame out per packet in
        ],
    )
    assert frames == [(4000, KEYFRAME)]

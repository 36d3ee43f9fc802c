"""LowLatencyJitterBuffer releases each frame when it is complete, not one frame later."""

from __future__ import annotations

from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtp import RtpPacket

from tessera.media.aiortcext import LowLatencyJitterBuffer


def _packet(seq: int, timestamp: int, data: bytes, marker: bool = False) -> RtpPacket:
    packet = RtpPacket(sequence_number=seq, timestamp=timestamp, marker=int(marker))
    packet._data = data  # type: ignore[attr-defined]  # what the receiver's depayloader sets
    return packet


def _add(buffer: JitterBuffer, packet: RtpPacket) -> JitterFrame | None:
    _, frame = buffer.add(packet)
    return frame


def test_video_frame_released_at_its_marker() -> None:
    buffer = LowLatencyJitterBuffer(capacity=128, is_video=True)

    assert _add(buffer, _packet(10, 3000, b"a")) is None
    assert _add(buffer, _packet(11, 3000, b"b")) is None
    frame = _add(buffer, _packet(12, 3000, b"c", marker=True))

    assert frame is not None and frame.data == b"abc" and frame.timestamp == 3000
    # aiortc's own buffer would still hold it, waiting for the next frame's first packet.
    aiortc = JitterBuffer(capacity=128, is_video=True)
    for seq, data, marker in ((10, b"a", False), (11, b"b", False), (12, b"c", True)):
        assert _add(aiortc, _packet(seq, 3000, data, marker)) is None


def test_video_frame_with_a_gap_waits_for_the_missing_packet() -> None:
    buffer = LowLatencyJitterBuffer(capacity=128, is_video=True)

    assert _add(buffer, _packet(20, 6000, b"a")) is None
    assert _add(buffer, _packet(22, 6000, b"c", marker=True)) is None  # 21 lost so far
    frame = _add(buffer, _packet(21, 6000, b"b"))  # the retransmission fills the gap

    assert frame is not None and frame.data == b"abc"
    following = _add(buffer, _packet(23, 9000, b"d", marker=True))
    assert following is not None and following.data == b"d" and following.timestamp == 9000


def test_video_frame_without_marker_released_by_the_next_frame() -> None:
    buffer = LowLatencyJitterBuffer(capacity=128, is_video=True)

    assert _add(buffer, _packet(30, 100, b"x")) is None
    frame = _add(buffer, _packet(31, 200, b"y"))

    assert frame is not None and frame.data == b"x" and frame.timestamp == 100


def test_audio_frames_released_at_once_and_in_order() -> None:
    buffer = LowLatencyJitterBuffer(capacity=16)

    first = _add(buffer, _packet(1, 960, b"one"))
    assert first is not None and first.data == b"one"
    assert _add(buffer, _packet(3, 2880, b"three")) is None  # 2 is late
    second = _add(buffer, _packet(2, 1920, b"two"))
    assert second is not None and second.data == b"two"
    third = _add(buffer, _packet(4, 3840, b"four"))
    assert third is not None and third.data == b"three"  # one frame per packet, oldest first


def test_a_lost_audio_packet_is_skipped_and_adds_no_lasting_delay() -> None:
    buffer = LowLatencyJitterBuffer(capacity=16)

    assert _add(buffer, _packet(1, 960, b"1")) is not None
    # 2 is lost for good: it is waited for while 3 is the newest, skipped when 4 arrives.
    assert _add(buffer, _packet(3, 2880, b"3")) is None
    released = _add(buffer, _packet(4, 3840, b"4"))
    assert released is not None and released.data == b"3"
    # From then on each packet in releases the one before it: at most one packet (20 ms) held,
    # where aiortc's buffer would hold 15 (300 ms) for as long as the stream lasts.
    for seq in range(5, 40):
        released = _add(buffer, _packet(seq, seq * 960, str(seq).encode()))
        assert released is not None and released.data == str(seq - 1).encode()


def test_audio_losses_one_after_another_do_not_add_up() -> None:
    buffer = LowLatencyJitterBuffer(capacity=16)
    out = []
    for seq in range(1, 60):
        if seq % 5 == 0:
            continue  # every fifth packet lost
        frame = _add(buffer, _packet(seq, seq * 960, str(seq).encode()))
        if frame is not None:
            out.append(int(frame.data))
    # The last packet released is at most one behind the last one sent.
    assert out[-1] >= 58 - 1
    assert out == sorted(out)

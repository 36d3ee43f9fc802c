"""RtpFrameCounter: whole video frames from clear RTP headers (sequence numbers and marker bits).

A benchmark client that does not decrypt counts a frame at the packet carrying
the marker bit (the frame's last packet, RFC 7741). Counted that way a frame
that lost a packet would still count; this counter counts a frame only when
every packet of it arrived: no sequence-number gap since the previous frame's
last packet (per SSRC). Frames with a gap are counted apart as incomplete. The
first packet of an SSRC starts a frame (a subscription starts at a keyframe's
first packet on loopback). Pure logic, no I/O: one instance per client.
"""

from __future__ import annotations

SEQUENCE_MODULO = 1 << 16


class RtpFrameCounter:
    """Complete and incomplete frames, and RTP payload bytes, of one client's video."""

    __slots__ = ("_next", "_whole", "bytes", "frames", "incomplete")

    def __init__(self) -> None:
        self.frames = 0
        self.incomplete = 0
        self.bytes = 0
        self._next: dict[int, int] = {}  # SSRC -> the sequence number expected next
        self._whole: dict[int, bool] = {}  # SSRC -> no packet of its current frame missing

    def packet(self, ssrc: int, sequence: int, marker: bool, payload: int) -> bool:
        """One RTP packet; True when it completed a whole frame."""
        self.bytes += payload
        expected = self._next.get(ssrc)
        whole = self._whole.get(ssrc, True) and (expected is None or sequence == expected)
        self._next[ssrc] = (sequence + 1) % SEQUENCE_MODULO
        if not marker:
            self._whole[ssrc] = whole
            return False
        self._whole[ssrc] = True  # the next packet starts the next frame
        if whole:
            self.frames += 1
            return True
        self.incomplete += 1
        return False


def rtp_header_length(data: bytes | memoryview, length: int) -> int:
    """Bytes of the RTP header of a packet of `length` bytes: fixed part, CSRCs, extension."""
    header = 12 + 4 * (data[0] & 0x0F)
    if data[0] & 0x10 and length >= header + 4:
        header += 4 + 4 * int.from_bytes(data[header + 2 : header + 4], "big")
    return header

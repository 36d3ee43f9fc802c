"""What an Opus packet's first bytes tell (RFC 6716; a test instrument): its mode and FEC.

Pure: no I/O. In-band FEC is SILK's LBRR ("low bit-rate redundancy"): a
packet in SILK or hybrid mode may carry a coarser copy of the previous
frame, which a receiver that lost that frame decodes instead. Whether it
does is said by the LBRR flag of each channel, at the start of the SILK
layer, behind the voice activity flags; CELT-only packets never carry it.
The flags are range coded, so reading them takes the first steps of the
range decoder (RFC 6716 section 4.1), written here from the RFC.
"""

from __future__ import annotations

from dataclasses import dataclass

# TOC configurations (RFC 6716 3.1): 0-11 SILK only, 12-15 hybrid, 16-31 CELT only.
FIRST_HYBRID = 12
FIRST_CELT = 16


@dataclass(frozen=True)
class OpusFrameInfo:
    """The TOC byte's figures and, for SILK and hybrid packets, the SILK header flags."""

    config: int
    stereo: bool
    frames_code: int  # 0: one frame, 1: two of equal size, 2: two of any size, 3: any number
    mode: str  # "silk", "hybrid" or "celt"
    # Per channel (mid, then side when stereo), of the packet's first frame; empty for CELT.
    voice_activity: tuple[bool, ...] = ()
    lbrr: tuple[bool, ...] = ()

    @property
    def has_fec(self) -> bool:
        """Whether the packet carries in-band FEC (LBRR) in any channel."""
        return any(self.lbrr)


class _RangeDecoder:
    """The start of RFC 6716's range decoder: enough to read equiprobable flags."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._position = 1
        first = data[0] if data else 0
        self._rng = 128
        self._val = 127 - (first >> 1)
        self._saved = first & 1  # the first byte's last bit, used by the next step
        self._normalize()

    def _normalize(self) -> None:
        while self._rng <= 1 << 23:
            self._rng <<= 8
            data = self._data
            byte = data[self._position] if self._position < len(data) else 0
            self._position += 1
            symbol = (self._saved << 7) | (byte >> 1)
            self._saved = byte & 1
            self._val = ((self._val << 8) + (255 - symbol)) & 0x7FFFFFFF

    def flag(self) -> bool:
        """One bit of probability 1/2 (ec_dec_bit_logp with logp 1)."""
        half = self._rng >> 1
        bit = self._val < half
        if bit:
            self._rng = half
        else:
            self._val -= half
            self._rng -= half
        self._normalize()
        return bit


def silk_frames(config: int) -> int:
    """SILK frames (of 10 or 20 ms) in one Opus frame of this configuration."""
    if config >= FIRST_HYBRID:
        return 1  # hybrid frames are 10 or 20 ms: one SILK frame
    duration_index = config % 4  # 10, 20, 40, 60 ms
    return (1, 1, 2, 3)[duration_index]


def inspect_packet(packet: bytes) -> OpusFrameInfo:
    """The TOC and SILK header flags of an Opus packet.

    Raises ValueError for an empty packet or one whose frame layout is cut short.
    """
    if not packet:
        raise ValueError("an Opus packet has at least its TOC byte")
    toc = packet[0]
    config = toc >> 3
    stereo = bool(toc & 0x04)
    code = toc & 0x03
    mode = "silk" if config < FIRST_HYBRID else "hybrid" if config < FIRST_CELT else "celt"
    info = OpusFrameInfo(config, stereo, code, mode)
    if mode == "celt":
        return info
    start = 1
    if code == 2:
        # The first frame's length: one byte, or two when the first is 252 or more.
        if len(packet) < 2:
            raise ValueError("Opus packet (code 2) is missing its frame length")
        start = 2 if packet[1] < 252 else 3
    elif code == 3:
        if len(packet) < 2:
            raise ValueError("Opus packet (code 3) is missing its frame count")
        count_byte = packet[1]
        start = 2
        if count_byte & 0x40:  # padding: its length bytes come first
            while True:
                if start >= len(packet):
                    raise ValueError("Opus packet (code 3) is cut short in its padding length")
                length = packet[start]
                start += 1
                if length != 255:
                    break
        if not count_byte & 0x80:  # VBR: frame lengths follow (all but the last)
            for _ in range((count_byte & 0x3F) - 1):
                if start >= len(packet):
                    raise ValueError("Opus packet (code 3) is cut short in its frame lengths")
                start += 1 if packet[start] < 252 else 2
    if start > len(packet):
        raise ValueError("Opus packet is cut short before its first frame")
    decoder = _RangeDecoder(packet[start:])
    frames = silk_frames(config)
    activity: list[bool] = []
    lbrr: list[bool] = []
    for _channel in range(2 if stereo else 1):
        flags = [decoder.flag() for _ in range(frames)]
        activity.append(any(flags))
        lbrr.append(decoder.flag())
    return OpusFrameInfo(config, stereo, code, mode, tuple(activity), tuple(lbrr))

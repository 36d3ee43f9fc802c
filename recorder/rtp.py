"""RTP packets of H.264 (RFC 6184) and AAC (RFC 3640), and the SDP that announces them (pure).

What an RTSP push sends after RECORD, as FFmpeg's `rtsp` muxer does:
H.264 in packetization mode 1 (a NAL unit per packet, FU-A fragments for the
large ones, the marker bit on an access unit's last packet) with the SPS/PPS
also in the SDP's `sprop-parameter-sets`; AAC as `MPEG4-GENERIC` in
`AAC-hbr` mode, one frame per packet behind a 16-bit AU header.
"""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass, field

MAX_PAYLOAD = 1400  # fits a 1500-byte MTU with IP, TCP and interleaving headers
VIDEO_PAYLOAD_TYPE = 96
AUDIO_PAYLOAD_TYPE = 97
_FU_A = 28
_AUD = 9  # access unit delimiters are left out, as FFmpeg's packetizer does


def nal_units(access_unit: bytes) -> list[bytes]:
    """The NAL units of an Annex-B access unit, without start codes."""
    units: list[bytes] = []
    start = access_unit.find(b"\x00\x00\x01")
    while start >= 0:
        begin = start + 3
        nxt = access_unit.find(b"\x00\x00\x01", begin)
        end = len(access_unit) if nxt < 0 else nxt
        unit = access_unit[begin:end]
        if nxt >= 0:
            unit = unit.rstrip(b"\x00")  # the zero of the next 4-byte start code
        if unit:
            units.append(unit)
        start = nxt
    return units


def h264_payloads(access_unit: bytes, max_payload: int = MAX_PAYLOAD) -> list[bytes]:
    """RTP payloads of one access unit: single NAL unit packets and FU-A fragments."""
    payloads: list[bytes] = []
    for unit in nal_units(access_unit):
        nal_type = unit[0] & 0x1F
        if nal_type == _AUD:
            continue
        if len(unit) <= max_payload:
            payloads.append(unit)
            continue
        indicator = (unit[0] & 0xE0) | _FU_A
        data = unit[1:]
        step = max_payload - 2
        for offset in range(0, len(data), step):
            header = nal_type
            if offset == 0:
                header |= 0x80  # start
            if offset + step >= len(data):
                header |= 0x40  # end
            payloads.append(bytes((indicator, header)) + data[offset : offset + step])
    return payloads


def aac_payload(frame: bytes) -> bytes:
    """One raw AAC frame behind RFC 3640's AU headers (13-bit size, 3-bit index)."""
    return struct.pack(">HH", 16, (len(frame) << 3) & 0xFFFF) + frame


@dataclass
class RtpPacketizer:
    """Sequence numbers and headers of one RTP stream."""

    payload_type: int
    ssrc: int
    sequence: int = 0
    packets: int = field(default=0)

    def packet(self, payload: bytes, timestamp: int, marker: bool) -> bytes:
        header = struct.pack(
            ">BBHII",
            0x80,
            (0x80 if marker else 0) | self.payload_type,
            self.sequence & 0xFFFF,
            timestamp & 0xFFFFFFFF,
            self.ssrc,
        )
        self.sequence += 1
        self.packets += 1
        return header + payload


def interleaved(channel: int, packet: bytes) -> bytes:
    """An RTP packet framed on the RTSP connection (RFC 2326 10.12)."""
    return struct.pack(">BBH", 0x24, channel, len(packet)) + packet


def aac_config(sample_rate: int = 48000, channels: int = 2) -> str:
    """The AudioSpecificConfig of AAC-LC, as hex for the SDP's `config`."""
    rates = [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000]
    value = (2 << 11) | (rates.index(sample_rate) << 7) | (channels << 3)
    return f"{value:04x}"


def session_description(
    host: str, sps: bytes | None, pps: bytes | None, audio: bool, audio_config: str
) -> str:
    """The SDP of an ANNOUNCE: a video and/or an audio track, controls streamid=0/1."""
    lines = [
        "v=0",
        f"o=- 0 0 IN {'IP6' if ':' in host else 'IP4'} {host}",
        "s=Tessera",
        f"c=IN {'IP6' if ':' in host else 'IP4'} {host}",
        "t=0 0",
        "a=tool:Tessera",
    ]
    control = 0
    if sps is not None and pps is not None:
        sets = ",".join(base64.b64encode(unit).decode() for unit in (sps, pps))
        profile = sps[1:4].hex()
        lines += [
            f"m=video 0 RTP/AVP {VIDEO_PAYLOAD_TYPE}",
            f"a=rtpmap:{VIDEO_PAYLOAD_TYPE} H264/90000",
            f"a=fmtp:{VIDEO_PAYLOAD_TYPE} packetization-mode=1; "
            f"sprop-parameter-sets={sets}; profile-level-id={profile}",
            f"a=control:streamid={control}",
        ]
        control += 1
    if audio:
        lines += [
            f"m=audio 0 RTP/AVP {AUDIO_PAYLOAD_TYPE}",
            f"a=rtpmap:{AUDIO_PAYLOAD_TYPE} MPEG4-GENERIC/48000/2",
            f"a=fmtp:{AUDIO_PAYLOAD_TYPE} profile-level-id=1;mode=AAC-hbr;sizelength=13;"
            f"indexlength=3;indexdeltalength=3; config={audio_config}",
            f"a=control:streamid={control}",
        ]
    return "\r\n".join(lines) + "\r\n"

"""RTP packets of H.264 and AAC, the SDP of an RTSP push, and RTSP answers (pure)."""

from __future__ import annotations

import base64
import struct

import pytest

from tessera.recorder.amf import AmfError, amf0_decode, amf0_encode
from tessera.recorder.rtp import (
    RtpPacketizer,
    aac_config,
    aac_payload,
    h264_payloads,
    interleaved,
    nal_units,
    session_description,
)
from tessera.recorder.rtsp import RtspError, parse_response

SPS = bytes((0x67, 0x42, 0xC0, 0x1F, 0xDA, 0x01))
PPS = bytes((0x68, 0xCE, 0x3C, 0x80))
BIG = bytes((0x65,)) + bytes(range(256)) * 20  # an IDR slice of 5121 bytes


def annex_b(*units: bytes) -> bytes:
    return b"".join(b"\x00\x00\x00\x01" + unit for unit in units)


def test_nal_units_and_single_packets() -> None:
    aud = bytes((0x09, 0xF0))
    access_unit = annex_b(aud, SPS, PPS) + b"\x00\x00\x01" + bytes((0x41, 1, 2))
    assert nal_units(access_unit) == [aud, SPS, PPS, bytes((0x41, 1, 2))]
    assert h264_payloads(access_unit) == [SPS, PPS, bytes((0x41, 1, 2))]


def test_large_units_are_fragmented_and_reassemble() -> None:
    payloads = h264_payloads(annex_b(SPS, BIG), max_payload=1000)
    assert payloads[0] == SPS
    fragments = payloads[1:]
    assert len(fragments) == 6 and all(len(p) <= 1000 for p in fragments)
    assert all(p[0] == (0x65 & 0xE0) | 28 for p in fragments)
    assert fragments[0][1] == 0x80 | 5 and fragments[-1][1] == 0x40 | 5
    assert all(p[1] == 5 for p in fragments[1:-1])
    assert bytes((0x65,)) + b"".join(p[2:] for p in fragments) == BIG


def test_rtp_headers_and_interleaving() -> None:
    packetizer = RtpPacketizer(96, 0x01020304, sequence=65535)
    first = packetizer.packet(b"ab", 90000, marker=True)
    second = packetizer.packet(b"cd", 2**32 + 5, marker=False)
    assert first[:12] == struct.pack(">BBHII", 0x80, 0x80 | 96, 65535, 90000, 0x01020304)
    assert struct.unpack(">H", second[2:4])[0] == 0 and second[1] == 96
    assert struct.unpack(">I", second[4:8])[0] == 5
    assert interleaved(2, first) == b"$\x02" + struct.pack(">H", len(first)) + first


def test_aac_payload_and_config() -> None:
    frame = bytes(300)
    payload = aac_payload(frame)
    assert payload[:4] == struct.pack(">HH", 16, 300 << 3) and payload[4:] == frame
    assert aac_config(48000, 2) == "1190" and aac_config(44100, 1) == "1208"


def test_session_description() -> None:
    sdp = session_description("127.0.0.1", SPS, PPS, True, "1190")
    lines = sdp.split("\r\n")
    assert lines[0] == "v=0" and "c=IN IP4 127.0.0.1" in lines
    sets = f"{base64.b64encode(SPS).decode()},{base64.b64encode(PPS).decode()}"
    assert (
        f"a=fmtp:96 packetization-mode=1; sprop-parameter-sets={sets}; profile-level-id=42c01f"
        in lines
    )
    assert lines.index("m=video 0 RTP/AVP 96") < lines.index("a=control:streamid=0")
    assert lines.index("m=audio 0 RTP/AVP 97") < lines.index("a=control:streamid=1")
    assert "a=rtpmap:97 MPEG4-GENERIC/48000/2" in lines
    audio_only = session_description("::1", None, None, True, "1190")
    assert "m=video" not in audio_only and "a=control:streamid=0" in audio_only
    assert "IN IP6 ::1" in audio_only


def test_rtsp_answers() -> None:
    status, reason, headers = parse_response(
        b"RTSP/1.0 200 OK\r\nCSeq: 3\r\nSession: 12345678;timeout=60\r\nContent-Length: 0"
    )
    assert (status, reason, headers["session"]) == (200, "OK", "12345678;timeout=60")
    with pytest.raises(RtspError, match="not an RTSP server"):
        parse_response(b"HTTP/1.1 400 Bad Request\r\n")


def test_amf_round_trip_and_refusal() -> None:
    values = ["connect", 1.0, {"app": "live", "n": None, "ok": True}]
    assert amf0_decode(amf0_encode(*values)) == values
    with pytest.raises(AmfError):
        amf0_decode(b"\x00\x01")  # a number cut short
    with pytest.raises(AmfError, match="unsupported"):
        amf0_decode(b"\x11")

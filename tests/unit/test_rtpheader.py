"""Per-subscriber RTP headers on shared payloads, and the NACK map of what a subscriber got."""

from __future__ import annotations

import pytest
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket

from tessera.media.rtpheader import (
    ABS_SEND_TIME_URI,
    MID_URI,
    RtpHeaderTemplate,
    SentRuns,
    abs_send_time,
    vp8_picture_id,
    with_picture_id,
)
from tessera.media.transportcc import TRANSPORT_CC_URI

IDS = {MID_URI: 4, ABS_SEND_TIME_URI: 3}


def parse(data: bytes, ids: dict[str, int] = IDS) -> RtpPacket:
    extensions = HeaderExtensionsMap()
    extensions.configure(
        RTCRtpParameters(
            headerExtensions=[RTCRtpHeaderExtensionParameters(id=i, uri=u) for u, i in ids.items()]
        )
    )
    return RtpPacket.parse(data, extensions)


def test_a_packet_reads_back_as_aiortc_parses_it() -> None:
    template = RtpHeaderTemplate(0xDEADBEEF, 96, IDS, "1")
    template.set_abs_send_time(0x123456)
    packet = parse(template.packet(65537, (1 << 32) + 5, 1, b"payload"))
    assert packet.ssrc == 0xDEADBEEF
    assert packet.payload_type == 96
    assert packet.sequence_number == 1  # modulo 2^16
    assert packet.timestamp == 5  # modulo 2^32
    assert packet.marker == 1
    assert packet.payload == b"payload"
    assert packet.extensions.mid == "1"
    assert packet.extensions.abs_send_time == 0x123456


def test_the_header_is_rewritten_in_place_per_packet() -> None:
    template = RtpHeaderTemplate(7, 111, {}, None)
    first = template.packet(10, 100, 0, b"a")
    second = template.packet(11, 100, 1, b"b")
    assert len(first) == 13 and first[0] == 0x80  # no extensions negotiated: none written
    a, b = parse(first, {}), parse(second, {})
    assert (a.sequence_number, a.marker, b.sequence_number, b.marker) == (10, 0, 11, 1)
    assert first[12:] == b"a" and second[12:] == b"b"


def test_only_negotiated_extensions_are_written() -> None:
    template = RtpHeaderTemplate(7, 96, {ABS_SEND_TIME_URI: 2}, "0")
    template.set_abs_send_time(9)
    packet = parse(template.packet(1, 1, 0, b"x"), {ABS_SEND_TIME_URI: 2})
    assert packet.extensions.abs_send_time == 9
    assert packet.extensions.mid is None


def test_each_packet_carries_its_transport_wide_sequence_number() -> None:
    ids = {MID_URI: 4, ABS_SEND_TIME_URI: 2, TRANSPORT_CC_URI: 5}
    template = RtpHeaderTemplate(7, 96, ids, "1")
    template.set_abs_send_time(0xABCDEF)
    numbers = []
    for transport_sequence in (65535, 65536, 7):
        template.set_transport_sequence(transport_sequence)
        packet = parse(template.packet(1, 1, 0, b"x"), ids)
        numbers.append(packet.extensions.transport_sequence_number)
        assert packet.extensions.mid == "1"
        assert packet.extensions.abs_send_time == 0xABCDEF
        assert packet.payload == b"x"
    assert numbers == [65535, 0, 7]


def test_without_transport_cc_negotiated_no_number_is_written() -> None:
    template = RtpHeaderTemplate(7, 96, {MID_URI: 4}, "1")
    template.set_transport_sequence(12)  # a no-op: the subscriber did not negotiate it
    packet = parse(template.packet(1, 1, 0, b"x"), {MID_URI: 4, TRANSPORT_CC_URI: 5})
    assert packet.extensions.transport_sequence_number is None
    assert packet.extensions.mid == "1"


@pytest.mark.parametrize(
    ("ssrc", "payload_type", "ids", "mid"),
    [
        (1, 128, {}, None),
        (-1, 96, {}, None),
        (1, 96, {MID_URI: 15}, "0"),
        (1, 96, {MID_URI: 1}, "x" * 17),
        (1, 96, {TRANSPORT_CC_URI: 15}, None),
    ],
)
def test_values_that_cannot_be_written_are_refused(
    ssrc: int, payload_type: int, ids: dict[str, int], mid: str | None
) -> None:
    with pytest.raises(ValueError):
        RtpHeaderTemplate(ssrc, payload_type, ids, mid)


def test_abs_send_time_is_six_point_eighteen_seconds() -> None:
    assert abs_send_time(1 << 32) == 1 << 18  # one second
    assert abs_send_time((64 << 32) + (1 << 31)) == (1 << 17)  # wraps at 64 s


def test_a_nacked_sequence_number_maps_to_the_shared_packet_it_carried() -> None:
    runs = SentRuns(origin=65530)
    output_a, output_b = object(), object()
    runs.start(0, 1000, output_a, 0)  # packets 0..9 = index 1000..1009 of a
    runs.start(10, 5000, output_b, 77)  # after a switch: 10.. = index 5000.. of b
    sent = 20
    assert runs.sequence_number(0) == 65530
    assert runs.sequence_number(6) == 0  # wrapped
    found = runs.lookup(runs.sequence_number(7), sent)
    assert found is not None and found[0].output is output_a and found[1] == 1007
    found = runs.lookup(runs.sequence_number(12), sent)
    assert found is not None and found[0].output is output_b and found[1] == 5002
    assert found[0].timestamp_offset == 77
    assert runs.lookup(runs.sequence_number(25), sent) is None  # not sent yet: reads as 65536 old
    assert SentRuns(0).lookup(0, 0) is None


def test_old_runs_are_forgotten() -> None:
    runs = SentRuns(origin=0, limit=2)
    for n in range(3):
        runs.start(n * 10, n * 100, None, 0)
    assert runs.lookup(5, 30) is None
    found = runs.lookup(15, 30)
    assert found is not None and found[1] == 105


def test_a_vp8_picture_id_is_read_and_rewritten_in_fifteen_bits() -> None:
    seven = bytes([0x90, 0x80, 0x05]) + b"frame"  # X, S; I; a 7-bit PictureID of 5
    fifteen = bytes([0x80, 0x80, 0x80 | 0x12, 0x34]) + b"frame"  # M: 15 bits, 0x1234
    assert vp8_picture_id(seven) == (5, 2, 1)
    assert vp8_picture_id(fifteen) == (0x1234, 2, 2)
    rewritten = with_picture_id(seven, 0x7FFF + 3)  # modulo 2^15
    assert rewritten == bytes([0x90, 0x80, 0x80, 0x02]) + b"frame"
    assert vp8_picture_id(rewritten) == (2, 2, 2)
    assert with_picture_id(fifteen, 7)[4:] == b"frame"
    # No PictureID (no X, or X without I), or a descriptor cut short: nothing to rewrite.
    for payload in (b"\x10frame", bytes([0x80, 0x40, 0x01]) + b"f", b"\x80\x80", b"\x80\x80\x81"):
        assert vp8_picture_id(payload) is None
        assert with_picture_id(payload, 9) == payload

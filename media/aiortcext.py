"""The few places where Tessera reaches into aiortc's private state.

aiortc has no public API for ten things an SFU/MCU needs: taking the encoded
frames a receiver has reassembled (to forward them without decoding), turning
decoding on and off, hearing a receiver's keyframe request on a sender that
sends pre-encoded packets, hearing a receiver's bandwidth estimate (REMB),
answering only some of the codecs both sides support, releasing received
frames without aiortc's fixed extra delay, giving each subscription its own
msid stream id, checking DTLS-SRTP at start-up, and (for benchmark clients)
taking SRTP packets before they are decrypted, and (for the shared fan-out)
sending a subscriber's RTP from a thread of Tessera's own: its SRTP key, its
socket, its NACKs and its sender-report counters, and (for transport-wide
congestion control) answering the transport-cc extension and feedback aiortc
does not know and reading the feedback it drops. Keeping every such
reach-in here means an aiortc upgrade is checked in one file
(tests/integration cover each of them).

Nor does aiortc say why a DTLS handshake failed: `refused_peer_curve()` reads
the peer's certificate off the failed connection, to name a key on a curve
its OpenSSL cannot accept.

`PRIVATE_NAMES` lists every name below aiortc's public API used here, and
`check_private_names()` looks each one up at start-up: an aiortc that renamed
one stops the server with the name, instead of breaking media at the first call.
aiortc is pinned to the minor version these were read in (pyproject.toml).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import os
import queue
import socket
from collections.abc import Callable
from importlib.metadata import version
from types import CodeType, SimpleNamespace
from typing import Any

from aiortc import (
    RTCCertificate,
    RTCDtlsParameters,
    RTCDtlsTransport,
    RTCIceParameters,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
    rtcpeerconnection,
)
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtcdtlstransport import SRTP_PROFILES
from aiortc.rtcrtpparameters import (
    RTCRtcpFeedback,
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpSendParameters,
)
from aiortc.rtp import (
    RTCP_PSFB_APP,
    AnyRtcpPacket,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpSrPacket,
    RtpPacket,
    unpack_remb_fci,
)
from aiortc.utils import uint16_add
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from OpenSSL import SSL
from pylibsrtp import Policy, Session

from .mediasource import is_keyframe
from .transportcc import TRANSPORT_CC_URI, transport_feedbacks

logger = logging.getLogger(__name__)

# Packets an audio gap is waited for (reordering) before it is skipped.
AUDIO_REORDER_PACKETS = 2

# The curves of the ECDSA keys aiortc's DTLS (OpenSSL, TLS 1.2) accepts from a peer: those of
# its supported_groups extension (X25519 and X448 there are no ECDSA curves). OpenSSL refuses
# a peer's key on any other curve (alert illegal_parameter, "wrong curve"), and the OpenSSL in
# cryptography's wheels (4.0) has no TLS group for the curves RFC 8422 deprecated (P-224
# among them) to add. tests/unit/test_dtls_curves.py reads the list from a real ClientHello.
DTLS_PEER_CURVES = ("secp256r1", "secp384r1", "secp521r1")

# The aiortc minor version the names below were read in (and pyproject.toml pins).
AIORTC_VERSION = "1.16"

# Every name below aiortc's public API that Tessera uses (this module, and bench/ through
# it): (what holds it, the name). A holder "Class.method" means the name is an attribute
# that method sets on another object (so it is looked up in the method's code).
PRIVATE_NAMES: tuple[tuple[str, str], ...] = (
    ("RTCRtpReceiver", "_RTCRtpReceiver__decoder_queue"),  # install_encoded_tap, stop_decoder
    ("RTCRtpReceiver", "_RTCRtpReceiver__decoder_thread"),  # stop_decoder
    ("RTCRtpReceiver", "_RTCRtpReceiver__jitter_buffer"),  # install_low_latency_buffer
    ("RTCRtpReceiver", "_RTCRtpReceiver__rtx_ssrc"),  # send_picture_loss
    ("RTCRtpReceiver", "_RTCRtpReceiver__started"),  # receiver_started
    ("RTCRtpReceiver", "_send_rtcp_pli"),  # send_picture_loss
    ("RTCRtpReceiver", "_handle_rtp_packet"),
    ("RTCRtpReceiver._handle_rtp_packet", "_data"),  # each RtpPacket's depayloaded frame
    ("RTCRtpSender", "_send_keyframe"),  # on_keyframe_request
    ("RTCRtpSender", "_handle_rtcp_packet"),  # watch_remb wraps it
    ("RTCRtpSender", "_stream_id"),  # set_msid_stream
    # What aiortc's media description reads of a sender and a transceiver (check_msid_stream).
    ("RTCRtpSender", "_track_id"),
    ("RTCRtpSender", "_ssrc"),
    ("RTCRtpSender", "_rtx_ssrc"),
    ("RTCRtpTransceiver", "_headerExtensions"),
    ("rtcpeerconnection", "create_media_description_for_transceiver"),
    ("RTCRtpTransceiver", "_codecs"),  # prefer_codec, negotiated_codec
    ("RTCIceTransport", "_recv"),  # intercept_srtp_packets
    ("JitterBuffer", "_remove_frame"),  # LowLatencyJitterBuffer overrides it
    ("JitterBuffer", "_origin"),
    ("JitterBuffer", "_packets"),
    ("JitterBuffer", "_is_video"),
    ("JitterBuffer", "capacity"),
    ("JitterBuffer", "remove"),
    ("RTCCertificate", "_create_ssl_context"),  # check_dtls_srtp, with SRTP_PROFILES
    ("RTCDtlsTransport", "_ssl"),  # refused_peer_curve
    ("SRTPProfile", "openssl_profile"),
    ("SRTPProfile", "libsrtp_profile"),
    ("SRTPProfile", "key_length"),
    ("SRTPProfile", "salt_length"),
    ("SRTPProfile", "get_key_and_salt"),
    # The shared fan-out (media/rtpfanout.py): a subscriber's SRTP key, socket and counters.
    ("RTCDtlsTransport.start", "_ssl"),  # sender_srtp_key
    ("RTCDtlsTransport", "_role"),
    ("RTCIceTransport", "_connection"),  # sender_route
    ("Connection", "_nominated"),
    ("RTCIceTransport", "_send"),  # send_through_ice
    ("RTCRtpSender", "_retransmit"),  # on_retransmit_request
    ("RTCRtpSender", "_RTCRtpSender__packet_count"),  # report_sent
    ("RTCRtpSender", "_RTCRtpSender__octet_count"),
    ("RTCRtpSender", "_RTCRtpSender__ntp_timestamp"),
    ("RTCRtpSender", "_RTCRtpSender__rtp_timestamp"),
    ("RTCRtpReceiver", "_RTCRtpReceiver__remote_streams"),  # received_counts
    ("RTCDtlsTransport", "_handle_rtcp_data"),  # watch_transport_feedback
)


class PrivateNameMissing(RuntimeError):
    """The installed aiortc lacks a name Tessera reaches into; the message names each one."""


def missing_private_names() -> list[str]:
    """The names of PRIVATE_NAMES the installed aiortc lacks, as ``Holder.name``.

    Looks them up on live objects (a peer connection that is never started, a
    jitter buffer): most are instance attributes that only its __init__ creates.
    aiortc's senders take the current event loop when built, so they are built on a
    thread of their own with a loop of its own, whatever the caller's thread has.
    """
    with concurrent.futures.ThreadPoolExecutor(1, "private-names") as pool:
        return pool.submit(_missing_private_names).result()


def _missing_private_names() -> list[str]:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        holders = _private_name_holders()
    finally:
        asyncio.set_event_loop(None)
        loop.close()
    missing = []
    for holder_name, name in PRIVATE_NAMES:
        holder = holders.get(holder_name)
        if isinstance(holder, CodeType):
            found = name in holder.co_names
        else:
            found = holder is not None and hasattr(holder, name)
        if not found:
            missing.append(f"{holder_name}.{name}")
    return missing


def check_private_names() -> None:
    """Raise PrivateNameMissing, naming every missing name, unless aiortc has them all."""
    missing = missing_private_names()
    if missing:
        raise PrivateNameMissing(
            f"aiortc {version('aiortc')} has no {', '.join(missing)}: Tessera reaches into"
            f" these (tessera/media/aiortcext.py), written for aiortc {AIORTC_VERSION}.x;"
            f" install aiortc {AIORTC_VERSION}.x (constraints.txt)"
        )


def _private_name_holders() -> dict[str, object]:
    pc = RTCPeerConnection()
    video = pc.addTransceiver("video")
    handle = getattr(RTCRtpReceiver, "_handle_rtp_packet", None)
    return {
        "RTCRtpReceiver": video.receiver,
        "RTCRtpReceiver._handle_rtp_packet": getattr(handle, "__code__", None),
        "RTCRtpSender": video.sender,
        "RTCRtpTransceiver": video,
        "RTCIceTransport": video.receiver.transport.transport,
        "JitterBuffer": JitterBuffer(capacity=16, is_video=True),
        "RTCCertificate": RTCCertificate,
        "rtcpeerconnection": rtcpeerconnection,
        "SRTPProfile": SRTP_PROFILES[0] if SRTP_PROFILES else None,
        "RTCDtlsTransport": video.sender.transport,
        "RTCDtlsTransport.start": getattr(
            getattr(type(video.sender.transport), "start", None), "__code__", None
        ),
        "Connection": getattr(video.receiver.transport.transport, "_connection", None),
    }


EncodedFrameHandler = Callable[[RTCRtpCodecParameters, bytes, int], None]


class EncodedFrameTap(queue.Queue[Any]):
    """Stands in for an RTCRtpReceiver's decoder queue.

    The receiver puts every reassembled encoded frame here (on the event loop
    thread). The tap hands it to Tessera first, then passes it on to aiortc's
    decoder thread only while someone wants decoded frames: a forward stream
    that nobody mixes or transcodes costs no decode at all.
    """

    def __init__(self, on_frame: EncodedFrameHandler) -> None:
        super().__init__()
        self.on_frame = on_frame
        self._decode = False
        self._waiting_keyframe = True

    @property
    def decode(self) -> bool:
        return self._decode

    @decode.setter
    def decode(self, value: bool) -> None:
        if value and not self._decode:
            # A decoder started mid-stream fails on every frame until a keyframe.
            self._waiting_keyframe = True
        self._decode = value

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is None:
            # aiortc's signal to end the decoder thread.
            super().put(item, block, timeout)
            return
        codec, encoded_frame = item
        try:
            self.on_frame(codec, encoded_frame.data, encoded_frame.timestamp)
        except Exception:
            # A faulty listener must not break the receiver's RTP loop.
            logger.exception("encoded frame listener failed")
        if not self._decode:
            return
        if self._waiting_keyframe:
            if not is_keyframe(codec.name.lower(), encoded_frame.data):
                return
            self._waiting_keyframe = False
        super().put(item, block, timeout)


def install_encoded_tap(
    receiver: RTCRtpReceiver, on_frame: EncodedFrameHandler | None = None
) -> EncodedFrameTap:
    """Replace the receiver's decoder queue with a tap; call before the receiver starts.

    Idempotent: a receiver that already has a tap gets its listener replaced.
    Without a listener the tap only stops aiortc from decoding media nobody uses.
    """
    existing = getattr(receiver, "_RTCRtpReceiver__decoder_queue", None)
    if isinstance(existing, EncodedFrameTap):
        if on_frame is not None:
            existing.on_frame = on_frame
        return existing
    tap = EncodedFrameTap(on_frame or _ignore)
    receiver._RTCRtpReceiver__decoder_queue = tap  # type: ignore[attr-defined]
    return tap


def intercept_srtp_packets(receiver: RTCRtpReceiver, on_packet: Callable[[bytes], None]) -> None:
    """Hand every SRTP (not SRTCP) datagram of the receiver's transport to `on_packet`, still
    encrypted, instead of to aiortc; DTLS and SRTCP go on as usual. Idempotent per transport.

    For benchmark clients that count media from the clear RTP headers (RFC 3711 encrypts the
    payload only) without paying for decryption and reassembly.
    """
    ice = receiver.transport.transport
    if getattr(ice, "_tessera_intercepted", False):
        return
    receive = ice._recv

    async def next_datagram() -> bytes:
        while True:
            data: bytes = await receive()
            # RTP, not RTCP (RFC 5761: RTCP packet types 192-223 in the second byte).
            if 127 < data[0] < 192 and len(data) >= 12 and not 191 < data[1] < 224:
                on_packet(data)
                continue
            return data

    ice._tessera_intercepted = True  # type: ignore[attr-defined]
    ice._recv = next_datagram  # type: ignore[method-assign]


class LowLatencyJitterBuffer(JitterBuffer):
    """aiortc's jitter buffer, releasing each frame as soon as it is complete.

    aiortc releases a video frame only when the first packet of the *next*
    frame arrives (one frame late: 33 ms at 30 fps) and holds audio until four
    more frames are in (80 ms). A video frame is complete at the packet that
    carries the RTP marker bit, every packet before it present (RFC 7741 for
    VP8, RFC 6184 for H.264); an Opus frame is one packet. A video gap is
    waited for as aiortc does (NACK fills it) until the buffer overflows; an
    audio gap only for AUDIO_REORDER_PACKETS packets, then the decoder
    conceals it. The mixer's own per-input audio buffer absorbs arrival jitter.
    """

    def _remove_frame(self, sequence_number: int) -> JitterFrame | None:
        assert self._origin is not None
        if not self._is_video:
            return self._remove_audio_frame(sequence_number)
        packets: list[RtpPacket] = []
        timestamp: int | None = None
        for count in range(self.capacity):
            packet = self._packets[(self._origin + count) % self.capacity]
            if packet is None:
                return None
            if timestamp is None:
                timestamp = packet.timestamp
            elif packet.timestamp != timestamp:
                # The previous frame ended without a marker we saw: release it as aiortc would.
                return self._release(packets, timestamp, count)
            packets.append(packet)
            if packet.marker:
                return self._release(packets, timestamp, count + 1)
        return None

    def _remove_audio_frame(self, sequence_number: int) -> JitterFrame | None:
        # The oldest packet, once it is here. A gap is waited for while the newest packet is
        # less than AUDIO_REORDER_PACKETS past it (reordering), then skipped: audio is never
        # retransmitted, and aiortc's wait (until 16 packets are in) left every later packet
        # ~300 ms late for good, since one packet in releases one frame out.
        assert self._origin is not None
        capacity = self.capacity
        packet = self._packets[self._origin % capacity]
        if packet is None:
            if uint16_add(sequence_number, -self._origin) < AUDIO_REORDER_PACKETS:
                return None
            gap = 1
            while self._packets[(self._origin + gap) % capacity] is None:
                gap += 1  # ends: the packet just added is there
            self.remove(gap)
            packet = self._packets[self._origin % capacity]
            assert packet is not None
        self.remove(1)
        return JitterFrame(data=packet._data, timestamp=packet.timestamp)  # type: ignore[attr-defined]

    def _release(self, packets: list[RtpPacket], timestamp: int, count: int) -> JitterFrame:
        frame = JitterFrame(data=b"".join(p._data for p in packets), timestamp=timestamp)  # type: ignore[attr-defined]
        self.remove(count)
        return frame


def install_low_latency_buffer(receiver: RTCRtpReceiver) -> None:
    """Give the receiver a `LowLatencyJitterBuffer` of the same size; call before media flows."""
    current = receiver._RTCRtpReceiver__jitter_buffer  # type: ignore[attr-defined]
    if isinstance(current, LowLatencyJitterBuffer):
        return
    receiver._RTCRtpReceiver__jitter_buffer = LowLatencyJitterBuffer(  # type: ignore[attr-defined]
        capacity=current.capacity, is_video=current._is_video
    )


def send_picture_loss(receiver: RTCRtpReceiver) -> None:
    """Ask the remote publisher for a keyframe (RTCP PLI) on its media SSRC."""
    rtx = set(getattr(receiver, "_RTCRtpReceiver__rtx_ssrc", {}).keys())
    sources = [s.source for s in receiver.getSynchronizationSources() if s.source not in rtx]
    if not sources:
        return
    task = asyncio.ensure_future(receiver._send_rtcp_pli(sources[0]))
    task.add_done_callback(_log_failure)


async def stop_decoder(receiver: RTCRtpReceiver) -> None:
    """End the receiver's decoder thread without joining it on the event loop thread.

    aiortc's ``RTCRtpReceiver.stop()`` (``pc.close()``) joins it on the loop: the thread
    first finishes the frame it decodes, and on a busy machine that held the loop for
    80-120 ms (issue 15's stall detector). Once this returns, stop() has nothing to join.
    """
    thread = getattr(receiver, "_RTCRtpReceiver__decoder_thread", None)
    if thread is None:
        return
    # No frame is queued for it from now on (aiortc queues only while it is set).
    receiver._RTCRtpReceiver__decoder_thread = None  # type: ignore[attr-defined]
    receiver._RTCRtpReceiver__decoder_queue.put(None)  # type: ignore[attr-defined]
    await asyncio.to_thread(thread.join)


def receiver_started(receiver: RTCRtpReceiver) -> bool:
    """Whether the receiver already runs (media may have been decoded before a tap)."""
    return bool(getattr(receiver, "_RTCRtpReceiver__started", False))


def on_keyframe_request(sender: RTCRtpSender, callback: Callable[[], None]) -> None:
    """Route a subscriber's PLI/FIR to `callback`.

    aiortc only sets a flag on its own encode path, which a sender of
    pre-encoded packets never takes: without this the request is lost.
    """
    sender._send_keyframe = callback  # type: ignore[method-assign]


def set_msid_stream(sender: RTCRtpSender, stream_id: str) -> None:
    """Make the answer's ``a=msid`` of this sender name ``stream_id`` as its stream.

    aiortc gives every sender of a peer connection one stream id, so a client
    that builds a MediaStream per msid stream (the OWT JS SDK builds one per
    subscription from ``ontrack``'s ``event.streams``) would put every
    subscription's tracks in one stream. Call before createAnswer.
    """
    sender._stream_id = stream_id


def check_msid_stream() -> None:
    """Raises unless aiortc still writes ``a=msid`` from the sender's ``_stream_id``.

    Builds the media section of an answer for a stand-in transceiver, as
    createAnswer does, and reads the msid back: what `set_msid_stream` relies on.
    """
    # Stand-ins for what the media section reads besides the sender: no loop, no sockets.
    ice = SimpleNamespace(
        iceGatherer=SimpleNamespace(
            getLocalCandidates=list,
            state="completed",
            getLocalParameters=lambda: RTCIceParameters(usernameFragment="check", password="x"),
        )
    )
    dtls = SimpleNamespace(
        transport=ice, getLocalParameters=lambda: RTCDtlsParameters(fingerprints=[])
    )
    sender = SimpleNamespace(_stream_id="", _track_id="track", _ssrc=1, _rtx_ssrc=2)
    transceiver = SimpleNamespace(
        kind="video",
        sender=sender,
        receiver=SimpleNamespace(transport=dtls),
        _codecs=[],
        _headerExtensions=[],
    )
    set_msid_stream(sender, "subscription")  # type: ignore[arg-type]
    media = rtcpeerconnection.create_media_description_for_transceiver(
        transceiver,  # type: ignore[arg-type]
        cname="check",
        direction="sendonly",
        mid="0",
    )
    if "a=msid:subscription track" not in str(media).splitlines():
        raise RuntimeError(f"aiortc wrote a=msid:{media.msid!r}, not the stream id Tessera set")


def prefer_codec(transceiver: RTCRtpTransceiver, mime_type: str) -> bool:
    """Move `mime_type` to the front of the transceiver's negotiated codecs.

    Called between setRemoteDescription and createAnswer, so that a subscriber
    that supports the publisher's codec gets it and the packets pass through.
    Returns False when the remote side does not support the codec.
    """
    codecs: list[RTCRtpCodecParameters] = list(transceiver._codecs)
    wanted = [c for c in codecs if c.mimeType.lower() == mime_type.lower()]
    if not wanted:
        return False
    # Keep the matching codec's RTX (apt=payload type) right behind it.
    pts = {c.payloadType for c in wanted}
    rtx = [
        c
        for c in codecs
        if c.name.lower() == "rtx" and int(str(c.parameters.get("apt", -1))) in pts
    ]
    rest = [c for c in codecs if c not in wanted and c not in rtx]
    transceiver._codecs = wanted + rtx + rest
    return True


def restrict_codecs(
    transceiver: RTCRtpTransceiver, keep: Callable[[RTCRtpCodecParameters], bool]
) -> bool:
    """Leave only the first negotiated codec that `keep` accepts (with its RTX).

    Called between setRemoteDescription and createAnswer, so that the answer
    lets the remote sender use that one codec only (OWT answers one format per
    m-line too). Returns False, changing nothing, when `keep` accepts none of
    them (an m-line cannot list no codec at all).
    """
    codecs: list[RTCRtpCodecParameters] = list(transceiver._codecs)
    kept = [c for c in codecs if c.name.lower() != "rtx" and keep(c)][:1]
    if not kept:
        return False
    pts = {c.payloadType for c in kept}
    transceiver._codecs = [
        c
        for c in codecs
        if c in kept or (c.name.lower() == "rtx" and int(str(c.parameters.get("apt", -1))) in pts)
    ]
    return True


def ask_inband_fec(transceiver: RTCRtpTransceiver) -> None:
    """Say ``useinbandfec=1`` in the answer's Opus fmtp (RFC 7587): the receiver decides
    whether a sender adds in-band FEC, and aiortc's answer carries no Opus fmtp at all.

    Called between setRemoteDescription and createAnswer: a publishing browser then
    codes FEC, which the subscribers its stream is forwarded to can use.
    """
    transceiver._codecs = [
        dataclasses.replace(codec, parameters={**codec.parameters, "useinbandfec": 1})
        if codec.mimeType.lower() == "audio/opus"
        else codec
        for codec in transceiver._codecs
    ]


def answer_transport_cc(
    transceiver: RTCRtpTransceiver, extension_id: int, payload_types: set[int]
) -> None:
    """Answer the transport-wide sequence number extension at the offer's `extension_id`,
    and ``transport-cc`` feedback on the codecs of `payload_types` (those that offered it).

    aiortc knows neither (its receiver sends no such feedback), so it drops both from
    every answer. Called between setRemoteDescription and createAnswer, on every offer:
    aiortc negotiates each m-line's extensions and codecs again each time.
    """
    extensions: list[RTCRtpHeaderExtensionParameters] = [
        e for e in transceiver._headerExtensions if e.uri != TRANSPORT_CC_URI
    ]
    taken = {e.id for e in extensions}
    if extension_id in taken or not 1 <= extension_id <= 14:
        return  # the offer gave its id to another extension, or one a one-byte header lacks
    transceiver._headerExtensions = [
        *extensions,
        RTCRtpHeaderExtensionParameters(id=extension_id, uri=TRANSPORT_CC_URI),
    ]
    transceiver._codecs = [
        dataclasses.replace(
            codec, rtcpFeedback=[*codec.rtcpFeedback, RTCRtcpFeedback(type="transport-cc")]
        )
        if codec.payloadType in payload_types
        and not any(f.type == "transport-cc" for f in codec.rtcpFeedback)
        else codec
        for codec in transceiver._codecs
    ]


def watch_transport_feedback(dtls: RTCDtlsTransport, callback: Callable[[bytes], None]) -> None:
    """Call `callback(body)` with each transport-cc feedback (RTCP RTPFB FMT 15) the remote
    end sends on `dtls` (the body after the RTCP header), before aiortc handles its
    compound packet: aiortc reads a transport-cc feedback as NACK pairs and keeps nothing
    of it. Idempotent per callback; a callback that raises is logged.
    """
    listeners: list[Callable[[bytes], None]] | None = getattr(dtls, "_tessera_twcc", None)
    if listeners is None:
        handle = dtls._handle_rtcp_data
        found: list[Callable[[bytes], None]] = []

        async def handle_rtcp_data(data: bytes) -> None:
            for body in transport_feedbacks(data):
                for listener in list(found):
                    try:
                        listener(body)
                    except Exception:
                        logger.exception("transport-cc feedback listener failed")
            await handle(data)

        dtls._handle_rtcp_data = handle_rtcp_data  # type: ignore[method-assign]
        dtls._tessera_twcc = found  # type: ignore[attr-defined]
        listeners = found
    if callback not in listeners:
        listeners.append(callback)


def negotiated_codec(transceiver: RTCRtpTransceiver) -> RTCRtpCodecParameters | None:
    """The codec the transceiver sends or receives with (the first negotiated)."""
    codecs: list[RTCRtpCodecParameters] = transceiver._codecs
    for codec in codecs:
        if codec.name.lower() != "rtx":
            return codec
    return None


def _ignore(*_: Any) -> None:
    pass


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.debug("RTCP send failed: %s", task.exception())


class RembRecord:
    """The latest REMB (receiver estimated maximum bitrate) that named one sender."""

    def __init__(self) -> None:
        self.bitrate: int | None = None  # bit/s, as the receiver sent it
        self.reports = 0


def watch_remb(sender: RTCRtpSender) -> RembRecord:
    """Record every REMB the remote receiver sends for `sender`'s SSRC; idempotent.

    aiortc hands a REMB only to the sender's own encoder, clamped to that
    encoder's range (VP8: 250 kbit/s to 1.5 Mbit/s), and a sender of
    pre-encoded packets never uses it: the figure itself is kept here.
    """
    existing = getattr(sender, "_tessera_remb", None)
    if isinstance(existing, RembRecord):
        return existing
    record = RembRecord()
    handle = sender._handle_rtcp_packet

    async def handle_rtcp(packet: AnyRtcpPacket) -> None:
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            try:
                bitrate, ssrcs = unpack_remb_fci(packet.fci)
            except ValueError:
                pass  # not a REMB (another application-layer feedback); aiortc ignores it too
            else:
                if sender._ssrc in ssrcs:
                    record.bitrate = bitrate
                    record.reports += 1
        await handle(packet)

    sender._handle_rtcp_packet = handle_rtcp  # type: ignore[method-assign]
    sender._tessera_remb = record  # type: ignore[attr-defined]
    return record


def estimated_bitrate(sender: RTCRtpSender) -> int | None:
    """The latest REMB figure (bit/s) the receiver sent for `sender`, or None if none yet."""
    record = getattr(sender, "_tessera_remb", None)
    return record.bitrate if isinstance(record, RembRecord) else None


def refused_curve(certificate: x509.Certificate) -> str | None:
    """The curve of the certificate's ECDSA key when aiortc's DTLS refuses it, else None."""
    key = certificate.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name not in DTLS_PEER_CURVES:
        return key.curve.name
    return None


def refused_peer_curve(transport: RTCDtlsTransport) -> str | None:
    """The curve of the peer's key, when a failed DTLS handshake refused its certificate for it.

    aiortc logs such a failure at debug level without the reason (OpenSSL's is "wrong
    curve"); the peer's certificate is still on the failed connection.
    """
    connection: SSL.Connection | None = getattr(transport, "_ssl", None)
    if transport.state != "failed" or connection is None:
        return None
    certificate = connection.get_peer_certificate(as_cryptography=True)
    return None if certificate is None else refused_curve(certificate)


def check_dtls_srtp() -> None:
    """A DTLS-SRTP handshake between two in-memory endpoints, as aiortc's transports make it.

    Raises if it fails. Certificates, handshake, SRTP key export and one
    protected and unprotected packet: what every participant's transport will
    need (and the crypto code it pages in), done once at start-up.
    """
    ends = []
    for accept in (False, True):
        context = RTCCertificate.generateCertificate()._create_ssl_context(SRTP_PROFILES)
        end = SSL.Connection(context, None)
        end.set_accept_state() if accept else end.set_connect_state()
        ends.append(end)
    done = [False, False]
    for _ in range(10):
        for i, (end, other) in enumerate(((ends[0], ends[1]), (ends[1], ends[0]))):
            try:
                end.do_handshake()
                done[i] = True
            except SSL.WantReadError:
                pass
            while True:
                try:
                    other.bio_write(end.bio_read(4096))
                except SSL.WantReadError:
                    break
        if all(done):
            break
    else:
        raise RuntimeError("the DTLS handshake did not complete")
    name = ends[0].get_selected_srtp_profile()
    profile = next((p for p in SRTP_PROFILES if p.openssl_profile == name), None)
    if profile is None:
        raise RuntimeError(f"no SRTP profile negotiated ({name!r})")
    keys = []
    for end in ends:
        material = end.export_keying_material(
            b"EXTRACTOR-dtls_srtp", 2 * (profile.key_length + profile.salt_length)
        )
        keys.append(profile.get_key_and_salt(material, 0))
    if keys[0] != keys[1]:
        raise RuntimeError("the two ends derived different SRTP keys")
    sender = Session(
        Policy(
            key=keys[0], ssrc_type=Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile.libsrtp_profile
        )
    )
    receiver = Session(
        Policy(key=keys[1], ssrc_type=Policy.SSRC_ANY_INBOUND, srtp_profile=profile.libsrtp_profile)
    )
    packet = RtpPacket(payload_type=96, sequence_number=1, timestamp=0, ssrc=1, payload=b"x" * 100)
    data = packet.serialize()
    if receiver.unprotect(sender.protect(data)) != data:
        raise RuntimeError("SRTP did not give back the packet it protected")


# -- the shared fan-out (media/rtpfanout.py) sends a subscriber's RTP itself ---------------


def on_sender_start(sender: RTCRtpSender, callback: Callable[[RTCRtpSendParameters], None]) -> None:
    """Call `callback` with the negotiated parameters once aiortc has started `sender`.

    aiortc starts a sender once its DTLS transport is connected, so the SRTP
    keys and the ICE pair are there when `callback` runs.
    """
    send = sender.send

    async def send_and_tell(parameters: RTCRtpSendParameters) -> None:
        await send(parameters)
        try:
            callback(parameters)
        except Exception:
            logger.exception("sender start listener failed")

    sender.send = send_and_tell  # type: ignore[method-assign]


def on_retransmit_request(sender: RTCRtpSender, callback: Callable[[int], None]) -> None:
    """Route each sequence number a receiver NACKs to `callback` instead of aiortc's history.

    A sender fed by a shared output keeps no history of its own: the output has it.
    """

    async def retransmit(sequence_number: int) -> None:
        callback(sequence_number)

    sender._retransmit = retransmit  # type: ignore[method-assign]


def report_sent(sender: RTCRtpSender, packets: int, octets: int, ntp: int, timestamp: int) -> None:
    """What a sender sent outside aiortc, for its RTCP sender reports and its getStats().

    `ntp` and `timestamp` are the NTP and RTP times of the last packet (the SR's mapping).
    """
    sender._RTCRtpSender__packet_count = packets  # type: ignore[attr-defined]
    sender._RTCRtpSender__octet_count = octets  # type: ignore[attr-defined]
    sender._RTCRtpSender__ntp_timestamp = ntp  # type: ignore[attr-defined]
    sender._RTCRtpSender__rtp_timestamp = timestamp  # type: ignore[attr-defined]


def sender_srtp_key(dtls: RTCDtlsTransport) -> tuple[bytes, int]:
    """The SRTP master key+salt `dtls` protects outgoing RTP with, and the libsrtp profile.

    Derived again from the DTLS session (RFC 5764 4.2) as aiortc derives it, so
    that a sending thread can have an SRTP session of its own: aiortc's session
    is used by the event loop thread and a libsrtp session is not thread-safe.
    """
    ssl = dtls._ssl
    if ssl is None:
        raise RuntimeError("the DTLS transport has not started")
    name = ssl.get_selected_srtp_profile()
    profile = next((p for p in SRTP_PROFILES if p.openssl_profile == name), None)
    if profile is None:
        raise RuntimeError(f"no SRTP profile negotiated ({name!r})")
    material = ssl.export_keying_material(
        b"EXTRACTOR-dtls_srtp", 2 * (profile.key_length + profile.salt_length)
    )
    key: bytes = profile.get_key_and_salt(material, 1 if dtls._role == "server" else 0)
    return key, int(profile.libsrtp_profile)


def ice_datagram_endpoint(dtls: RTCDtlsTransport) -> tuple[Any, Any] | None:
    """The asyncio datagram transport and protocol of the ICE pair `dtls` runs on, if nominated.

    None before ICE has nominated a pair, or when the pair is not a plain UDP
    socket (a TURN relay).
    """
    connection = dtls.transport._connection
    pair = connection._nominated.get(1)
    if pair is None or "Turn" in type(pair.protocol).__name__:
        return None
    transport = getattr(pair.protocol, "transport", None)
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or sock.type != socket.SOCK_DGRAM:
        return None
    return transport, pair.protocol


def sender_route(dtls: RTCDtlsTransport) -> tuple[socket.socket, tuple[Any, ...]] | None:
    """A duplicate of the UDP socket of the ICE pair `dtls` sends on, and the remote address.

    The duplicate is the caller's to close (so a sending thread never writes to
    a descriptor number the loop has closed and reused). None when the pair is
    not a plain UDP socket (a TURN relay): then send through aiortc.
    """
    endpoint = ice_datagram_endpoint(dtls)
    if endpoint is None:
        return None
    sock = endpoint[0].get_extra_info("socket")
    pair = dtls.transport._connection._nominated[1]
    duplicate = socket.socket(sock.family, sock.type, fileno=os.dup(sock.fileno()))
    return duplicate, tuple(pair.remote_addr)


async def send_through_ice(dtls: RTCDtlsTransport, datagrams: list[bytes]) -> None:
    """Send already-protected datagrams the way aiortc would (for a pair `sender_route` refuses)."""
    for data in datagrams:
        await dtls.transport._send(data)


def sender_ssrcs(sender: RTCRtpSender) -> tuple[int, int]:
    """The SSRCs `sender` announced in SDP: its media and its retransmission (RTX) stream."""
    return int(sender._ssrc), int(sender._rtx_ssrc)


def watch_receiver_reports(sender: RTCRtpSender, callback: Callable[[int, int], None]) -> None:
    """Call `callback(fraction_lost, jitter)` for each receiver report block about `sender`.

    aiortc keeps only the latest per sender (its getStats); a shared output
    aggregates them over all its subscribers.
    """
    handle = sender._handle_rtcp_packet

    async def handle_rtcp(packet: AnyRtcpPacket) -> None:
        if isinstance(packet, RtcpRrPacket | RtcpSrPacket):
            for report in packet.reports:
                if report.ssrc == sender._ssrc:
                    try:
                        callback(report.fraction_lost, report.jitter)
                    except Exception:
                        logger.exception("receiver report listener failed")
        await handle(packet)

    sender._handle_rtcp_packet = handle_rtcp  # type: ignore[method-assign]


def watch_rtcp(sender: RTCRtpSender, callback: Callable[[AnyRtcpPacket], None]) -> None:
    """Call `callback(packet)` with every RTCP packet the remote receiver sends `sender`
    (before aiortc handles it): the adaptive delivery's estimate reads receiver
    reports, REMB, NACK and PLI from them. A listener that raises is logged."""
    handle = sender._handle_rtcp_packet

    async def handle_rtcp(packet: AnyRtcpPacket) -> None:
        try:
            callback(packet)
        except Exception:
            logger.exception("RTCP listener failed")
        await handle(packet)

    sender._handle_rtcp_packet = handle_rtcp  # type: ignore[method-assign]


def received_counts(receiver: RTCRtpReceiver) -> tuple[int, int]:
    """(packets expected, packets received) of what the remote sender sent `receiver`, from
    the sequence numbers aiortc counts for its receiver reports (read, never reset: its
    own interval counters stay as they are). Retransmissions count as received again."""
    streams = getattr(receiver, "_RTCRtpReceiver__remote_streams", {})
    expected = received = 0
    for stream in list(streams.values()):
        if stream.base_seq is None or stream.max_seq is None:
            continue
        expected += stream.packets_expected
        received += stream.packets_received
    return expected, received

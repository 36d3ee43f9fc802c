"""Transport: one client RTCPeerConnection, renegotiated by the client's offers."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc import sdp as aiortc_sdp
from aiortc.sdp import candidate_from_sdp

from tessera.media import aiortcext
from tessera.media.mediasource import ParameterError
from tessera.media.rtpfanout import SharedRtpTrack
from tessera.media.transportcc import TRANSPORT_CC_URI
from tessera.media.transportwide import TransportWideCc

from .offercheck import OfferError, check_offer
from .publication import Publication
from .session import MediaSession
from .subscription import Subscription

logger = logging.getLogger(__name__)

Session = Publication | Subscription


class SignalingError(Exception):
    """An offer or candidate the transport cannot use (message for the client)."""


class TransportObserver(Protocol):
    """What a Transport reports to its owner (the portal's Participant)."""

    def transport_progress(self, transport: Transport, message: dict[str, Any]) -> None: ...

    def session_ready(self, session: Session) -> None: ...

    def session_failed(self, session: Session, reason: str) -> None: ...

    def transport_failed(self, transport: Transport) -> None: ...


class Transport:
    """One client RTCPeerConnection carrying any number of publications and subscriptions.

    The client always offers and the server always answers (PROTOCOL.md). A
    publish or subscribe request first claims its mids with `add_session`;
    the next offer that carries those mids binds them. Old m-lines stay in
    every later offer; a mid that no live session claims is answered inactive.
    """

    def __init__(
        self,
        transport_id: str,
        observer: TransportObserver,
        *,
        stun_servers: list[str] | None = None,
        connect_timeout: float | None = None,
        shared_fanout: bool = True,
    ) -> None:
        self.id = transport_id
        # Subscribers' packets go through the shared fan-out (media/rtpfanout.py); False only
        # for the fan-out benchmark's comparison with aiortc's sender.
        self.shared_fanout = shared_fanout
        # A session not ready (offer answered, ICE and DTLS done) this long after it was
        # added fails: a publication whose ICE never completed was kept for ever.
        self.connect_timeout = connect_timeout
        self._deadlines: dict[str, asyncio.TimerHandle] = {}
        self.observer = observer
        servers = [RTCIceServer(urls=url) for url in stun_servers or []]
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
        self.sessions: dict[str, Session] = {}
        self._claimed: dict[str, Session] = {}  # mid -> session awaiting or holding it
        self._riders: dict[str, Subscription] = {}  # mid -> subscription on a publication's mid
        self._used_mids: set[str] = set()
        self._negotiated: set[str] = set()
        self._lock = asyncio.Lock()
        self.connected = False
        self.closed = False
        self.offers = 0
        self.pc.on("connectionstatechange", self._on_state)

    # -- sessions -------------------------------------------------------

    def add_session(self, session: Session) -> None:
        """Claim the session's mids; raises SignalingError if a mid is taken.

        A subscription may ride on the m-lines of a publication of the same
        kind: in a peer-model call the answer sends its media back on the
        caller's m-lines, which then become sendrecv.
        """
        for mid, kind in session.mids.items():
            holder = self._claimed.get(mid)
            if mid in self._used_mids or (
                holder is not None and not self._can_ride(holder, session, mid, kind)
            ):
                raise SignalingError(f"MID {mid} is already in use")
        self.sessions[session.id] = session
        if self.connect_timeout is not None:
            self._deadlines[session.id] = asyncio.get_running_loop().call_later(
                self.connect_timeout, self._connect_deadline, session.id
            )
        for mid in session.mids:
            if mid in self._claimed:
                assert isinstance(session, Subscription)
                self._riders[mid] = session
            else:
                self._claimed[mid] = session

    def _can_ride(self, holder: Session, session: Session, mid: str, kind: str) -> bool:
        # Only in the holder's own first offer: an answered m-line is never bound again.
        return (
            isinstance(holder, Publication)
            and isinstance(session, Subscription)
            and holder.id not in self._negotiated
            and mid not in self._riders
            and holder.mids.get(mid) == kind
        )

    def _connect_deadline(self, session_id: str) -> None:
        self._deadlines.pop(session_id, None)
        session = self.sessions.get(session_id)
        if session is None or session.ready or self.closed:
            return
        if session_id not in self._negotiated:
            reason = f"No offer for the session within {self.connect_timeout:g} s"
        else:
            reason = (
                f"ICE/DTLS did not complete within {self.connect_timeout:g} s "
                f"(the peer connection is {self.pc.connectionState})"
            )
        logger.info("session not connected in time: %s", reason, extra={"transport": self.id})
        self.observer.session_failed(session, reason)
        if not self.connected and not self.sessions and not self.closed:
            # Nothing left to connect for: its ICE agent and sockets go too.
            self.observer.transport_failed(self)

    def session_closed(self, session: MediaSession) -> None:
        deadline = self._deadlines.pop(session.id, None)
        if deadline is not None:
            deadline.cancel()
        self.sessions.pop(session.id, None)
        self._negotiated.discard(session.id)
        for mid in list(self._riders):
            if self._riders[mid] is session:
                del self._riders[mid]
                self._set_direction(mid, "recvonly")  # the publication goes on
        for mid in list(self._claimed):
            if self._claimed[mid] is session:
                rider = self._riders.pop(mid, None)
                if rider is not None:
                    self._claimed[mid] = rider  # the subscription goes on
                    self._set_direction(mid, "sendonly")
                    continue
                del self._claimed[mid]
                self._used_mids.add(mid)
                self._deactivate(mid)

    def _set_direction(self, mid: str, direction: str) -> None:
        for transceiver in self.pc.getTransceivers():
            if transceiver.mid == mid:
                transceiver.direction = direction

    def _deactivate(self, mid: str) -> None:
        for transceiver in self.pc.getTransceivers():
            if transceiver.mid == mid:
                transceiver.direction = "inactive"

    # -- signaling ------------------------------------------------------

    async def handle_offer(self, sdp: str) -> None:
        """Apply a client offer and push the answer as a `progress` message."""
        async with self._lock:
            if self.closed:
                raise SignalingError("Transport is closed")
            try:
                check_offer(sdp, self._negotiated_mlines())
            except OfferError as exc:
                logger.warning("offer refused: %s", exc, extra={"transport": self.id})
                raise SignalingError(f"Invalid offer: {exc}") from exc
            try:
                await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            except Exception as exc:
                logger.warning("bad offer: %s", exc, extra={"transport": self.id})
                raise SignalingError(f"Invalid offer: {exc}") from exc
            self.offers += 1
            self._claim_by_kind()
            newly: list[Session] = []
            failures: list[tuple[Session, str]] = []
            for transceiver in self.pc.getTransceivers():
                mid = transceiver.mid
                session = self._claimed.get(mid) if mid is not None else None
                if session is None:
                    self._unclaimed(transceiver)
                    continue
                if session.id in self._negotiated:
                    if isinstance(session, Publication):
                        # aiortc negotiates every m-line's codecs again on each offer.
                        self._restrict_formats(session, transceiver)
                    continue
                if session.kinds_without_mid():
                    reason = f"Offer has no {session.kinds_without_mid()[0]} media section"
                    if (session, reason) not in failures:
                        failures.append((session, reason))
                    continue
                rider = self._riders.get(mid) if mid is not None else None
                try:
                    if isinstance(session, Publication) and not self._restrict_formats(
                        session, transceiver
                    ):
                        # OWT's words (conference/stream.js, checkMediaError).
                        raise ParameterError(f"{transceiver.kind.capitalize()} format unacceptable")
                    if rider is not None:
                        # First: the subscription may reorder the codecs both directions use.
                        self._bind(rider, transceiver)
                    self._bind(session, transceiver)
                except ParameterError as exc:
                    failures.append((session, str(exc)))
                    if rider is not None:
                        failures.append((rider, str(exc)))
                    # Answered inactive: no media on an m-line whose session failed.
                    transceiver.direction = "inactive"
                    continue
                if rider is not None:
                    transceiver.direction = "sendrecv"
                    if rider not in newly:
                        newly.append(rider)
                if session not in newly:
                    newly.append(session)
            for transceiver in self.pc.getTransceivers():
                aiortcext.ask_inband_fec(transceiver)
            self._answer_transport_cc()
            try:
                answer = await self.pc.createAnswer()
                await self.pc.setLocalDescription(answer)
            except Exception as exc:
                logger.warning("cannot answer: %s", exc, extra={"transport": self.id})
                raise SignalingError(f"Cannot answer the offer: {exc}") from exc
            local = self.pc.localDescription
            self.observer.transport_progress(
                self,
                {"id": self.id, "status": "soac", "data": {"type": "answer", "sdp": local.sdp}},
            )
            for session, reason in failures:
                self.observer.session_failed(session, reason)
            for session in newly:
                if all(self._mid_present(mid) for mid in session.mids):
                    self._negotiated.add(session.id)
            if self.connected:
                self._announce_ready()

    def _answer_transport_cc(self) -> None:
        """Answer transport-cc on the subscriptions' video m-lines whose offer has it.

        The subscriber then sends transport-wide feedback instead of REMB, and the
        fan-out estimates the link from it (media/transportwide.py). Only where the
        shared fan-out sends (it numbers the packets) and only on m-lines that send
        nothing but media out: aiortc's receiver gives no such feedback, and a
        publishing browser that expected it would hold its bitrate down.
        """
        description = self.pc.remoteDescription
        if not self.shared_fanout or description is None:
            return
        offered = {m.rtp.muxId: m for m in _parse(description.sdp).media}
        for transceiver in self.pc.getTransceivers():
            mid = transceiver.mid
            if transceiver.kind != "video" or transceiver.direction != "sendonly" or mid is None:
                continue
            media = offered.get(mid)
            if not isinstance(self._claimed.get(mid), Subscription) or media is None:
                continue
            extension = next(
                (e.id for e in media.rtp.headerExtensions if e.uri == TRANSPORT_CC_URI), None
            )
            payload_types = {
                c.payloadType
                for c in media.rtp.codecs
                if c.payloadType is not None
                and any(f.type == "transport-cc" for f in c.rtcpFeedback)
            }
            # Both or neither: a receiver gives this feedback only with both (libwebrtc).
            if extension is not None and payload_types:
                aiortcext.answer_transport_cc(transceiver, extension, payload_types)

    def _claim_by_kind(self) -> None:
        # Sessions of older clients named no mids: give each the first new
        # m-line of its kind, in offer order.
        waiting = [s for s in self.sessions.values() if s.kinds_without_mid()]
        if not waiting:
            return
        for transceiver in self.pc.getTransceivers():
            mid = transceiver.mid
            if mid is None or mid in self._claimed or mid in self._used_mids:
                continue
            for session in waiting:
                if transceiver.kind in session.kinds_without_mid():
                    session.assign_mid(transceiver.kind, mid)
                    self._claimed[mid] = session
                    break

    def _negotiated_mlines(self) -> list[tuple[str, str]]:
        description = self.pc.remoteDescription
        if description is None:
            return []
        return [(m.rtp.muxId, m.kind) for m in _parse(description.sdp).media]

    def _mid_present(self, mid: str) -> bool:
        return any(t.mid == mid for t in self.pc.getTransceivers())

    def _unclaimed(self, transceiver: RTCRtpTransceiver) -> None:
        # Media nobody asked for is neither decoded nor answered with a send.
        aiortcext.install_encoded_tap(transceiver.receiver)
        transceiver.direction = "inactive"

    @staticmethod
    def _restrict_formats(publication: Publication, transceiver: RTCRtpTransceiver) -> bool:
        """Answer only the formats the room accepts from publishers (its mediaIn).

        False (nothing changed) when the offer has none of them.
        """
        kind = transceiver.kind
        stream = publication.stream
        return aiortcext.restrict_codecs(transceiver, lambda c: stream.accepts(kind, c))

    def _bind(self, session: Session, transceiver: RTCRtpTransceiver) -> None:
        mid = transceiver.mid
        assert mid is not None
        if isinstance(session, Publication):
            track = session.stream.track_by_mid(mid)
            if track is None or track.kind != transceiver.kind:
                raise ParameterError(f"MID {mid} is not a {transceiver.kind} track")
            codec = aiortcext.negotiated_codec(transceiver)
            if codec is None:
                raise ParameterError(f"No codec negotiated for MID {mid}")
            transceiver.direction = "recvonly"
            track.bind(transceiver.receiver, codec)
            return
        kind = session.mids[mid]
        if kind != transceiver.kind:
            raise ParameterError(f"MID {mid} is not a {kind} track")
        wanted = session.tracks[kind]
        fmt = wanted.format
        codec_name = fmt.codec if not isinstance(fmt, str) else fmt
        client_first = aiortcext.negotiated_codec(transceiver)
        if (
            kind == "video"
            and wanted.stream.type == "mixed"
            and client_first is not None
            and client_first.name.lower() in wanted.stream.offered_codecs(kind)
        ):
            # A mixed stream is encoded anyway: follow the subscriber's codec order.
            codec_name = client_first.name.lower()
        if not aiortcext.prefer_codec(transceiver, f"{kind}/{codec_name}"):
            negotiated = aiortcext.negotiated_codec(transceiver)
            if negotiated is None:
                raise ParameterError(f"No codec negotiated for MID {mid}")
            codec_name = negotiated.name.lower()
            if kind == "video" and codec_name not in ("vp8", "h264"):
                raise ParameterError(f"Video codec {codec_name} is not supported")
        aiortcext.install_encoded_tap(transceiver.receiver)
        packet_track = session.bind(kind, codec_name, self.shared_fanout)
        transceiver.direction = "sendonly"
        transceiver.sender.replaceTrack(packet_track)
        if isinstance(packet_track, SharedRtpTrack):
            packet_track.use_sender(transceiver.sender)
            session.adapt(kind, transceiver.sender)
        # Each subscription is its own MediaStream at the client (PROTOCOL.md).
        aiortcext.set_msid_stream(transceiver.sender, session.id)
        aiortcext.on_keyframe_request(transceiver.sender, packet_track.request_keyframe)
        aiortcext.watch_remb(transceiver.sender)

    async def add_candidate(self, candidate: dict[str, Any]) -> None:
        """A trickled client candidate (`a=` prefix tolerated)."""
        text = candidate.get("candidate")
        if not isinstance(text, str):
            raise SignalingError("Candidate is missing")
        text = text.strip()
        if text.startswith("a="):
            text = text[2:]
        if text.startswith("candidate:"):
            text = text[len("candidate:") :]
        if not text:
            return  # end-of-candidates
        try:
            parsed = candidate_from_sdp(text)
        except Exception as exc:
            raise SignalingError(f"Invalid candidate: {exc}") from exc
        mid = candidate.get("sdpMid")
        index = candidate.get("sdpMLineIndex")
        parsed.sdpMid = mid if isinstance(mid, str) else None
        parsed.sdpMLineIndex = index if isinstance(index, int) else None
        if parsed.sdpMid is None and parsed.sdpMLineIndex is None:
            parsed.sdpMLineIndex = 0
        try:
            await self.pc.addIceCandidate(parsed)
        except Exception as exc:
            raise SignalingError(f"Invalid candidate: {exc}") from exc

    # -- state ----------------------------------------------------------

    async def _on_state(self) -> None:
        state = self.pc.connectionState
        logger.debug("connection %s", state, extra={"transport": self.id})
        if state == "connected" and not self.connected:
            self.connected = True
            self.observer.transport_progress(self, {"id": self.id, "status": "ready"})
            self._announce_ready()
        elif state in ("failed", "closed") and not self.closed:
            if state == "failed":
                self._log_refused_certificate()
            self.observer.transport_failed(self)

    def _log_refused_certificate(self) -> None:
        # The one DTLS failure a client can act on; aiortc logs none of them usefully.
        for dtls in {t.receiver.transport for t in self.pc.getTransceivers()}:
            curve = aiortcext.refused_peer_curve(dtls)
            if curve is not None:
                logger.warning(
                    "DTLS handshake failed: the client's certificate has an ECDSA key on %s,"
                    " which the server's OpenSSL does not accept (only %s); give the client"
                    " an ECDSA P-256 certificate",
                    curve,
                    ", ".join(aiortcext.DTLS_PEER_CURVES),
                    extra={"transport": self.id},
                )

    def _announce_ready(self) -> None:
        for session in list(self.sessions.values()):
            if session.id in self._negotiated and not session.ready:
                session.ready = True
                deadline = self._deadlines.pop(session.id, None)
                if deadline is not None:
                    deadline.cancel()
                self.observer.session_ready(session)

    def stats(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "connectionState": self.pc.connectionState,
            "sessions": [s.describe() for s in self.sessions.values()],
        }

    def estimated_bitrate(self, session: MediaSession) -> int | None:
        """What the subscriber's link is estimated to carry (bit/s), once it is.

        With transport-cc, the fan-out's delay-based estimate of the whole transport.
        Else the receiver's own (REMB): it covers the SSRCs it names (a browser names
        every video stream it receives on the connection): the video sender's figure,
        else the audio sender's. None until there is one.
        """
        estimates: dict[str, int] = {}
        for transceiver in self.pc.getTransceivers():
            if transceiver.mid in session.mids:
                transport_cc = TransportWideCc.find(transceiver.sender.transport)
                if transport_cc is not None and transport_cc.bitrate is not None:
                    return transport_cc.bitrate
                bitrate = aiortcext.estimated_bitrate(transceiver.sender)
                if bitrate is not None:
                    estimates[transceiver.kind] = bitrate
        return estimates.get("video", estimates.get("audio"))

    async def close(self) -> None:
        """Idempotent: closes every session and the peer connection."""
        if self.closed:
            return
        self.closed = True
        for deadline in self._deadlines.values():
            deadline.cancel()
        self._deadlines.clear()
        for session in list(self.sessions.values()):
            session.close()
        receivers = [transceiver.receiver for transceiver in self.pc.getTransceivers()]
        await asyncio.gather(*(aiortcext.stop_decoder(receiver) for receiver in receivers))
        await self.pc.close()


def _parse(text: str) -> aiortc_sdp.SessionDescription:
    return aiortc_sdp.SessionDescription.parse(text)

"""PeerNegotiation: the client's one RTCPeerConnection, renegotiated by an offer per change."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)

from .errors import ClientConnectionError, ClientError, NegotiationError, RequestTimeout
from .session import Session
from .subscription import Subscription

logger = logging.getLogger("tessera_client")

#: Sends a request to the portal and returns the reply data: (name, data, timeout).
Request = Callable[[str, Any, float], Awaitable[Any]]


class PeerNegotiation:
    """One RTCPeerConnection for all of a client's publications and subscriptions.

    As OWT's JavaScript SDK does, the client always offers (``soac``) and the
    portal answers with a ``progress`` push; m-lines are never removed, those of
    a stopped session stay in later offers as inactive. ``lock`` keeps one
    negotiation at a time. Remote tracks go to the subscription that owns their mid.
    """

    def __init__(self, request: Request) -> None:
        self._request = request
        #: The one peer connection (created by the first publish or subscribe).
        self.pc: RTCPeerConnection | None = None
        #: The portal's id of that connection's transport (from the first session reply).
        self.transport_id: str | None = None
        #: Set on ``progress {id: transport id, status: "ready"}`` (ICE and DTLS up).
        self.transport_ready = asyncio.Event()
        self.lock = asyncio.Lock()
        self._answer_waiter: tuple[str, asyncio.Future[dict[str, Any]]] | None = None
        self._mid_owner: dict[str, Subscription] = {}

    def ensure_pc(
        self, ice_servers: list[RTCIceServer], bundle_policy: RTCBundlePolicy
    ) -> RTCPeerConnection:
        if self.pc is None:
            configuration = RTCConfiguration(iceServers=ice_servers, bundlePolicy=bundle_policy)
            pc = RTCPeerConnection(configuration=configuration)
            pc.on("track", self._on_track)

            @pc.on("connectionstatechange")
            def on_connection_state() -> None:
                logger.debug("peer connection state: %s", pc.connectionState)

            self.pc = pc
        return self.pc

    async def create_offer(
        self, new_transceivers: Iterable[RTCRtpTransceiver], *, stop_sending: bool
    ) -> None:
        """createOffer + setLocalDescription (which assigns mids and gathers candidates)."""
        assert self.pc is not None
        try:
            await self.pc.setLocalDescription(await self.pc.createOffer())
        except Exception as exc:
            self.deactivate(new_transceivers, stop_sending=stop_sending)
            raise NegotiationError(f"Cannot create an offer: {exc}") from exc

    def transport_message(self) -> dict[str, Any]:
        """The ``transport`` of a publish or subscribe request."""
        transport: dict[str, Any] = {"type": "webrtc"}
        if self.transport_id is not None:
            transport["id"] = self.transport_id
        return transport

    def session_reply(self, reply: Any) -> tuple[str, str]:
        """The session id and transport id of a publish or subscribe reply."""
        if not isinstance(reply, dict) or not isinstance(reply.get("id"), str):
            raise ClientError(f"Unexpected reply: {reply!r}")
        session_id: str = reply["id"]
        transport_id = reply.get("transportId")
        if not isinstance(transport_id, str):
            transport_id = self.transport_id or session_id
        if self.transport_id is None:
            self.transport_id = transport_id
        return session_id, transport_id

    async def exchange(self, transport_id: str, timeout: float) -> None:
        """Send the current local offer with ``soac`` and apply the answer pushed back."""
        assert self.pc is not None
        description = self.pc.localDescription
        if description is None:
            raise NegotiationError("No local offer to send")
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        # Registered before the offer goes out: the answer may overtake the soac ack.
        self._answer_waiter = (transport_id, future)
        try:
            await self._request(
                "soac",
                {"id": transport_id, "signaling": {"type": "offer", "sdp": description.sdp}},
                timeout,
            )
            try:
                answer = await asyncio.wait_for(future, timeout)
            except TimeoutError:
                raise RequestTimeout(
                    f"Waiting for the answer on transport {transport_id} timed out"
                    f" after {timeout} s"
                ) from None
        finally:
            if self._answer_waiter is not None and self._answer_waiter[1] is future:
                self._answer_waiter = None
        if self.pc is None:
            raise ClientConnectionError("The peer connection was closed")
        try:
            await self.pc.setRemoteDescription(
                RTCSessionDescription(sdp=str(answer.get("sdp", "")), type="answer")
            )
        except Exception as exc:
            raise NegotiationError(f"Cannot apply the answer: {exc}") from exc
        self._collect_remote_tracks()

    def answer_arrived(self, transport_id: Any, signaling: dict[str, Any]) -> None:
        """A ``progress`` push with ``status: "soac"`` carried the portal's answer."""
        waiter = self._answer_waiter
        if waiter is not None and waiter[0] == transport_id and not waiter[1].done():
            waiter[1].set_result(signaling)
        else:
            logger.warning("Unexpected answer on transport %s", transport_id)

    def transport_failed(self, transport_id: Any, reason: Any) -> None:
        """A ``progress`` push with ``status: "error"`` for the transport."""
        logger.warning("Transport %s failed: %s", transport_id, reason)
        waiter = self._answer_waiter
        if waiter is not None and waiter[0] == transport_id and not waiter[1].done():
            waiter[1].set_exception(ClientError(reason))

    def fail(self, error: ClientError) -> None:
        """A negotiation waiting for its answer fails with ``error`` (the client left or lost)."""
        waiter, self._answer_waiter = self._answer_waiter, None
        if waiter is not None and not waiter[1].done():
            waiter[1].set_exception(error)

    @staticmethod
    def deactivate(transceivers: Iterable[RTCRtpTransceiver], *, stop_sending: bool) -> None:
        # m-lines are never removed: they stay in later offers as inactive.
        for transceiver in transceivers:
            transceiver.direction = "inactive"
            if stop_sending:
                transceiver.sender.replaceTrack(None)

    def own_mids(self, subscription: Subscription) -> None:
        """Remote tracks on the subscription's m-lines are the subscription's."""
        for transceiver in subscription.transceivers.values():
            if transceiver.mid is not None:
                self._mid_owner[transceiver.mid] = subscription

    def forget(self, session: Session) -> None:
        for mid, owner in list(self._mid_owner.items()):
            if owner is session:
                del self._mid_owner[mid]

    def _on_track(self, track: MediaStreamTrack) -> None:
        if self.pc is None:
            return
        for transceiver in self.pc.getTransceivers():
            if transceiver.receiver.track is track and transceiver.mid is not None:
                owner = self._mid_owner.get(transceiver.mid)
                if owner is not None:
                    owner._set_track(transceiver.kind, track)
                return

    def _collect_remote_tracks(self) -> None:
        if self.pc is None:
            return
        for transceiver in self.pc.getTransceivers():
            owner = self._mid_owner.get(transceiver.mid or "")
            track = transceiver.receiver.track
            if owner is None or track is None:
                continue
            current = owner.audio_track if transceiver.kind == "audio" else owner.video_track
            if current is None:
                owner._set_track(transceiver.kind, track)

    async def close(self) -> None:
        pc, self.pc = self.pc, None
        if pc is not None:
            try:
                await pc.close()
            except Exception:
                logger.exception("Closing the peer connection failed")


def codec_preferences(names: list[str]) -> list[Any]:
    """aiortc's video codec capabilities reordered: the named codecs (and their RTX) first."""
    capabilities = RTCRtpReceiver.getCapabilities("video")
    codecs = list(capabilities.codecs) if capabilities is not None else []
    wanted = [c for name in names for c in codecs if c.name.lower() == name.lower()]
    rest = [c for c in codecs if c not in wanted]
    return wanted + rest


def only_codecs(kind: str, names: Sequence[str]) -> list[Any]:
    """aiortc's capabilities of `kind` limited to the named codecs (and their RTX), in order."""
    if kind not in ("audio", "video"):
        raise ValueError(f"codecs: {kind!r} is not a media kind (audio or video)")
    capabilities = RTCRtpSender.getCapabilities(kind)
    known = list(capabilities.codecs) if capabilities is not None else []
    chosen = []
    for name in names:
        matching = [c for c in known if c.name.lower() == name.lower()]
        if not matching:
            raise ValueError(f"codecs: aiortc cannot send {kind} codec {name!r}")
        chosen += matching
    rtx = [c for c in known if c.name.lower() == "rtx"]
    return chosen + rtx

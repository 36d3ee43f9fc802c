"""RoomPeer: the server-side peer ``room:<name>`` of every room, in the peer model.

A peer that calls ``room:<name>`` (PeerJS ``peer.call("room:town", stream)``)
joins the service's room ``town`` like any participant: its stream is
published into the room (and mixed into the views), and the call is answered
with the room's first view, the mixed stream, on the caller's own m-lines. A
data connection to ``room:<name>`` carries the room's text chat both ways.

Each (peer, room) pair is one :class:`RoomPeerMember`: one Participant in the
Room, with its calls (one Transport each) and data connections. It leaves the
room when its last call and data connection have ended, when it sends LEAVE,
or when its peer expires.

A call or connection that cannot be taken (no such room and no ad-hoc rooms,
a token for another room, a full room, an unknown serialization) gets
``EXPIRE`` from ``room:<name>`` with the reason in ``payload.msg``: the peerjs
client reports it as a ``peer-unavailable`` error; the server logs the reason.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.sdp import SessionDescription, candidate_from_sdp

from tessera.conference.background import spawn
from tessera.conference.participant import Participant
from tessera.media.mediasource import ParameterError
from tessera.media.streaminfo import resolve_video
from tessera.webrtc_agent.forwardstream import ForwardStream, TrackSpec
from tessera.webrtc_agent.offercheck import OfferError, check_offer
from tessera.webrtc_agent.publication import Publication
from tessera.webrtc_agent.subscription import SubscribedTrack, Subscription
from tessera.webrtc_agent.transport import Session, SignalingError, Transport

from .binarypack import BinaryPackCodec, CloseRequest
from .messages import RequestError
from .peerserver import ANSWER, CANDIDATE, EXPIRE, LEAVE, OFFER, PeerGrant
from .portal import track_info

if TYPE_CHECKING:
    from tessera.conference.room import Room

    from .peergateway import PeerGateway
    from .server import Server

logger = logging.getLogger(__name__)

# The role of a peer that opened without a token (services that do not require one).
ANONYMOUS_ROLE = "presenter"
# peerjs serializations the room peer speaks: "binary" (BinaryPack, peerjs's default; older
# peerjs also says "binary-utf8" for it), "json", and "raw" ("none" in older peerjs).
BINARY_SERIALIZATIONS = ("binary", "binary-utf8")
DATA_SERIALIZATIONS = (*BINARY_SERIALIZATIONS, "json", "raw", "none")
# A BinaryPack message (whole or reassembled from peerjs chunks) may be this long, or
# the longest text the room takes in UTF-8 (4 bytes a character) if that is more.
MAX_BINARY_MESSAGE = 64 * 1024
MAX_CONNECTION_ID_LENGTH = 128
# Calls and data connections one peer may hold in one room, each a peer connection of
# ours: peerjs makes a call and a data connection or two per destination; more is misuse.
MAX_CONNECTIONS_PER_MEMBER = 8


class CallRefused(Exception):
    """A call or data connection the room peer does not take; the message says why."""


class RoomPeer:
    """Answers every ``room:<name>`` destination of every service."""

    def __init__(self, server: Server, gateway: PeerGateway) -> None:
        self.server = server
        self.gateway = gateway
        self.members: dict[tuple[str, str, str], RoomPeerMember] = {}
        self._locks: dict[tuple[str, str, str], asyncio.Lock] = {}
        self._pending: dict[tuple[str, str, str], int] = {}
        self.closed = False

    def receive(self, service_id: str, room: str, message: dict[str, Any]) -> None:
        """A relayed message from a peer to ``room:<room>`` (``src`` is the peer)."""
        key = (service_id, str(message["src"]), room)
        # One lock per (peer, room): an OFFER is answered before its CANDIDATEs are added.
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._pending[key] = self._pending.get(key, 0) + 1
        spawn(self._handle(key, lock, message), "room peer message")

    async def _handle(
        self, key: tuple[str, str, str], lock: asyncio.Lock, message: dict[str, Any]
    ) -> None:
        try:
            async with lock:
                await self._handle_in_order(key, message)
        finally:
            self._pending[key] -= 1
            if not self._pending[key]:
                del self._pending[key]
                self._locks.pop(key, None)

    async def _handle_in_order(self, key: tuple[str, str, str], message: dict[str, Any]) -> None:
        service_id, peer_id, room = key
        if self.closed:
            return
        kind = message["type"]
        payload = message.get("payload")
        payload = payload if isinstance(payload, dict) else {}
        member = self.members.get(key)
        try:
            if kind == OFFER:
                offer = parse_offer(payload)  # before joining: a bad offer joins nothing
                if member is None:
                    member = await self._join(service_id, peer_id, room)
                await member.offer(offer)
            elif kind == CANDIDATE and member is not None:
                await member.candidate(payload)
            elif kind == LEAVE and member is not None:
                await member.close()
            elif kind == ANSWER:
                logger.info(
                    "room peer got an unexpected ANSWER",
                    extra={"service": service_id, "peer": peer_id, "room_name": room},
                )
        except CallRefused as exc:
            logger.info(
                "room peer refused a message",
                extra={
                    **(member.log_ids if member is not None else {}),
                    "service": service_id,
                    "peer": peer_id,
                    "room_name": room,
                    "type": kind,
                    "reason": str(exc),
                },
            )
            await self.send(
                service_id, room, {"type": EXPIRE, "dst": peer_id, "payload": {"msg": str(exc)}}
            )
            if member is not None and member.empty():
                await member.close()

    async def _join(self, service_id: str, peer_id: str, name: str) -> RoomPeerMember:
        service = self.server.store.get_service(service_id)
        peer = self.gateway.registry.get(service_id, peer_id)
        if service is None or peer is None:
            raise CallRefused("The calling peer is not open")
        grant = peer.grant
        if grant is not None and grant.room != name:
            # A token names its room by name or by id.
            record = self.server.store.get_room(service_id, grant.room)
            if record is None or record.name != name:
                raise CallRefused("Your token does not grant this room")
        try:
            room = await self.server.find_room(service, name, create=service.adhoc_rooms)
        except RequestError as exc:
            raise CallRefused(str(exc)) from None
        if room is None:
            raise CallRefused(f"Room {name} does not exist")
        role = grant.role if grant is not None else ANONYMOUS_ROLE
        permission = room.permission_for(role)
        reason = None
        if room.closed:
            reason = f"Room {name} is closing"
        elif permission is None:
            reason = f"Role {role} is not defined in room {name}"
        elif room.is_full():
            reason = "Room is full"
        if reason is not None or permission is None:
            if not room.participants and not room.closed:
                await self.server.room_empty(room)  # do not leave an ad-hoc room behind
            raise CallRefused(reason or "Permission denied")
        member = RoomPeerMember(self, service_id, peer_id, name, room, grant, permission)
        self.members[service_id, peer_id, name] = member
        room.add_participant(member.participant)
        return member

    async def send(self, service_id: str, room: str, message: dict[str, Any]) -> None:
        await self.gateway.send_from_room_peer(service_id, room, message)

    def member_closed(self, member: RoomPeerMember) -> None:
        key = (member.service_id, member.peer_id, member.room_name)
        if self.members.get(key) is member:
            del self.members[key]

    def peer_gone(self, service_id: str, peer_id: str, expired: bool) -> None:
        """The peer left the server. Only an expired one loses its calls: a peer that
        merely closed its socket (peerjs ``disconnect()``) keeps its connections."""
        if not expired:
            return
        for key, member in list(self.members.items()):
            if key[:2] == (service_id, peer_id):
                spawn(member.close(), "ending an expired peer's calls")

    async def close(self) -> None:
        self.closed = True
        for member in list(self.members.values()):
            await member.close()
        self.members.clear()


class PeerParticipant(Participant):
    """A participant whose client is a peer calling ``room:<name>``.

    Its notifications go to its data connections (only ``text`` is carried)."""

    member: RoomPeerMember

    async def close(self) -> None:
        if self.closed:
            return
        await super().close()
        await self.member.participant_closed()


class RoomPeerMember:
    """One peer in one room through the room peer: a Participant, its calls and data links."""

    def __init__(
        self,
        room_peer: RoomPeer,
        service_id: str,
        peer_id: str,
        room_name: str,
        room: Room,
        grant: PeerGrant | None,
        permission: dict[str, Any],
    ) -> None:
        self.room_peer = room_peer
        self.service_id = service_id
        self.peer_id = peer_id
        self.room_name = room_name
        self.room = room
        user = grant.user if grant is not None else peer_id
        role = grant.role if grant is not None else ANONYMOUS_ROLE
        self.participant = PeerParticipant(
            uuid.uuid4().hex, user, role, permission, room, self._emit
        )
        self.participant.member = self
        self.participant.sid = f"peer:{peer_id}"  # never a Socket.IO sid: emit comes here
        self.calls: dict[str, MediaCall] = {}
        self.links: dict[str, DataLink] = {}
        self.closed = False

    @property
    def log_ids(self) -> dict[str, str]:
        """The ids a log line about this peer in its room carries."""
        return {
            "service": self.service_id,
            "room": self.room.id,
            "participant": self.participant.id,
            "peer": self.peer_id,
        }

    def empty(self) -> bool:
        return not self.calls and not self.links

    async def send(self, message: dict[str, Any]) -> None:
        await self.room_peer.send(self.service_id, self.room_name, {**message, "dst": self.peer_id})

    # -- signaling from the peer ------------------------------------------

    async def offer(self, offer: Offer) -> None:
        if offer.connection_id in self.calls or offer.connection_id in self.links:
            raise CallRefused(f"Connection {offer.connection_id} exists already")
        if len(self.calls) + len(self.links) >= MAX_CONNECTIONS_PER_MEMBER:
            raise CallRefused(
                f"Too many connections to the room peer (at most {MAX_CONNECTIONS_PER_MEMBER})"
            )
        connection: MediaCall | DataLink
        if offer.kind == "media":
            connection = self.calls[offer.connection_id] = MediaCall(self, offer.connection_id)
            starting = connection.start(offer.sdp, offer.sections)
        else:
            connection = self.links[offer.connection_id] = DataLink(
                self, offer.connection_id, offer.serialization
            )
            starting = connection.start(offer.sdp)
        try:
            await starting
        except CallRefused:
            raise  # start() dropped what it made
        except Exception:
            # A failure of ours: leave no call or data connection (nor its Transport) behind.
            logger.exception(
                "room peer failed to take a connection",
                extra={**self.log_ids, "connection": offer.connection_id},
            )
            self.calls.pop(offer.connection_id, None)
            self.links.pop(offer.connection_id, None)
            if isinstance(connection, MediaCall):
                await connection._drop()
            else:
                await connection.close()
            raise CallRefused("The room peer could not take this connection") from None

    async def candidate(self, payload: dict[str, Any]) -> None:
        connection_id = payload.get("connectionId")
        candidate = payload.get("candidate")
        if not isinstance(connection_id, str) or not isinstance(candidate, dict):
            return
        call = self.calls.get(connection_id)
        if call is not None:
            await call.candidate(candidate)
            return
        link = self.links.get(connection_id)
        if link is not None:
            await link.candidate(candidate)

    # -- the room side ----------------------------------------------------

    async def _emit(self, event: str, sid: str, data: Any) -> None:
        if event == "text":
            for link in list(self.links.values()):
                link.deliver(data)

    def text(self, message: str, to: str) -> None:
        """Text from the peer's data connection, to everyone or one participant."""
        limit = self.room_peer.server.config.portal.text_max_length
        if len(message) > limit:
            logger.info(
                "peer text too long, dropped", extra={**self.log_ids, "characters": len(message)}
            )
            return
        sender = self.participant.id
        if to == "all":
            self.room.notify_all(
                "text", {"from": sender, "to": "all", "message": message}, exclude=sender
            )
            return
        target = self.room.participants.get(to)
        if target is not None:
            target.notify("text", {"from": sender, "to": "me", "message": message})

    def connection_ended(self, connection_id: str) -> None:
        self.calls.pop(connection_id, None)
        self.links.pop(connection_id, None)
        if self.empty() and not self.closed:
            spawn(self.close(), "leaving the room")

    async def participant_closed(self) -> None:
        # Removed from the room (REST kick, room deleted): hang up the rest.
        await self.close()

    async def close(self) -> None:
        """Idempotent: hang up every call and data connection, leave the room."""
        if self.closed:
            return
        self.closed = True
        self.room_peer.member_closed(self)
        # peerjs closes every connection to room:<name> on LEAVE from it (kicks, room deleted).
        await self.send({"type": LEAVE})
        for link in list(self.links.values()):
            await link.close()
        self.links.clear()
        self.calls.clear()
        await self.room.remove_participant(self.participant)
        await self.participant.close()


class MediaCall:
    """A peerjs media call to the room peer: one Transport, publishing in, the view out.

    It is the Transport's observer: it turns the answer into an ANSWER message
    and tells the member when the connection ends; the rest goes to the
    Participant as for a Client-Portal client.
    """

    def __init__(self, member: RoomPeerMember, connection_id: str) -> None:
        self.member = member
        self.connection_id = connection_id
        self.transport: Transport | None = None
        self.answered = False

    @property
    def _log_ids(self) -> dict[str, str]:
        return {**self.member.log_ids, "connection": self.connection_id}

    async def start(self, sdp: str, offered: list[tuple[str, str, bool]]) -> None:
        member = self.member
        participant = member.participant
        room = member.room
        publish = participant.permission.get("publish") or {}
        subscribe = participant.permission.get("subscribe") or {}
        view = next(iter(room.views.values()), None)
        server = member.room_peer.server
        transport = server.agent.create_transport(uuid.uuid4().hex, self)
        self.transport = transport
        participant.transports[transport.id] = transport
        try:
            in_tracks = [
                TrackSpec(kind=kind, mid=mid, source="mic" if kind == "audio" else "camera")
                for mid, kind, sends in offered
                if sends and publish.get(kind)
            ]
            limits = server.config.limits
            if in_tracks:
                participant.check_publication_limit(limits.publications_per_participant)
                room.check_input_limit()
                room.check_media_in([t.kind for t in in_tracks])
                settings = room.settings
                stream = ForwardStream(
                    uuid.uuid4().hex,
                    participant.id,
                    in_tracks,
                    {"peer": member.peer_id},
                    media_in=settings.get("mediaIn", {}),
                    media_out=settings.get("mediaOut", {}),
                    transcoding=settings.get("transcoding", {}),
                    keyframe_min_interval=server.config.webrtc.keyframe_min_interval,
                )
                publication = Publication(transport, stream)
                transport.add_session(publication)
                participant.publications[publication.id] = publication
            out_tracks: list[SubscribedTrack] = []
            if view is not None:
                for mid, kind, _ in offered:
                    if not subscribe.get(kind) or not view.has_track(kind):
                        continue
                    fmt: Any
                    if kind == "video":
                        fmt = resolve_video(track_info(view.info(), "video"), None)
                    else:
                        fmt = view.codec("audio") or "opus"
                    out_tracks.append(SubscribedTrack(kind=kind, mid=mid, stream=view, format=fmt))
            if out_tracks:
                participant.check_subscription_limit(limits.subscriptions_per_participant)
                subscription = Subscription(transport, uuid.uuid4().hex, out_tracks, participant.id)
                transport.add_session(subscription)
                participant.subscriptions[subscription.id] = subscription
            if not in_tracks and not out_tracks:
                raise CallRefused("The offer has no audio or video this role may send or receive")
            await transport.handle_offer(sdp)
        except (SignalingError, ParameterError, RequestError) as exc:
            await self._drop()
            raise CallRefused(str(exc)) from None
        except CallRefused:
            await self._drop()
            raise
        logger.info("peer called in", extra={**self._log_ids, "transport": transport.id})

    async def candidate(self, candidate: dict[str, Any]) -> None:
        if self.transport is None:
            return
        try:
            await self.transport.add_candidate(candidate)
        except SignalingError as exc:
            logger.info("peer candidate refused", extra={**self._log_ids, "reason": str(exc)})

    async def _drop(self) -> None:
        transport = self.transport
        if transport is None:
            return
        self.transport = None
        participant = self.member.participant
        for session in list(transport.sessions.values()):
            participant.end_session(session.id)
        participant.transports.pop(transport.id, None)
        await self.member.room_peer.server.agent.close_transport(transport)
        self.member.connection_ended(self.connection_id)

    # -- TransportObserver ------------------------------------------------

    def transport_progress(self, transport: Transport, message: dict[str, Any]) -> None:
        if message.get("status") != "soac" or self.answered:
            return
        self.answered = True
        answer = {
            "type": ANSWER,
            "payload": {
                "sdp": message["data"],
                "type": "media",
                "connectionId": self.connection_id,
            },
        }
        spawn(self.member.send(answer), "answering a call")

    def session_ready(self, session: Session) -> None:
        self.member.participant.session_ready(session)

    def session_failed(self, session: Session, reason: str) -> None:
        self.member.participant.session_failed(session, reason)

    def transport_failed(self, transport: Transport) -> None:
        logger.info("peer call ended", extra={**self._log_ids, "transport": transport.id})
        spawn(self._drop(), "ending a call")


class DataLink:
    """A peerjs data connection to the room peer: the room's text chat.

    From the peer: a string is a message to everyone; ``{"message": str, "to":
    participant id or "all"}`` also works. To the peer: the Client-Portal
    ``text`` event, ``{"from": participant id, "to": "all" | "me", "message"}``
    (BinaryPack for "binary", UTF-8 JSON bytes for "json", a JSON string for "raw").
    """

    def __init__(self, member: RoomPeerMember, connection_id: str, serialization: str) -> None:
        self.member = member
        self.connection_id = connection_id
        self.serialization = serialization
        self.codec: BinaryPackCodec | None = None
        if serialization in BINARY_SERIALIZATIONS:
            text_limit = member.room_peer.server.config.portal.text_max_length
            size = max(MAX_BINARY_MESSAGE, 4 * text_limit + 1024)
            self.codec = BinaryPackCodec(max_message_size=size)
        stun = member.room_peer.server.config.webrtc.stun_servers
        self.pc = RTCPeerConnection(
            RTCConfiguration(iceServers=[RTCIceServer(urls=url) for url in stun])
        )
        self.channel: RTCDataChannel | None = None
        self.closed = False
        self.pc.on("datachannel", self._on_channel)
        self.pc.on("connectionstatechange", self._on_state)

    @property
    def _log_ids(self) -> dict[str, str]:
        return {**self.member.log_ids, "connection": self.connection_id}

    async def start(self, sdp: str) -> None:
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        except Exception as exc:
            await self.close()
            raise CallRefused(f"Invalid offer: {exc}") from None
        local = self.pc.localDescription
        await self.member.send(
            {
                "type": ANSWER,
                "payload": {
                    "sdp": {"type": local.type, "sdp": local.sdp},
                    "type": "data",
                    "connectionId": self.connection_id,
                },
            }
        )

    async def candidate(self, candidate: dict[str, Any]) -> None:
        text = candidate.get("candidate")
        if not isinstance(text, str) or not text.strip():
            return
        try:
            parsed = candidate_from_sdp(text.strip().removeprefix("a=").removeprefix("candidate:"))
            mid = candidate.get("sdpMid")
            index = candidate.get("sdpMLineIndex")
            parsed.sdpMid = mid if isinstance(mid, str) else None
            parsed.sdpMLineIndex = index if isinstance(index, int) else 0
            await self.pc.addIceCandidate(parsed)
        except Exception as exc:
            logger.info("peer data candidate refused", extra={**self._log_ids, "reason": str(exc)})

    def _on_channel(self, channel: RTCDataChannel) -> None:
        self.channel = channel
        channel.on("message", self._on_message)
        channel.on("close", lambda: spawn(self.close(), "closing a data connection"))

    def _on_message(self, data: str | bytes) -> None:
        value: Any
        try:
            if self.codec is not None:
                received = self.codec.decode(data)
                if received is None:
                    return  # a chunk of a longer message
                if isinstance(received, CloseRequest):
                    spawn(self.close(), "closing a data connection")
                    return
                value = received.value
            elif self.serialization == "json":
                text = data.decode() if isinstance(data, bytes) else data
                value = json.loads(text)
            else:
                value = data.decode() if isinstance(data, bytes) else data
        except ValueError as exc:  # BinaryPackError is one
            logger.info(
                "peer data message undecodable, dropped",
                extra={**self._log_ids, "serialization": self.serialization, "reason": str(exc)},
            )
            return
        if isinstance(value, str):
            self.member.text(value, "all")
        elif isinstance(value, dict) and isinstance(value.get("message"), str):
            to = value.get("to", "all")
            self.member.text(value["message"], to if isinstance(to, str) else "all")
        else:
            logger.info("peer data message is not text, dropped", extra=self._log_ids)

    def deliver(self, event: Any) -> None:
        """A room ``text`` event for this peer."""
        channel = self.channel
        if channel is None or channel.readyState != "open":
            return
        if self.codec is not None:
            for frame in self.codec.encode(event):
                channel.send(frame)
            return
        text = json.dumps(event)
        channel.send(text.encode() if self.serialization == "json" else text)

    async def _on_state(self) -> None:
        if self.pc.connectionState in ("failed", "closed"):
            await self.close()

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        await self.pc.close()
        self.member.connection_ended(self.connection_id)


@dataclass(frozen=True)
class Offer:
    """A checked OFFER payload for the room peer."""

    connection_id: str
    kind: str  # "media" | "data"
    sdp: str
    serialization: str  # data connections only
    sections: list[tuple[str, str, bool]]  # media: (mid, kind, the caller sends)


def parse_offer(payload: dict[str, Any]) -> Offer:
    """The OFFER payload of a peerjs call or data connection; CallRefused naming the problem."""
    connection_id = payload.get("connectionId")
    if not isinstance(connection_id, str) or not 0 < len(connection_id) <= MAX_CONNECTION_ID_LENGTH:
        raise CallRefused("OFFER needs a connectionId")
    description = payload.get("sdp")
    sdp = description.get("sdp") if isinstance(description, dict) else None
    if not isinstance(sdp, str) or not sdp:
        raise CallRefused("OFFER needs an sdp")
    kind = payload.get("type")
    serialization = ""
    if kind == "data":
        serialization = str(payload.get("serialization", "binary"))
        if serialization not in DATA_SERIALIZATIONS:
            raise CallRefused(
                "Data connections to the room peer need serialization 'binary', 'json' or "
                f"'raw'; {serialization[:20]!r} is not supported"
            )
    elif kind != "media":
        raise CallRefused("OFFER type must be 'media' or 'data'")
    try:
        parsed = check_offer(sdp, [])  # data offers too, before DataLink applies one
    except OfferError as exc:
        raise CallRefused(f"Invalid offer: {exc}") from None
    if kind == "data":
        return Offer(connection_id, kind, sdp, serialization, [])
    sections = _media_sections(parsed)
    if not sections:
        raise CallRefused("Invalid offer: no audio or video media section")
    return Offer(connection_id, kind, sdp, "", sections)


def _media_sections(description: SessionDescription) -> list[tuple[str, str, bool]]:
    """(mid, kind, whether the caller sends) of the offer's first audio and video m-line."""
    sections: list[tuple[str, str, bool]] = []
    for media in description.media:
        mid = media.rtp.muxId
        if (
            media.kind in ("audio", "video")
            and mid
            and all(k != media.kind for _, k, _ in sections)
        ):
            sends = media.direction in (None, "sendrecv", "sendonly")
            sections.append((mid, media.kind, sends))
    return sections

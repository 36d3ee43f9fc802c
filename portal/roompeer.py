"""RoomPeer: the server-side peer ``room:<name>`` of every room, in the peer model.

A peer that calls ``room:<name>`` (PeerJS ``peer.call("room:town", stream)``)
joins the service's room ``town`` like any participant: its stream is
published into the room (and mixed into the views), and the call is answered
with the room's first view, the mixed stream, on the caller's own m-lines. A
data connection to ``room:<name>`` carries the room's text chat both ways.

Each (peer, room) pair is one :class:`RoomPeerMember`: one participant of the
room (through the room service, like any front end's), with its calls (one
transport each) and data connections. It leaves the
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
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.sdp import candidate_from_sdp

from tessera.conference.api import Conference
from tessera.conference.background import spawn
from tessera.conference.errors import ConferenceError, ErrorCode
from tessera.conference.events import TRANSPORT_EVENT, ClientAddress
from tessera.conference.offers import offer_sections
from tessera.conference.requests import (
    JoinRequest,
    ParticipantRef,
    PublishRequest,
    PublishTrack,
    SignalingRequest,
    SubscribeRequest,
    SubscribeTrack,
    TextRequest,
)

from .binarypack import BinaryPackCodec, CloseRequest
from .config import Config
from .peerserver import ANSWER, CANDIDATE, EXPIRE, LEAVE, OFFER, PeerRegistry

logger = logging.getLogger(__name__)

# The name this front end registers with the room service's router.
FRONT_END = "peer"
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
# Room text for a data connection whose channel is not open yet (its peer joined the room
# with the offer; the channel opens a moment later) waits, up to this many events.
MAX_PENDING_TEXT = 100


class PeerSignaling(Protocol):
    """What the room peer uses of the PeerJS gateway (a protocol keeps the import one-way)."""

    @property
    def registry(self) -> PeerRegistry: ...

    async def send_from_room_peer(
        self, service_id: str, room: str, message: dict[str, Any]
    ) -> None: ...


class CallRefused(Exception):
    """A call or data connection the room peer does not take; the message says why."""


class RoomPeer:
    """Answers every ``room:<name>`` destination of every service; a front end of the
    room service (its members' events come in through :meth:`deliver`)."""

    def __init__(self, conference: Conference, config: Config, gateway: PeerSignaling) -> None:
        self.conference = conference
        self.config = config
        self.gateway = gateway
        self.members: dict[tuple[str, str, str], RoomPeerMember] = {}
        self.by_key: dict[str, RoomPeerMember] = {}  # the members by their client key
        # Participant id -> peer id of the members here: room chat names a peer by its peer id.
        self.peer_ids: dict[str, str] = {}
        self._locks: dict[tuple[str, str, str], asyncio.Lock] = {}
        self._pending: dict[tuple[str, str, str], int] = {}
        self.closed = False

    # -- FrontEnd (the room service's events) -----------------------------

    def deliver(self, key: str, event: str, data: Any) -> None:
        member = self.by_key.get(key)
        if member is not None:
            member.deliver(event, data)

    def disconnect(
        self, key: str, reason: str, *, notify: bool = True, rejoin: str | None = None
    ) -> None:
        member = self.by_key.get(key)
        if member is not None:
            # Removed from the room (REST drop, room deleted): hang up the rest.
            spawn(member.close(reason, removed=True), "ending a removed member's calls")

    # -- messages from peers ------------------------------------------------

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
                await member.close("the peer sent LEAVE")
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
                await member.close("its last connection was refused")

    async def _join(self, service_id: str, peer_id: str, name: str) -> RoomPeerMember:
        peer = self.gateway.registry.get(service_id, peer_id)
        try:  # the store may be out of reach (a cluster's Redis): the peer hears why
            if await self.conference.get_service(service_id) is None or peer is None:
                raise CallRefused("The calling peer is not open")
            grant = peer.grant
            if grant is not None and grant.room != name:
                # A token names its room by name or by id.
                record = await self.conference.get_room_record(service_id, grant.room)
                if record is None or record.name != name:
                    raise CallRefused("Your token does not grant this room")
        except ConferenceError as exc:
            raise CallRefused(str(exc)) from None
        role = grant.role if grant is not None else ANONYMOUS_ROLE
        user = grant.user if grant is not None else peer_id
        key = uuid.uuid4().hex
        try:
            result = await self.conference.join(
                JoinRequest(
                    service_id=service_id,
                    room=name,
                    user=user,
                    role=role,
                    client=ClientAddress(front_end=FRONT_END, key=key),
                )
            )
        except ConferenceError as exc:
            if exc.code == ErrorCode.ROOM_NOT_FOUND:
                raise CallRefused(f"Room {name} does not exist") from None
            raise CallRefused(str(exc)) from None
        member = RoomPeerMember(
            self, key, service_id, peer_id, name, result.participant, result.permission
        )
        member.learn_names(result.room.get("participants"))
        self.members[service_id, peer_id, name] = member
        self.by_key[key] = member
        self.peer_ids[result.participant.participant_id] = peer_id
        return member

    async def send(self, service_id: str, room: str, message: dict[str, Any]) -> None:
        await self.gateway.send_from_room_peer(service_id, room, message)

    def member_closed(self, member: RoomPeerMember) -> None:
        key = (member.service_id, member.peer_id, member.room_name)
        if self.members.get(key) is member:
            del self.members[key]
        self.by_key.pop(member.key, None)
        self.peer_ids.pop(member.participant.participant_id, None)

    def participant_of(self, service_id: str, room_name: str, peer_id: str) -> str | None:
        """The participant id of the peer ``peer_id`` in the room, if it is a member here."""
        member = self.members.get((service_id, peer_id, room_name))
        return member.participant.participant_id if member is not None else None

    def peer_gone(self, service_id: str, peer_id: str, expired: bool) -> None:
        """The peer left the server. Only an expired one loses its calls: a peer that
        merely closed its socket (peerjs ``disconnect()``) keeps its connections."""
        if not expired:
            return
        for key, member in list(self.members.items()):
            if key[:2] == (service_id, peer_id):
                spawn(member.close("the peer expired"), "ending an expired peer's calls")

    async def close(self) -> None:
        self.closed = True
        for member in list(self.members.values()):
            await member.close("the server is shutting down")
        self.members.clear()
        self.by_key.clear()


class RoomPeerMember:
    """One peer in one room through the room peer: a participant, its calls and data links."""

    def __init__(
        self,
        room_peer: RoomPeer,
        key: str,
        service_id: str,
        peer_id: str,
        room_name: str,
        participant: ParticipantRef,
        permission: dict[str, Any],
    ) -> None:
        self.room_peer = room_peer
        self.conference = room_peer.conference
        self.key = key
        self.service_id = service_id
        self.peer_id = peer_id
        self.room_name = room_name
        self.participant = participant
        self.permission = permission
        self.calls: dict[str, MediaCall] = {}
        self.links: dict[str, DataLink] = {}
        self.closed = False
        self.names: dict[str, str] = {}  # the room's participants' user names, by id

    @property
    def log_ids(self) -> dict[str, str]:
        """The ids a log line about this peer in its room carries."""
        return {
            "service": self.service_id,
            "room": self.participant.room_id,
            "participant": self.participant.participant_id,
            "peer": self.peer_id,
        }

    def may(self, action: str, kind: str) -> bool:
        allowed = self.permission.get(action)
        return bool(allowed.get(kind)) if isinstance(allowed, dict) else False

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
            # A failure of ours: leave no call or data connection (nor its transport) behind.
            logger.exception(
                "room peer failed to take a connection",
                extra={**self.log_ids, "connection": offer.connection_id},
            )
            self.calls.pop(offer.connection_id, None)
            self.links.pop(offer.connection_id, None)
            if isinstance(connection, MediaCall):
                await connection.drop("the room peer failed to take it")
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

    def learn_names(self, participants: Any) -> None:
        """The user names of participants (``{id, user, role}`` each, as the room lists them)."""
        for participant in participants if isinstance(participants, list) else []:
            if isinstance(participant, dict):
                pid, user = participant.get("id"), participant.get("user")
                if isinstance(pid, str) and isinstance(user, str):
                    self.names[pid] = user

    def chat_event(self, data: dict[str, Any]) -> dict[str, Any]:
        """A room ``text`` event as a PeerJS member reads it: ``from`` is the sender's peer
        id when the sender is a peer (else its participant id), ``name`` its user name."""
        sender = data.get("from")
        if not isinstance(sender, str):
            return data
        event = {**data, "from": self.room_peer.peer_ids.get(sender, sender)}
        if sender in self.names:
            event["name"] = self.names[sender]
        return event

    def deliver(self, event: str, data: Any) -> None:
        """An event of the room service for this participant: text goes to the data
        connections; a transport's answer and end go to its call."""
        if event == "text":
            chat = self.chat_event(data) if isinstance(data, dict) else data
            for link in list(self.links.values()):
                link.deliver(chat)
            return
        if not isinstance(data, dict):
            return
        if event == "participant":
            if data.get("action") == "join":
                self.learn_names([data.get("data")])
            elif data.get("action") == "leave" and isinstance(data.get("data"), str):
                self.names.pop(data["data"], None)
            return
        call = next((c for c in self.calls.values() if c.transport_id == data.get("id")), None)
        if call is None:
            return
        if event == "progress" and data.get("status") == "soac":
            call.answer(data.get("data"))
        elif event == TRANSPORT_EVENT and data.get("status") == "closed":
            logger.info(
                "peer call ended",
                extra={
                    **call.log_ids,
                    "transport": call.transport_id,
                    "reason": data.get("reason"),
                },
            )
            spawn(call.drop(str(data.get("reason"))), "ending a call")

    async def text(self, message: str, to: str) -> None:
        """Text from the peer's data connection, to everyone or one participant (by its
        participant id, or by its peer id if it is a PeerJS member)."""
        to = self.room_peer.participant_of(self.service_id, self.room_name, to) or to
        try:
            await self.conference.text(self.participant, TextRequest(to=to, message=message))
        except (ConferenceError, ValueError) as exc:
            logger.info("peer text refused, dropped", extra={**self.log_ids, "reason": str(exc)})

    def connection_ended(self, connection_id: str) -> None:
        self.calls.pop(connection_id, None)
        self.links.pop(connection_id, None)
        if self.empty() and not self.closed:
            spawn(self.close("its last connection ended"), "leaving the room")

    async def close(self, reason: str, *, removed: bool = False) -> None:
        """Idempotent: hang up every call and data connection, leave the room (unless the
        room service ``removed`` the participant already)."""
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
        if not removed:
            try:
                await self.conference.leave(self.participant, reason)
            except ConferenceError:
                pass  # gone already (its room closed)


class MediaCall:
    """A peerjs media call to the room peer: one transport, publishing in, the view out.

    The caller's stream is published and the room's first view subscribed on the same
    transport, on the caller's own m-lines; the room service's answer (a ``progress``
    ``soac`` event) becomes an ANSWER message, and the transport's end hangs up the call.
    """

    def __init__(self, member: RoomPeerMember, connection_id: str) -> None:
        self.member = member
        self.connection_id = connection_id
        self.transport_id: str | None = None
        self.answered = False

    @property
    def log_ids(self) -> dict[str, str]:
        return {**self.member.log_ids, "connection": self.connection_id}

    async def start(self, sdp: str, offered: list[tuple[str, str, bool]]) -> None:
        member = self.member
        conference = member.conference
        ref = member.participant
        try:
            publish = [
                PublishTrack(kind=kind, mid=mid, source="mic" if kind == "audio" else "camera")
                for mid, kind, sends in offered
                if sends and member.may("publish", kind)
            ]  # type: ignore[arg-type]
            if publish:
                published = await conference.publish(
                    ref, PublishRequest(tracks=publish, attributes={"peer": member.peer_id})
                )
                self.transport_id = published.transport_id
            view = first_view(await conference.room_info(ref))
            subscribe = [
                SubscribeTrack(kind=kind, mid=mid, stream_id=view["id"])  # type: ignore[arg-type]
                for mid, kind, _ in offered
                if view is not None and member.may("subscribe", kind) and has_track(view, kind)
            ]
            if subscribe:
                subscribed = await conference.subscribe(
                    ref, SubscribeRequest(tracks=subscribe, transport_id=self.transport_id)
                )
                self.transport_id = subscribed.transport_id
            if self.transport_id is None:
                raise CallRefused("The offer has no audio or video this role may send or receive")
            await conference.signaling(
                ref, SignalingRequest(transport_id=self.transport_id, type="offer", sdp=sdp)
            )
        except ConferenceError as exc:
            await self.drop(str(exc))
            raise CallRefused(str(exc)) from None
        except CallRefused as exc:
            await self.drop(str(exc))
            raise
        logger.info("peer called in", extra={**self.log_ids, "transport": self.transport_id})

    def answer(self, description: Any) -> None:
        """The room service answered the call's offer: the ANSWER message, once."""
        if self.answered or not isinstance(description, dict):
            return
        self.answered = True
        answer = {
            "type": ANSWER,
            "payload": {"sdp": description, "type": "media", "connectionId": self.connection_id},
        }
        spawn(self.member.send(answer), "answering a call")

    async def candidate(self, candidate: dict[str, Any]) -> None:
        if self.transport_id is None:
            return
        request = SignalingRequest(
            transport_id=self.transport_id, type="candidate", candidate=candidate
        )
        try:
            await self.member.conference.signaling(self.member.participant, request)
        except ConferenceError as exc:
            logger.info("peer candidate refused", extra={**self.log_ids, "reason": str(exc)})

    async def drop(self, reason: str) -> None:
        """End the call's transport (and its sessions); the member hears it ended."""
        transport_id, self.transport_id = self.transport_id, None
        if transport_id is not None:
            try:
                await self.member.conference.close_transport(
                    self.member.participant, transport_id, reason
                )
            except ConferenceError:
                pass  # the participant is gone, and its transports with it
        self.member.connection_ended(self.connection_id)


def first_view(room: dict[str, Any]) -> dict[str, Any] | None:
    """The room's first view (its first mixed stream's info), from a room description."""
    return next(
        (s for s in room.get("streams", []) if isinstance(s, dict) and s.get("type") == "mixed"),
        None,
    )


def has_track(info: dict[str, Any], kind: str) -> bool:
    tracks = info.get("media", {}).get("tracks", [])
    return any(isinstance(t, dict) and t.get("type") == kind for t in tracks)


class DataLink:
    """A peerjs data connection to the room peer: the room's text chat.

    From the peer: a string is a message to everyone; ``{"message": str, "to":
    participant id, a member's peer id or "all"}`` also works. To the peer: the
    Client-Portal ``text`` event, ``{"from", "to": "all" | "me", "message", "name"}``,
    ``from`` being the sender's peer id (a participant id for a sender that is no peer)
    (BinaryPack for "binary", UTF-8 JSON bytes for "json", a JSON string for "raw").
    """

    def __init__(self, member: RoomPeerMember, connection_id: str, serialization: str) -> None:
        self.member = member
        self.connection_id = connection_id
        self.serialization = serialization
        self.codec: BinaryPackCodec | None = None
        if serialization in BINARY_SERIALIZATIONS:
            text_limit = member.room_peer.config.portal.text_max_length
            size = max(MAX_BINARY_MESSAGE, 4 * text_limit + 1024)
            self.codec = BinaryPackCodec(max_message_size=size)
        stun = member.room_peer.config.webrtc.stun_servers
        self.pc = RTCPeerConnection(
            RTCConfiguration(iceServers=[RTCIceServer(urls=url) for url in stun])
        )
        self.channel: RTCDataChannel | None = None
        self.closed = False
        self._pending: deque[Any] = deque()
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
        if channel.readyState == "open":
            self._send_pending()
        else:
            channel.on("open", self._send_pending)

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
            spawn(self.member.text(value, "all"), "peer text")
        elif isinstance(value, dict) and isinstance(value.get("message"), str):
            to = value.get("to", "all")
            spawn(
                self.member.text(value["message"], to if isinstance(to, str) else "all"),
                "peer text",
            )
        else:
            logger.info("peer data message is not text, dropped", extra=self._log_ids)

    def deliver(self, event: Any) -> None:
        """A room ``text`` event for this peer (kept until its channel is open)."""
        channel = self.channel
        if channel is None or channel.readyState != "open":
            if self.closed or (channel is not None and channel.readyState != "connecting"):
                return  # closing or closed: nobody will read it
            if len(self._pending) >= MAX_PENDING_TEXT:
                self._pending.popleft()
                logger.info(
                    "peer data channel not open, oldest pending text dropped", extra=self._log_ids
                )
            self._pending.append(event)
            return
        self._send(channel, event)

    def _send_pending(self) -> None:
        channel = self.channel
        while self._pending and channel is not None and channel.readyState == "open":
            self._send(channel, self._pending.popleft())

    def _send(self, channel: RTCDataChannel, event: Any) -> None:
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
        self._pending.clear()
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
        sections = offer_sections(sdp)  # data offers too, before DataLink applies one
    except ConferenceError as exc:
        raise CallRefused(str(exc)) from None
    if kind == "data":
        return Offer(connection_id, kind, sdp, serialization, [])
    if not sections:
        raise CallRefused("Invalid offer: no audio or video media section")
    return Offer(connection_id, kind, sdp, "", sections)

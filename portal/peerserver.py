"""PeerServer protocol state (PeerJS-compatible): peers per service, routing, expiry, mesh rooms.

Pure: no asyncio, no sockets, no clock. The WebSocket layer (``peergateway.py``)
hands every event in with the current time and carries out the actions that
come back (:class:`Send`, :class:`Close`, :class:`ToRoomPeer`, :class:`PeerGone`).

The wire protocol is PeerServer's (the open-source server of PeerJS), so that
the unmodified ``peerjs`` client works: JSON frames ``{type, payload, dst}``
from a peer, relayed to ``dst`` with ``src`` added. What differs, all of it
invisible to a client that does not use it:

- The API ``key`` is a Tessera service id: each service is its own namespace
  of peer ids (PeerServer has one key per server).
- ``room:<name>`` is a reserved destination: the server-side peer of the
  service's room ``<name>`` (calls and data connections to it go through
  Tessera, see ``roompeer.py``).
- A peer that stops sending heartbeats is expired as in PeerServer, and the
  peers it exchanged signaling with get ``LEAVE`` from it, so that their
  connections to it close (PeerServer tells nobody).
- Mesh rooms: ``ROOM-JOIN``/``ROOM-LEAVE`` from a peer, ``ROOM-MEMBERS``,
  ``ROOM-PEER-JOINED``, ``ROOM-PEER-LEFT`` and ``ROOM-ERROR`` from the server.
  Members call each other with the ordinary OFFER/ANSWER/CANDIDATE relay; the
  server carries no media.
- A malformed frame is dropped with a log line naming the problem, as PeerServer drops
  it (PeerServer logs only unparsable JSON): never ``ERROR``, which the ``peerjs`` client
  takes as fatal and destroys its whole peer for (``peer.connect(undefined)`` is an app bug).
- Several portals may share the peers of a service (``clustered``): ids are claimed in
  a peer directory, and messages for peers held elsewhere are relayed (peergateway.py).
"""

from __future__ import annotations

import json
import re
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Close",
    "Dropped",
    "JoinMesh",
    "LeaveMesh",
    "MeshRoom",
    "OpenRefused",
    "Peer",
    "PeerGone",
    "PeerGrant",
    "PeerRegistry",
    "Relay",
    "Send",
    "ToRoomPeer",
    "room_peer_id",
]

# Message types of PeerServer (src/enums.ts) ...
OPEN = "OPEN"
LEAVE = "LEAVE"
CANDIDATE = "CANDIDATE"
OFFER = "OFFER"
ANSWER = "ANSWER"
EXPIRE = "EXPIRE"
HEARTBEAT = "HEARTBEAT"
ID_TAKEN = "ID-TAKEN"
INVALID_KEY = "INVALID-KEY"
ERROR = "ERROR"
# ... and Tessera's mesh-room extension.
ROOM_JOIN = "ROOM-JOIN"
ROOM_LEAVE = "ROOM-LEAVE"
ROOM_MEMBERS = "ROOM-MEMBERS"
ROOM_PEER_JOINED = "ROOM-PEER-JOINED"
ROOM_PEER_LEFT = "ROOM-PEER-LEFT"
ROOM_ERROR = "ROOM-ERROR"

RELAYED = (OFFER, ANSWER, CANDIDATE, LEAVE, EXPIRE)
# Only these wait for a destination that is not connected yet (as in PeerServer).
QUEUED = (OFFER, ANSWER, CANDIDATE)

# PeerServer's error texts, which clients may match on.
MSG_INVALID_KEY = "Invalid key provided"
MSG_INVALID_WS_PARAMETERS = "No id, token, or key supplied to websocket server"
MSG_CONNECTION_LIMIT = "Server has reached its concurrent user limit"
MSG_ID_TAKEN = "ID is taken"

ROOM_PEER_PREFIX = "room:"
ID_LENGTH = 16  # server-generated ids, as SkyWay's
_ID_ALPHABET = string.ascii_lowercase + string.digits
# The peerjs client's own rule for ids (util.validateId); ":" is left for room:<name>.
_ID_RE = re.compile(r"[A-Za-z0-9]+(?:[ _-][A-Za-z0-9]+)*")
MAX_ID_LENGTH = 64
MAX_ROOM_NAME_LENGTH = 256
# An SDP with many candidates is a few KB; nothing a peer sends needs more.
MAX_MESSAGE_BYTES = 65536
MAX_QUEUED_PER_DESTINATION = 100
MAX_MESH_MEMBERS = 16  # a full mesh of n sends n-1 copies of every stream: keep it small


@dataclass(frozen=True)
class PeerGrant:
    """What a verified Tessera token lets a peer do: its user, role and room."""

    user: str
    role: str
    room: str


@dataclass
class Peer:
    """A peer with an open WebSocket, in one service's namespace."""

    service_id: str
    id: str
    token: str
    connection: object
    last_ping: float
    grant: PeerGrant | None = None
    rooms: set[str] = field(default_factory=set)
    # Peers this one exchanged signaling with: they hear LEAVE if it expires.
    contacts: set[str] = field(default_factory=set)
    # Its claim in the peer directory (peerdirectory.py): released when it goes.
    claim_id: str = ""


@dataclass
class MeshRoom:
    """A mesh room: peers that call each other directly; it lives while it has members."""

    service_id: str
    name: str
    members: list[str] = field(default_factory=list)  # in joining order


@dataclass
class _Queue:
    since: float  # when the destination was first waited for
    messages: list[dict[str, Any]] = field(default_factory=list)


# -- actions for the I/O layer -------------------------------------------


@dataclass(frozen=True)
class Send:
    """Send ``message`` (as JSON) on ``connection``."""

    connection: object
    message: dict[str, Any]


@dataclass(frozen=True)
class Close:
    """Close ``connection`` (after the Sends before it)."""

    connection: object


@dataclass(frozen=True)
class ToRoomPeer:
    """A message for the server-side peer of room ``room`` (``src`` is filled in)."""

    service_id: str
    room: str
    message: dict[str, Any]


@dataclass(frozen=True)
class Relay:
    """A message for a peer that is not open here: another node of the cluster may hold it.

    Only a clustered registry asks for this; the I/O layer finds the holder and sends the
    message there, or hands it back with :meth:`PeerRegistry.deliver_or_queue`.
    """

    service_id: str
    message: dict[str, Any]


@dataclass(frozen=True)
class JoinMesh:
    """A peer asks to join mesh room ``name`` of a cluster: the directory decides, and
    :meth:`PeerRegistry.mesh_joined` (or ``mesh_join_failed``) takes the answer."""

    service_id: str
    peer_id: str
    name: str


@dataclass(frozen=True)
class LeaveMesh:
    """A peer leaves mesh room ``name`` of a cluster; :meth:`PeerRegistry.mesh_left` then
    tells the members the directory still lists."""

    service_id: str
    peer_id: str
    name: str


@dataclass(frozen=True)
class Dropped:
    """A frame from a peer that was not acted on, and why (the I/O layer logs it)."""

    service_id: str
    peer_id: str
    reason: str


@dataclass(frozen=True)
class PeerGone:
    """A peer left the server (socket closed) or was expired (no heartbeats)."""

    service_id: str
    peer_id: str
    expired: bool
    claim_id: str = ""  # its directory claim, to release


Action = Send | Close | ToRoomPeer | Relay | JoinMesh | LeaveMesh | PeerGone | Dropped


class OpenRefused(Exception):
    """A WebSocket that may not open: reply ``message`` and close."""

    def __init__(self, message: dict[str, Any]) -> None:
        super().__init__(message.get("payload", {}).get("msg", message["type"]))
        self.message = message


def error_message(text: str) -> dict[str, Any]:
    return {"type": ERROR, "payload": {"msg": text}}


def _dropped(peer: Peer, reason: str) -> Dropped:
    return Dropped(peer.service_id, peer.id, reason)


def room_peer_id(room: str) -> str:
    """The reserved peer id of a room's server-side peer."""
    return ROOM_PEER_PREFIX + room


def valid_peer_id(peer_id: str) -> bool:
    return len(peer_id) <= MAX_ID_LENGTH and _ID_RE.fullmatch(peer_id) is not None


def _valid_room_name(name: object) -> bool:
    return isinstance(name, str) and 0 < len(name) <= MAX_ROOM_NAME_LENGTH and name.isprintable()


class PeerRegistry:
    """Every open peer of every service, the messages waiting for absent peers, mesh rooms.

    Timing follows PeerServer: a peer whose last ``HEARTBEAT`` is
    ``alive_timeout`` old is expired; a message for an absent peer waits
    ``expire_timeout`` and then its sender gets ``EXPIRE``.

    A *clustered* registry (one portal of several) holds only its own node's peers: a
    message for a peer not open here becomes a :class:`Relay` action (unless messages
    for that peer already wait here: they keep their order), and a message relayed from
    another node comes in through :meth:`from_node`. Its mesh rooms are kept in the
    peer directory: joining and leaving become :class:`JoinMesh` and :class:`LeaveMesh`
    actions, whose answers come back through :meth:`mesh_joined` and :meth:`mesh_left`.
    """

    def __init__(
        self,
        *,
        alive_timeout: float,
        expire_timeout: float,
        concurrent_limit: int,
        random_id: Callable[[], str] | None = None,
        clustered: bool = False,
    ) -> None:
        self.clustered = clustered
        self.alive_timeout = alive_timeout
        self.expire_timeout = expire_timeout
        self.concurrent_limit = concurrent_limit
        self._random_id = random_id or _random_id
        self._peers: dict[tuple[str, str], Peer] = {}
        self._queues: dict[tuple[str, str], _Queue] = {}
        self._rooms: dict[tuple[str, str], MeshRoom] = {}

    # -- queries ----------------------------------------------------------

    def get(self, service_id: str, peer_id: str) -> Peer | None:
        return self._peers.get((service_id, peer_id))

    def peer_ids(self, service_id: str) -> list[str]:
        """The ids of a service's open peers (``GET {path}{key}/peers``)."""
        return [peer_id for (sid, peer_id) in self._peers if sid == service_id]

    def count(self, service_id: str | None = None) -> int:
        if service_id is None:
            return len(self._peers)
        return sum(1 for (sid, _) in self._peers if sid == service_id)

    def peers(self) -> list[Peer]:
        """Every open peer of every service (the directory refreshes their claims)."""
        return list(self._peers.values())

    def queued_destinations(self) -> dict[str, list[str]]:
        """The absent peers that messages wait for, by service."""
        waiting: dict[str, list[str]] = {}
        for service_id, peer_id in self._queues:
            waiting.setdefault(service_id, []).append(peer_id)
        return waiting

    def mesh_room(self, service_id: str, name: str) -> MeshRoom | None:
        return self._rooms.get((service_id, name))

    def new_id(self, service_id: str) -> str:
        """A fresh id nobody in the service uses (``GET {path}{key}/id``)."""
        while True:
            peer_id = self._random_id()
            if (service_id, peer_id) not in self._peers:
                return peer_id

    # -- opening and closing ---------------------------------------------

    def open(
        self,
        service_id: str,
        peer_id: str,
        token: str,
        connection: object,
        now: float,
        grant: PeerGrant | None = None,
        claim_id: str = "",
    ) -> list[Action]:
        """A WebSocket with a valid key asks to be ``peer_id``; OpenRefused if it may not.

        The same id with the same token takes the peer over (a reconnect
        whose old socket the server has not seen close); another token gets
        ``ID-TAKEN``. ``claim_id`` is the peer's claim in the directory.
        """
        if not peer_id or not token:
            raise OpenRefused(error_message(MSG_INVALID_WS_PARAMETERS))
        if not valid_peer_id(peer_id):
            raise OpenRefused(error_message(f'ID "{peer_id[:MAX_ID_LENGTH]}" is invalid'))
        actions: list[Action] = []
        existing = self._peers.get((service_id, peer_id))
        if existing is not None:
            if existing.token != token:
                raise OpenRefused({"type": ID_TAKEN, "payload": {"msg": MSG_ID_TAKEN}})
            if existing.connection is not connection:
                actions.append(Close(existing.connection))
            existing.connection = connection
            existing.last_ping = now
            existing.grant = grant or existing.grant
            existing.claim_id = claim_id
        else:
            if self.count(service_id) >= self.concurrent_limit:
                raise OpenRefused(error_message(MSG_CONNECTION_LIMIT))
            self._peers[service_id, peer_id] = Peer(
                service_id, peer_id, token, connection, now, grant, claim_id=claim_id
            )
        actions.append(Send(connection, {"type": OPEN}))
        queue = self._queues.pop((service_id, peer_id), None)
        if queue is not None:
            for message in queue.messages:
                actions.extend(self._relay(service_id, message, now))
        return actions

    def closed(self, service_id: str, peer_id: str, connection: object) -> list[Action]:
        """The peer's WebSocket closed. Nothing happens if another socket took the peer over."""
        peer = self._peers.get((service_id, peer_id))
        if peer is None or peer.connection is not connection:
            return []
        return self._remove(peer, expired=False)

    def superseded(self, service_id: str, peer_id: str, claim_id: str) -> list[Action]:
        """The peer's claim ``claim_id`` went to another node (the same peer reconnected
        there): its socket here is closed, and nobody hears LEAVE (the peer is still on)."""
        peer = self._peers.get((service_id, peer_id))
        if peer is None or peer.claim_id != claim_id:
            return []
        return [*self._remove(peer, expired=False), Close(peer.connection)]

    def _remove(self, peer: Peer, *, expired: bool) -> list[Action]:
        del self._peers[peer.service_id, peer.id]
        self._queues.pop((peer.service_id, peer.id), None)
        actions: list[Action] = []
        for name in sorted(peer.rooms):
            actions.extend(self._leave_room(peer, name))
        if expired:
            actions.append(Close(peer.connection))
            for contact in sorted(peer.contacts):
                leave = {"type": LEAVE, "src": peer.id, "dst": contact}
                other = self._peers.get((peer.service_id, contact))
                if other is not None:
                    actions.append(Send(other.connection, leave))
                elif self.clustered and not contact.startswith(ROOM_PEER_PREFIX):
                    actions.append(Relay(peer.service_id, leave))
        actions.append(PeerGone(peer.service_id, peer.id, expired, peer.claim_id))
        return actions

    def sweep(self, now: float) -> list[Action]:
        """Expire silent peers and messages that waited too long for their destination."""
        actions: list[Action] = []
        for peer in list(self._peers.values()):
            if now - peer.last_ping >= self.alive_timeout:
                actions.extend(self._remove(peer, expired=True))
        for key, queue in list(self._queues.items()):
            if now - queue.since < self.expire_timeout:
                continue
            del self._queues[key]
            service_id, absent = key
            told: set[str] = set()
            for message in queue.messages:
                src = message["src"]
                sender = self._peers.get((service_id, src))
                if src in told or sender is None:
                    continue
                told.add(src)
                actions.append(Send(sender.connection, {"type": EXPIRE, "src": absent, "dst": src}))
        return actions

    # -- messages ---------------------------------------------------------

    def receive(
        self, service_id: str, peer_id: str, connection: object, data: str | bytes, now: float
    ) -> list[Action]:
        """A WebSocket frame from an open peer on ``connection``.

        Ignored if another socket took the peer over: the old one may still
        deliver frames (a LEAVE from it must not remove the new one).
        """
        peer = self._peers.get((service_id, peer_id))
        if peer is None or peer.connection is not connection:
            return []
        try:
            message = _parse(data)
        except ValueError as exc:
            return [_dropped(peer, str(exc))]
        kind = message["type"]
        if kind == HEARTBEAT:
            peer.last_ping = now
            return []
        if kind in RELAYED:
            return self._from_peer(peer, kind, message, now)
        if kind == ROOM_JOIN:
            return self._join_room(peer, message.get("payload"))
        if kind == ROOM_LEAVE:
            payload = message.get("payload")
            name = payload.get("room") if isinstance(payload, dict) else None
            if not isinstance(name, str) or name not in peer.rooms:
                return [Send(peer.connection, _room_error(name, "Not a member of that room"))]
            return self._leave_room(peer, name)
        return [_dropped(peer, f"Unknown message type: {kind[:40]}")]

    def _from_peer(
        self, peer: Peer, kind: str, message: dict[str, Any], now: float
    ) -> list[Action]:
        dst = message.get("dst")
        payload = message.get("payload")
        if kind == LEAVE and dst is None:
            # PeerServer: LEAVE without a destination means "forget me".
            return [*self._remove(peer, expired=False), Close(peer.connection)]
        if not isinstance(dst, str) or not dst:
            return [_dropped(peer, f"{kind} needs a destination (dst)")]
        if len(dst) > len(ROOM_PEER_PREFIX) + MAX_ROOM_NAME_LENGTH:
            return [_dropped(peer, f"{kind} destination is too long")]
        if kind in QUEUED and not isinstance(payload, dict):
            return [_dropped(peer, f"{kind} needs a payload object")]
        relayed: dict[str, Any] = {"type": kind, "src": peer.id, "dst": dst}
        if payload is not None:
            relayed["payload"] = payload
        if dst.startswith(ROOM_PEER_PREFIX):
            room = dst[len(ROOM_PEER_PREFIX) :]
            if not _valid_room_name(room):
                return [_dropped(peer, f"{kind}: invalid room peer id")]
            return [ToRoomPeer(peer.service_id, room, relayed)]
        target = self._peers.get((peer.service_id, dst))
        if target is not None:
            peer.contacts.add(dst)
            target.contacts.add(peer.id)
        elif self.clustered:
            peer.contacts.add(dst)  # held by another node, maybe: it hears LEAVE from there
        return self._relay(peer.service_id, relayed, now)

    def _relay(self, service_id: str, message: dict[str, Any], now: float) -> list[Action]:
        dst = message["dst"]
        target = self._peers.get((service_id, dst))
        if target is not None:
            return [Send(target.connection, message)]
        if self.clustered and (service_id, dst) not in self._queues:
            return [Relay(service_id, message)]
        return self._enqueue(service_id, message, now)

    def deliver_or_queue(
        self, service_id: str, message: dict[str, Any], now: float
    ) -> list[Action]:
        """A message of a :class:`Relay` that no other node took: the peer may have opened
        here meanwhile; otherwise it waits as for any absent peer."""
        target = self._peers.get((service_id, message["dst"]))
        if target is not None:
            target.contacts.add(message["src"])
            return [Send(target.connection, _as_delivered(message))]
        return self._enqueue(service_id, message, now)

    def from_node(self, service_id: str, message: dict[str, Any]) -> list[Action] | None:
        """A message another node relayed to one of this node's peers; ``None`` if that
        peer is not open here (any more): the sender's node should have it back."""
        target = self._peers.get((service_id, message["dst"]))
        if target is None:
            return None
        target.contacts.add(message["src"])
        return [Send(target.connection, _as_delivered(message))]

    def take_queue(self, service_id: str, peer_id: str) -> tuple[float, list[dict[str, Any]]]:
        """The messages waiting for ``peer_id`` (it opened on another node), and since when."""
        queue = self._queues.pop((service_id, peer_id), None)
        if queue is None:
            return 0.0, []
        return queue.since, queue.messages

    def restore_queue(
        self, service_id: str, peer_id: str, since: float, messages: list[dict[str, Any]]
    ) -> None:
        """Put back what :meth:`take_queue` took (its node did not take it), ahead of any
        message queued since."""
        queue = self._queues.get((service_id, peer_id))
        if queue is None:
            self._queues[service_id, peer_id] = _Queue(since, list(messages))
        else:
            queue.since = min(queue.since, since)
            queue.messages[:0] = messages
            del queue.messages[MAX_QUEUED_PER_DESTINATION:]

    def _enqueue(self, service_id: str, message: dict[str, Any], now: float) -> list[Action]:
        dst = message["dst"]
        if message["type"] not in QUEUED:
            return []  # LEAVE or EXPIRE for someone absent: nothing to do (PeerServer)
        queue = self._queues.get((service_id, dst))
        if queue is None:
            if len(self._queues) >= self.concurrent_limit * 4:
                # Too many absent destinations at once: expire this one now.
                return self._expire_now(service_id, message)
            queue = self._queues[service_id, dst] = _Queue(since=now)
        if len(queue.messages) >= MAX_QUEUED_PER_DESTINATION:
            return []
        queue.messages.append(message)
        return []

    def _expire_now(self, service_id: str, message: dict[str, Any]) -> list[Action]:
        sender = self._peers.get((service_id, message["src"]))
        if sender is None:
            return []
        return [
            Send(
                sender.connection,
                {"type": EXPIRE, "src": message["dst"], "dst": message["src"]},
            )
        ]

    # -- the room peer answering ------------------------------------------

    def from_room_peer(self, service_id: str, room: str, message: dict[str, Any]) -> list[Action]:
        """A message from the server-side peer of ``room`` to one of the service's peers."""
        relayed = {**message, "src": room_peer_id(room)}
        target = self._peers.get((service_id, str(message.get("dst"))))
        if target is None:
            return []
        return [Send(target.connection, relayed)]

    # -- mesh rooms -------------------------------------------------------

    def _join_room(self, peer: Peer, payload: object) -> list[Action]:
        if not isinstance(payload, dict):
            return [Send(peer.connection, _room_error(None, "ROOM-JOIN needs a payload object"))]
        name = payload.get("room")
        if not _valid_room_name(name):
            return [
                Send(
                    peer.connection,
                    _room_error(
                        None, f"room must be a name of 1 to {MAX_ROOM_NAME_LENGTH} characters"
                    ),
                )
            ]
        assert isinstance(name, str)
        mode = payload.get("mode", "mesh")
        if mode != "mesh":
            return [
                Send(
                    peer.connection,
                    _room_error(
                        name,
                        f"mode {str(mode)[:20]!r} is not a mesh room: sfu and mcu rooms are "
                        "joined through the Client-Portal (or by calling room:<name>)",
                    ),
                )
            ]
        if peer.grant is not None and peer.grant.room != name:
            return [Send(peer.connection, _room_error(name, "Your token does not grant this room"))]
        if name in peer.rooms:
            return [Send(peer.connection, _room_error(name, "Already a member of that room"))]
        if self.clustered:
            # Members may be on any portal: the directory keeps the room (see mesh_joined).
            peer.rooms.add(name)
            return [JoinMesh(peer.service_id, peer.id, name)]
        room = self._rooms.get((peer.service_id, name))
        if room is None:
            room = self._rooms[peer.service_id, name] = MeshRoom(peer.service_id, name)
        if len(room.members) >= MAX_MESH_MEMBERS:
            return [
                Send(
                    peer.connection,
                    _room_error(name, f"Room is full (a mesh room has at most {MAX_MESH_MEMBERS})"),
                )
            ]
        others = list(room.members)
        room.members.append(peer.id)
        peer.rooms.add(name)
        actions: list[Action] = [
            Send(
                peer.connection,
                {"type": ROOM_MEMBERS, "payload": {"room": name, "members": others}},
            )
        ]
        for other_id in others:
            other = self._peers.get((peer.service_id, other_id))
            if other is not None:
                other.contacts.add(peer.id)
                peer.contacts.add(other_id)
        actions.extend(self._tell_members(peer, name, others, ROOM_PEER_JOINED))
        return actions

    def _leave_room(self, peer: Peer, name: str) -> list[Action]:
        peer.rooms.discard(name)
        if self.clustered:
            return [LeaveMesh(peer.service_id, peer.id, name)]
        room = self._rooms.get((peer.service_id, name))
        if room is None or peer.id not in room.members:
            return []
        room.members.remove(peer.id)
        if not room.members:
            del self._rooms[peer.service_id, name]  # ad-hoc: gone with its last member
            return []
        return self._tell_members(peer, name, room.members, ROOM_PEER_LEFT)

    def _tell_members(self, peer: Peer, name: str, members: list[str], kind: str) -> list[Action]:
        """``kind`` (ROOM-PEER-JOINED or -LEFT) about ``peer`` to the open ``members``."""
        return self._tell(peer.service_id, peer.id, name, members, kind)

    def _tell(
        self, service_id: str, peer_id: str, name: str, members: list[str], kind: str
    ) -> list[Action]:
        message = {"type": kind, "src": peer_id, "payload": {"room": name, "peer": peer_id}}
        actions: list[Action] = []
        for other_id in members:
            other = self._peers.get((service_id, other_id))
            if other is not None:
                actions.append(Send(other.connection, message))
            elif self.clustered:
                actions.append(Relay(service_id, {**message, "dst": other_id}))
        return actions

    # -- mesh rooms of a cluster (their members kept in the directory) ------

    def mesh_joined(
        self, service_id: str, peer_id: str, name: str, others: list[str] | None
    ) -> list[Action]:
        """The directory's answer to :class:`JoinMesh`: the members before the peer, in
        joining order, or ``None`` if the room is full."""
        peer = self._peers.get((service_id, peer_id))
        if peer is None or name not in peer.rooms:
            # It left (or went) while the directory was asked: take it out again.
            return [LeaveMesh(service_id, peer_id, name)] if others is not None else []
        if others is None:
            peer.rooms.discard(name)
            text = f"Room is full (a mesh room has at most {MAX_MESH_MEMBERS})"
            return [Send(peer.connection, _room_error(name, text))]
        actions: list[Action] = [
            Send(
                peer.connection,
                {"type": ROOM_MEMBERS, "payload": {"room": name, "members": others}},
            )
        ]
        for other_id in others:
            peer.contacts.add(other_id)
            other = self._peers.get((service_id, other_id))
            if other is not None:
                other.contacts.add(peer_id)
        actions.extend(self._tell(service_id, peer_id, name, others, ROOM_PEER_JOINED))
        return actions

    def mesh_join_failed(self, service_id: str, peer_id: str, name: str, text: str) -> list[Action]:
        """A :class:`JoinMesh` the directory could not answer: ROOM-ERROR saying why."""
        peer = self._peers.get((service_id, peer_id))
        if peer is None:
            return []
        peer.rooms.discard(name)
        return [Send(peer.connection, _room_error(name, text))]

    def mesh_left(
        self, service_id: str, peer_id: str, name: str, remaining: list[str]
    ) -> list[Action]:
        """The directory took the peer out of room ``name``: the members left hear it."""
        return self._tell(service_id, peer_id, name, remaining, ROOM_PEER_LEFT)


def _as_delivered(message: dict[str, Any]) -> dict[str, Any]:
    """A relayed message as its destination hears it: room notices were addressed only
    to cross the cluster, and members hear them without a ``dst``."""
    if message["type"] in (ROOM_PEER_JOINED, ROOM_PEER_LEFT):
        return {k: v for k, v in message.items() if k != "dst"}
    return message


def _room_error(room: object, text: str) -> dict[str, Any]:
    # Not ERROR: the peerjs client gives up its whole peer on ERROR.
    return {"type": ROOM_ERROR, "payload": {"room": room, "msg": text}}


def _parse(data: str | bytes) -> dict[str, Any]:
    """A frame as a message dict with a string ``type``; ValueError naming the problem."""
    if isinstance(data, bytes):
        raise ValueError("Binary frames are not accepted: send JSON text")
    if len(data) > MAX_MESSAGE_BYTES:
        raise ValueError(f"Message is too large (at most {MAX_MESSAGE_BYTES} bytes)")
    try:
        message = json.loads(data)
    except ValueError:
        raise ValueError("Message is not valid JSON") from None
    if not isinstance(message, dict):
        raise ValueError("Message must be a JSON object")
    kind = message.get("type")
    if not isinstance(kind, str) or not kind:
        raise ValueError("Message has no type")
    return message


def _random_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(ID_LENGTH))

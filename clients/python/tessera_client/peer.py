"""PeerClient: a peer of a PeerJS-compatible server (Tessera's ``/peerjs/`` endpoint).

The "telephone" model of PeerJS and SkyWay: a peer opens with an id (its own
or one the server makes), calls other peers by id, answers their calls, opens
data connections, and can join a **mesh room** (Tessera's extension: the
server relays signaling between members, media flows peer to peer).

Speaks the PeerServer protocol exactly as the ``peerjs`` browser library does
(OFFER payloads ``{sdp, type: "media" | "data", connectionId, metadata,
label, serialization, reliable}``, a HEARTBEAT every 5 s), so it can call and
be called by browsers using ``peerjs``. Data connections use the "json"
serialization (UTF-8 JSON bytes) or "raw"; BinaryPack is not implemented.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import string
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.sdp import candidate_from_sdp

from .conferenceclient import ConferenceClient
from .errors import ClientError, RequestTimeout
from .eventqueue import EventQueue
from .publication import Publication
from .subscription import Subscription

__all__ = [
    "DataConnection",
    "MediaCall",
    "MeshRoom",
    "PeerClient",
    "PeerError",
    "PeerEvent",
    "PeerUnavailable",
    "PortalRoom",
]

logger = logging.getLogger(__name__)

HEARTBEAT_INTERVAL = 5.0  # as the peerjs client
# The serializations this client speaks ("none" is older peerjs's "raw"); not BinaryPack.
DATA_SERIALIZATIONS = ("json", "raw", "none")


class PeerError(ClientError):
    """The server refused the peer (ERROR, ID-TAKEN, INVALID-KEY); ``kind`` is the type."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}" if message else kind)
        self.kind = kind


class PeerUnavailable(ClientError):
    """EXPIRE: the destination peer is not there (or the room peer refused, with a reason)."""


@dataclass
class PeerEvent:
    """A server message the application may want: LEAVE, EXPIRE, ERROR, ROOM-*."""

    type: str
    src: str | None
    payload: Any


def _token() -> str:
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(11))


class _Connection:
    """What media calls and data connections share: one RTCPeerConnection to ``peer``."""

    kind = ""

    def __init__(self, client: PeerClient, peer: str, connection_id: str) -> None:
        self.client = client
        self.peer = peer
        self.connection_id = connection_id
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=list(client.ice_servers)))
        self.answered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._candidates: list[dict[str, Any]] = []
        self.closed = False
        self.pc.on("connectionstatechange", self._on_state)

    async def _offer(self, extra: dict[str, Any]) -> None:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        local = self.pc.localDescription
        await self.client.send(
            {
                "type": "OFFER",
                "dst": self.peer,
                "payload": {
                    "sdp": {"type": local.type, "sdp": local.sdp},
                    "type": self.kind,
                    "connectionId": self.connection_id,
                    **extra,
                },
            }
        )

    async def _answer(self, offer_sdp: str) -> None:
        if self.pc.remoteDescription is None:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        await self._add_waiting_candidates()
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        local = self.pc.localDescription
        await self.client.send(
            {
                "type": "ANSWER",
                "dst": self.peer,
                "payload": {
                    "sdp": {"type": local.type, "sdp": local.sdp},
                    "type": self.kind,
                    "connectionId": self.connection_id,
                },
            }
        )
        if not self.answered.done():
            self.answered.set_result(None)

    async def handle_answer(self, sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        await self._add_waiting_candidates()
        if not self.answered.done():
            self.answered.set_result(None)

    async def handle_candidate(self, candidate: dict[str, Any]) -> None:
        if self.pc.remoteDescription is None:
            self._candidates.append(candidate)
            return
        text = candidate.get("candidate")
        if not isinstance(text, str) or not text.strip():
            return
        parsed = candidate_from_sdp(text.strip().removeprefix("candidate:"))
        mid = candidate.get("sdpMid")
        index = candidate.get("sdpMLineIndex")
        parsed.sdpMid = mid if isinstance(mid, str) else None
        parsed.sdpMLineIndex = index if isinstance(index, int) else 0
        with contextlib.suppress(Exception):
            await self.pc.addIceCandidate(parsed)

    async def _add_waiting_candidates(self) -> None:
        waiting, self._candidates = self._candidates, []
        for candidate in waiting:
            await self.handle_candidate(candidate)

    def unavailable(self, reason: str) -> None:
        if not self.answered.done():
            self.answered.set_exception(PeerUnavailable(reason))

    async def wait_answered(self, timeout: float = 10.0) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(self.answered), timeout)
        except TimeoutError:
            raise RequestTimeout(f"{self.peer} did not answer in {timeout:.0f} s") from None

    async def _on_state(self) -> None:
        if self.pc.connectionState in ("failed", "closed"):
            await self.close()

    async def close(self) -> None:
        """Hang up; idempotent."""
        if self.closed:
            return
        self.closed = True
        self.unavailable("closed")
        self.client._forget(self)
        await self.pc.close()


class MediaCall(_Connection):
    """A media call (outgoing, or incoming once answered): remote tracks by kind."""

    kind = "media"

    def __init__(
        self, client: PeerClient, peer: str, connection_id: str, metadata: Any = None
    ) -> None:
        super().__init__(client, peer, connection_id)
        self.metadata = metadata
        self.offer_sdp: str | None = None
        self.remote_tracks: dict[str, MediaStreamTrack] = {}
        self._track_arrived = asyncio.Event()
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        self.remote_tracks[track.kind] = track
        self._track_arrived.set()

    def _add_local(
        self, audio: MediaStreamTrack | None, video: MediaStreamTrack | None, receive: bool
    ) -> None:
        for kind, track in (("audio", audio), ("video", video)):
            if track is not None:
                self.pc.addTrack(track)
            elif receive:
                self.pc.addTransceiver(kind, direction="recvonly")

    async def answer(
        self, audio: MediaStreamTrack | None = None, video: MediaStreamTrack | None = None
    ) -> None:
        """Answer an incoming call, sending ``audio``/``video`` back (either may be None)."""
        if self.offer_sdp is None:
            raise ClientError("Only an incoming call can be answered")
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=self.offer_sdp, type="offer"))
        self._add_local(audio, video, receive=False)
        await self._answer(self.offer_sdp)

    async def track(self, kind: str, timeout: float = 10.0) -> MediaStreamTrack:
        """The remote track of ``kind`` once it arrived."""

        async def wait() -> MediaStreamTrack:
            while kind not in self.remote_tracks:
                self._track_arrived.clear()
                await self._track_arrived.wait()
            return self.remote_tracks[kind]

        try:
            return await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            raise RequestTimeout(f"no remote {kind} track from {self.peer}") from None


class DataConnection(_Connection):
    """A data connection: ``send`` values, ``recv`` them (json or raw serialization)."""

    kind = "data"

    def __init__(
        self,
        client: PeerClient,
        peer: str,
        connection_id: str,
        *,
        label: str,
        serialization: str,
        reliable: bool,
        metadata: Any = None,
    ) -> None:
        # Checked before super() makes the RTCPeerConnection, which would be left open.
        if serialization not in DATA_SERIALIZATIONS:
            raise ClientError(f"serialization {serialization!r} is not supported (json or raw)")
        super().__init__(client, peer, connection_id)
        self.label = label
        self.serialization = serialization
        self.reliable = reliable
        self.metadata = metadata
        self.channel: RTCDataChannel | None = None
        self.opened = asyncio.Event()
        self.messages: asyncio.Queue[Any] = asyncio.Queue()
        self.pc.on("datachannel", self._use_channel)

    def _use_channel(self, channel: RTCDataChannel) -> None:
        self.channel = channel
        channel.on("open", self.opened.set)
        channel.on("message", self._on_message)
        if channel.readyState == "open":
            self.opened.set()

    def _on_message(self, data: str | bytes) -> None:
        if self.serialization == "json":
            try:
                text = data.decode() if isinstance(data, bytes) else data
                self.messages.put_nowait(json.loads(text))
            except ValueError:
                logger.info("data connection %s: undecodable message dropped", self.connection_id)
        else:
            self.messages.put_nowait(data)

    async def wait_open(self, timeout: float = 10.0) -> None:
        await self.wait_answered(timeout)
        try:
            await asyncio.wait_for(self.opened.wait(), timeout)
        except TimeoutError:
            raise RequestTimeout(f"data connection to {self.peer} did not open") from None

    def send(self, value: Any) -> None:
        """Send a value: JSON (as UTF-8 bytes, as peerjs does) or, raw, a str or bytes."""
        if self.channel is None or self.channel.readyState != "open":
            raise ClientError("The data connection is not open")
        if self.serialization == "json":
            self.channel.send(json.dumps(value).encode())
        else:
            self.channel.send(value)

    async def recv(self, timeout: float = 10.0) -> Any:
        try:
            return await asyncio.wait_for(self.messages.get(), timeout)
        except TimeoutError:
            raise RequestTimeout(f"no data from {self.peer} in {timeout:.0f} s") from None


@dataclass
class MeshRoom:
    """A mesh room joined through the server: one call to each other member.

    The newcomer calls everyone already there; members answer calls from
    members automatically with the same local tracks.
    """

    client: PeerClient
    name: str
    audio: MediaStreamTrack | None
    video: MediaStreamTrack | None
    calls: dict[str, MediaCall] = field(default_factory=dict)  # member id -> call
    members: set[str] = field(default_factory=set)
    joined: asyncio.Future[list[str]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_for_streams(self, count: int, timeout: float = 20.0) -> dict[str, MediaCall]:
        """Wait until ``count`` members' calls carry video; returns the calls by member."""

        async def wait() -> dict[str, MediaCall]:
            while True:
                ready = {p: c for p, c in self.calls.items() if "video" in c.remote_tracks}
                if len(ready) >= count:
                    return ready
                self.changed.clear()
                await self.changed.wait()

        try:
            return await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            raise RequestTimeout(f"mesh room {self.name}: fewer than {count} streams") from None

    async def leave(self) -> None:
        """Leave the room and hang up every call in it."""
        if self.name in self.client.rooms:
            del self.client.rooms[self.name]
            await self.client.send({"type": "ROOM-LEAVE", "payload": {"room": self.name}})
        for call in list(self.calls.values()):
            await call.close()
        self.calls.clear()


class PortalRoom:
    """A room joined through the server (modes "sfu" and "mcu"): the Client-Portal client.

    "sfu" subscribes to every other participant's forward stream as it appears,
    "mcu" to the room's mixed view. It needs a join token from the
    application server, as any Client-Portal client does.
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.client = ConferenceClient()
        self.publication: Publication | None = None
        self.subscriptions: dict[str, Subscription] = {}  # stream id -> subscription
        self.changed = asyncio.Event()

    async def join(
        self, token: str, audio: MediaStreamTrack | None, video: MediaStreamTrack | None
    ) -> None:
        await self.client.join(token)
        self.client.on("stream", self._on_stream)
        if audio is not None or video is not None:
            self.publication = await self.client.publish(audio=audio, video=video)
        for stream in list(self.client.streams.values()):
            await self._take(stream)

    async def _on_stream(self, data: Any) -> None:
        if isinstance(data, dict) and data.get("status") == "add":
            await self._take(data.get("data") or {})

    async def _take(self, stream: dict[str, Any]) -> None:
        stream_id = str(stream.get("id"))
        mine = self.publication is not None and stream_id == self.publication.id
        wanted = "mixed" if self.mode == "mcu" else "forward"
        if stream.get("type") != wanted or mine or stream_id in self.subscriptions:
            return
        if self.mode == "mcu" and self.subscriptions:
            return  # the first view is enough
        self.subscriptions[stream_id] = await self.client.subscribe(stream_id)
        self.changed.set()

    async def wait_for_streams(self, count: int, timeout: float = 20.0) -> dict[str, Subscription]:
        """Wait until ``count`` subscriptions are made; returns them by stream id."""

        async def wait() -> dict[str, Subscription]:
            while len(self.subscriptions) < count:
                self.changed.clear()
                await self.changed.wait()
            return dict(self.subscriptions)

        try:
            return await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            raise RequestTimeout(f"fewer than {count} streams in the room") from None

    async def leave(self) -> None:
        await self.client.leave()


class PeerClient:
    """One peer: a WebSocket to the server, and its calls, data connections and rooms."""

    def __init__(
        self,
        url: str,
        key: str,
        *,
        peer_id: str | None = None,
        token: str | None = None,
        path: str = "/peerjs/",
        ice_servers: Iterable[RTCIceServer] = (),
        heartbeat_interval: float = HEARTBEAT_INTERVAL,
    ) -> None:
        self.url = url.rstrip("/")
        self.key = key
        self.id = peer_id
        self.token = token or _token()
        self.path = path if path.endswith("/") else path + "/"
        self.ice_servers = list(ice_servers)
        self.heartbeat_interval = heartbeat_interval
        self.connections: dict[str, _Connection] = {}
        self.rooms: dict[str, MeshRoom] = {}
        self.incoming_calls: asyncio.Queue[MediaCall] = asyncio.Queue()
        self.incoming_data: asyncio.Queue[DataConnection] = asyncio.Queue()
        self.events = EventQueue()  # PeerEvents by type: LEAVE, EXPIRE, ERROR, ROOM-*, CLOSED
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._opened: asyncio.Future[None] | None = None
        self.heartbeats = True  # tests switch this off to play a peer that vanished

    # -- opening ----------------------------------------------------------

    async def open(self, timeout: float = 10.0) -> str:
        """Get an id if none was chosen, open the socket, wait for OPEN; returns the id."""
        self._session = aiohttp.ClientSession()
        try:
            base = f"{self.url}{self.path}"
            if self.id is None:
                async with self._session.get(f"{base}{self.key}/id") as response:
                    if response.status != 200:
                        raise PeerError("server-error", f"GET id answered {response.status}")
                    self.id = await response.text()
            ws_url = base.replace("http", "ws", 1) + "peerjs"
            params = {"key": self.key, "id": self.id, "token": self.token, "version": "1.5.5"}
            self._ws = await self._session.ws_connect(ws_url, params=params, heartbeat=None)
            self._opened = asyncio.get_running_loop().create_future()
            self._tasks = [
                asyncio.ensure_future(self._read()),
                asyncio.ensure_future(self._heartbeat()),
            ]
            await asyncio.wait_for(asyncio.shield(self._opened), timeout)
        except BaseException:
            await self.close()  # the session, the socket and the tasks, whatever was made
            raise
        return self.id

    async def send(self, message: dict[str, Any]) -> None:
        if self._ws is None or self._ws.closed:
            raise ClientError("The peer is not open")
        await self._ws.send_str(json.dumps(message))

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            if self.heartbeats and self._ws is not None and not self._ws.closed:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await self._ws.send_str('{"type":"HEARTBEAT"}')

    async def _read(self) -> None:
        assert self._ws is not None
        try:
            async for frame in self._ws:
                if frame.type != aiohttp.WSMsgType.TEXT:
                    continue
                try:
                    message = json.loads(frame.data)
                    await self._dispatch(message)
                except Exception:
                    logger.exception("peer %s: server message failed", self.id)
        finally:
            if self._opened is not None and not self._opened.done():
                self._opened.set_exception(PeerError("socket-closed", "socket closed"))
            self.events.put("CLOSED", PeerEvent("CLOSED", None, None))

    async def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        src = message.get("src")
        payload = message.get("payload")
        assert self._opened is not None
        if kind == "OPEN":
            if not self._opened.done():
                self._opened.set_result(None)
            return
        if kind in ("ERROR", "ID-TAKEN", "INVALID-KEY"):
            text = payload.get("msg", "") if isinstance(payload, dict) else ""
            if not self._opened.done():
                self._opened.set_exception(PeerError(str(kind), text))
            self.events.put(str(kind), PeerEvent(str(kind), src, payload))
            return
        if kind == "OFFER" and isinstance(payload, dict) and isinstance(src, str):
            await self._incoming(src, payload)
            return
        connection_id = payload.get("connectionId") if isinstance(payload, dict) else None
        connection = self.connections.get(connection_id) if connection_id else None
        if kind == "ANSWER" and connection is not None and isinstance(payload, dict):
            await connection.handle_answer(payload["sdp"]["sdp"])
        elif kind == "CANDIDATE" and connection is not None and isinstance(payload, dict):
            await connection.handle_candidate(payload.get("candidate") or {})
        elif kind == "EXPIRE":
            reason = payload.get("msg", "") if isinstance(payload, dict) else ""
            for waiting in list(self.connections.values()):
                if waiting.peer == src:
                    waiting.unavailable(reason or f"Could not connect to peer {src}")
            self.events.put("EXPIRE", PeerEvent("EXPIRE", src, payload))
        elif kind == "LEAVE":
            for gone in [c for c in self.connections.values() if c.peer == src]:
                await gone.close()
            self.events.put("LEAVE", PeerEvent("LEAVE", src, payload))
        elif isinstance(kind, str) and kind.startswith("ROOM-"):
            await self._room_message(kind, payload if isinstance(payload, dict) else {})

    async def _incoming(self, src: str, payload: dict[str, Any]) -> None:
        connection_id = str(payload.get("connectionId", ""))
        sdp = payload.get("sdp", {}).get("sdp", "")
        if payload.get("type") == "media":
            call = MediaCall(self, src, connection_id, payload.get("metadata"))
            call.offer_sdp = sdp
            self.connections[connection_id] = call
            room = next((r for r in self.rooms.values() if src in r.members), None)
            if room is not None:
                # A member of our mesh room calls: answer with the room's tracks.
                room.calls[src] = call
                await call.answer(room.audio, room.video)
                call.pc.on("track", lambda _track: room.changed.set())
                room.changed.set()
            else:
                self.incoming_calls.put_nowait(call)
        elif payload.get("type") == "data":
            try:
                data = DataConnection(
                    self,
                    src,
                    connection_id,
                    label=str(payload.get("label", connection_id)),
                    # peerjs leaves out its default, "binary" (BinaryPack)
                    serialization=str(payload.get("serialization", "binary")),
                    reliable=bool(payload.get("reliable", False)),
                    metadata=payload.get("metadata"),
                )
            except ClientError as exc:
                logger.warning("peer %s: data connection from %s refused: %s", self.id, src, exc)
                return
            self.connections[connection_id] = data
            await data._answer(sdp)  # peerjs answers data connections by itself too
            self.incoming_data.put_nowait(data)

    def _forget(self, connection: _Connection) -> None:
        if self.connections.get(connection.connection_id) is connection:
            del self.connections[connection.connection_id]
        for room in self.rooms.values():
            if room.calls.get(connection.peer) is connection:
                del room.calls[connection.peer]
                room.changed.set()

    # -- calls and data connections -----------------------------------------

    async def call(
        self,
        peer: str,
        audio: MediaStreamTrack | None = None,
        video: MediaStreamTrack | None = None,
        *,
        metadata: Any = None,
        receive: bool = True,
        timeout: float = 10.0,
    ) -> MediaCall:
        """Call ``peer`` (``room:<name>`` for a room) and wait for the answer.

        Raises PeerUnavailable if the server answers EXPIRE.
        """
        call = MediaCall(self, peer, "mc_" + _token(), metadata)
        self.connections[call.connection_id] = call
        call._add_local(audio, video, receive)
        await call._offer({"metadata": metadata})
        try:
            await call.wait_answered(timeout)
        except ClientError:
            await call.close()
            raise
        return call

    async def connect(
        self,
        peer: str,
        *,
        serialization: str = "json",
        label: str | None = None,
        reliable: bool = True,
        metadata: Any = None,
        timeout: float = 10.0,
    ) -> DataConnection:
        """Open a data connection to ``peer`` and wait until it is open."""
        connection_id = "dc_" + _token()
        data = DataConnection(
            self,
            peer,
            connection_id,
            label=label or connection_id,
            serialization=serialization,
            reliable=reliable,
            metadata=metadata,
        )
        self.connections[connection_id] = data
        data._use_channel(data.pc.createDataChannel(data.label, ordered=reliable))
        await data._offer(
            {
                "metadata": metadata,
                "label": data.label,
                "reliable": reliable,
                "serialization": serialization,
            }
        )
        try:
            await data.wait_open(timeout)
        except ClientError:
            await data.close()
            raise
        return data

    async def next_call(self, timeout: float = 10.0) -> MediaCall:
        try:
            return await asyncio.wait_for(self.incoming_calls.get(), timeout)
        except TimeoutError:
            raise RequestTimeout("no incoming call") from None

    async def next_connection(self, timeout: float = 10.0) -> DataConnection:
        try:
            return await asyncio.wait_for(self.incoming_data.get(), timeout)
        except TimeoutError:
            raise RequestTimeout("no incoming data connection") from None

    # -- mesh rooms -------------------------------------------------------

    @staticmethod
    async def join_portal_room(
        token: str,
        mode: str,
        audio: MediaStreamTrack | None = None,
        video: MediaStreamTrack | None = None,
    ) -> PortalRoom:
        """Join the token's room through the server: ``mode`` "sfu" or "mcu"."""
        if mode not in ("sfu", "mcu"):
            raise ClientError(f"mode must be sfu or mcu (mesh rooms: join_room), not {mode!r}")
        room = PortalRoom(mode)
        await room.join(token, audio, video)
        return room

    async def join_room(
        self,
        name: str,
        audio: MediaStreamTrack | None = None,
        video: MediaStreamTrack | None = None,
        *,
        timeout: float = 10.0,
    ) -> MeshRoom:
        """Join mesh room ``name``: call every member; later members call us."""
        if name in self.rooms:
            raise ClientError(f"Already in room {name}")
        room = MeshRoom(self, name, audio, video)
        self.rooms[name] = room
        await self.send({"type": "ROOM-JOIN", "payload": {"room": name, "mode": "mesh"}})
        try:
            members = await asyncio.wait_for(asyncio.shield(room.joined), timeout)
        except BaseException:
            self.rooms.pop(name, None)
            raise
        for member in members:
            try:
                call = await self.call(member, audio, video, receive=True, timeout=timeout)
            except ClientError as exc:
                # One member gone or not answering does not keep us out of the others.
                logger.warning("peer %s: room %s: no call with %s: %s", self.id, name, member, exc)
                continue
            room.calls[member] = call
            call.pc.on("track", lambda _track: room.changed.set())
            room.changed.set()
        return room

    async def _room_message(self, kind: str, payload: dict[str, Any]) -> None:
        room = self.rooms.get(str(payload.get("room")))
        if kind == "ROOM-ERROR":
            if room is not None and not room.joined.done():
                room.joined.set_exception(ClientError(str(payload.get("msg", "room error"))))
            self.events.put(kind, PeerEvent(kind, None, payload))
            return
        if room is None:
            return
        if kind == "ROOM-MEMBERS":
            members = [str(m) for m in payload.get("members", [])]
            room.members.update(members)
            if not room.joined.done():
                room.joined.set_result(members)
        elif kind == "ROOM-PEER-JOINED":
            room.members.add(str(payload.get("peer")))
        elif kind == "ROOM-PEER-LEFT":
            gone = str(payload.get("peer"))
            room.members.discard(gone)
            call = room.calls.pop(gone, None)
            if call is not None:
                await call.close()
            room.changed.set()
        self.events.put(kind, PeerEvent(kind, None, payload))

    # -- closing ----------------------------------------------------------

    async def close(self) -> None:
        """Hang up everything and close the socket; idempotent."""
        for room in list(self.rooms.values()):
            with contextlib.suppress(ClientError, ConnectionError):
                await room.leave()
        for connection in list(self.connections.values()):
            await connection.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if self._ws is not None:
            await self._ws.close()
            self._ws = None
        if self._session is not None:
            await self._session.close()
            self._session = None

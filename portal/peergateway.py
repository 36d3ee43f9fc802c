"""PeerGateway: the PeerJS-compatible HTTP and WebSocket endpoint on the server's port.

PeerServer's routes under ``[peer] path`` (default ``/peerjs/``), so that a
``peerjs`` client built with ``new Peer({host, port, path: "/peerjs", key})``
works unmodified:

- ``GET {path}``: a short description (PeerServer's ``app.json``).
- ``GET {path}{key}/id``: a fresh 16-character peer id.
- ``GET {path}{key}/peers``: the service's peer ids (``allow_discovery`` only).
- WebSocket ``{path}peerjs?key=&id=&token=``: the signaling socket.

The ``key`` is a Tessera service id. The protocol state lives in the pure
:class:`PeerRegistry`; this module only authenticates sockets, feeds frames in
with the time, and carries out the actions that come back.

Across portals: every peer id is claimed in a :class:`PeerDirectory` before OPEN (so
``ID-TAKEN`` holds cluster-wide) and released when the peer goes; its claim is
refreshed while it is connected. In one process (``tessera serve``) that is a
:class:`MemoryPeerDirectory` and there is no relay. A portal of a cluster is built with
the Redis directory and the bus relay of ``tessera.portal.clusterpeers``::

    directory, relay = cluster_peer_model(bus)
    gateway = PeerGateway(conference, config, directory=directory, relay=relay)
    bus.on_message(relay.message_handler(fallback=...))

A message for a peer held by another portal then goes there over the bus (:class:`PeerRelay`)
and is delivered as if local; a peer open nowhere (or on a portal that died) gets what
an absent peer gets in one process: its messages wait ``expire_timeout`` here, looked
for in the directory at every sweep, then their senders hear ``EXPIRE``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from typing import Any, Protocol
from urllib.parse import unquote

from aiohttp import WSMsgType, web

from tessera.conference.api import Conference
from tessera.conference.background import spawn
from tessera.conference.errors import ConferenceError
from tessera.conference.records import StoreUnavailable
from tessera.conference.store import ServiceRecord

from .config import Config
from .peerdirectory import (
    ClaimOutcome,
    DirectoryUnavailable,
    HeldPeer,
    MemoryPeerDirectory,
    PeerDirectory,
)
from .peerserver import (
    ID_TAKEN,
    INVALID_KEY,
    MAX_ID_LENGTH,
    MAX_MESH_MEMBERS,
    MAX_MESSAGE_BYTES,
    MSG_CONNECTION_LIMIT,
    MSG_ID_TAKEN,
    MSG_INVALID_KEY,
    MSG_INVALID_WS_PARAMETERS,
    Action,
    Close,
    Dropped,
    JoinMesh,
    LeaveMesh,
    OpenRefused,
    PeerGone,
    PeerGrant,
    PeerRegistry,
    Relay,
    Send,
    ToRoomPeer,
    error_message,
    valid_peer_id,
)
from .roompeer import RoomPeer

logger = logging.getLogger(__name__)

# A peer's socket that takes longer than this to take one frame is stalled (it stopped
# reading): it is cut off so that the sender's read loop and the expiry sweep go on.
SEND_TIMEOUT = 5.0

DESCRIPTION = {
    "name": "Tessera PeerServer",
    "description": "PeerJS-compatible signaling of the Tessera MCU; the key is a service id",
}


class PeerRelayReceiver(Protocol):
    """What a relay hands in from other portals (the gateway is one)."""

    def relayed(self, service_id: str, messages: list[dict[str, Any]], sender: str) -> None: ...

    def superseded(self, service_id: str, peer_id: str, claim_id: str) -> None: ...

    def bounced(self, service_id: str, messages: list[dict[str, Any]]) -> None: ...


class PeerRelay(Protocol):
    """Carries peer messages to the portal (node) holding their destination."""

    def attach(self, receiver: PeerRelayReceiver) -> None:
        """Where messages from other nodes go."""
        ...

    async def forward(self, node: str, service_id: str, messages: list[dict[str, Any]]) -> bool:
        """Relay messages (in order) to peers held by ``node``; False if ``node`` is gone."""
        ...

    def supersede(self, node: str, service_id: str, peer_id: str, claim_id: str) -> None:
        """Tell ``node`` that its peer's claim ``claim_id`` was taken over here."""
        ...

    def bounce(self, node: str, service_id: str, messages: list[dict[str, Any]]) -> None:
        """Hand messages back to the ``node`` that relayed them: the peer is not here."""
        ...


class PeerGateway:
    """Owns the peer registry, the open peer sockets and the rooms' server-side peer."""

    def __init__(
        self,
        conference: Conference,
        config: Config,
        *,
        directory: PeerDirectory | None = None,
        relay: PeerRelay | None = None,
    ) -> None:
        self.conference = conference
        self.config = config
        settings = config.peer
        self.path = settings.path
        self.directory: PeerDirectory = directory or MemoryPeerDirectory()
        self.relay = relay
        self.registry = PeerRegistry(
            alive_timeout=settings.alive_timeout,
            expire_timeout=settings.expire_timeout,
            concurrent_limit=settings.concurrent_limit,
            clustered=relay is not None,
        )
        # What other nodes relayed, performed in arrival order by one task.
        self._inbox: asyncio.Queue[list[Action]] = asyncio.Queue()
        self._inbox_worker: asyncio.Task[None] | None = None
        self._refreshed_at = time.monotonic()
        if relay is not None:
            relay.attach(self)
        self.room_peer = RoomPeer(conference, config, self)
        # Each open peer socket -> its request (for its transport) and (service, peer) for logs.
        self.sockets: dict[web.WebSocketResponse, tuple[web.Request, str, str]] = {}
        self.send_timeout = SEND_TIMEOUT
        self._sweeper: asyncio.Task[None] | None = None
        # Short enough that expiry is on time to a fraction of the shortest timeout.
        self.sweep_interval = min(0.5, settings.alive_timeout / 4, settings.expire_timeout / 4)

    def add_routes(self, app: web.Application) -> None:
        path = self.path
        app.router.add_get(path + "peerjs", self.websocket)
        app.router.add_get(path, self.describe)
        app.router.add_get(path + "{key}/id", self.new_id)
        app.router.add_get(path + "{key}/peers", self.list_peers)

    # -- lifecycle --------------------------------------------------------

    def start(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.ensure_future(self._sweep_forever())
        if self._inbox_worker is None:
            self._inbox_worker = asyncio.ensure_future(self._perform_inbox())

    async def close(self) -> None:
        """Close every peer socket and the room peer's calls; idempotent."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        if self._inbox_worker is not None:
            self._inbox_worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._inbox_worker
            self._inbox_worker = None
        for ws in list(self.sockets):
            with contextlib.suppress(Exception):
                await ws.close()
        await self.room_peer.close()

    async def close_service(self, service_id: str) -> None:
        """Close the sockets of a service's peers (the service was deleted)."""
        for ws, (_, owner, _) in list(self.sockets.items()):
            if owner == service_id:
                with contextlib.suppress(Exception):
                    await ws.close()

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval)
            try:
                if self.relay is not None:
                    await self._flush_queues()
                await self.perform(self.registry.sweep(time.monotonic()))
                if time.monotonic() - self._refreshed_at >= self.directory.lease / 3:
                    await self._refresh_claims()
            except Exception:
                logger.exception("peer expiry failed")

    async def _refresh_claims(self) -> None:
        held = [
            HeldPeer(peer.service_id, peer.id, peer.claim_id, peer.token)
            for peer in self.registry.peers()
        ]
        try:
            lost = await self.directory.refresh(held)
        except DirectoryUnavailable as exc:
            # Tried again next sweep; the claims hold for the rest of their lease.
            logger.warning("peer claims not refreshed: %s", exc, extra={"peers": len(held)})
            return
        self._refreshed_at = time.monotonic()
        for peer in lost:
            logger.info(
                "peer claim lost to another portal, socket closed",
                extra={"service": peer.service_id, "peer": peer.peer_id},
            )
            await self.perform(
                self.registry.superseded(peer.service_id, peer.peer_id, peer.claim_id)
            )

    async def _flush_queues(self) -> None:
        """Messages waiting here for an absent peer go to the node where it opened since."""
        assert self.relay is not None
        for service_id, peer_ids in self.registry.queued_destinations().items():
            try:
                holders = await self.directory.holders(service_id, peer_ids)
            except DirectoryUnavailable as exc:
                logger.warning("queued peer messages not looked up: %s", exc)
                return
            for peer_id, node in zip(peer_ids, holders, strict=True):
                if node is None:
                    continue
                since, messages = self.registry.take_queue(service_id, peer_id)
                if not messages:
                    continue
                if node == self.directory.node_id:
                    # Claimed here and opening right now: it will be open at the next sweep.
                    self.registry.restore_queue(service_id, peer_id, since, messages)
                elif not await self.relay.forward(node, service_id, messages):
                    self.registry.restore_queue(service_id, peer_id, since, messages)

    # -- HTTP -------------------------------------------------------------

    async def describe(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(DESCRIPTION)

    async def _cors(self, request: web.Request, service: ServiceRecord | None) -> dict[str, str]:
        """CORS headers for a fetch from a page; HTTPForbidden if the origin is not allowed."""
        origin = request.headers.get("Origin")
        if not origin:
            return {}
        if service is not None:
            try:
                await self.conference.check_origin(service, origin)
            except ConferenceError as exc:
                raise web.HTTPForbidden(text=str(exc)) from None
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}

    async def _service(self, key: str) -> ServiceRecord | None:
        """The service of ``key``; a 503 naming the problem if the store cannot say now."""
        try:
            return await self.conference.get_service(key)
        except ConferenceError as exc:
            logger.warning("peer key not looked up: %s", exc)
            raise web.HTTPServiceUnavailable(text=str(exc)) from None

    async def new_id(self, request: web.Request) -> web.StreamResponse:
        # As PeerServer, an id is handed out for any key: the socket checks the key
        # and the client then hears INVALID-KEY, which says more than a failed fetch.
        key = request.match_info["key"]
        service = await self._service(key)
        headers = await self._cors(request, service)
        peer_id = self.registry.new_id(key)
        return web.Response(text=peer_id, content_type="text/html", headers=headers)

    async def list_peers(self, request: web.Request) -> web.StreamResponse:
        service = await self._service(request.match_info["key"])
        headers = await self._cors(request, service)
        if service is None or not self.config.peer.allow_discovery:
            return web.Response(status=401, text="Unauthorized", headers=headers)
        try:
            peer_ids = await self.directory.peer_ids(service.id)
        except DirectoryUnavailable as exc:
            logger.warning("peers not listed: %s", exc, extra={"service": service.id})
            return web.Response(
                status=503, text="The peer directory is unavailable", headers=headers
            )
        return web.json_response(peer_ids, headers=headers)

    # -- WebSocket --------------------------------------------------------

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES * 2)
        await ws.prepare(request)
        query = _raw_query(request.rel_url.raw_query_string)
        peer_id, token, key = query.get("id", ""), query.get("token", ""), query.get("key", "")
        try:
            service, grant = await self._authenticate(request, peer_id, token, key)
            actions = await self._open(service, peer_id, token, ws, grant)
        except OpenRefused as refused:
            # Not authenticated: the key is not known to be a service, so it is not `service`.
            logger.info(
                "peer refused",
                extra={"peer": peer_id[:64], "key": key[:64], "reason": str(refused)},
            )
            with contextlib.suppress(Exception):
                await ws.send_str(json.dumps(refused.message))
                await ws.close()
            return ws
        self.sockets[ws] = (request, service.id, peer_id)
        logger.info("peer open", extra={"service": service.id, "peer": peer_id})
        try:
            await self.perform(actions)
            async for frame in ws:
                if frame.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    received = self.registry.receive(
                        service.id, peer_id, ws, frame.data, time.monotonic()
                    )
                    await self.perform(received)
                elif frame.type == WSMsgType.ERROR:
                    break
        except Exception:
            logger.exception("peer socket failed", extra={"service": service.id, "peer": peer_id})
        finally:
            self.sockets.pop(ws, None)
            await self.perform(self.registry.closed(service.id, peer_id, ws))
        return ws

    async def _open(
        self,
        service: ServiceRecord,
        peer_id: str,
        token: str,
        ws: web.WebSocketResponse,
        grant: PeerGrant | None,
    ) -> list[Action]:
        """Claim the id in the directory, then open the peer in the registry."""
        if not valid_peer_id(peer_id):
            raise OpenRefused(error_message(f'ID "{peer_id[:MAX_ID_LENGTH]}" is invalid'))
        claim_id = uuid.uuid4().hex
        try:
            claim = await self.directory.claim(
                service.id, peer_id, token, claim_id, limit=self.config.peer.concurrent_limit
            )
        except DirectoryUnavailable as exc:
            logger.warning("peer directory unavailable: %s", exc, extra={"peer": peer_id})
            raise OpenRefused(error_message("The peer directory is unavailable")) from None
        if claim.outcome is ClaimOutcome.TAKEN:
            raise OpenRefused({"type": ID_TAKEN, "payload": {"msg": MSG_ID_TAKEN}})
        if claim.outcome is ClaimOutcome.FULL:
            raise OpenRefused(error_message(MSG_CONNECTION_LIMIT))
        try:
            actions = self.registry.open(
                service.id, peer_id, token, ws, time.monotonic(), grant, claim_id=claim_id
            )
        except OpenRefused:
            await self._release(service.id, peer_id, claim_id)
            raise
        previous = claim.previous
        if previous is not None and previous != self.directory.node_id and self.relay is not None:
            # The same peer reconnected here before its old portal saw its socket close.
            self.relay.supersede(previous, service.id, peer_id, claim.previous_claim)
        return actions

    async def _release(self, service_id: str, peer_id: str, claim_id: str) -> None:
        try:
            await self.directory.release(service_id, peer_id, claim_id)
        except DirectoryUnavailable as exc:
            # Its lease runs out by itself.
            logger.warning(
                "peer claim not released: %s", exc, extra={"service": service_id, "peer": peer_id}
            )

    async def _authenticate(
        self, request: web.Request, peer_id: str, token: str, key: str
    ) -> tuple[ServiceRecord, PeerGrant | None]:
        """The service of ``key`` and, if the service requires it, what the token grants."""
        if not peer_id or not token or not key:
            raise OpenRefused(error_message(MSG_INVALID_WS_PARAMETERS))
        if self.conference.closing:
            raise OpenRefused(error_message("Server is shutting down"))
        try:
            # The store may be out of reach (a cluster's Redis): the peer hears why.
            service = await self.conference.get_service(key)
            if service is None:
                raise OpenRefused({"type": INVALID_KEY, "payload": {"msg": MSG_INVALID_KEY}})
            await self.conference.check_origin(service, request.headers.get("Origin"))
        except ConferenceError as exc:
            raise OpenRefused(error_message(str(exc))) from None
        if not service.peer_tokens:
            return service, None
        try:
            grant, token_id, expires_at = await self.conference.authenticate(
                token, service_id=service.id, consume=False
            )
        except ConferenceError as exc:
            raise OpenRefused(
                error_message(f"This service needs a valid join token as `token`: {exc}")
            ) from None
        # A peer that reopens its socket with the token it opened with is the same peer
        # (through any portal: the directory remembers which peer a token opened).
        if self.config.tokens.single_use:
            try:
                reopens = await self.directory.token_reopens(token_id, service.id, peer_id)
            except DirectoryUnavailable as exc:
                logger.warning("peer directory unavailable: %s", exc, extra={"peer": peer_id})
                raise OpenRefused(error_message("The peer directory is unavailable")) from None
            if not reopens:
                try:
                    consumed = await self.conference.consume_token(token_id, expires_at)
                except StoreUnavailable as exc:  # a full disk, a Redis that is down
                    logger.warning("peer token not checked: %s", exc, extra={"peer": peer_id})
                    raise OpenRefused(error_message(exc.message)) from None
                if not consumed:
                    raise OpenRefused(error_message("Token has already been used"))
                try:
                    await self.directory.remember_token(
                        token_id, service.id, peer_id, expires_at - time.time()
                    )
                except DirectoryUnavailable as exc:
                    # It opens now; reopening with the same token will be refused.
                    logger.warning("peer token not remembered: %s", exc, extra={"peer": peer_id})
        return service, PeerGrant(user=grant.user, role=grant.role, room=grant.room)

    # -- actions ----------------------------------------------------------

    async def perform(self, actions: list[Action]) -> None:
        """Carry out what the registry decided, in order."""
        for action in actions:
            if isinstance(action, Send):
                ws = action.connection
                assert isinstance(ws, web.WebSocketResponse)
                if not ws.closed:
                    try:
                        await asyncio.wait_for(
                            ws.send_str(json.dumps(action.message)), self.send_timeout
                        )
                    except TimeoutError:
                        self._cut_off(ws)
                    except (ConnectionError, RuntimeError):
                        pass
            elif isinstance(action, Close):
                ws = action.connection
                assert isinstance(ws, web.WebSocketResponse)
                spawn(ws.close(), "closing a peer socket")
            elif isinstance(action, ToRoomPeer):
                self.room_peer.receive(action.service_id, action.room, action.message)
            elif isinstance(action, Relay):
                await self._relay_out(action.service_id, action.message)
            elif isinstance(action, JoinMesh):
                await self.perform(await self._join_mesh(action))
            elif isinstance(action, LeaveMesh):
                await self.perform(await self._leave_mesh(action))
            elif isinstance(action, Dropped):
                # As PeerServer: no answer (peerjs destroys its peer on ERROR), a log line.
                logger.info(
                    "peer frame dropped: %s",
                    action.reason,
                    extra={"service": action.service_id, "peer": action.peer_id},
                )
            elif isinstance(action, PeerGone):
                await self._release(action.service_id, action.peer_id, action.claim_id)
                if action.expired:
                    logger.info(
                        "peer expired, no heartbeat",
                        extra={"service": action.service_id, "peer": action.peer_id},
                    )
                self.room_peer.peer_gone(action.service_id, action.peer_id, action.expired)

    def _cut_off(self, ws: web.WebSocketResponse) -> None:
        """Abort a socket that stopped reading: a close frame would stall behind its backlog."""
        request, service_id, peer_id = self.sockets.get(ws, (None, "", ""))
        logger.info(
            "peer socket stalled, cut off",
            extra={"service": service_id, "peer": peer_id, "timeout": self.send_timeout},
        )
        transport = request.transport if request is not None else None
        if transport is not None:
            # Its read loop then ends and the registry hears the socket closed.
            transport.abort()

    async def _relay_out(self, service_id: str, message: dict[str, Any]) -> None:
        """A message for a peer not open here: to the node holding it, or wait as absent."""
        dst = message["dst"]
        node: str | None = None
        try:
            [node] = await self.directory.holders(service_id, [dst])
        except DirectoryUnavailable as exc:
            logger.warning("peer not looked up, message waits: %s", exc, extra={"peer": dst})
        if node is not None and node != self.directory.node_id and self.relay is not None:
            if await self.relay.forward(node, service_id, [message]):
                return
            # Nobody listens for that node: its portal died; its claims run out soon.
        await self.perform(self.registry.deliver_or_queue(service_id, message, time.monotonic()))

    async def _join_mesh(self, join: JoinMesh) -> list[Action]:
        try:
            others = await self.directory.join_mesh(
                join.service_id, join.name, join.peer_id, limit=MAX_MESH_MEMBERS
            )
        except DirectoryUnavailable as exc:
            logger.warning("mesh room not joined: %s", exc, extra={"peer": join.peer_id})
            return self.registry.mesh_join_failed(
                join.service_id, join.peer_id, join.name, "The peer directory is unavailable"
            )
        return self.registry.mesh_joined(join.service_id, join.peer_id, join.name, others)

    async def _leave_mesh(self, leave: LeaveMesh) -> list[Action]:
        try:
            remaining = await self.directory.leave_mesh(leave.service_id, leave.name, leave.peer_id)
        except DirectoryUnavailable as exc:
            # Dropped from the room when its claim runs out; nobody hears ROOM-PEER-LEFT.
            logger.warning("mesh room not left: %s", exc, extra={"peer": leave.peer_id})
            return []
        return self.registry.mesh_left(leave.service_id, leave.peer_id, leave.name, remaining)

    # -- from other nodes (PeerRelayReceiver) -------------------------------

    def relayed(self, service_id: str, messages: list[dict[str, Any]], sender: str) -> None:
        """Messages another node relayed to peers of this one; the absent ones go back."""
        returned = []
        for message in messages:
            actions = self.registry.from_node(service_id, message)
            if actions is None:
                returned.append(message)
            else:
                self._inbox.put_nowait(actions)
        if returned and self.relay is not None:
            self.relay.bounce(sender, service_id, returned)

    def superseded(self, service_id: str, peer_id: str, claim_id: str) -> None:
        """Another node took this node's peer over (the same token reconnected there)."""
        actions = self.registry.superseded(service_id, peer_id, claim_id)
        if actions:
            logger.info(
                "peer reconnected through another portal, old socket closed",
                extra={"service": service_id, "peer": peer_id},
            )
            self._inbox.put_nowait(actions)

    def bounced(self, service_id: str, messages: list[dict[str, Any]]) -> None:
        """Messages relayed to a node that no longer had their peer: they wait here."""
        now = time.monotonic()
        for message in messages:
            self._inbox.put_nowait(self.registry.deliver_or_queue(service_id, message, now))

    async def _perform_inbox(self) -> None:
        while True:
            actions = await self._inbox.get()
            try:
                await self.perform(actions)
            except Exception:
                logger.exception("relayed peer message failed")

    async def send_from_room_peer(
        self, service_id: str, room: str, message: dict[str, Any]
    ) -> None:
        """The room peer's ANSWER (or LEAVE) to one of the service's peers."""
        await self.perform(self.registry.from_room_peer(service_id, room, message))


def _raw_query(query_string: str) -> dict[str, str]:
    """Query parameters with %-escapes decoded but "+" kept (peerjs does not escape values)."""
    values: dict[str, str] = {}
    for part in query_string.split("&"):
        name, _, value = part.partition("=")
        if name and name not in values:
            values[unquote(name)] = unquote(value)
    return values

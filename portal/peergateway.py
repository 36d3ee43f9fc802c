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
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any
from urllib.parse import unquote

from aiohttp import WSMsgType, web

from tessera.conference.api import Conference
from tessera.conference.background import spawn
from tessera.conference.errors import ConferenceError
from tessera.conference.store import ServiceRecord

from .config import Config
from .peerserver import (
    INVALID_KEY,
    MAX_MESSAGE_BYTES,
    MSG_INVALID_KEY,
    MSG_INVALID_WS_PARAMETERS,
    Action,
    Close,
    OpenRefused,
    PeerGone,
    PeerGrant,
    PeerRegistry,
    Send,
    ToRoomPeer,
    error_message,
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


class PeerGateway:
    """Owns the peer registry, the open peer sockets and the rooms' server-side peer."""

    def __init__(self, conference: Conference, config: Config) -> None:
        self.conference = conference
        self.config = config
        settings = config.peer
        self.path = settings.path
        self.registry = PeerRegistry(
            alive_timeout=settings.alive_timeout,
            expire_timeout=settings.expire_timeout,
            concurrent_limit=settings.concurrent_limit,
        )
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

    async def close(self) -> None:
        """Close every peer socket and the room peer's calls; idempotent."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
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
                await self.perform(self.registry.sweep(time.monotonic()))
            except Exception:
                logger.exception("peer expiry failed")

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
        return web.json_response(self.registry.peer_ids(service.id), headers=headers)

    # -- WebSocket --------------------------------------------------------

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES * 2)
        await ws.prepare(request)
        query = _raw_query(request.rel_url.raw_query_string)
        peer_id, token, key = query.get("id", ""), query.get("token", ""), query.get("key", "")
        try:
            service, grant = await self._authenticate(request, peer_id, token, key)
            actions = self.registry.open(service.id, peer_id, token, ws, time.monotonic(), grant)
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
        # A peer that reopens its socket with the token it opened with is the same peer.
        if self.config.tokens.single_use and not self.registry.token_reopens(
            token_id, service.id, peer_id
        ):
            if not await self.conference.consume_token(token_id, expires_at):
                raise OpenRefused(error_message("Token has already been used"))
            self.registry.remember_token(
                token_id, service.id, peer_id, time.monotonic() + expires_at - time.time()
            )
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
            elif isinstance(action, PeerGone):
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

"""Eio3Gateway: the portal's Socket.IO route, for Engine.IO 4 and Engine.IO 3 clients alike.

python-socketio 5 speaks Engine.IO 4 only and answers socket.io-client 2.x (the
client OWT 5.x's pages load: Engine.IO 3, Socket.IO 4) with HTTP 400. The
gateway owns the ``/socket.io/`` route: a request of an Engine.IO 3 client
(``EIO=3``, or the id of one of its sessions) is served by an Eio3Session, every
other request by python-socketio (``handle_request``). Both kinds of session are
sockets of the same python-engineio server, so everything after the transport
(the portal's handlers, origins, limits, disconnects) is one code path.

Engine.IO 3 requests get python-engineio's CORS policy (``cors_allowed_origins``,
``cors_credentials``), its ``transports``, ``allow_upgrades``,
``max_http_buffer_size`` and heartbeat. JSONP polling and binary payloads are
refused (socket.io-client 2.x uses neither unless told to).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web
from engineio.async_drivers.aiohttp import translate_request

from .eio3session import Eio3ProtocolError, Eio3Session, Eio3Unsupported, check_engine
from .engineio3 import encode_payload

logger = logging.getLogger(__name__)

EIO3_GATEWAY: web.AppKey[Eio3Gateway] = web.AppKey("eio3_gateway")
TRANSPORTS = ("polling", "websocket")


def attach_socketio(app: web.Application, sio: Any, path: str = "socket.io") -> Eio3Gateway:
    """Serve python-socketio's server ``sio`` and its Engine.IO 3 clients at ``/<path>/``.

    In place of ``sio.attach(app)``; the gateway is ``app[EIO3_GATEWAY]``. When the
    app shuts down, the Engine.IO 3 sessions are closed after what is queued for them
    (a long-polling GET would otherwise hold aiohttp's shutdown until its timeout).
    """
    gateway = Eio3Gateway(sio)
    route = f"/{path.strip('/')}/"
    for method in ("GET", "POST", "OPTIONS"):
        app.router.add_route(method, route, gateway.handle)
    app[EIO3_GATEWAY] = gateway
    app.on_shutdown.append(gateway.shutdown)
    app.on_cleanup.append(gateway.cleanup)
    return gateway


class _Refused(Exception):
    """An Engine.IO 3 request answered with an HTTP error; str() is the reason."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.status = status


class Eio3Gateway:
    """Routes each Socket.IO request to python-socketio (Engine.IO 4) or an Eio3Session."""

    def __init__(self, sio: Any) -> None:
        check_engine(sio.eio)
        self.sio = sio
        self.eio = sio.eio
        self.sessions: dict[str, Eio3Session] = {}

    async def handle(self, request: web.Request) -> web.StreamResponse:
        sid = request.query.get("sid")
        if request.query.get("EIO") == "3" or (sid is not None and sid in self.sessions):
            return await self._handle_eio3(request, sid)
        response: web.StreamResponse = await self.sio.handle_request(request)
        return response

    async def _handle_eio3(self, request: web.Request, sid: str | None) -> web.StreamResponse:
        session = self.sessions.get(sid) if sid is not None else None
        cors: dict[str, str] = {}
        try:
            cors = self._cors_headers(request)
            if request.method == "OPTIONS":
                return web.Response(text="OK", headers=cors)
            if "j" in request.query:
                raise _Refused("JSONP polling is not supported")
            transport = request.query.get("transport", "polling")
            if transport not in TRANSPORTS or transport not in self.eio.transports:
                raise _Refused("Invalid transport")
            if sid is None:
                return await self._open(request, transport, cors)
            if session is None:
                raise _Refused("Invalid session")
            if transport == "websocket":
                return await self._upgrade(request, session)
            if session.transport != "polling":
                raise _Refused("Unexpected HTTP request: the session is on a WebSocket")
            if request.method == "GET":
                return _payload_response(await session.poll(), cors, self.eio)
            await session.post(await self._read_body(request))
            return web.Response(text="ok", headers=cors)
        except _Refused as exc:
            logger.info(
                "Engine.IO 3 request refused: %s",
                exc,
                extra={"sid": sid, "address": request.remote, "method": request.method},
            )
            return _error_response(str(exc), exc.status, cors)
        except Eio3ProtocolError as exc:
            ids = session.log_ids() if session is not None else {"address": request.remote}
            logger.warning("Engine.IO 3 client refused: %s", exc, extra=ids)
            if session is not None:
                await session.close(self.eio.reason.TRANSPORT_ERROR)
            return _error_response(str(exc), 400, cors)

    async def _open(
        self, request: web.Request, transport: str, cors: dict[str, str]
    ) -> web.StreamResponse:
        """A new session: its open packet, on a polling response or as a WebSocket's first frame."""
        websocket = transport == "websocket"
        if request.method != "GET":
            raise _Refused("A session starts with a GET")
        ws = (
            web.WebSocketResponse(max_msg_size=self.eio.max_http_buffer_size) if websocket else None
        )
        if ws is not None and not ws.can_prepare(request).ok:
            raise _Refused("Invalid websocket upgrade")
        sid = self.eio.generate_id()
        session = Eio3Session(self.eio, sid, transport, request.remote, self._finished)
        self.sessions[sid] = session
        if not await session.open(translate_request(request)):
            logger.info(
                "Engine.IO 3 connection refused by the application", extra=session.log_ids()
            )
            return _error_response("Unauthorized", 401, cors)
        logger.debug("Engine.IO 3 client connected", extra=session.log_ids())
        if ws is None:
            upgrades = ["websocket"] if self._upgrades_allowed() else []
            packets = [session.handshake(upgrades), *session.queued()]
            return _payload_response(encode_payload(packets), cors, self.eio)
        try:
            await ws.prepare(request)
        except Exception:
            await session.close(self.eio.reason.TRANSPORT_ERROR)
            raise
        await session.serve_websocket(ws)
        return ws

    async def _upgrade(self, request: web.Request, session: Eio3Session) -> web.StreamResponse:
        if session.transport != "polling" or session.probing:
            raise _Refused("Unexpected upgrade: the session is on a WebSocket or upgrading")
        if not self._upgrades_allowed():
            raise _Refused("Upgrades are not allowed")
        ws = web.WebSocketResponse(max_msg_size=self.eio.max_http_buffer_size)
        if request.method != "GET" or not ws.can_prepare(request).ok:
            raise _Refused("Invalid websocket upgrade")
        await ws.prepare(request)
        await session.upgrade(ws)
        return ws

    async def _read_body(self, request: web.Request) -> str:
        """A POST's payload: text, at most ``max_http_buffer_size`` bytes, valid UTF-8."""
        if request.content_type == "application/octet-stream":
            raise Eio3Unsupported("binary payloads are not supported")
        limit = self.eio.max_http_buffer_size
        if (request.content_length or 0) > limit:
            raise Eio3ProtocolError(f"payload larger than {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_any():
            size += len(chunk)
            if size > limit:
                raise Eio3ProtocolError(f"payload larger than {limit} bytes")
            chunks.append(chunk)
        try:
            return b"".join(chunks).decode("utf-8")
        except UnicodeDecodeError:
            raise Eio3ProtocolError("payload is not UTF-8") from None

    def _upgrades_allowed(self) -> bool:
        return bool(self.eio.allow_upgrades) and "websocket" in self.eio.transports

    def _cors_headers(self, request: web.Request) -> dict[str, str]:
        """The CORS headers for ``request``; raises _Refused for an Origin not allowed.

        The policy is python-engineio's settings, read the way it reads them: ``[]``
        turns CORS off, ``None`` allows the server's own origin, ``"*"`` any.
        """
        policy = self.eio.cors_allowed_origins
        if policy == []:
            return {}
        origin = request.headers.get("Origin")
        headers: dict[str, str] = {}
        if origin is not None:
            if not _origin_allowed(policy, origin, request):
                raise _Refused(f"{origin} is not an accepted origin.")
            headers["Access-Control-Allow-Origin"] = origin
        if request.method == "OPTIONS":
            headers["Access-Control-Allow-Methods"] = "OPTIONS, GET, POST"
            wanted = request.headers.get("Access-Control-Request-Headers")
            if wanted:
                headers["Access-Control-Allow-Headers"] = wanted
        if self.eio.cors_credentials:
            headers["Access-Control-Allow-Credentials"] = "true"
        return headers

    async def shutdown(self, app: web.Application | None = None) -> None:
        """Close every session, each after what is queued for it (``drop`` among it)."""
        for session in list(self.sessions.values()):
            await session.close_gracefully()

    async def cleanup(self, app: web.Application | None = None) -> None:
        """End what shutdown left (a polling client that did not come for its close)."""
        for session in list(self.sessions.values()):
            await session.close(self.eio.reason.SERVER_DISCONNECT)

    def _finished(self, session: Eio3Session) -> None:
        if self.sessions.get(session.sid) is session:
            del self.sessions[session.sid]
        logger.debug("Engine.IO 3 client gone", extra=session.log_ids())


def _origin_allowed(policy: Any, origin: str, request: web.Request) -> bool:
    if policy is None:
        scheme = request.headers.get("X-Forwarded-Proto", request.scheme).split(",")[0].strip()
        return origin == f"{scheme}://{request.host}"
    if policy == "*":
        return True
    if isinstance(policy, str):
        return origin == policy
    if callable(policy):
        return bool(policy(origin))
    return "*" in policy or origin in policy


def _payload_response(payload: str, cors: dict[str, str], eio: Any) -> web.Response:
    response = web.Response(text=payload, content_type="text/plain", charset="utf-8", headers=cors)
    if eio.http_compression and len(payload) >= eio.compression_threshold:
        response.enable_compression()
    return response


def _error_response(reason: str, status: int, cors: dict[str, str]) -> web.Response:
    # As python-engineio answers its own refusals: the reason as a JSON string (with the
    # CORS headers, so that a page of another origin sees the status).
    return web.Response(
        text=json.dumps(reason), status=status, content_type="text/plain", headers=cors
    )

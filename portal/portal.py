"""Portal: the Socket.IO Client-Portal protocol (OWT 1.2), a front end of the room service."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import socketio

from tessera.conference.api import Conference
from tessera.conference.background import spawn
from tessera.conference.errors import ConferenceError
from tessera.conference.events import TRANSPORT_EVENT, ClientAddress
from tessera.conference.requests import (
    JoinRequest,
    ParticipantRef,
    PublishRequest,
    PublishTrack,
    SignalingRequest,
    StreamControlRequest,
    SubscribeRequest,
    SubscribeTrack,
    SubscriptionControlRequest,
    TextRequest,
)

from . import messages as m
from .config import Config
from .legacy import CURRENT, downgrade_login, downgrade_notification
from .logs import log_context
from .messages import RequestError
from .ratelimit import AttemptCounter, TokenBucket

logger = logging.getLogger(__name__)

Reply = tuple[str, Any]
Handler = Callable[[ParticipantRef, Any], Awaitable[Any]]
# The name this front end registers with the room service's router.
FRONT_END = "portal"


@dataclass
class Connection:
    """A Socket.IO connection, before and after login."""

    sid: str
    origin: str | None
    address: str | None
    participant: ParticipantRef | None = None
    protocol: str = CURRENT  # the Client-Portal protocol its pushes are written in
    login_timer: asyncio.TimerHandle | None = None
    bucket: TokenBucket | None = None
    last_refusal_log: float = 0.0
    logged_out: bool = False
    opened: float = field(default_factory=time.monotonic)


class Portal:
    """Answers Client-Portal requests; each reply is ("ok", data) or ("error", reason).

    Every request is validated here (OWT's message formats), then handed to the room
    service, which checks permissions and limits; any refusal becomes an error reply
    and a log line: nothing a client sends can crash a room or the connection. The
    room service reaches the clients through :meth:`deliver` and :meth:`disconnect`.
    """

    def __init__(self, conference: Conference, config: Config, sio: socketio.AsyncServer) -> None:
        self.conference = conference
        self.sio = sio
        self.config = config
        self.connections: dict[str, Connection] = {}
        self._no_connections = asyncio.Event()  # set whenever the last connection closes
        self.login_attempts = AttemptCounter(self.config.limits.login_attempts_per_minute)
        self._handlers: dict[str, Handler] = {
            "logout": self.on_logout,
            "refreshReconnectionTicket": self.on_refresh_ticket,
            "publish": self.on_publish,
            "unpublish": self.on_unpublish,
            "subscribe": self.on_subscribe,
            "unsubscribe": self.on_unsubscribe,
            "soac": self.on_soac,
            "stream-control": self.on_stream_control,
            "subscription-control": self.on_subscription_control,
            "text": self.on_text,
            "connection-quality": self.on_connection_quality,
        }
        sio.on("connect", self.on_connect)
        sio.on("disconnect", self.on_disconnect)
        sio.on("login", self._wrap("login", self.on_login))
        sio.on("relogin", self._wrap("relogin", self.on_relogin))
        for name, handler in self._handlers.items():
            sio.on(name, self._wrap(name, self._logged_in(handler)))
        sio.on("*", self.on_unknown)

    def _address(self, sid: str) -> ClientAddress:
        return ClientAddress(front_end=FRONT_END, key=sid)

    # -- FrontEnd (the room service's events) -----------------------------

    def deliver(self, key: str, event: str, data: Any) -> None:
        """A push for the client on connection ``key``, in its protocol's form."""
        connection = self.connections.get(key)
        if connection is None or event == TRANSPORT_EVENT:
            # Gone (its participant hears it is away), or no push of OWT's protocol.
            return
        data = downgrade_notification(connection.protocol, event, data)
        spawn(self.emit(event, key, data), f"notification {event}")

    def disconnect(
        self, key: str, reason: str, *, notify: bool = True, rejoin: str | None = None
    ) -> None:
        """The participant of connection ``key`` was removed: ``drop``, then disconnect.

        With ``rejoin`` (its room's media server died), a client of protocol 1.2 gets
        ``drop`` with ``{reason, rejoin}``: Tessera's clients log in again with that token;
        OWT's SDK takes no argument for ``drop`` and is unaffected. Older protocols get
        OWT's bare ``drop``."""
        connection = self.connections.get(key)
        data: dict[str, str] | None = None
        if connection is not None:
            connection.participant = None
            connection.logged_out = True
            if rejoin is not None and connection.protocol == CURRENT:
                data = {"reason": reason, "rejoin": rejoin}
        logger.info(
            "disconnecting a client: %s",
            reason,
            extra={"sid": key, "reason": reason, "rejoin": data is not None},
        )
        spawn(self._disconnect(key, notify, data), "disconnecting a client")

    async def _disconnect(self, sid: str, notify: bool, data: dict[str, str] | None) -> None:
        if notify:
            # Sent before the disconnect, on the same connection, so it arrives first.
            await self.emit("drop", sid, data)
        await self.sio.disconnect(sid)

    # -- plumbing -------------------------------------------------------

    async def emit(self, event: str, sid: str, data: Any) -> None:
        if data is None:
            await self.sio.emit(event, to=sid)
        else:
            await self.sio.emit(event, data, to=sid)

    def _wrap(
        self, name: str, handler: Callable[[Connection, Any], Awaitable[Any]]
    ) -> Callable[..., Awaitable[Reply]]:
        async def run(sid: str, *args: Any) -> Reply:
            connection = self.connections.get(sid)
            if connection is None:
                return ("error", "Connection is closed")
            ref = connection.participant
            # Every line logged while handling the request (and in tasks it starts) names these.
            with log_context(
                sid=sid,
                participant=ref.participant_id if ref else None,
                room=ref.room_id if ref else None,
            ):
                return await self._handle(name, handler, connection, args[0] if args else None)

        return run

    async def _handle(
        self,
        name: str,
        handler: Callable[[Connection, Any], Awaitable[Any]],
        connection: Connection,
        data: Any,
    ) -> Reply:
        now = time.monotonic()
        if connection.bucket is not None and not connection.bucket.allow(now):
            # A flooding client gets errors; one log line a second, not one per request.
            if now - connection.last_refusal_log > 1.0:
                connection.last_refusal_log = now
                logger.warning("too many requests, refusing", extra={"request": name})
            return ("error", "Too many requests: slow down")
        try:
            size = len(json.dumps(data, separators=(",", ":")))
        except (TypeError, ValueError):
            return ("error", "Request is not valid JSON")
        if size > self.config.portal.max_message_bytes:
            logger.warning("request too large, refused", extra={"request": name, "bytes": size})
            return ("error", f"Request is too large ({size} bytes)")
        try:
            return ("ok", await handler(connection, data))
        except ConferenceError as exc:
            logger.info("request refused: %s", exc, extra={"request": name})
            return ("error", str(exc))
        except Exception:
            logger.exception("request failed", extra={"request": name})
            return ("error", "Internal error")

    def _logged_in(self, handler: Handler) -> Callable[[Connection, Any], Awaitable[Any]]:
        async def run(connection: Connection, data: Any) -> Any:
            ref = connection.participant
            if ref is None:
                raise RequestError("Not logged in")
            return await handler(ref, data)

        return run

    async def on_unknown(self, event: str, sid: str, *args: Any) -> Reply:
        logger.info("unknown request %.40r", event, extra={"sid": sid})
        return ("error", f"Unknown request: {str(event)[:40]}")

    # -- connection -----------------------------------------------------

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        limits = self.config.limits
        connection = Connection(
            sid=sid,
            origin=environ.get("HTTP_ORIGIN"),
            address=client_address(environ),
            bucket=TokenBucket(limits.requests_per_second, limits.request_burst),
        )
        self.connections[sid] = connection
        loop = asyncio.get_running_loop()
        connection.login_timer = loop.call_later(
            self.config.portal.login_timeout, self._login_timeout, sid
        )

    def _login_timeout(self, sid: str) -> None:
        connection = self.connections.get(sid)
        if connection is not None and connection.participant is None:
            logger.info("no login in time, closing", extra={"sid": sid})
            spawn(self._close_transport(sid), "closing a connection")

    async def _close_transport(self, sid: str) -> None:
        """End the Socket.IO session and the Engine.IO connection beneath it: a client that
        answers pings would otherwise keep its WebSocket (an fd, a few tasks) for ever."""
        eio_sid = self.sio.manager.eio_sid_from_sid(sid, "/")
        await self.sio.disconnect(sid)
        if eio_sid is None:
            return
        # A polling client that never polls again would hold the close (it waits for its
        # queue to be read): the Engine.IO heartbeat ends such a session anyway.
        grace = self.config.portal.ping_interval + self.config.portal.ping_timeout
        try:
            await asyncio.wait_for(self.sio.eio.disconnect(eio_sid), grace)
        except TimeoutError:
            logger.info("closed connection not read by its client", extra={"sid": sid})

    async def wait_disconnected(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for every Socket.IO connection to close."""
        if not self.connections:
            return
        self._no_connections.clear()
        try:
            await asyncio.wait_for(self._no_connections.wait(), timeout)
        except TimeoutError:
            pass

    async def on_disconnect(self, sid: str, *_: Any) -> None:
        connection = self.connections.pop(sid, None)
        if not self.connections:
            self._no_connections.set()
        if connection is None:
            return
        if connection.login_timer is not None:
            connection.login_timer.cancel()
        ref = connection.participant
        if ref is not None:
            # The participant may be kept a while: the client may come back with relogin.
            with log_context(sid=sid, participant=ref.participant_id, room=ref.room_id):
                await self.conference.away(ref, self._address(sid))

    async def drop_all(self) -> None:
        """Shutdown: tell every logged-in client (``drop``); they close their connections."""
        for sid, connection in list(self.connections.items()):
            if connection.participant is not None:
                await self.emit("drop", sid, None)

    # -- login ----------------------------------------------------------

    async def on_login(self, connection: Connection, data: Any) -> Any:
        if connection.participant is not None:
            raise RequestError("Already logged in")
        if self.conference.closing:
            raise RequestError("Server is shutting down")
        self._count_login_attempt(connection)
        request = m.parse(m.Login, data)
        grant, _, _ = await self.conference.authenticate(request.token, connection.origin)
        reconnection = request.reconnection
        keep = 0.0
        if isinstance(reconnection, m.ReconnectionOptions) and reconnection.keepTime > 0:
            keep = reconnection.keepTime
        connection.protocol = request.protocol
        result = await self.conference.join(
            JoinRequest(
                service_id=grant.service_id,
                room=grant.room,
                user=grant.user,
                role=grant.role,
                client=self._address(connection.sid),
                reconnection=reconnection is not False,
                keep_time=keep,
                protocol=request.protocol,
            )
        )
        if connection.participant is not None or connection.sid not in self.connections:
            # The connection closed (or logged in twice) while the room was being joined.
            await self.conference.leave(result.participant, "the connection closed at login")
            raise RequestError("Connection is closed")
        connection.participant = result.participant
        if connection.login_timer is not None:
            connection.login_timer.cancel()
        reply: dict[str, Any] = downgrade_login(
            request.protocol,
            {
                "id": result.participant.participant_id,
                "user": result.user,
                "role": result.role,
                "permission": result.permission,
                "room": result.room,
            },
        )
        if result.ticket is not None:
            reply["reconnectionTicket"] = result.ticket
        return reply

    def _count_login_attempt(self, connection: Connection) -> None:
        if not self.login_attempts.allow(connection.address or "?", time.monotonic()):
            logger.warning("too many login attempts", extra={"address": connection.address})
            raise RequestError("Too many login attempts from this address; try again later")

    async def on_refresh_ticket(self, ref: ParticipantRef, data: Any) -> Any:
        return await self.conference.refresh_ticket(ref)

    async def on_relogin(self, connection: Connection, data: Any) -> Any:
        if connection.participant is not None:
            raise RequestError("Already logged in")
        self._count_login_attempt(connection)
        if not isinstance(data, str) or len(data) > 4096:
            raise RequestError("Invalid relogin request: expected a reconnection ticket")
        result = await self.conference.back(data, self._address(connection.sid), connection.origin)
        connection.participant = result.participant
        connection.protocol = result.protocol
        if connection.login_timer is not None:
            connection.login_timer.cancel()
        messages = [
            {
                **message,
                "data": downgrade_notification(result.protocol, message["event"], message["data"]),
            }
            for message in result.messages
        ]
        return {"ticket": result.ticket, "messages": messages}

    async def on_logout(self, ref: ParticipantRef, data: Any) -> Any:
        for connection in self.connections.values():
            if connection.participant == ref:
                connection.participant = None
                connection.logged_out = True
        await self.conference.leave(ref)
        return None

    # -- publish / subscribe --------------------------------------------

    async def on_publish(self, ref: ParticipantRef, data: Any) -> Any:
        request = m.parse(m.Publish, m.normalize_session_request(data))
        result = await self.conference.publish(
            ref,
            PublishRequest(
                tracks=[
                    PublishTrack(
                        kind=t.type, mid=t.mid or "", source=t.source, parameters=t.parameters or {}
                    )
                    for t in request.media.tracks
                ],
                attributes=request.attributes,
                transport_id=request.transport.id,
            ),
        )
        return {"id": result.id, "transportId": result.transport_id}

    async def on_subscribe(self, ref: ParticipantRef, data: Any) -> Any:
        request = m.parse(m.Subscribe, m.normalize_session_request(data))
        result = await self.conference.subscribe(
            ref,
            SubscribeRequest(
                tracks=[
                    SubscribeTrack(
                        kind=t.type,
                        stream_id=t.from_,
                        mid=t.mid or "",
                        parameters=t.parameters,
                        format=t.format,
                    )
                    for t in request.media.tracks
                ],
                transport_id=request.transport.id,
            ),
        )
        return {"id": result.id, "transportId": result.transport_id}

    async def on_unpublish(self, ref: ParticipantRef, data: Any) -> Any:
        request = m.parse(m.SessionRef, data)
        await self.conference.unpublish(ref, request.id)
        return None

    async def on_unsubscribe(self, ref: ParticipantRef, data: Any) -> Any:
        request = m.parse(m.SessionRef, data)
        await self.conference.unsubscribe(ref, request.id)
        return None

    async def on_soac(self, ref: ParticipantRef, data: Any) -> Any:
        request = m.parse(m.Soac, data)
        signaling = request.signaling
        candidate = signaling.candidate
        await self.conference.signaling(
            ref,
            SignalingRequest(
                transport_id=request.id,
                type=signaling.type,
                sdp=signaling.sdp,
                candidate=candidate.model_dump() if candidate is not None else None,
            ),
        )
        return None

    # -- control --------------------------------------------------------

    async def on_stream_control(self, ref: ParticipantRef, data: Any) -> Any:
        request = m.parse(m.StreamControl, data)
        return await self.conference.stream_control(
            ref,
            StreamControlRequest(
                stream_id=request.id, operation=request.operation, data=request.data
            ),
        )

    async def on_subscription_control(self, ref: ParticipantRef, data: Any) -> Any:
        request = m.parse(m.SubscriptionControl, data)
        return await self.conference.subscription_control(
            ref,
            SubscriptionControlRequest(
                subscription_id=request.id, operation=request.operation, data=request.data
            ),
        )

    async def on_text(self, ref: ParticipantRef, data: Any) -> Any:
        request = m.parse(m.Text, data)
        await self.conference.text(ref, TextRequest(to=request.to, message=request.message))
        return None

    async def on_connection_quality(self, ref: ParticipantRef, data: Any) -> Any:
        """Tessera's: the figures each participant's connection quality is judged by
        (``{participants: [{id, loss, rtt, limited}]}``); the page polls it."""
        if data not in (None, {}):
            raise RequestError("Invalid connection-quality request: it takes no data")
        return {"participants": await self.conference.connection_quality(ref)}


def client_address(environ: dict[str, Any]) -> str | None:
    """The client's IP address: python-engineio's aiohttp driver writes 127.0.0.1 as every
    client's REMOTE_ADDR, so read the aiohttp request it keeps beside it."""
    request = environ.get("aiohttp.request")
    remote = getattr(request, "remote", None)
    if isinstance(remote, str) and remote:
        return remote
    address = environ.get("REMOTE_ADDR")
    return address if isinstance(address, str) else None

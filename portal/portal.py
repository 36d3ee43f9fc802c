"""Portal: the Socket.IO Client-Portal protocol (OWT 1.2) on top of rooms."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import socketio

from tessera.conference.background import spawn
from tessera.conference.participant import Participant
from tessera.conference.tokens import (
    TokenError,
    issue_ticket,
    read_token_service,
    verify_ticket,
    verify_token,
)
from tessera.media.mediasource import ParameterError, VideoFormat
from tessera.media.streaminfo import resolve_video, resolve_video_request
from tessera.mixer.layout import LayoutError
from tessera.webrtc_agent.forwardstream import ForwardStream, TrackSpec
from tessera.webrtc_agent.publication import Publication
from tessera.webrtc_agent.subscription import SubscribedTrack, Subscription
from tessera.webrtc_agent.transport import SignalingError, Transport

from . import messages as m
from .legacy import downgrade_login
from .logs import log_context
from .messages import RequestError
from .ratelimit import AttemptCounter, TokenBucket

if TYPE_CHECKING:
    from .server import Server

logger = logging.getLogger(__name__)

Reply = tuple[str, Any]
Handler = Callable[[Participant, Any], Awaitable[Any]]


@dataclass
class Connection:
    """A Socket.IO connection, before and after login."""

    sid: str
    origin: str | None
    address: str | None
    participant: Participant | None = None
    login_timer: asyncio.TimerHandle | None = None
    bucket: TokenBucket | None = None
    last_refusal_log: float = 0.0
    logged_out: bool = False
    opened: float = field(default_factory=time.monotonic)


class Portal:
    """Answers Client-Portal requests; each reply is ("ok", data) or ("error", reason).

    Every request is validated, checked against the participant's permissions
    and the room's limits, and any failure becomes an error reply and a log
    line: nothing a client sends can crash a room or the connection.
    """

    def __init__(self, server: Server, sio: socketio.AsyncServer) -> None:
        self.server = server
        self.sio = sio
        self.config = server.config
        self.connections: dict[str, Connection] = {}
        self._no_connections = asyncio.Event()  # set whenever the last connection closes
        self.participants: dict[str, Participant] = {}
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
        }
        sio.on("connect", self.on_connect)
        sio.on("disconnect", self.on_disconnect)
        sio.on("login", self._wrap("login", self.on_login))
        sio.on("relogin", self._wrap("relogin", self.on_relogin))
        for name, handler in self._handlers.items():
            sio.on(name, self._wrap(name, self._logged_in(handler)))
        sio.on("*", self.on_unknown)

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
            participant = connection.participant
            # Every line logged while handling the request (and in tasks it starts) names these.
            with log_context(
                sid=sid,
                participant=participant.id if participant else None,
                room=participant.room.id if participant else None,
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
        except (RequestError, TokenError, ParameterError, SignalingError, LayoutError) as exc:
            logger.info("request refused: %s", exc, extra={"request": name})
            return ("error", str(exc))
        except Exception:
            logger.exception("request failed", extra={"request": name})
            return ("error", "Internal error")

    def _logged_in(self, handler: Handler) -> Callable[[Connection, Any], Awaitable[Any]]:
        async def run(connection: Connection, data: Any) -> Any:
            participant = connection.participant
            if participant is None or participant.closed:
                raise RequestError("Not logged in")
            return await handler(participant, data)

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
            address=environ.get("REMOTE_ADDR"),
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
            spawn(self.sio.disconnect(sid), "closing a connection")

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
        participant = connection.participant
        if participant is None or participant.closed or participant.sid != sid:
            return
        # Keep the participant for a while: the client may come back with relogin.
        participant.sid = None
        keep = participant.keep_time
        ids = {**participant.log_ids, "sid": sid}
        if keep <= 0:
            logger.info("connection lost", extra=ids)
            await self.remove_participant(participant)
            return
        logger.info("connection lost, keeping the participant for %.0f s", keep, extra=ids)
        participant.away_timer = asyncio.get_running_loop().call_later(
            keep, lambda: spawn(self._expire(participant), "expiring a participant")
        )

    async def _expire(self, participant: Participant) -> None:
        if participant.sid is None and not participant.closed:
            logger.info(
                "participant did not come back, removing",
                extra=participant.log_ids,
            )
            await self.remove_participant(participant)

    async def remove_participant(self, participant: Participant) -> None:
        self.participants.pop(participant.id, None)
        await participant.room.remove_participant(participant)

    async def kick(self, participant: Participant) -> None:
        """Drop a participant (REST DELETE): it gets `drop`, then is disconnected."""
        sid = participant.sid
        if sid is not None:
            connection = self.connections.get(sid)
            if connection is not None:
                connection.participant = None
                connection.logged_out = True
            # Sent before the disconnect, on the same connection, so it arrives first.
            await self.emit("drop", sid, None)
        await self.remove_participant(participant)
        if sid is not None:
            await self.sio.disconnect(sid)

    # -- login ----------------------------------------------------------

    async def on_login(self, connection: Connection, data: Any) -> Any:
        if connection.participant is not None:
            raise RequestError("Already logged in")
        if self.server.closing:
            raise RequestError("Server is shutting down")
        self._count_login_attempt(connection)
        request = m.parse(m.Login, data)
        service_id = read_token_service(request.token)
        service = self.server.store.get_service(service_id)
        if service is None:
            raise TokenError("Token was not issued by a known service")
        claims = verify_token(request.token, service.key)
        self.server.check_origin(service, connection.origin)
        if self.config.tokens.single_use and not self.server.store.consume_token(
            claims.token_id, claims.expires_at
        ):
            raise TokenError("Token has already been used")
        room = await self.server.find_room(service, claims.room, create=service.adhoc_rooms)
        if room is None:
            raise RequestError("Room does NOT exist")
        permission = room.permission_for(claims.role)
        if permission is None:
            raise RequestError(f"Role {claims.role} is not defined in this room")
        if room.is_full():
            raise RequestError("Room is full")
        if connection.participant is not None or connection.sid not in self.connections:
            raise RequestError("Connection is closed")
        participant = Participant(
            uuid.uuid4().hex, claims.user, claims.role, permission, room, self.emit
        )
        participant.sid = connection.sid
        connection.participant = participant
        if connection.login_timer is not None:
            connection.login_timer.cancel()
        self.participants[participant.id] = participant
        keep = self.config.portal.reconnection_keep
        reconnection = request.reconnection
        if isinstance(reconnection, m.ReconnectionOptions) and reconnection.keepTime > 0:
            keep = min(keep, reconnection.keepTime)
        participant.keep_time = 0.0 if reconnection is False else keep
        participant.protocol = request.protocol
        room.add_participant(participant)
        reply: dict[str, Any] = downgrade_login(
            request.protocol,
            {
                "id": participant.id,
                "user": participant.user,
                "role": participant.role,
                "permission": participant.permission,
                "room": room.describe(),
            },
        )
        if reconnection is not False:
            reply["reconnectionTicket"] = self._ticket(participant)
        return reply

    def _count_login_attempt(self, connection: Connection) -> None:
        if not self.login_attempts.allow(connection.address or "?", time.monotonic()):
            logger.warning("too many login attempts", extra={"address": connection.address})
            raise RequestError("Too many login attempts from this address; try again later")

    def _ticket(self, participant: Participant) -> str:
        ticket = issue_ticket(
            participant.id, self.server.ticket_secret, self.config.portal.ticket_lifetime
        )
        participant.ticket_id = verify_ticket(ticket, self.server.ticket_secret).ticket_id
        return ticket

    async def on_refresh_ticket(self, participant: Participant, data: Any) -> Any:
        return self._ticket(participant)

    def participant_of_ticket(self, ticket: str) -> Participant:
        """The participant a current reconnection ticket names.

        Raises TokenError for a forged, expired or superseded ticket and RequestError
        when the participant is gone.
        """
        claims = verify_ticket(ticket, self.server.ticket_secret)
        participant = self.participants.get(claims.participant_id)
        if participant is None or participant.closed:
            raise RequestError("Participant does NOT exist")
        if claims.ticket_id != participant.ticket_id:
            raise TokenError("Reconnection ticket is no longer valid")
        return participant

    async def on_relogin(self, connection: Connection, data: Any) -> Any:
        if connection.participant is not None:
            raise RequestError("Already logged in")
        self._count_login_attempt(connection)
        if not isinstance(data, str) or len(data) > 4096:
            raise RequestError("Invalid relogin request: expected a reconnection ticket")
        participant = self.participant_of_ticket(data)
        service = self.server.store.get_service(participant.room.service_id)
        if service is not None:
            self.server.check_origin(service, connection.origin)
        old_sid = participant.sid
        if participant.away_timer is not None:
            participant.away_timer.cancel()
            participant.away_timer = None
        participant.sid = connection.sid
        connection.participant = participant
        if connection.login_timer is not None:
            connection.login_timer.cancel()
        if old_sid is not None and old_sid != connection.sid:
            # The old connection is a zombie the server has not noticed yet.
            old = self.connections.get(old_sid)
            if old is not None:
                old.participant = None
            spawn(self.sio.disconnect(old_sid), "closing a stale connection")
        logger.info(
            "participant reconnected",
            extra=participant.log_ids,
        )
        return {"ticket": self._ticket(participant), "messages": participant.take_missed()}

    async def on_logout(self, participant: Participant, data: Any) -> Any:
        sid = participant.sid
        if sid is not None and sid in self.connections:
            self.connections[sid].participant = None
            self.connections[sid].logged_out = True
        await self.remove_participant(participant)
        return None

    # -- publish / subscribe --------------------------------------------

    def _transport(
        self, participant: Participant, ref: m.TransportRef, session_id: str
    ) -> Transport:
        if ref.id is not None:
            transport = participant.transports.get(ref.id)
            if transport is None:
                raise RequestError("Transport does NOT exist")
            return transport
        transport = self.server.agent.create_transport(session_id, participant)
        participant.transports[transport.id] = transport
        return transport

    async def on_publish(self, participant: Participant, data: Any) -> Any:
        request = m.parse(m.Publish, m.normalize_session_request(data))
        kinds = [t.type for t in request.media.tracks]
        if len(set(kinds)) != len(kinds):
            raise RequestError("Invalid publish request: one track of each kind at most")
        _check_mids(request.media.tracks)
        allowed = participant.permission.get("publish") or {}
        for kind in kinds:
            if not allowed.get(kind):
                raise RequestError(f"Permission denied: cannot publish {kind}")
        room = participant.room
        participant.check_publication_limit(self.config.limits.publications_per_participant)
        room.check_input_limit()
        room.check_media_in(kinds)
        stream_id = uuid.uuid4().hex
        settings = room.settings
        stream = ForwardStream(
            stream_id,
            participant.id,
            [
                TrackSpec(
                    kind=t.type, mid=t.mid or "", source=t.source, parameters=t.parameters or {}
                )
                for t in request.media.tracks
            ],
            request.attributes,
            media_in=settings.get("mediaIn", {}),
            media_out=settings.get("mediaOut", {}),
            transcoding=settings.get("transcoding", {}),
            keyframe_min_interval=self.config.webrtc.keyframe_min_interval,
        )
        fresh = request.transport.id is None
        transport = self._transport(participant, request.transport, stream_id)
        publication = Publication(transport, stream)
        try:
            transport.add_session(publication)
        except SignalingError:
            if fresh:
                await self._drop_transport(participant, transport)
            raise
        participant.publications[stream_id] = publication
        logger.info(
            "publish", extra={"stream": stream_id, "transport": transport.id, "kinds": kinds}
        )
        return {"id": stream_id, "transportId": transport.id}

    async def on_subscribe(self, participant: Participant, data: Any) -> Any:
        request = m.parse(m.Subscribe, m.normalize_session_request(data))
        allowed = participant.permission.get("subscribe") or {}
        room = participant.room
        participant.check_subscription_limit(self.config.limits.subscriptions_per_participant)
        tracks: list[SubscribedTrack] = []
        kinds = [t.type for t in request.media.tracks]
        if len(set(kinds)) != len(kinds):
            raise RequestError("Invalid subscribe request: one track of each kind at most")
        _check_mids(request.media.tracks)
        for wanted in request.media.tracks:
            if not allowed.get(wanted.type):
                raise RequestError(f"Permission denied: cannot subscribe {wanted.type}")
            stream = room.streams.get(wanted.from_)
            if stream is None:
                raise RequestError("Stream does NOT exist")
            if not stream.has_track(wanted.type):
                raise RequestError(f"Stream has no {wanted.type} track")
            fmt: VideoFormat | str
            if wanted.type == "video":
                info = track_info(stream.info(), "video")
                fmt = resolve_video(info, wanted.parameters, wanted.format)
            else:
                fmt = stream.codec("audio") or "opus"
            tracks.append(
                SubscribedTrack(kind=wanted.type, mid=wanted.mid or "", stream=stream, format=fmt)
            )
        subscription_id = uuid.uuid4().hex
        fresh = request.transport.id is None
        transport = self._transport(participant, request.transport, subscription_id)
        subscription = Subscription(transport, subscription_id, tracks, participant.id)
        try:
            transport.add_session(subscription)
        except SignalingError:
            if fresh:
                await self._drop_transport(participant, transport)
            raise
        participant.subscriptions[subscription_id] = subscription
        logger.info(
            "subscribe",
            extra={
                "subscription": subscription_id,
                "transport": transport.id,
                "from": sorted(subscription.stream_ids()),
            },
        )
        return {"id": subscription_id, "transportId": transport.id}

    async def _drop_transport(self, participant: Participant, transport: Transport) -> None:
        participant.transports.pop(transport.id, None)
        await self.server.agent.close_transport(transport)

    async def on_unpublish(self, participant: Participant, data: Any) -> Any:
        request = m.parse(m.SessionRef, data)
        if request.id not in participant.publications:
            raise RequestError("Stream does NOT exist")
        participant.end_session(request.id)
        return None

    async def on_unsubscribe(self, participant: Participant, data: Any) -> Any:
        request = m.parse(m.SessionRef, data)
        if request.id not in participant.subscriptions:
            raise RequestError("Subscription does NOT exist")
        participant.end_session(request.id)
        return None

    async def on_soac(self, participant: Participant, data: Any) -> Any:
        request = m.parse(m.Soac, data)
        transport = participant.transports.get(request.id)
        if transport is None:
            raise RequestError("Transport does NOT exist")
        signaling = request.signaling
        if signaling.type == "offer":
            if not signaling.sdp:
                raise RequestError("Invalid soac request: signaling.sdp is missing")
            await transport.handle_offer(signaling.sdp)
        elif signaling.type == "candidate":
            if signaling.candidate is None:
                raise RequestError("Invalid soac request: signaling.candidate is missing")
            await transport.add_candidate(signaling.candidate.model_dump())
        else:
            # aiortc's ICE cannot forget a remote candidate: say so rather than ignore it.
            raise RequestError(
                "removed-candidates is not supported: remote candidates cannot be removed"
            )
        return None

    # -- control --------------------------------------------------------

    async def on_stream_control(self, participant: Participant, data: Any) -> Any:
        request = m.parse(m.StreamControl, data)
        room = participant.room
        stream = room.streams.get(request.id)
        publication = participant.publications.get(request.id)
        if stream is None and publication is None:
            raise RequestError("Stream does NOT exist")
        if request.operation in ("pause", "play"):
            if publication is None:
                raise RequestError("Permission denied: not the owner of the stream")
            active = request.operation == "play"
            for kind in m.parse_av(request.data):
                if kind in publication.stream.tracks:
                    if request.id in room.streams:
                        room.set_track_status(request.id, kind, active)
                    else:
                        publication.stream.set_active(kind, active)
            return None
        view = room.views.get(_view_label(request.data) or "")
        if view is None:
            raise RequestError("View does NOT exist")
        if not isinstance(stream, ForwardStream):
            raise RequestError("Stream is not ready")
        if request.operation in ("mix", "unmix"):
            if publication is None:
                raise RequestError("Permission denied: not the owner of the stream")
            if request.operation == "mix":
                room.mix(stream.id, view.label)
            else:
                room.unmix(stream.id, view.label)
            return None
        if request.operation == "get-region":
            region = view.layout.get_region(stream.id)
            if region is None:
                raise RequestError("Stream is not in a region of this view")
            return {"region": region}
        region_id = request.data.get("region") if isinstance(request.data, dict) else None
        if not isinstance(region_id, str):
            raise RequestError("Invalid set-region request: data.region must be a region id")
        if not view.has_input(stream.id):
            raise RequestError("Stream is not mixed in this view")
        view.set_region(stream.id, region_id)
        return None

    async def on_subscription_control(self, participant: Participant, data: Any) -> Any:
        request = m.parse(m.SubscriptionControl, data)
        subscription = participant.subscriptions.get(request.id)
        if subscription is None:
            raise RequestError("Subscription does NOT exist")
        if request.operation in ("pause", "play"):
            for kind in m.parse_av(request.data):
                subscription.set_paused(kind, request.operation == "pause")
            return None
        if request.operation == "querybwe":
            # OWT: {"estimatedBitrate": bit/s}, the send side's estimate for the subscriber.
            estimate = subscription.transport.estimated_bitrate(subscription)
            if estimate is None:
                raise RequestError(
                    "No bandwidth estimate yet: the subscriber has not reported one (REMB)"
                )
            return {"estimatedBitrate": estimate}
        update = m.parse(m.SubscriptionUpdate, request.data)
        room = participant.room
        changes: list[tuple[str, Any, VideoFormat | str]] = []
        for kind, wanted in (("audio", update.audio), ("video", update.video)):
            if wanted is None:
                continue
            current = subscription.tracks.get(kind)
            if current is None:
                raise RequestError(f"Subscription has no {kind} track")
            stream = room.streams.get(wanted.from_) if wanted.from_ else current.stream
            if stream is None:
                raise RequestError("Stream does NOT exist")
            if not stream.has_track(kind):
                raise RequestError(f"Stream has no {kind} track")
            fmt: VideoFormat | str
            if kind == "video":
                fmt = resolve_video_request(track_info(stream.info(), "video"), wanted.parameters)
            else:
                fmt = stream.codec("audio") or "opus"
            changes.append((kind, stream, fmt))
        for kind, stream, fmt in changes:
            subscription.switch(kind, stream, fmt)
        return None

    async def on_text(self, participant: Participant, data: Any) -> Any:
        request = m.parse(m.Text, data)
        if len(request.message) > self.config.portal.text_max_length:
            raise RequestError(
                f"Text is too long (at most {self.config.portal.text_max_length} characters)"
            )
        room = participant.room
        if request.to == "all":
            room.notify_all(
                "text",
                {"from": participant.id, "to": "all", "message": request.message},
                exclude=participant.id,
            )
            return None
        target = room.participants.get(request.to)
        if target is None:
            raise RequestError("Target participant does NOT exist")
        target.notify("text", {"from": participant.id, "to": "me", "message": request.message})
        return None


def _view_label(data: Any) -> str | None:
    """mix/unmix/get-region name the view directly; set-region as data.view."""
    if isinstance(data, str):
        return data
    if isinstance(data, dict) and isinstance(data.get("view"), str):
        return str(data["view"])
    return None


def track_info(info: dict[str, Any], kind: str) -> dict[str, Any]:
    """The first track of ``kind`` in a stream's info (``media.tracks``), or {}."""
    for track in info.get("media", {}).get("tracks", []):
        if track.get("type") == kind:
            return dict(track)
    return {}


def _check_mids(tracks: Sequence[m.PublishTrack | m.SubscribeTrack]) -> None:
    mids = [t.mid for t in tracks if t.mid]
    if len(set(mids)) != len(mids):
        raise RequestError("Invalid request: two tracks with the same mid")

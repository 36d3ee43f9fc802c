"""RoomService: the one API every front end calls (docs/architecture.md has the table).

Plain data in and out: requests and results are the models of ``requests.py`` (or
ids, strings, dicts), never a live object, so a call can cross processes. Every
participant call names the participant by a :class:`ParticipantRef` and checks its
permissions first. Events reach clients through the :class:`ClientRouter`; the one
error raised is :class:`ConferenceError` (its message is what clients are told).

The service owns the tree: services (tenants) own their loaded rooms, a room its
participants, streams, views, recordings and streaming-outs, a participant its
transports and sessions. Closing carries a reason down to the clients and the log.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path
from typing import Any

from tessera.ingest.plan import IngestPlanError
from tessera.ingest.puller import IngestError, SourceOptions
from tessera.ingest.streamingin import StreamingIn
from tessera.media.mediasource import VideoFormat
from tessera.media.streaminfo import check_audio_format, resolve_video, resolve_video_request
from tessera.recorder.perstream import PerStreamScope
from tessera.webrtc_agent.forwardstream import ForwardStream, TrackSpec
from tessera.webrtc_agent.publication import Publication
from tessera.webrtc_agent.subscription import SubscribedTrack, Subscription
from tessera.webrtc_agent.transport import SignalingError

from .background import spawn
from .errors import ConferenceError, ErrorCode, forbidden, not_found
from .events import ClientAddress
from .management import ManagementCalls
from .participant import Participant
from .records import RoomRecord, ServiceRecord
from .requests import (
    BackResult,
    Grant,
    JoinRequest,
    JoinResult,
    ParticipantInfo,
    ParticipantRef,
    PerStreamRecordingRequest,
    PublishRequest,
    SessionResult,
    SignalingRequest,
    StreamControlRequest,
    SubscribeRequest,
    SubscriptionControlRequest,
    TextRequest,
    check_tracks,
    media_kinds,
    parse_subscription_update,
    view_label,
)
from .room import Room
from .streaminginrequest import StreamingInRequest
from .tokens import TokenError, issue_ticket, read_token_service, verify_ticket, verify_token
from .tree import refusals

logger = logging.getLogger(__name__)

# Reasons a participant leaves, as its log line and its front end hear them.
LOGOUT = "logout"
CONNECTION_LOST = "connection lost"


class RoomService(ManagementCalls):
    """Rooms of every service, and the one API front ends call (module docstring)."""

    # -- tokens, origins, services ----------------------------------------

    async def get_service(self, service_id: str) -> ServiceRecord | None:
        """A service's settings, or None (read from the store, which every process shares)."""
        return await self.store.get_service(service_id)

    async def all_services(self) -> list[ServiceRecord]:
        """Every service's settings (the REST API finds a caller's service by its key)."""
        return await self.store.list_services()

    async def check_origin(self, service: ServiceRecord, origin: str | None) -> None:
        """Refuse a browser whose Origin is not on the service's list (if it has one).

        A coroutine, as every call a front end makes, though it reads only its argument:
        in a cluster it is one more call that may cross to another process."""
        check_origin(service, origin)

    async def authenticate(
        self,
        token: str,
        origin: str | None = None,
        *,
        service_id: str | None = None,
        consume: bool = True,
    ) -> tuple[Grant, str, float]:
        """Verify a join token: (what it grants, its id, when it expires).

        ``service_id``: the token must be that service's. ``consume``: a single-use token
        is used up now (the peer model consumes it itself, see consume_token). Raises
        TokenError or ConferenceError naming the problem.
        """
        issuer = read_token_service(token)
        if service_id is not None and issuer != service_id:
            raise TokenError("Token was not issued by this service")
        service = await self.store.get_service(issuer)
        if service is None:
            raise TokenError("Token was not issued by a known service")
        claims = verify_token(token, service.key)
        check_origin(service, origin)
        if consume and not await self.consume_token(claims.token_id, claims.expires_at):
            raise TokenError("Token has already been used")
        grant = Grant(service_id=service.id, room=claims.room, user=claims.user, role=claims.role)
        return grant, claims.token_id, claims.expires_at

    async def consume_token(self, token_id: str, expires_at: float) -> bool:
        """Use up a single-use token: False if it was used already (True if tokens may be
        used again, ``single_use_tokens`` off). Checked and marked in one atomic step of
        the store, which every process of a cluster shares: used once, on any portal."""
        if not self.settings.single_use_tokens:
            return True
        return await self.store.consume_token(token_id, expires_at)

    # -- joining and leaving ----------------------------------------------

    async def join(self, request: JoinRequest) -> JoinResult:
        """A client enters a room (loaded, or created ad hoc if its service allows)."""
        if self.closing:
            raise ConferenceError("Server is shutting down")
        record = await self.store.get_service(request.service_id)
        if record is None:
            raise not_found("Service does NOT exist", ErrorCode.SERVICE_NOT_FOUND)
        service = self.service(record.id)
        room = await service.room(request.room, create=record.adhoc_rooms)
        if room is None:
            raise not_found("Room does NOT exist", ErrorCode.ROOM_NOT_FOUND)
        permission = room.permission_for(request.role)
        refusal = None
        if permission is None:
            refusal = f"Role {request.role} is not defined in this room"
        elif room.is_full():
            refusal = "Room is full"
        if refusal is not None or permission is None:
            if not room.participants:
                await service.room_emptied(room)  # do not leave an ad-hoc room behind
            raise ConferenceError(refusal or "Permission denied")
        participant = Participant(
            uuid.uuid4().hex,
            request.user,
            request.role,
            permission,
            room,
            self.context,
            request.client,
        )
        participant.protocol = request.protocol
        if request.reconnection:
            wanted = request.keep_time or self.settings.reconnection_keep
            participant.keep_time = min(self.settings.reconnection_keep, wanted)
        self._participant_rooms[participant.id] = room.id
        room.add_participant(participant)
        ref = ParticipantRef(room_id=room.id, participant_id=participant.id)
        return JoinResult(
            participant=ref,
            user=participant.user,
            role=participant.role,
            permission=participant.permission,
            room=room.describe(),
            ticket=self._ticket(participant) if request.reconnection else None,
        )

    async def leave(self, ref: ParticipantRef, reason: str = LOGOUT) -> None:
        """The participant leaves (logout; its front end's session ended)."""
        room, participant = self._participant(ref)
        await self._remove(room, participant, reason)

    async def away(self, ref: ParticipantRef, client: ClientAddress) -> None:
        """The client's connection at ``client`` was lost: the participant waits its keep
        time for the client to come back (relogin), or leaves at once."""
        participant = self.participant(ref)
        if participant is None or participant.address != client:
            return  # gone already, or its client came back elsewhere
        participant.address = None
        keep = participant.keep_time
        ids = {**participant.log_ids, "client": client.key}
        if keep <= 0:
            logger.info("connection lost", extra=ids)
            await self.leave(ref, CONNECTION_LOST)
            return
        logger.info("connection lost, keeping the participant for %.0f s", keep, extra=ids)
        reason = f"its client did not come back within {keep:.0f} s"
        participant.away_timer = asyncio.get_running_loop().call_later(
            keep, lambda: spawn(self._expire(ref, reason), "expiring a participant")
        )

    async def _expire(self, ref: ParticipantRef, reason: str) -> None:
        participant = self.participant(ref)
        if participant is not None and participant.address is None:
            logger.info("participant did not come back, removing", extra=participant.log_ids)
            await self.leave(ref, reason)

    def _ticket(self, participant: Participant) -> str:
        secret = self.context.ticket_secret
        ticket = issue_ticket(
            participant.id,
            secret,
            self.settings.ticket_lifetime,
            service_id=participant.room.service_id,
            room_id=participant.room.id,
        )
        participant.ticket_id = verify_ticket(ticket, secret).ticket_id
        return ticket

    async def refresh_ticket(self, ref: ParticipantRef) -> str:
        """A new reconnection ticket; the one before is no longer valid."""
        _, participant = self._participant(ref)
        return self._ticket(participant)

    def _participant_of_ticket(self, ticket: str) -> tuple[Room, Participant]:
        claims = verify_ticket(ticket, self.context.ticket_secret)
        # The ticket names its room (signed): no index of participants is needed to find it.
        room = self._loaded(claims.service_id, claims.room_id)
        participant = room.participants.get(claims.participant_id) if room else None
        if room is None or participant is None or participant.closed:
            raise not_found("Participant does NOT exist", ErrorCode.PARTICIPANT_NOT_FOUND)
        if claims.ticket_id != participant.ticket_id:
            raise TokenError("Reconnection ticket is no longer valid")
        return room, participant

    async def participant_of_ticket(self, ticket: str) -> ParticipantInfo:
        """Who holds a current reconnection ticket (TokenError or ConferenceError if none)."""
        room, participant = self._participant_of_ticket(ticket)
        return ParticipantInfo(
            participant=ParticipantRef(room_id=room.id, participant_id=participant.id),
            service_id=room.service_id,
            user=participant.user,
            role=participant.role,
        )

    async def back(self, ticket: str, client: ClientAddress, origin: str | None) -> BackResult:
        """The client comes back with its reconnection ticket (relogin): the notifications
        it missed, and a new ticket."""
        room, participant = self._participant_of_ticket(ticket)
        service = await self.store.get_service(room.service_id)
        if service is not None:
            check_origin(service, origin)
        old = participant.address
        if participant.away_timer is not None:
            participant.away_timer.cancel()
            participant.away_timer = None
        participant.address = client
        if old is not None and old != client:
            # The old connection is a zombie its front end has not noticed yet.
            self.router.disconnect(old, "the client came back on another connection", notify=False)
        logger.info("participant reconnected", extra=participant.log_ids)
        return BackResult(
            participant=ParticipantRef(room_id=room.id, participant_id=participant.id),
            ticket=self._ticket(participant),
            messages=participant.take_missed(),
            protocol=participant.protocol,
        )

    async def room_info(self, ref: ParticipantRef) -> dict[str, Any]:
        """The participant's room as it is now: ``{id, views, participants, streams}``."""
        room, _ = self._participant(ref)
        return room.describe()

    async def get_room_record(self, service_id: str, room_id: str) -> RoomRecord | None:
        """A stored room of a service, by id."""
        return await self.store.get_room(service_id, room_id)

    # -- publish and subscribe --------------------------------------------

    async def publish(self, ref: ParticipantRef, request: PublishRequest) -> SessionResult:
        """Publish tracks as a forward stream; ``ready`` follows once media flows."""
        room, participant = self._participant(ref)
        kinds = [t.kind for t in request.tracks]
        check_tracks("publish", kinds, [t.mid for t in request.tracks])
        for kind in kinds:
            if not participant.may("publish", kind):
                raise ConferenceError(f"Permission denied: cannot publish {kind}")
        participant.check_publication_limit(self.settings.publications_per_participant)
        room.check_input_limit()
        room.check_media_in(kinds)
        stream_id = uuid.uuid4().hex
        stream = ForwardStream(
            stream_id,
            participant.id,
            [
                TrackSpec(kind=t.kind, mid=t.mid, source=t.source, parameters=dict(t.parameters))
                for t in request.tracks
            ],
            request.attributes,
            **room.media_settings(),
            keyframe_min_interval=self.settings.keyframe_min_interval,
        )
        transport, fresh = participant.transport(request.transport_id, stream_id)
        publication = Publication(transport, stream)
        try:
            transport.add_session(publication)
        except SignalingError as exc:
            if fresh:
                await participant.close_transport(transport, "its first session was refused")
            raise ConferenceError(str(exc)) from None
        participant.publications[stream_id] = publication
        logger.info(
            "publish",
            extra={
                **participant.log_ids,
                "stream": stream_id,
                "transport": transport.id,
                "kinds": kinds,
            },
        )
        return SessionResult(id=stream_id, transport_id=transport.id)

    async def subscribe(self, ref: ParticipantRef, request: SubscribeRequest) -> SessionResult:
        """Subscribe to tracks of streams (forward, mixed or active audio)."""
        room, participant = self._participant(ref)
        participant.check_subscription_limit(self.settings.subscriptions_per_participant)
        check_tracks("subscribe", [t.kind for t in request.tracks], [t.mid for t in request.tracks])
        tracks: list[SubscribedTrack] = []
        for wanted in request.tracks:
            if not participant.may("subscribe", wanted.kind):
                raise ConferenceError(f"Permission denied: cannot subscribe {wanted.kind}")
            stream = room.streams.get(wanted.stream_id)
            if stream is None:
                raise ConferenceError("Stream does NOT exist")
            if not stream.has_track(wanted.kind):
                raise ConferenceError(f"Stream has no {wanted.kind} track")
            fmt: VideoFormat | str
            if wanted.kind == "video":
                with refusals():
                    fmt = resolve_video(
                        track_info(stream.info(), "video"), wanted.parameters, wanted.format
                    )
            else:
                with refusals():
                    check_audio_format(track_info(stream.info(), "audio"), wanted.format)
                fmt = stream.codec("audio") or "opus"
            tracks.append(
                SubscribedTrack(kind=wanted.kind, mid=wanted.mid, stream=stream, format=fmt)
            )
        subscription_id = uuid.uuid4().hex
        transport, fresh = participant.transport(request.transport_id, subscription_id)
        subscription = Subscription(transport, subscription_id, tracks, participant.id)
        try:
            transport.add_session(subscription)
        except SignalingError as exc:
            if fresh:
                await participant.close_transport(transport, "its first session was refused")
            raise ConferenceError(str(exc)) from None
        participant.subscriptions[subscription_id] = subscription
        logger.info(
            "subscribe",
            extra={
                **participant.log_ids,
                "subscription": subscription_id,
                "transport": transport.id,
                "from": sorted(subscription.stream_ids()),
            },
        )
        return SessionResult(id=subscription_id, transport_id=transport.id)

    async def unpublish(self, ref: ParticipantRef, stream_id: str) -> None:
        _, participant = self._participant(ref)
        if stream_id not in participant.publications:
            raise ConferenceError("Stream does NOT exist")
        participant.end_session(stream_id)

    async def unsubscribe(self, ref: ParticipantRef, subscription_id: str) -> None:
        _, participant = self._participant(ref)
        if subscription_id not in participant.subscriptions:
            raise ConferenceError("Subscription does NOT exist")
        participant.end_session(subscription_id)

    async def signaling(self, ref: ParticipantRef, request: SignalingRequest) -> None:
        """An offer (answered by a ``progress`` ``soac`` event) or a trickled candidate."""
        _, participant = self._participant(ref)
        transport = participant.transports.get(request.transport_id)
        if transport is None:
            raise ConferenceError("Transport does NOT exist")
        if request.type == "offer":
            if not request.sdp:
                raise ConferenceError("Invalid soac request: signaling.sdp is missing")
            with refusals():
                await transport.handle_offer(request.sdp)
        elif request.type == "candidate":
            if request.candidate is None:
                raise ConferenceError("Invalid soac request: signaling.candidate is missing")
            with refusals():
                await transport.add_candidate(request.candidate)
        else:
            # aiortc's ICE cannot forget a remote candidate: say so rather than ignore it.
            raise ConferenceError(
                "removed-candidates is not supported: remote candidates cannot be removed"
            )

    async def close_transport(self, ref: ParticipantRef, transport_id: str, reason: str) -> None:
        """End a transport and its sessions (a peer-model call hung up); idempotent."""
        _, participant = self._participant(ref)
        transport = participant.transports.get(transport_id)
        if transport is not None:
            await participant.close_transport(transport, reason)

    # -- control ------------------------------------------------------------

    async def stream_control(
        self, ref: ParticipantRef, request: StreamControlRequest
    ) -> dict[str, Any] | None:
        """pause/play one's publication, mix/unmix it, get/set its region in a view."""
        room, participant = self._participant(ref)
        stream = room.streams.get(request.stream_id)
        publication = participant.publications.get(request.stream_id)
        if stream is None and publication is None:
            raise ConferenceError("Stream does NOT exist")
        if request.operation in ("pause", "play"):
            if publication is None:
                raise ConferenceError("Permission denied: not the owner of the stream")
            active = request.operation == "play"
            for kind in media_kinds(request.data):
                if kind in publication.stream.tracks:
                    if request.stream_id in room.streams:
                        room.set_track_status(request.stream_id, kind, active)
                    else:
                        publication.stream.set_active(kind, active)
            return None
        view = room.views.get(view_label(request.data) or "")
        if view is None:
            raise ConferenceError("View does NOT exist")
        if not isinstance(stream, ForwardStream):
            raise ConferenceError("Stream is not ready")
        if request.operation in ("mix", "unmix"):
            if publication is None:
                raise ConferenceError("Permission denied: not the owner of the stream")
            if request.operation == "mix":
                room.mix(stream.id, view.label)
            else:
                room.unmix(stream.id, view.label)
            return None
        if request.operation == "get-region":
            region = view.layout.get_region(stream.id)
            if region is None:
                raise ConferenceError("Stream is not in a region of this view")
            return {"region": region}
        if publication is None:
            # As OWT's streamControl: only the owner moves its stream (a viewer moved others').
            raise ConferenceError("Permission denied: not the owner of the stream")
        data = request.data
        region_id = data.get("region") if isinstance(data, dict) else None
        if not isinstance(region_id, str):
            raise ConferenceError("Invalid set-region request: data.region must be a region id")
        if not view.has_input(stream.id):
            raise ConferenceError("Stream is not mixed in this view")
        with refusals():
            view.set_region(stream.id, region_id)
        return None

    async def subscription_control(
        self, ref: ParticipantRef, request: SubscriptionControlRequest
    ) -> dict[str, Any] | None:
        """pause/play a subscription, switch its source or format (update), or ask for the
        bandwidth its receiver estimates (querybwe)."""
        room, participant = self._participant(ref)
        subscription = participant.subscriptions.get(request.subscription_id)
        if subscription is None:
            raise ConferenceError("Subscription does NOT exist")
        if request.operation in ("pause", "play"):
            for kind in media_kinds(request.data):
                subscription.set_paused(kind, request.operation == "pause")
            return None
        if request.operation == "querybwe":
            # OWT: {"estimatedBitrate": bit/s}, the send side's estimate for the subscriber.
            adaptive = subscription.adaptive
            if adaptive is not None and adaptive.last.bitrate is not None:
                # A video on a view's ladder: the adaptive estimate, its figures and rung.
                return {"estimatedBitrate": adaptive.last.bitrate, "adaptive": adaptive.describe()}
            estimate = subscription.transport.estimated_bitrate(subscription)
            if estimate is None:
                raise ConferenceError(
                    "No bandwidth estimate yet: the subscriber has not reported one (REMB)"
                )
            return {"estimatedBitrate": estimate}
        update = parse_subscription_update(request.data)
        changes: list[tuple[str, Any, VideoFormat | str]] = []
        for kind, wanted in (("audio", update.audio), ("video", update.video)):
            if wanted is None:
                continue
            current = subscription.tracks.get(kind)
            if current is None:
                raise ConferenceError(f"Subscription has no {kind} track")
            stream = room.streams.get(wanted.from_) if wanted.from_ else current.stream
            if stream is None:
                raise ConferenceError("Stream does NOT exist")
            if not stream.has_track(kind):
                raise ConferenceError(f"Stream has no {kind} track")
            fmt: VideoFormat | str
            if kind == "video":
                with refusals():
                    fmt = resolve_video_request(
                        track_info(stream.info(), "video"), wanted.parameters
                    )
            else:
                fmt = stream.codec("audio") or "opus"
            changes.append((kind, stream, fmt))
        with refusals():
            for kind, stream, fmt in changes:
                subscription.switch(kind, stream, fmt)
        return None

    async def text(self, ref: ParticipantRef, request: TextRequest) -> None:
        """A text message to everyone else in the room or to one participant."""
        room, participant = self._participant(ref)
        limit = self.settings.text_max_length
        if len(request.message) > limit:
            raise ConferenceError(f"Text is too long (at most {limit} characters)")
        if request.to == "all":
            room.notify_all(
                "text",
                {"from": participant.id, "to": "all", "message": request.message},
                exclude=participant.id,
            )
            return
        target = room.participants.get(request.to)
        if target is None:
            raise ConferenceError("Target participant does NOT exist")
        target.notify("text", {"from": participant.id, "to": "me", "message": request.message})

    # -- per-stream recordings --------------------------------------------

    async def start_per_stream_recording(
        self, service_id: str, room: str, request: PerStreamRecordingRequest
    ) -> dict[str, Any]:
        """Record each forward stream of a running room (or of one participant, or one
        stream) in its own file, on one clock, with a timeline sidecar (perstream.py)."""
        resolved = await self._resolve(service_id, room)
        await self._check_recording_allowed(service_id)
        if resolved.loaded is None:
            raise ConferenceError("The room has no streams to record (nobody is in it)")
        scope = PerStreamScope(participant=request.participant, stream=request.stream)
        await self.context.recount_elsewhere()
        with refusals():
            recording = resolved.loaded.per_stream.start(request.container, scope)
        return recording.describe()

    # -- streaming-ins (OWT's REST /rooms/{room}/streaming-ins) ----------------

    async def add_streaming_in(
        self, service_id: str, room: str, request: StreamingInRequest
    ) -> dict[str, Any]:
        """Pull an outside source into a room as a forward stream (the room is loaded if
        nobody is in it). Answers once the source is open and probed: its REST object.
        ConferenceError: 502 if the source cannot be reached or read (after the open
        timeout), 400 for a codec or a kind the room cannot take; nothing is kept."""
        resolved = await self._resolve(service_id, room)
        loaded = await self.find_room(service_id, resolved.id, create=False)
        if loaded is None:
            raise not_found("Room not found", ErrorCode.ROOM_NOT_FOUND)
        if request.scheme == "file":
            self._check_local_source(request.url)
        stream = StreamingIn(
            loaded.id,
            SourceOptions(
                url=request.url,
                scheme=request.scheme,
                transport_protocol=request.transport_protocol,
                buffer_size=request.buffer_size,
            ),
            {"audio": request.audio, "video": request.video},
            request.attributes,
            **loaded.media_settings(),
            keyframe_min_interval=self.settings.keyframe_min_interval,
        )
        loaded.reserve_streaming_in(stream)
        try:
            await stream.connect()
            if loaded.closed or stream.closed:
                raise IngestError("The streaming-in was stopped while it connected")
        except (IngestError, IngestPlanError) as exc:
            loaded.streaming_in_gone(stream.id)
            logger.info("streaming-in refused: %s", exc, extra=stream.log_ids)
            if isinstance(exc, IngestPlanError):
                raise ConferenceError(str(exc)) from None
            raise ConferenceError(str(exc), ErrorCode.CLOUD, 502) from None
        except BaseException:
            loaded.streaming_in_gone(stream.id)
            raise
        loaded.add_streaming_in(stream)
        return stream.describe()

    def _check_local_source(self, url: str) -> None:
        # A service's administrator reads media files of the server's recordings, nothing
        # else on its disk.
        path = Path(url.removeprefix("file://").removeprefix("file:"))
        allowed = self.settings.recording_dir.resolve()
        if not path.resolve().is_relative_to(allowed):
            raise forbidden(
                "connection.url: a local file must be under the server's recording directory"
            )

    async def list_streaming_ins(self, service_id: str, room: str) -> list[dict[str, Any]]:
        """The room's streaming-ins that are streams (connected), as REST objects."""
        loaded = (await self._resolve(service_id, room)).loaded
        if loaded is None:
            return []
        return [s.describe() for s in loaded.streaming_ins.values() if s.id in loaded.streams]

    async def get_streaming_in(self, service_id: str, room: str, stream_id: str) -> dict[str, Any]:
        loaded = (await self._resolve(service_id, room)).loaded
        stream = loaded.streaming_ins.get(stream_id) if loaded is not None else None
        if loaded is None or stream is None or stream.id not in loaded.streams:
            raise not_found("Streaming-in not found", ErrorCode.STREAM_NOT_FOUND)
        return stream.describe()

    async def remove_streaming_in(self, service_id: str, room: str, stream_id: str) -> None:
        """Stop pulling: the stream is removed (its subscriptions end with "Source stream
        loss", as OWT's DELETE of a streaming-in does)."""
        loaded = (await self._resolve(service_id, room)).loaded
        stream = loaded.streaming_ins.get(stream_id) if loaded is not None else None
        if loaded is None or stream is None:
            raise not_found("Streaming-in not found", ErrorCode.STREAM_NOT_FOUND)
        if stream.id in loaded.streams:
            loaded.remove_stream(stream.id)
        else:
            stream.close()  # still connecting: its POST fails
        logger.info("streaming-in removed", extra=stream.log_ids)

    # -- connection quality (the conference page's indicators) -------------------

    async def connection_quality(self, ref: ParticipantRef) -> list[dict[str, Any]]:
        """The figures each participant of the caller's room is judged by: ``[{id, loss,
        rtt, limited}]`` (linkquality.py; None where a figure is not measured)."""
        room, _ = self._participant(ref)
        return [
            {"id": p.id, **p.link_figures().to_json()} for p in list(room.participants.values())
        ]


def track_info(info: dict[str, Any], kind: str) -> dict[str, Any]:
    """The first track of ``kind`` in a stream's info (``media.tracks``), or {}."""
    for track in info.get("media", {}).get("tracks", []):
        if track.get("type") == kind:
            return dict(track)
    return {}


def check_origin(service: ServiceRecord, origin: str | None) -> None:
    """Refuse a browser whose Origin is not on the service's list (if it has one)."""
    allowed = service.allowed_origins
    if origin and allowed and "*" not in allowed and origin not in allowed:
        logger.warning("origin refused", extra={"service": service.id, "origin": origin})
        raise forbidden(f"Origin {origin} is not allowed")

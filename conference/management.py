"""The management calls of the room service: rooms, tokens, participants, streams,
recordings, streaming-outs, views and services, by service and room (OWT's REST API
and the demo app server call them).

Every call names the calling service (a service sees only its own rooms) and the room
by its id or by a name only one of its rooms has. Results are OWT's JSON objects
(plain dicts); refusals are ConferenceError with OWT's code and an HTTP status.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tessera.media.mediasource import Stream
from tessera.mixer.activeaudio import ActiveAudioStream
from tessera.recorder.outputpatch import parse_output_patch
from tessera.recorder.perstream import PerStreamRecording
from tessera.recorder.recording import MediaChoice, Recording, StoredRecording

from .errors import ConferenceError, ErrorCode, conflict, forbidden, not_found
from .participant import Participant
from .permissions import updated_permission
from .records import (
    DuplicateError,
    NotFoundError,
    RoomRecord,
    ServiceRecord,
    new_room_id,
)
from .requests import OutputMedia, RecordingRequest, StreamingOutRequest, TokenResult
from .room import Room
from .roomoptions import RoomOptions, parse_room_options
from .tokens import issue_token
from .tree import ConferenceTree, refusals

logger = logging.getLogger(__name__)

# A paged list of rooms gathers stored rooms this many at a time.
ROOMS_CHUNK = 1000
_LAYOUT_STREAM_RE = re.compile(r"^/info/layout/(\d+)/stream$")


def room_json(room_id: str, name: str, options: dict[str, Any]) -> dict[str, Any]:
    """OWT's room object: ``_id`` (and ``id``) plus the options."""
    return {"_id": room_id, "id": room_id, **options, "name": name}


def media_choice(media: OutputMedia) -> MediaChoice:
    return MediaChoice(
        audio_from=media.audio_from,
        video_from=media.video_from,
        video_parameters=media.video_parameters,
        video_format=media.video_format,
    )


class ManagementCalls(ConferenceTree):
    """Rooms and what is in them, as a service's administrator manages them."""

    # -- rooms ----------------------------------------------------------------

    async def room_id(self, service_id: str, room: str) -> str:
        """The id of the service's room named by id or by a name only it has (404, 409)."""
        return (await self._resolve(service_id, room)).id

    async def create_room(self, service_id: str, options: RoomOptions) -> dict[str, Any]:
        """Store a new room (named ``options.name``); its object."""
        limit = self.settings.rooms_per_service
        if await self.store.count_rooms(service_id) >= limit:
            raise forbidden(f"Too many rooms for this service (at most {limit})")
        record = RoomRecord(
            id=new_room_id(), service_id=service_id, name=options.name, options=options.to_json()
        )
        try:
            await self.store.create_room(record)
        except NotFoundError:
            raise ConferenceError(
                "The service no longer exists", ErrorCode.AUTHENTICATION, 401
            ) from None
        return room_json(record.id, record.name, record.options)

    async def list_rooms(
        self, service_id: str, paging: tuple[int, int] | None = None
    ) -> list[dict[str, Any]]:
        """The service's stored rooms in creation order, then its ad-hoc rooms alive now;
        one page (1-based ``(page, per_page)``) of them if ``paging``."""
        adhoc = await self.live_adhoc_rooms(service_id)
        if paging is None:
            stored = await self._all_stored(service_id)
            rooms = [room_json(r.id, r.name, r.options) for r in stored]
            return rooms + adhoc
        page, per_page = paging
        start = (page - 1) * per_page
        stored = await self.store.list_rooms(service_id, page, per_page)
        rooms = [room_json(r.id, r.name, r.options) for r in stored]
        if len(stored) < per_page:
            stored_total = (
                start + len(stored) if stored else len(await self._all_stored(service_id))
            )
            offset = max(0, start - stored_total)
            rooms += adhoc[offset : offset + per_page - len(stored)]
        return rooms

    async def live_adhoc_rooms(self, service_id: str) -> list[dict[str, Any]]:
        """The room objects of the service's ad-hoc rooms alive now, by id (here: the rooms
        this process hosts; a cluster's portal reads them from the store)."""
        service = self.services.get(service_id)
        adhoc = sorted(
            (
                room
                for room in (service.rooms.values() if service is not None else ())
                if not room.persistent and not room.closed
            ),
            key=lambda room: room.id,
        )
        return [room_json(r.id, r.name, r.options_json()) for r in adhoc]

    async def _all_stored(self, service_id: str) -> list[RoomRecord]:
        records: list[RoomRecord] = []
        page = 1
        while True:
            chunk = await self.store.list_rooms(service_id, page, ROOMS_CHUNK)
            records.extend(chunk)
            if len(chunk) < ROOMS_CHUNK:
                return records
            page += 1

    async def get_room(self, service_id: str, room: str, *, stored: bool = False) -> dict[str, Any]:
        """The room object. ``stored``: the room must have stored options (409 for an
        ad-hoc room, which a join token made)."""
        resolved = await self._resolve(service_id, room)
        if resolved.record is not None:
            return room_json(resolved.id, resolved.record.name, resolved.record.options)
        if stored:
            raise conflict(
                "Room is an ad-hoc room (created by a join token) and has no stored options "
                "to change; create a room with POST /v1/rooms to configure it"
            )
        assert resolved.loaded is not None
        return room_json(resolved.id, resolved.loaded.name, resolved.loaded.options_json())

    async def update_room(self, service_id: str, room: str, options: RoomOptions) -> dict[str, Any]:
        """Replace a stored room's options (and name); a running room takes them at once."""
        resolved = await self._resolve(service_id, room)
        if resolved.record is None:
            await self.get_room(service_id, room, stored=True)  # the ad-hoc room's 409
        loaded = self._loaded(service_id, resolved.id)
        if loaded is not None:
            loaded.check_options(options)  # a 409 naming what cannot change live; nothing stored
        updated = RoomRecord(
            id=resolved.id, service_id=service_id, name=options.name, options=options.to_json()
        )
        try:
            await self.store.update_room(updated)
        except NotFoundError:
            raise not_found("Room not found", ErrorCode.ROOM_NOT_FOUND) from None
        loaded = self._loaded(service_id, resolved.id)
        if loaded is not None:
            loaded.update_options(options)
        logger.info("room options updated", extra={"service": service_id, "room": resolved.id})
        return room_json(updated.id, updated.name, updated.options)

    async def delete_room(self, service_id: str, room: str) -> None:
        """Forget a stored room; a running room closes (its participants are dropped)."""
        resolved = await self._resolve(service_id, room)
        if resolved.record is not None:
            await self.store.delete_room(service_id, resolved.id)
        if resolved.loaded is not None:
            await self.close_room(resolved.loaded, "the room was deleted")

    # -- tokens -----------------------------------------------------------------

    async def issue_token(
        self, service_id: str, room: str, user: str, role: str, *, adhoc: bool = False
    ) -> TokenResult:
        """A join token for ``user`` with ``role``, one of the room's roles.

        The room is one the service has (named by id, or by a name only one room has),
        and the token names it by id. ``adhoc``: the room may also be one a join will
        create (the service allows ad-hoc rooms; the default options' roles), and the
        token names it as given.
        """
        service = await self.store.get_service(service_id)
        if service is None:
            raise not_found("Service not found", ErrorCode.SERVICE_NOT_FOUND)
        if adhoc:
            record = await self.store.get_room(service_id, room) or next(
                iter(await self.store.find_rooms_by_name(service_id, room, limit=1)), None
            )
            loaded = self.loaded_room(service_id, room)
            if record is None and loaded is None and not service.adhoc_rooms:
                raise not_found(
                    f"Room {room} does not exist (ad-hoc rooms are off)", ErrorCode.ROOM_NOT_FOUND
                )
            if loaded is not None:
                options = loaded.options
            else:
                # An ad-hoc room gets the default options when it is created at login.
                options = parse_room_options(record.options if record else {"name": room})
            claim = room
            known: Room | RoomRecord | None = loaded if loaded is not None else record
            room_id = known.id if known is not None else None
            room_name = known.name if known is not None else room
        else:
            resolved = await self._resolve(service_id, room)
            if resolved.loaded is not None:
                options = resolved.loaded.options
            else:
                assert resolved.record is not None
                options = parse_room_options(resolved.record.options)
            claim = room_id = resolved.id
            room_name = resolved.name
        if options.role(role) is None:
            roles = ", ".join(r.role for r in options.roles)
            raise ConferenceError(f"role {role[:64]!r} is not a role of this room (roles: {roles})")
        try:
            token = issue_token(
                service_id=service.id,
                key=service.key,
                room=claim,
                user=user,
                role=role,
                host=self.settings.advertised_host(),
                secure=self.settings.secure,
                lifetime=self.settings.token_lifetime,
            )
        except ValueError as exc:
            raise ConferenceError(str(exc)) from None
        return TokenResult(token=token, room_id=room_id, room_name=room_name)

    # -- participants -------------------------------------------------------------

    async def _participant_of(
        self, service_id: str, room: str, participant_id: str
    ) -> tuple[Room, Participant]:
        loaded = (await self._resolve(service_id, room)).loaded
        participant = loaded.participants.get(participant_id) if loaded is not None else None
        if loaded is None or participant is None:
            raise not_found("Participant not found", ErrorCode.PARTICIPANT_NOT_FOUND)
        return loaded, participant

    async def list_participants(self, service_id: str, room: str) -> list[dict[str, Any]]:
        """OWT's ParticipantDetail ``{id, user, role, permission}`` of everyone in the room."""
        loaded = (await self._resolve(service_id, room)).loaded
        participants = list(loaded.participants.values()) if loaded is not None else []
        return [p.detail() for p in participants]

    async def get_participant(
        self, service_id: str, room: str, participant_id: str
    ) -> dict[str, Any]:
        return (await self._participant_of(service_id, room, participant_id))[1].detail()

    async def update_permission(
        self, service_id: str, room: str, participant_id: str, operations: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """Apply OWT's PermissionUpdate operations, all or none."""
        _, participant = await self._participant_of(service_id, room, participant_id)
        participant.permission = updated_permission(participant.permission, operations)
        logger.info(
            "participant permission set to %s", participant.permission, extra=participant.log_ids
        )
        return participant.detail()

    async def drop_participant(
        self, service_id: str, room: str, participant_id: str, reason: str
    ) -> None:
        """Remove a participant: its front end ends its session (``drop``), it leaves."""
        loaded, participant = await self._participant_of(service_id, room, participant_id)
        await self._drop(loaded, participant, reason)
        logger.info("participant dropped: %s", reason, extra=participant.log_ids)

    # -- streams ----------------------------------------------------------------

    async def _stream_of(self, service_id: str, room: str, stream_id: str) -> tuple[Room, Stream]:
        loaded = (await self._resolve(service_id, room)).loaded
        stream = loaded.streams.get(stream_id) if loaded is not None else None
        if loaded is None or stream is None:
            raise not_found("Stream not found", ErrorCode.STREAM_NOT_FOUND)
        return loaded, stream

    async def list_streams(self, service_id: str, room: str) -> list[dict[str, Any]]:
        """The room's streams (their StreamInfo, as the Client-Portal protocol has it)."""
        loaded = (await self._resolve(service_id, room)).loaded
        return [s.info() for s in loaded.streams.values()] if loaded is not None else []

    async def get_stream(self, service_id: str, room: str, stream_id: str) -> dict[str, Any]:
        return (await self._stream_of(service_id, room, stream_id))[1].info()

    async def patch_stream(
        self, service_id: str, room: str, stream_id: str, operations: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """OWT's StreamUpdate operations (track status, inViews, layout), all or none."""
        loaded, stream = await self._stream_of(service_id, room, stream_id)
        # Validate everything first: a patch applies whole or not at all.
        changes = [
            _stream_change(loaded, stream, operation, f"[{index}]")
            for index, operation in enumerate(operations)
        ]
        with refusals():
            for change in changes:
                change()
        return stream.info()

    async def delete_stream(self, service_id: str, room: str, stream_id: str) -> None:
        """Unpublish a stream (its subscriptions end with "Source stream loss")."""
        loaded, stream = await self._stream_of(service_id, room, stream_id)
        if stream.type != "forward" or isinstance(stream, ActiveAudioStream):
            raise ConferenceError(
                "Only a published stream can be removed; a mixed stream is a view, "
                "an active audio stream (selectActiveAudio) the room's own"
            )
        owner = loaded.owner_of(stream.id)
        if owner is not None:
            owner.end_session(stream.id)
        else:
            loaded.remove_stream(stream.id)
        logger.info("stream removed by management", extra={**loaded.log_ids, "stream": stream.id})

    # -- views ------------------------------------------------------------------

    async def set_view_template(self, room_id: str, label: str | None, base: str) -> dict[str, Any]:
        """Switch a view (the room's first if ``label`` is None) to OWT's ``fluid`` or
        ``lecture`` regions while it runs: ``{view, base, layout}``."""
        room = self.room(room_id)
        if room is None:
            raise conflict("The room is closed")
        label = label or next(iter(room.views), None)
        view = room.views.get(label) if label is not None else None
        if view is None:
            raise not_found(f"View {str(label)[:64]} does not exist in this room")
        with refusals():
            view.set_template_base(base)
        logger.info("view layout set", extra={**view.log_ids, "base": base})
        return {"view": view.label, "base": base, "layout": view.layout.to_json()}

    async def view_template(self, room_id: str, label: str | None) -> dict[str, Any]:
        """A running view's region set now (the room's first view if ``label`` is None):
        ``{view, base, layout}``; ``base`` is ``presentation`` while a screen is shown."""
        room = self.room(room_id)
        if room is None:
            raise conflict("The room is closed")
        label = label or next(iter(room.views), None)
        view = room.views.get(label) if label is not None else None
        if view is None:
            raise not_found(f"View {str(label)[:64]} does not exist in this room")
        base = view.layout.templates.base
        return {"view": view.label, "base": base, "layout": view.layout.to_json()}

    # -- recordings ---------------------------------------------------------------

    async def _check_recording_allowed(self, service_id: str) -> None:
        service = await self.store.get_service(service_id)
        if service is None or not service.recording:
            raise forbidden("Recording is switched off for this service")

    async def start_recording(
        self, service_id: str, room: str, request: RecordingRequest
    ) -> dict[str, Any]:
        """Record streams of a running room; OWT's recording object."""
        resolved = await self._resolve(service_id, room)
        await self._check_recording_allowed(service_id)
        if resolved.loaded is None:
            raise ConferenceError("The room has no streams to record (nobody is in it)")
        await self.context.recount_elsewhere()
        with refusals():
            recording = resolved.loaded.start_recording(
                request.container, media_choice(request.media)
            )
        return recording.describe()

    async def record_view(
        self, service_id: str, room_id: str, label: str | None, container: str
    ) -> dict[str, Any]:
        """Record a view (the first if ``label`` is None): its mixed audio and video."""
        room = self.room(room_id)
        if room is None or room.service_id != service_id:
            raise conflict("The room is closed")
        await self._check_recording_allowed(service_id)
        label = label or next(iter(room.views), None)
        view = room.views.get(label) if label is not None else None
        if view is None:
            raise not_found(f"View {str(label)[:64]} does not exist in this room")
        await self.context.recount_elsewhere()
        media = MediaChoice(
            audio_from=view.id if view.has_track("audio") else None,
            video_from=view.id if view.has_track("video") else None,
        )
        with refusals():
            recording = room.start_recording(container, media)
        return recording.describe()

    async def _recording_of(
        self, service_id: str, room: str, recording_id: str
    ) -> tuple[str, Recording | PerStreamRecording | StoredRecording]:
        try:
            room_id = (await self._resolve(service_id, room)).id
        except ConferenceError as exc:
            # The room ended (ad-hoc) or was deleted: its recordings stay reachable by its id.
            if exc.code != ErrorCode.ROOM_NOT_FOUND:
                raise
            stored = await self.store.get_recording(service_id, recording_id)
            if stored is None or stored[1] != room:
                raise
            return room, StoredRecording(stored[0], stored[2], stored[3])
        recording = await self.find_recording(service_id, room_id, recording_id)
        if recording is None:
            raise not_found("Recording not found")
        return room_id, recording

    async def list_recordings(
        self, service_id: str, room: str, state: str = "all"
    ) -> list[dict[str, Any]]:
        """The room's recordings in ``state`` ("all": every one), running ones first; those
        of a room that ended or was deleted, by its id, for as long as the store has them."""
        try:
            room_id = (await self._resolve(service_id, room)).id
        except ConferenceError as exc:
            if exc.code != ErrorCode.ROOM_NOT_FOUND:
                raise
            stored = await self.store.list_recordings(service_id, room)
            if not stored:
                raise
            room_id = room
        recordings = await self.recordings_of(service_id, room_id)
        return [r.describe() for r in recordings if state in ("all", r.state)]

    # -- recordings of a service, whatever became of their rooms ----------------------

    async def _service_recording(
        self, service_id: str, recording_id: str
    ) -> tuple[str, Recording | PerStreamRecording | StoredRecording]:
        """(room id, recording) of the service's recording with that id."""
        service = self.services.get(service_id)
        for room in service.rooms.values() if service is not None else ():
            running = room.recordings.get(recording_id)
            if running is not None:
                return room.id, running
        stored = await self.store.get_recording(service_id, recording_id)
        if stored is None:
            raise not_found("Recording not found")
        return stored[1], StoredRecording(stored[0], stored[2], stored[3])

    async def service_recordings(self, service_id: str, state: str = "all") -> list[dict[str, Any]]:
        """Every recording of the service in ``state`` ("all": every one), oldest first,
        each with the id of its ``room`` (which may have ended or been deleted)."""
        service = self.services.get(service_id)
        running = {
            rec_id: rec
            for room in (service.rooms.values() if service is not None else ())
            for rec_id, rec in room.recordings.items()
        }
        listed = []
        for rec_id, room_id, info, file in await self.store.list_service_recordings(service_id):
            recording = running.get(rec_id) or StoredRecording(rec_id, info, file)
            if state in ("all", recording.state):
                listed.append({**recording.describe(), "room": room_id})
        return listed

    async def service_recording(self, service_id: str, recording_id: str) -> dict[str, Any]:
        """One recording of the service by id alone, with the id of its ``room``."""
        room_id, recording = await self._service_recording(service_id, recording_id)
        return {**recording.describe(), "room": room_id}

    async def service_recording_file(self, service_id: str, recording_id: str) -> Path:
        """The file of one of the service's finished recordings, by id alone."""
        return _finished_file((await self._service_recording(service_id, recording_id))[1])

    async def get_recording(self, service_id: str, room: str, recording_id: str) -> dict[str, Any]:
        return (await self._recording_of(service_id, room, recording_id))[1].describe()

    async def patch_recording(
        self, service_id: str, room: str, recording_id: str, operations: Any
    ) -> dict[str, Any]:
        """OWT's SubscriptionControlInfo on a running recording: sources, parameters, status."""
        room_id, recording = await self._recording_of(service_id, room, recording_id)
        with refusals():
            patch = parse_output_patch(operations)
        loaded = self.room(room_id)
        if loaded is None or not isinstance(recording, Recording | PerStreamRecording):
            raise ConferenceError(f"The recording is not running (it is {recording.state})")
        if recording.state != "recording":
            raise ConferenceError(f"The recording is not running (it is {recording.state})")
        with refusals():
            recording.update(
                loaded.streams,
                patch.sources.get("audio"),
                patch.sources.get("video"),
                patch.parameters,
                patch.status,
            )
        logger.info("recording updated", extra={"room": room_id, "recording": recording.id})
        return recording.describe()

    async def stop_recording(self, service_id: str, room: str, recording_id: str) -> dict[str, Any]:
        """Stop a recording (its file is finalised); it is then listed as stopped."""
        _, recording = await self._recording_of(service_id, room, recording_id)
        await recording.stop()
        return recording.describe()

    async def recording_file(self, service_id: str, room: str, recording_id: str) -> Path:
        """The file of a finished recording."""
        return _finished_file((await self._recording_of(service_id, room, recording_id))[1])

    # -- streaming-outs -------------------------------------------------------------

    async def start_streaming_out(
        self, service_id: str, room: str, request: StreamingOutRequest
    ) -> dict[str, Any]:
        """Push streams of a running room out; OWT's streaming-out object."""
        loaded = (await self._resolve(service_id, room)).loaded
        if loaded is None:
            raise ConferenceError("The room has no streams (nobody is in it)")
        await self.context.recount_elsewhere()
        with refusals():
            out = loaded.start_streaming_out(
                request.protocol, request.url, media_choice(request.media), request.parameters
            )
        return out.describe()

    async def list_streaming_outs(self, service_id: str, room: str) -> list[dict[str, Any]]:
        return await self.streaming_outs_of(service_id, (await self._resolve(service_id, room)).id)

    async def _streaming_out_info(
        self, service_id: str, room: str, streaming_id: str
    ) -> tuple[str, dict[str, Any]]:
        room_id = (await self._resolve(service_id, room)).id
        found = next(
            (
                o
                for o in await self.streaming_outs_of(service_id, room_id)
                if o["id"] == streaming_id
            ),
            None,
        )
        if found is None:
            raise not_found("Streaming-out not found")
        return room_id, found

    async def get_streaming_out(
        self, service_id: str, room: str, streaming_id: str
    ) -> dict[str, Any]:
        return (await self._streaming_out_info(service_id, room, streaming_id))[1]

    async def patch_streaming_out(
        self, service_id: str, room: str, streaming_id: str, operations: Any
    ) -> dict[str, Any]:
        """OWT's SubscriptionControlInfo on a running streaming-out."""
        room_id, info = await self._streaming_out_info(service_id, room, streaming_id)
        with refusals():
            patch = parse_output_patch(operations)
        loaded = self.room(room_id)
        out = self.running_streaming_out(service_id, room_id, streaming_id)
        if loaded is None or out is None or out.state not in ("connecting", "streaming"):
            state = out.state if out is not None else info.get("state")
            raise ConferenceError(f"The streaming-out is not running (it is {state})")
        with refusals():
            out.update(loaded.streams, patch)
        return out.describe()

    async def stop_streaming_out(self, service_id: str, room: str, streaming_id: str) -> None:
        """Stop a streaming-out (idempotent: one that ended stays as it ended)."""
        room_id, _ = await self._streaming_out_info(service_id, room, streaming_id)
        out = self.running_streaming_out(service_id, room_id, streaming_id)
        if out is not None:
            await out.stop()

    # -- services -----------------------------------------------------------------

    async def list_services(self) -> list[ServiceRecord]:
        return await self.store.list_services()

    async def create_service(self, service: ServiceRecord) -> None:
        """Store a new service (409 if one has its id)."""
        try:
            await self.store.create_service(service)
        except DuplicateError:
            raise conflict(f"Service {service.id} already exists") from None

    async def service_rooms(self, service_id: str) -> list[dict[str, Any]]:
        """The stored rooms of a service (as many as it may have), as room objects."""
        rooms = await self.store.list_rooms(service_id, 1, self.settings.rooms_per_service)
        return [room_json(r.id, r.name, r.options) for r in rooms]

    async def delete_service(self, service_id: str) -> None:
        """Forget a service: its rooms close (participants dropped), its records go."""
        # Out of the store first: its key no longer opens anything while its rooms close.
        await self.store.delete_service(service_id)
        service = self.services.pop(service_id, None)
        if service is not None:
            for room in list(service.rooms.values()):
                await self.close_room(room, "the service was deleted")
            await service.close("the service was deleted")
        # Closing the rooms saved their recordings' last state: forget those too.
        await self.store.delete_service(service_id)


def _stream_change(
    room: Room, stream: Stream, operation: dict[str, Any], where: str
) -> Callable[[], None]:
    """Check one OWT StreamUpdate and return the change to make, or raise ConferenceError."""
    path, op, value = operation["path"], operation["op"], operation["value"]
    if isinstance(stream, ActiveAudioStream):
        # It carries whoever is loudest: nothing of it is the client's to change.
        raise ConferenceError(
            f"{where}: an active audio stream (selectActiveAudio) cannot be changed"
        )
    if path in ("/media/audio/status", "/media/video/status"):
        kind = path.split("/")[2]
        if op != "replace":
            raise ConferenceError(f"{where}.op: {path} takes 'replace'")
        if value not in ("active", "inactive"):
            raise ConferenceError(f"{where}.value: {path} takes 'active' or 'inactive'")
        if stream.type != "forward":
            raise ConferenceError(f"{where}: only a forward stream's track status can be changed")
        if not stream.has_track(kind):
            raise ConferenceError(f"{where}: the stream has no {kind} track")
        return lambda: room.set_track_status(stream.id, kind, value == "active")
    if path == "/info/inViews":
        if stream.type != "forward":
            raise ConferenceError(f"{where}: only forward streams are mixed into views")
        if op not in ("add", "remove"):
            raise ConferenceError(f"{where}.op: /info/inViews takes 'add' or 'remove'")
        if not isinstance(value, str) or value not in room.views:
            raise ConferenceError(f"{where}.value: view {str(value)[:64]!r} does NOT exist")
        if op == "add":
            return lambda: room.mix(stream.id, value)
        return lambda: room.unmix(stream.id, value)
    match = _LAYOUT_STREAM_RE.match(path)
    if path == "/info/layout" or match:
        view = room.views.get(getattr(stream, "label", ""))
        if stream.type != "mixed" or view is None:
            raise ConferenceError(f"{where}: only a mixed stream has a layout")
        if op != "replace":
            raise ConferenceError(f"{where}.op: {path} takes 'replace'")
        if match:
            layout = view.layout.to_json()
            index = int(match.group(1))
            if index >= len(layout):
                raise ConferenceError(f"{where}.path: the layout has no entry {index}")
            if not isinstance(value, str):
                raise ConferenceError(f"{where}.value: a stream id is required")
            layout[index] = {**layout[index], "stream": value}
            value = layout
        if not isinstance(value, list):
            raise ConferenceError(f"{where}.value: a list of {{stream, region}} is required")
        trial = copy.deepcopy(view.layout)
        try:
            trial.apply(value)
        except ValueError as exc:  # LayoutError
            raise ConferenceError(f"{where}.value: {exc}") from None
        new_layout = value
        return lambda: view.apply_layout(new_layout)
    raise ConferenceError(
        f"{where}.path: {path[:80]!r} cannot be changed; expected /media/audio/status, "
        "/media/video/status, /info/inViews or /info/layout"
    )


def _finished_file(recording: Recording | PerStreamRecording | StoredRecording) -> Path:
    """The file of a recording that finished (409 while it runs, 404 if it is gone)."""
    if recording.state == "recording":
        raise conflict("The recording is still running; stop it first")
    if not recording.path.is_file():
        raise not_found("The recording has no file")
    return recording.path

"""PerStreamRecordings: a room's per-stream recordings, started and fed as streams come.

A per-stream recording (recorder/perstream.py) takes each forward stream of the room, of
a participant or one stream, in a file of its own. The room owns this helper and tells
it what happens (a stream came, a file finished, a participant left, the options
changed); it asks the room to start each file as an ordinary recording, so that limits,
the disk's reserve, the store and crash recovery apply to every file.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from tessera.media.mediasource import Stream
from tessera.recorder.perstream import PerStreamRecording, PerStreamScope
from tessera.recorder.recording import MediaChoice, Recording
from tessera.webrtc_agent.forwardstream import ForwardStream

from .background import spawn
from .context import ConferenceContext
from .errors import ConferenceError, ErrorCode, forbidden
from .participant import Participant
from .roomoptions import RoomOptions

logger = logging.getLogger(__name__)


class RecordedRoom(Protocol):
    """What of its room this helper reads and asks (a protocol keeps the import one-way)."""

    id: str
    service_id: str
    participants: dict[str, Participant]
    streams: dict[str, Stream]
    recordings: dict[str, Recording | PerStreamRecording]
    observers: list[Callable[[str, Any], None]]
    closing: str | None
    closed: bool

    @property
    def options(self) -> RoomOptions: ...
    @property
    def log_ids(self) -> dict[str, str]: ...
    def forward_stream_count(self) -> int: ...
    def start_recording(
        self, container: str, media: MediaChoice, part_of: PerStreamRecording | None = None
    ) -> Recording: ...


class PerStreamRecordings:
    """The per-stream recordings of one room (they live in ``room.recordings``, beside
    their files), and the one ``autoRecord.participants`` starts."""

    def __init__(
        self,
        room: RecordedRoom,
        context: ConferenceContext,
        *,
        allowed: Callable[[], Awaitable[bool]],
        save: Callable[[PerStreamRecording], None],
    ) -> None:
        self._room = room
        self._context = context
        self._allowed = allowed  # the service's recording setting, read from the store
        self._save = save  # its record is kept in the store
        self.auto: PerStreamRecording | None = None
        self._auto_starting = False

    def running(self) -> list[PerStreamRecording]:
        return [r for r in self._room.recordings.values() if isinstance(r, PerStreamRecording)]

    # -- starting -----------------------------------------------------------

    def start(self, container: str, scope: PerStreamScope) -> PerStreamRecording:
        """Record each forward stream that ``scope`` takes in its own file, those here now
        and those to come, until stopped. A file refused now (a limit, the disk's reserve,
        a container that cannot hold the codecs) refuses the whole request (ConferenceError,
        ParameterError, MuxerError); one refused later is named in the sidecar and the log."""
        room = self._room
        if scope.participant is not None and scope.participant not in room.participants:
            raise ConferenceError(
                f"Participant {scope.participant[:64]} is not in this room",
                ErrorCode.NOT_FOUND,
                404,
            )
        if scope.stream is not None and not isinstance(
            room.streams.get(scope.stream), ForwardStream
        ):
            raise ConferenceError(
                f"Stream {scope.stream[:64]} is not a forward stream of this room",
                ErrorCode.NOT_FOUND,
                404,
            )
        taken = [
            stream
            for stream in room.streams.values()
            if isinstance(stream, ForwardStream) and scope.takes(stream.id, stream.owner)
        ]
        self._check_limits(len(taken))
        settings = self._context.settings
        group = PerStreamRecording(
            uuid.uuid4().hex,
            room.id,
            settings.recording_dir / room.id,
            container,
            scope,
            host=settings.advertised_host(),
            on_finished=self._finished,
        )
        self._snapshot_into(group)
        for other in room.recordings.values():
            if isinstance(other, Recording) and other.part_of is None:
                group.add_alongside(other)
        started: list[Recording] = []
        try:
            group.start()
            for stream in taken:
                started.append(self._start_file(group, stream))
        except Exception:
            # The disk's reserve, a container that cannot hold a stream's codecs, an
            # unwritable directory: nothing of it stays running.
            for recording in started:
                spawn(recording.stop("its per-stream recording was refused"), "a refused file")
            group.abandon()
            raise
        room.recordings[group.id] = group
        room.observers.append(group.observe)
        self._save(group)
        return group

    def _check_limits(self, files: int) -> None:
        """Every file needed now must fit the limits (refused before anything starts)."""
        if not files:
            return
        settings = self._context.settings
        in_room = sum(1 for r in self._room.recordings.values() if isinstance(r, Recording))
        in_service = self._context.running_in_cluster("recording", self._room.service_id)
        for have, limit, where, setting in (
            (in_room, settings.recordings_per_room, "this room", "recordings_per_room"),
            (
                in_service,
                settings.recordings_per_service,
                "this service",
                "recordings_per_service",
            ),
        ):
            if have + files > limit:
                raise forbidden(
                    f"Too many recordings in {where}: {files} more files would make "
                    f"{have + files} (at most {limit}: [limits] {setting})"
                )

    def _start_file(self, group: PerStreamRecording, stream: ForwardStream) -> Recording:
        media = MediaChoice(
            audio_from=stream.id if stream.has_track("audio") else None,
            video_from=stream.id if stream.has_track("video") else None,
        )
        recording = self._room.start_recording(group.container, media, part_of=group)
        owner = self._room.participants.get(stream.owner)
        group.add_file(recording, stream.id, stream.owner, owner.user if owner else "")
        return recording

    def _snapshot_into(self, group: PerStreamRecording) -> None:
        # Who and what is in the room when it starts (as a single recording's timeline).
        timeline = group.timeline
        for participant in self._room.participants.values():
            timeline.add(
                "join", participant=participant.id, user=participant.user, role=participant.role
            )
        for stream in self._room.streams.values():
            if isinstance(stream, ForwardStream):
                timeline.add("stream-add", stream=stream.id, owner=stream.owner, kind="forward")

    # -- what the room tells ------------------------------------------------------

    def stream_came(self, stream: ForwardStream) -> None:
        """A publication is ready: each per-stream recording that takes it gets a file."""
        for group in self.running():
            if group.takes(stream.id, stream.owner) and not group.has_file_for(stream.id):
                try:
                    self._start_file(group, stream)
                except Exception as exc:
                    group.file_refused(stream.id, stream.owner, str(exc))
        if self._room.options.auto_record.participants and self.auto is None:
            self._start_auto()

    def recording_started(self, recording: Recording) -> None:
        """Another recording of the room (a composite) is placed on their clocks."""
        for group in self.running():
            group.add_alongside(recording)

    def file_finished(self, recording: Recording) -> None:
        """One of the files finished (its stream ended, a stop, a failure)."""
        group = self._room.recordings.get(recording.part_of or "")
        if not isinstance(group, PerStreamRecording):
            return
        group.file_finished(recording)
        # One stream's recording has nothing more to take once its file ends.
        if group.scope.stream is not None and group.state == "recording":
            spawn(group.stop(recording.reason), "finishing a per-stream recording")

    def participant_left(self, participant_id: str) -> None:
        """A participant's recording ends when they leave (one who comes back is another)."""
        for group in self.running():
            if group.scope.participant == participant_id:
                spawn(group.stop("the participant left"), "finishing a per-stream recording")

    def _finished(self, group: PerStreamRecording) -> None:
        room = self._room
        room.recordings.pop(group.id, None)
        self._save(group)
        if group.observe in room.observers:
            room.observers.remove(group.observe)
        if self.auto is group:
            self.auto = None

    # -- autoRecord.participants -----------------------------------------------------

    def options_changed(self) -> None:
        """The room's options changed: start or stop the automatic one."""
        wanted = self._room.options.auto_record.participants
        if not wanted and self.auto is not None:
            group, self.auto = self.auto, None
            spawn(group.stop("autoRecord was turned off"), "stopping a per-stream recording")
        elif wanted and self.auto is None and self._room.forward_stream_count():
            self._start_auto()

    def _start_auto(self) -> None:
        if not self._auto_starting:
            self._auto_starting = True
            spawn(self._auto_start(), "starting an automatic per-stream recording")

    async def _auto_start(self) -> None:
        # The service's recording setting is read from the store first (a moment later).
        try:
            allowed = await self._allowed()
        finally:
            self._auto_starting = False
        room = self._room
        wanted = (
            room.options.auto_record.participants
            and self.auto is None
            and room.forward_stream_count()
        )
        if not allowed or not wanted or room.closed or room.closing is not None:
            return
        try:
            self.auto = self.start("auto", PerStreamScope())
        except Exception as exc:
            logger.error(
                "automatic per-stream recording failed to start: %s", exc, extra=room.log_ids
            )

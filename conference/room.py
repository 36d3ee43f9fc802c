"""Room: the single authority on a room's participants, streams, views and outputs."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from tessera.captions.caption import CAPTION_EVENT, Caption
from tessera.captions.captioner import Captioner
from tessera.ingest.streamingin import StreamingIn
from tessera.media.mediasource import Stream
from tessera.mixer.activeaudio import ActiveAudioSelector, ActiveAudioStream
from tessera.mixer.captionoverlay import CaptionOverlay
from tessera.mixer.mixedstream import MixedStream
from tessera.mixer.viewoptions import ViewOptions
from tessera.recorder.diskreserve import DiskReserveReached, check_reserve
from tessera.recorder.perstream import PerStreamRecording
from tessera.recorder.recording import MediaChoice, Recording
from tessera.recorder.streamingout import StreamingOut
from tessera.webrtc_agent.forwardstream import ForwardStream
from tessera.webrtc_agent.publication import Publication
from tessera.webrtc_agent.subscription import Subscription

from .background import spawn
from .context import ConferenceContext
from .errors import ConferenceError, ErrorCode, forbidden
from .optionchanges import OptionChange, plan_option_change
from .participant import Participant
from .perstreamrecordings import PerStreamRecordings
from .roomoptions import RoomOptions

logger = logging.getLogger(__name__)

# OWT's reason, word for word, when a subscription's source goes away: clients may compare it.
SOURCE_STREAM_LOSS = "Source stream loss"
# HTTP 507 Insufficient Storage: a recording refused because its disk is down to the reserve.
INSUFFICIENT_STORAGE = 507


class RoomParent(Protocol):
    """What a room tells the service that owns it (a protocol keeps the import one-way)."""

    async def recording_allowed(self) -> bool:
        """Whether the service may record (its ``recording`` setting, read now)."""
        ...

    def recording_saved(self, room: Room, recording: Recording | PerStreamRecording) -> None:
        """A recording started or finished: its record is kept in the store."""
        ...

    def streaming_out_saved(self, room: Room, out: StreamingOut) -> None:
        """A streaming-out started or finished: its record is kept in the store."""
        ...

    async def room_emptied(self, room: Room) -> None:
        """The last participant left."""
        ...


class Room:
    """A conference room of one service: participants, and the stream registry.

    Forward streams (publications), mixed streams (views) and active audio streams
    live in the same `streams` registry, so a subscription or recording treats them
    alike. The room creates and closes its participants, views, recordings and
    streaming-outs; a recording or streaming-out that finishes leaves it (its record
    stays in the store).
    """

    def __init__(
        self,
        context: ConferenceContext,
        parent: RoomParent,
        service_id: str,
        room_id: str,
        name: str,
        options: RoomOptions,
        *,
        persistent: bool,
    ) -> None:
        self._context = context
        self._parent = parent
        self.service_id = service_id
        self.id = room_id
        self.name = name
        self._options = options
        self._media = self._media_json(options)
        self.persistent = persistent
        self.participants: dict[str, Participant] = {}
        self.streams: dict[str, Stream] = {}
        self.views: dict[str, MixedStream] = {}
        # Called with every participant/stream event (recordings keep timelines).
        self.observers: list[Callable[[str, Any], None]] = []
        # Files, and per-stream recordings (perstream.py) whose files are among them.
        self.recordings: dict[str, Recording | PerStreamRecording] = {}
        self.streaming_outs: dict[str, StreamingOut] = {}
        # Outside sources pulled in (REST streaming-ins): forward streams owned by the room.
        self.streaming_ins: dict[str, StreamingIn] = {}
        self.auto_recording: Recording | None = None
        self._auto_record_starting = False
        # The room's active audio streams, while its selectActiveAudio option is on.
        self.active_audio: ActiveAudioSelector | None = None
        # The room's live captions, while its captions option is on.
        self.captioner: Captioner | None = None
        # Why the room is being closed, from the moment its closing starts (participants
        # are dropped one by one first).
        self.closing: str | None = None
        self.closed = False
        # Each forward stream in its own file (Tessera's perStream, autoRecord.participants).
        self.per_stream = PerStreamRecordings(
            self,
            context,
            allowed=parent.recording_allowed,
            save=lambda group: parent.recording_saved(self, group),
        )
        self._create_views()
        self._apply_active_audio()
        self._apply_captions()

    @property
    def options(self) -> RoomOptions:
        return self._options

    def _media_json(self, options: RoomOptions) -> dict[str, dict[str, Any]]:
        # The media layers read mediaIn, mediaOut and transcoding in OWT's JSON form (as
        # StreamInfo's `optional` is written): made once per options, shared read-only.
        return {
            "media_in": options.media_in.model_dump(mode="json", by_alias=True),
            "media_out": options.media_out.model_dump(mode="json", by_alias=True),
            "transcoding": options.transcoding.model_dump(mode="json", by_alias=True),
        }

    def _create_views(self) -> None:
        for view in self._options.views:
            self._add_view(view)

    def _add_view(self, view: ViewOptions) -> MixedStream:
        settings = self._context.settings
        mixed = MixedStream(
            self.id,
            view,
            media_out=self._media["media_out"],
            transcoding=self._media["transcoding"],
            listener=self,
            keyframe_min_interval=settings.keyframe_min_interval,
            frame_timeout=settings.frame_timeout,
            max_mixed_talkers=settings.max_mixed_talkers,
        )
        self.views[mixed.label] = mixed
        self.streams[mixed.id] = mixed
        return mixed

    # -- options ----------------------------------------------------------

    def check_options(self, options: RoomOptions) -> OptionChange:
        """What new options would change while the room runs; ConferenceError 409 naming
        the field if they cannot apply live (nothing changes)."""
        return plan_option_change(self._options, options)

    def update_options(self, options: RoomOptions) -> None:
        """New options (REST PUT/PATCH) apply at once: views are added, removed (their
        subscriptions end with "Source stream loss") or re-laid; room-wide options take
        effect; clients hear of the streams that came, went or changed."""
        change = self.check_options(options)
        self._options = options
        self._media = self._media_json(options)
        self.name = options.name
        for label in change.removed:
            self._remove_view(label)
        for view in change.relaid:
            self.views[view.label].relayout(view)
        for view in change.added:
            mixed = self._add_view(view)
            logger.info("view added", extra=mixed.log_ids)
            self.notify_stream("add", mixed.id, mixed.info())
            if options.auto_mix:
                for stream in list(self.streams.values()):
                    if isinstance(stream, ForwardStream):
                        self.mix(stream.id, view.label)
        # Views in the order of the options: the first is the default one.
        self.views = {v.label: self.views[v.label] for v in options.views if v.label in self.views}
        if change.media_changed:
            self._media_changed()
        self._apply_active_audio()
        self._apply_captions()
        self._apply_auto_record()
        self.per_stream.options_changed()

    def _remove_view(self, label: str) -> None:
        view = self.views.pop(label)
        for stream in self.streams.values():
            if isinstance(stream, ForwardStream) and label in stream.in_views:
                stream.in_views.remove(label)
        self._output_source_gone(view.id)
        self._end_stream(view.id, f"view {label} was removed from the room's options")
        view.close()

    def _media_changed(self) -> None:
        # Streams offer what the new mediaOut and transcoding allow (their `optional`).
        for stream in list(self.streams.values()):
            if isinstance(stream, ForwardStream | MixedStream):
                stream.media_out = self._media["media_out"]
                stream.transcoding = self._media["transcoding"]
                self.notify_stream("update", stream.id, {"field": ".", "value": stream.info()})

    def _apply_auto_record(self) -> None:
        if not self._options.auto_record.composite and self.auto_recording is not None:
            recording, self.auto_recording = self.auto_recording, None
            spawn(recording.stop("autoRecord was turned off"), "stopping a recording")
        elif (
            self._options.auto_record.composite
            and self.auto_recording is None
            and self.views
            and self.forward_stream_count()
        ):
            self._start_auto_recording()

    def _output_source_gone(self, stream_id: str) -> None:
        """A stream ended: recordings and streaming-outs taking it stop when nothing is left."""
        for recording in list(self.recordings.values()):
            if recording.source_gone(stream_id):
                spawn(recording.stop(), "finishing a recording")
        for out in list(self.streaming_outs.values()):
            if out.source_gone(stream_id):
                spawn(out.stop(), "finishing a streaming-out")

    @property
    def log_ids(self) -> dict[str, str]:
        """The ids a log line about this room carries."""
        return {"service": self.service_id, "room": self.id}

    # -- MixedStreamListener --------------------------------------------

    def layout_changed(self, mixed: MixedStream) -> None:
        if mixed.id in self.streams:
            self.notify_stream(
                "update", mixed.id, {"field": "video.layout", "value": mixed.layout.to_json()}
            )

    def active_input_changed(self, mixed: MixedStream, stream_id: str) -> None:
        if mixed.id in self.streams:
            self.notify_stream("update", mixed.id, {"field": "activeInput", "value": stream_id})

    # -- active audio (selectActiveAudio) -------------------------------

    def active_audio_changed(self, stream: ActiveAudioStream) -> None:
        """ActiveAudioListener: an active audio stream carries another input (or none)."""
        if self.streams.get(stream.id) is stream:
            value = stream.active_input_value()
            self.notify_stream("update", stream.id, {"field": "activeInput", "value": value})

    def _apply_active_audio(self) -> None:
        wanted = self._options.select_active_audio and not self.closed
        if wanted and self.active_audio is None:
            selector = ActiveAudioSelector(self.id, self)
            self.active_audio = selector
            for active in selector.streams:
                self.streams[active.id] = active
                self.notify_stream("add", active.id, active.info())
            for stream in list(self.streams.values()):
                if isinstance(stream, ForwardStream):
                    selector.add_input(stream, stream.owner)
            logger.info("active audio streams on", extra=self.log_ids)
        elif not wanted and self.active_audio is not None:
            selector, self.active_audio = self.active_audio, None
            for active in selector.streams:
                self._end_stream(active.id, "selectActiveAudio was turned off")
            selector.close()
            logger.info("active audio streams off", extra=self.log_ids)

    def _end_stream(self, stream_id: str, why: str) -> None:
        """A stream that is not a publication ends: its subscriptions end with OWT's reason."""
        self.streams.pop(stream_id, None)
        lost = self._subscriptions_of(stream_id)
        for _, subscription in lost:
            subscription.detach_stream(stream_id)
        self.notify_stream("remove", stream_id)
        for participant, subscription in lost:
            participant.session_failed(subscription, SOURCE_STREAM_LOSS)
        logger.info("stream removed: %s", why, extra={**self.log_ids, "stream": stream_id})

    def _subscriptions_of(self, stream_id: str) -> list[tuple[Participant, Subscription]]:
        return [
            (participant, subscription)
            for participant in list(self.participants.values())
            for subscription in list(participant.subscriptions.values())
            if stream_id in subscription.stream_ids()
        ]

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,  # Tessera's: for pages joined by a token (OWT's has no name)
            "views": [view.label for view in self._options.views],
            "participants": [p.describe() for p in self.participants.values()],
            "streams": [s.info() for s in self.streams.values()],
        }

    def options_json(self) -> dict[str, Any]:
        """The room's options in their JSON form (OWT's room object, without the ids)."""
        return self._options.to_json()

    def notify_all(self, event: str, data: Any, exclude: str | None = None) -> None:
        for participant in list(self.participants.values()):
            if participant.id != exclude:
                participant.notify(event, data)

    # -- participants ---------------------------------------------------

    def permission_for(self, role: str) -> dict[str, Any] | None:
        entry = self._options.role(role)
        if entry is None:
            return None
        return {
            "publish": entry.publish.model_dump(mode="json"),
            "subscribe": entry.subscribe.model_dump(mode="json"),
        }

    def is_full(self) -> bool:
        limit = self._options.participant_limit
        return 0 <= limit <= len(self.participants)

    def broadcast(self, event: str, data: Any, *, exclude: str | None = None) -> None:
        """A room event: observers (recordings' timelines) always hear it; participants
        hear it unless the room's `notifying` options turn that kind off."""
        for observer in list(self.observers):
            try:
                observer(event, data)
            except Exception:
                logger.exception("room observer failed", extra=self.log_ids)
        notifying = self._options.notifying
        wanted = (
            notifying.participant_activities
            if event == "participant"
            else (notifying.stream_change)
        )
        if wanted:
            self.notify_all(event, data, exclude)

    def add_participant(self, participant: Participant) -> None:
        self.participants[participant.id] = participant
        self.broadcast(
            "participant",
            {"action": "join", "data": participant.describe()},
            exclude=participant.id,
        )
        logger.info(
            "participant joined",
            extra={
                **self.log_ids,
                "participant": participant.id,
                "user": participant.user,
                "role": participant.role,
            },
        )

    async def remove_participant(self, participant: Participant, reason: str) -> None:
        """The participant left (logout, drop, or it stayed away too long): its sessions end,
        everyone else hears ``leave``; the room's parent hears when it is empty."""
        if self.participants.pop(participant.id, None) is None:
            return
        await participant.close(reason)
        self.broadcast("participant", {"action": "leave", "data": participant.id})
        logger.info("participant left: %s", reason, extra={**participant.log_ids, "reason": reason})
        self.per_stream.participant_left(participant.id)
        if not self.participants:
            await self._parent.room_emptied(self)

    # -- streams --------------------------------------------------------

    def forward_stream_count(self) -> int:
        return sum(1 for s in self.streams.values() if s.type == "forward")

    def input_limit_reached(self) -> bool:
        limit = self._options.input_limit
        pending = sum(len(p.publications) for p in self.participants.values())
        return 0 <= limit <= pending + len(self.streaming_ins)

    def check_input_limit(self) -> None:
        """ConferenceError if the room takes no more inputs (its ``inputLimit``)."""
        if self.input_limit_reached():
            raise ConferenceError("Too many inputs")

    def check_media_in(self, kinds: Sequence[str]) -> None:
        """ConferenceError if the room accepts no format at all of a kind to be published."""
        media_in = self._options.media_in
        for kind in kinds:
            if not (media_in.audio if kind == "audio" else media_in.video):
                # OWT: "Audio is forbiden" / "Video is forbiden" (its spelling) at publish.
                raise ConferenceError(f"{kind.capitalize()} is forbidden in this room (mediaIn)")

    def media_settings(self) -> dict[str, Any]:
        """mediaIn, mediaOut and transcoding in their JSON form, and the agent's limit on
        transcodes, for a new ForwardStream."""
        return {**self._media, "transcodes": self._context.agent.transcodes}

    def publication_ready(self, participant: Participant, publication: Publication) -> None:
        """A publication is negotiated and connected: list it and tell everyone."""
        stream = publication.stream
        if stream.id in self.streams or self.closed:
            return
        self.streams[stream.id] = stream
        stream.on_info_changed = self._forward_info_changed
        logger.info("stream added", extra={**participant.log_ids, "stream": stream.id})
        self._stream_added(stream, participant.user)

    def _stream_added(self, stream: ForwardStream, user: str) -> None:
        """A new forward stream (a publication's or a streaming-in's), already in
        ``streams``: clients told, mixed, heard, captioned and recorded as the options say."""
        auto_mix = self._options.auto_mix
        if auto_mix:
            stream.in_views = list(self.views)
        self.notify_stream("add", stream.id, stream.info())
        if auto_mix:
            for label in list(self.views):
                self.mix(stream.id, label)
        if self.active_audio is not None:
            self.active_audio.add_input(stream, stream.owner)
        if self.captioner is not None:
            self.captioner.add_input(stream, stream.owner, user)
        if self._options.auto_record.composite and self.auto_recording is None and self.views:
            self._start_auto_recording()
        self.per_stream.stream_came(stream)

    def _forward_info_changed(self, stream: ForwardStream) -> None:
        # OWT's conference agent sends the whole StreamInfo when a publication's tracks
        # change (a new resolution); the SDKs update the stream's settings from it.
        if self.streams.get(stream.id) is stream:
            self.notify_stream("update", stream.id, {"field": ".", "value": stream.info()})

    def owner_of(self, stream_id: str) -> Participant | None:
        """The participant publishing ``stream_id``, if one does."""
        return next((p for p in self.participants.values() if stream_id in p.publications), None)

    # -- recordings and streaming-outs ----------------------------------

    def _check_output_limits(
        self, kind: str, in_room: int, per_room: int, per_service: int
    ) -> None:
        """Refuse one more recording or streaming-out past the room's or the service's limit."""
        noun = "recordings" if kind == "recording" else "streaming-outs"
        setting = noun.replace("-", "_")
        if in_room >= per_room:
            raise forbidden(
                f"Too many {noun} in this room (at most {per_room}: [limits] {setting}_per_room)"
            )
        if self._context.running_in_cluster(kind, self.service_id) >= per_service:
            raise forbidden(
                f"Too many {noun} for this service "
                f"(at most {per_service}: [limits] {setting}_per_service)"
            )

    def start_recording(
        self, container: str, media: MediaChoice, part_of: PerStreamRecording | None = None
    ) -> Recording:
        """Start recording; raises ParameterError or MuxerError, keeping nothing.

        ``part_of``: the file is one of a per-stream recording (whose sidecar places it)."""
        settings = self._context.settings
        self._check_output_limits(
            "recording",
            sum(1 for r in self.recordings.values() if isinstance(r, Recording)),
            settings.recordings_per_room,
            settings.recordings_per_service,
        )
        directory = settings.recording_dir / self.id
        try:
            check_reserve(directory, settings.recording_disk_reserve)
        except DiskReserveReached as exc:
            raise ConferenceError(
                f"Cannot record: {exc.strerror}", ErrorCode.CLOUD, INSUFFICIENT_STORAGE
            ) from None
        recording = Recording(
            uuid.uuid4().hex,
            self.id,
            directory,
            container,
            media,
            host=self._context.settings.advertised_host(),
            on_finished=self._recording_finished,
            disk_reserve=settings.recording_disk_reserve,
            part_of=part_of.id if part_of is not None else None,
            on_media_start=part_of.media_started if part_of is not None else None,
        )
        if part_of is None:
            self._snapshot_into(recording)
            if self.captioner is not None:
                recording.keep_captions()
        recording.start(self.streams)
        self.recordings[recording.id] = recording
        self._context.running["recording", self.service_id] += 1
        if part_of is None:
            self.observers.append(recording.observe)
            self.per_stream.recording_started(recording)
        self._parent.recording_saved(self, recording)
        return recording

    def start_streaming_out(
        self, protocol: str, url: str | None, media: MediaChoice, parameters: Any
    ) -> StreamingOut:
        """Push a stream out; raises ParameterError or MuxerError, keeping nothing."""
        settings = self._context.settings
        self._check_output_limits(
            "streaming-out",
            len(self.streaming_outs),
            settings.streaming_outs_per_room,
            settings.streaming_outs_per_service,
        )
        streaming_id = uuid.uuid4().hex
        hls_directory = served_at = None
        if protocol == "hls" and url is None:
            # No url to push to: Tessera writes the HLS and serves it itself.
            hls_directory = self._context.settings.hls_dir / streaming_id
            served_at = f"/hls/{streaming_id}/{streaming_id}.m3u8"
        out = StreamingOut(
            streaming_id,
            self.id,
            protocol,
            url,
            media,
            parameters=parameters,
            hls_directory=hls_directory,
            served_at=served_at,
            on_finished=self._streaming_out_finished,
        )
        out.start(self.streams)
        self.streaming_outs[out.id] = out
        self._context.running["streaming-out", self.service_id] += 1
        self._parent.streaming_out_saved(self, out)
        return out

    def _streaming_out_finished(self, out: StreamingOut) -> None:
        # A finished streaming-out leaves the room (and memory); its record stays in the store.
        if self.streaming_outs.pop(out.id, None) is not None:
            self._context.running["streaming-out", self.service_id] -= 1
        self._context.finished["streaming-out", out.state] += 1
        self._parent.streaming_out_saved(self, out)
        logger.info(
            "streaming-out finished: %s", out.state, extra={**self.log_ids, "streaming": out.id}
        )

    def _snapshot_into(self, recording: Recording) -> None:
        # The timeline starts with who and what is in the room already.
        timeline = recording.timeline
        for participant in self.participants.values():
            timeline.add(
                "join", participant=participant.id, user=participant.user, role=participant.role
            )
        for stream in self.streams.values():
            if isinstance(stream, ForwardStream):
                timeline.add("stream-add", stream=stream.id, owner=stream.owner, kind="forward")
                for kind, track in stream.tracks.items():
                    if not track.active:
                        timeline.add("mute", stream=stream.id, kind=kind)
        for view in self.views.values():
            timeline.add("layout", stream=view.id, layout=view.layout.to_json())
            if view.active_input:
                timeline.add("active-speaker", stream=view.id, input=view.active_input)

    def _start_auto_recording(self) -> None:
        # The service's setting is read from the store: the recording starts a moment later.
        if not self._auto_record_starting:
            self._auto_record_starting = True
            spawn(self._auto_record(), "starting an automatic recording")

    async def _auto_record(self) -> None:
        try:
            allowed = await self._parent.recording_allowed()
        finally:
            self._auto_record_starting = False
        wanted = (
            self._options.auto_record.composite
            and self.auto_recording is None
            and self.views
            and self.forward_stream_count()
        )
        if not allowed or not wanted or self.closed or self.closing is not None:
            return
        view = next(iter(self.views.values()))
        media = MediaChoice(
            audio_from=view.id if view.has_track("audio") else None,
            video_from=view.id if view.has_track("video") else None,
        )
        try:
            self.auto_recording = self.start_recording("auto", media)
        except Exception as exc:
            logger.error("automatic recording failed to start: %s", exc, extra=self.log_ids)

    def _recording_finished(self, recording: Recording) -> None:
        # A finished recording leaves the room (and memory); its record stays in the store.
        if self.recordings.pop(recording.id, None) is not None:
            self._context.running["recording", self.service_id] -= 1
        self._context.finished["recording", recording.state] += 1
        self._parent.recording_saved(self, recording)
        if recording.observe in self.observers:
            self.observers.remove(recording.observe)
        if self.auto_recording is recording:
            self.auto_recording = None
        if recording.part_of is not None:
            self.per_stream.file_finished(recording)

    # -- mixing ---------------------------------------------------------

    def mix(self, stream_id: str, label: str) -> None:
        """Add a forward stream to a view (stream-control mix, REST inViews add)."""
        stream = self.streams.get(stream_id)
        view = self.views.get(label)
        if not isinstance(stream, ForwardStream) or view is None:
            return
        owner = self.participants.get(stream.owner)
        view.add_input(stream, stream.owner, owner.user if owner else "")
        if label not in stream.in_views:
            stream.in_views.append(label)

    def unmix(self, stream_id: str, label: str) -> None:
        stream = self.streams.get(stream_id)
        view = self.views.get(label)
        if not isinstance(stream, ForwardStream) or view is None:
            return
        view.remove_input(stream_id)
        if label in stream.in_views:
            stream.in_views.remove(label)

    def notify_stream(self, status: str, stream_id: str, data: Any = None) -> None:
        message: dict[str, Any] = {"id": stream_id, "status": status}
        if data is not None:
            message["data"] = data
        self.broadcast("stream", message)

    def remove_stream(self, stream_id: str) -> None:
        """The stream ended: end what others took from it, then tell everyone."""
        stream = self.streams.get(stream_id)
        if not isinstance(stream, ForwardStream):
            return
        for view in self.views.values():
            view.remove_input(stream_id)
        if self.active_audio is not None:
            self.active_audio.remove_input(stream_id)
        if self.captioner is not None:
            self.captioner.remove_input(stream_id)
        del self.streams[stream_id]
        self._output_source_gone(stream_id)
        lost = self._subscriptions_of(stream_id)
        for _, subscription in lost:
            subscription.detach_stream(stream_id)  # no more packets from it, from now on
        self.notify_stream("remove", stream_id)
        # OWT's conference agent ends every subscription that takes a track of the stream
        # (even one whose other track comes from elsewhere), and tells its owner why; the
        # SDKs route the error by sessionId and end the subscription.
        for participant, subscription in lost:
            participant.session_failed(subscription, SOURCE_STREAM_LOSS)
        ids = {**self.log_ids, "participant": stream.owner, "stream": stream_id}
        logger.info("stream removed", extra=ids)
        self.streaming_in_gone(stream_id)

    def set_track_status(self, stream_id: str, kind: str, active: bool) -> None:
        stream = self.streams.get(stream_id)
        if stream is None:
            return
        if isinstance(stream, ForwardStream):
            stream.set_active(kind, active)
            for view in self.views.values():
                view.set_input_status(stream_id, kind, active)
            if self.active_audio is not None:
                self.active_audio.set_input_status(stream_id, kind, active)
        self.notify_stream(
            "update",
            stream_id,
            {"field": f"{kind}.status", "value": "active" if active else "inactive"},
        )

    async def close(self, reason: str) -> None:
        """Idempotent: every participant is closed, every output finished, every stream ends.

        Whoever closes a room with people in it has told them already (``drop``).
        """
        if self.closed:
            return
        self.closed = True
        reason = self.closing or reason
        logger.info("room closed: %s", reason, extra={**self.log_ids, "reason": reason})
        for participant in list(self.participants.values()):
            await participant.close(reason)
        self.participants.clear()
        for recording in list(self.recordings.values()):
            await recording.stop(f"the room closed: {reason}")
        for out in list(self.streaming_outs.values()):
            await out.stop(f"the room closed: {reason}")
        for view in self.views.values():
            view.close()
        if self.active_audio is not None:
            self.active_audio.close()
            self.active_audio = None
        if self.captioner is not None:
            self.captioner.close(f"the room closed: {reason}")
            self.captioner = None
        for stream in list(self.streams.values()):
            if isinstance(stream, ForwardStream):
                stream.close()
        for streaming_in in list(self.streaming_ins.values()):
            streaming_in.close()  # one still connecting is not in `streams` yet
        self.streaming_ins.clear()
        self.streams.clear()
        self.views.clear()

    # -- live captions (the captions option) ------------------------------

    def _apply_captions(self) -> None:
        options = self._options.captions
        wanted = options.enabled and not self.closed
        captioner = self.captioner
        if captioner is not None and (not wanted or captioner.language != options.language):
            self.captioner = None
            captioner.close("captions were turned off" if not wanted else "the language changed")
        if wanted and self.captioner is None:
            self.captioner = Captioner(self.id, options.language, self)
            for stream in list(self.streams.values()):
                if isinstance(stream, ForwardStream):
                    owner = self.participants.get(stream.owner)
                    self.captioner.add_input(stream, stream.owner, owner.user if owner else "")
            for recording in self.recordings.values():
                # A per-stream recording's files are each a recording part of it: the room's
                # captions go beside the composite ones (the sidecar places those files).
                if isinstance(recording, Recording) and recording.part_of is None:
                    recording.keep_captions()
            logger.info("captions on (%s)", options.language, extra=self.log_ids)
        for view in self.views.values():
            burn_in = self.captioner is not None and view.view.captions and view.has_track("video")
            if burn_in and view.caption_overlay is None:
                view.caption_overlay = CaptionOverlay(view.width, view.height)
            elif not burn_in:
                view.caption_overlay = None

    def caption_heard(self, caption: Caption) -> None:
        """CaptionListener: a speaker's words, to recordings and to every participant
        (whatever ``notifying`` says: a room turns captions on to have them shown)."""
        if self.closed or self.captioner is None:
            return
        data = caption.to_event()
        for observer in list(self.observers):
            try:
                observer(CAPTION_EVENT, data)
            except Exception:
                logger.exception("room observer failed", extra=self.log_ids)
        for participant in list(self.participants.values()):
            # A participant who is away gets the final captions when back, not the partial
            # ones (they would crowd other missed notifications out of its queue).
            if caption.final or participant.address is not None:
                participant.notify(CAPTION_EVENT, data)
        for view in self.views.values():
            overlay = view.caption_overlay
            if overlay is not None:
                overlay.show(caption)

    # -- streaming-ins ----------------------------------------------------

    def reserve_streaming_in(self, stream: StreamingIn) -> None:
        """A streaming-in about to connect counts as an input (ConferenceError past
        ``inputLimit``); it is closed with the room, even before it is listed."""
        self.check_input_limit()
        if self.closed or self.closing is not None:
            raise ConferenceError("The room is closing")
        self.streaming_ins[stream.id] = stream

    def add_streaming_in(self, stream: StreamingIn) -> None:
        """A connected streaming-in becomes a stream of the room, as a publication does."""
        self.streaming_ins[stream.id] = stream
        self.streams[stream.id] = stream
        stream.on_info_changed = self._forward_info_changed
        stream.on_failed = lambda failed: self.remove_stream(failed.id)
        logger.info("streaming-in added", extra={**self.log_ids, "stream": stream.id})
        self._stream_added(stream, "")

    def streaming_in_gone(self, stream_id: str) -> None:
        """A streaming-in ended (removed, or it failed to connect): it is closed; a room
        left with nobody and nothing in it is unloaded."""
        streaming_in = self.streaming_ins.pop(stream_id, None)
        if streaming_in is None:
            return
        streaming_in.close()
        if not self.participants and not self.streaming_ins and self.closing is None:
            # Nobody and nothing is left in it: unloaded as when its last participant leaves.
            spawn(self._parent.room_emptied(self), "unloading a room")

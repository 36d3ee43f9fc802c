"""Room: the single authority on a room's participants and streams."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from tessera.media.mediasource import Stream
from tessera.mixer.activeaudio import ActiveAudioSelector, ActiveAudioStream
from tessera.mixer.mixedstream import MixedStream
from tessera.recorder.recording import MediaChoice, Recording
from tessera.recorder.streamingout import StreamingOut
from tessera.webrtc_agent.forwardstream import ForwardStream
from tessera.webrtc_agent.publication import Publication

from .background import spawn
from .errors import ConferenceError
from .participant import Participant
from .roomoptions import RoomOptions

if TYPE_CHECKING:
    from tessera.portal.server import Server

logger = logging.getLogger(__name__)

# OWT's reason, word for word, when a subscription's source goes away: clients may compare it.
SOURCE_STREAM_LOSS = "Source stream loss"


class Room:
    """A conference room of one service: participants, and the stream registry.

    Forward streams (publications) and, later, mixed streams (views) live in
    the same `streams` registry, so a subscription or recording treats them
    alike.
    """

    def __init__(
        self,
        server: Server,
        service_id: str,
        room_id: str,
        name: str,
        options: RoomOptions,
        *,
        persistent: bool,
    ) -> None:
        self.server = server
        self.service_id = service_id
        self.id = room_id
        self.name = name
        self._options = options
        self.persistent = persistent
        self.participants: dict[str, Participant] = {}
        self.streams: dict[str, Stream] = {}
        self.views: dict[str, MixedStream] = {}
        # Called with every participant/stream event (recordings keep timelines).
        self.observers: list[Callable[[str, Any], None]] = []
        self.recordings: dict[str, Recording] = {}
        self.streaming_outs: dict[str, StreamingOut] = {}
        self.auto_recording: Recording | None = None
        # The room's active audio streams, while its selectActiveAudio option is on.
        self.active_audio: ActiveAudioSelector | None = None
        self.closed = False
        self._create_views()
        self._apply_active_audio()

    @property
    def options(self) -> RoomOptions:
        return self._options

    @options.setter
    def options(self, options: RoomOptions) -> None:
        """New options (REST PUT/PATCH) apply to what comes next; selectActiveAudio at once."""
        self._options = options
        self._apply_active_audio()

    def _create_views(self) -> None:
        settings = self.settings
        for view in settings.get("views", []):
            mixed = MixedStream(
                self.id,
                view,
                media_out=settings.get("mediaOut", {}),
                transcoding=settings.get("transcoding", {}),
                listener=self,
                keyframe_min_interval=self.server.config.webrtc.keyframe_min_interval,
                frame_timeout=self.server.config.mixer.frame_timeout,
                max_mixed_talkers=self.server.config.mixer.max_mixed_talkers,
            )
            self.views[mixed.label] = mixed
            self.streams[mixed.id] = mixed

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
            logger.info("active audio streams on", extra={"room": self.id})
        elif not wanted and self.active_audio is not None:
            selector, self.active_audio = self.active_audio, None
            for active in selector.streams:
                self._end_stream(active.id)
            selector.close()
            logger.info("active audio streams off", extra={"room": self.id})

    def _end_stream(self, stream_id: str) -> None:
        """A stream that is not a publication ends: its subscriptions end with OWT's reason."""
        self.streams.pop(stream_id, None)
        lost = [
            (participant, subscription)
            for participant in list(self.participants.values())
            for subscription in list(participant.subscriptions.values())
            if stream_id in subscription.stream_ids()
        ]
        for _, subscription in lost:
            subscription.detach_stream(stream_id)
        self.notify_stream("remove", stream_id)
        for participant, subscription in lost:
            participant.session_failed(subscription, SOURCE_STREAM_LOSS)

    @property
    def settings(self) -> dict[str, Any]:
        return self.options.to_json()

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "views": [v["label"] for v in self.settings.get("views", [])],
            "participants": [p.describe() for p in self.participants.values()],
            "streams": [s.info() for s in self.streams.values()],
        }

    def notify_all(self, event: str, data: Any, exclude: str | None = None) -> None:
        for participant in list(self.participants.values()):
            if participant.id != exclude:
                participant.notify(event, data)

    # -- participants ---------------------------------------------------

    def permission_for(self, role: str) -> dict[str, Any] | None:
        for entry in self.settings.get("roles", []):
            if entry.get("role") == role:
                return {
                    "publish": dict(entry.get("publish", {})),
                    "subscribe": dict(entry.get("subscribe", {})),
                }
        return None

    def is_full(self) -> bool:
        limit = int(self.settings.get("participantLimit", -1))
        return 0 <= limit <= len(self.participants)

    def broadcast(self, event: str, data: Any, *, exclude: str | None = None) -> None:
        """A room event: observers (recordings' timelines) always hear it; participants
        hear it unless the room's `notifying` options turn that kind off."""
        for observer in list(self.observers):
            try:
                observer(event, data)
            except Exception:
                logger.exception("room observer failed", extra={"room": self.id})
        notifying = self.settings.get("notifying", {})
        key = "participantActivities" if event == "participant" else "streamChange"
        if notifying.get(key, True):
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
                "service": self.service_id,
                "room": self.id,
                "participant": participant.id,
                "user": participant.user,
                "role": participant.role,
            },
        )

    async def remove_participant(self, participant: Participant) -> None:
        """The participant left (logout, kick, or it stayed away too long)."""
        if self.participants.pop(participant.id, None) is None:
            return
        await participant.close()
        self.broadcast("participant", {"action": "leave", "data": participant.id})
        logger.info("participant left", extra=participant.log_ids)
        if not self.participants:
            await self.server.room_empty(self)

    # -- streams --------------------------------------------------------

    def forward_stream_count(self) -> int:
        return sum(1 for s in self.streams.values() if s.type == "forward")

    def input_limit_reached(self) -> bool:
        limit = int(self.settings.get("inputLimit", -1))
        pending = sum(len(p.publications) for p in self.participants.values())
        return 0 <= limit <= pending

    def check_input_limit(self) -> None:
        """ConferenceError if the room takes no more inputs (its ``inputLimit``)."""
        if self.input_limit_reached():
            raise ConferenceError("Too many inputs")

    def check_media_in(self, kinds: Sequence[str]) -> None:
        """ConferenceError if the room accepts no format at all of a kind to be published."""
        media_in = self.options.media_in
        for kind in kinds:
            if not (media_in.audio if kind == "audio" else media_in.video):
                # OWT: "Audio is forbiden" / "Video is forbiden" (its spelling) at publish.
                raise ConferenceError(f"{kind.capitalize()} is forbidden in this room (mediaIn)")

    def publication_ready(self, participant: Participant, publication: Publication) -> None:
        """A publication is negotiated and connected: list it and tell everyone."""
        stream = publication.stream
        if stream.id in self.streams or self.closed:
            return
        self.streams[stream.id] = stream
        stream.on_info_changed = self._forward_info_changed
        logger.info(
            "stream added",
            extra={**participant.log_ids, "stream": stream.id},
        )
        auto_mix = bool(self.settings.get("autoMix", True))
        if auto_mix:
            stream.in_views = list(self.views)
        self.notify_stream("add", stream.id, stream.info())
        if auto_mix:
            for label in list(self.views):
                self.mix(stream.id, label)
        if self.active_audio is not None:
            self.active_audio.add_input(stream, stream.owner)
        if self.settings.get("autoRecord") and self.auto_recording is None and self.views:
            self._start_auto_recording()

    def _forward_info_changed(self, stream: ForwardStream) -> None:
        # OWT's conference agent sends the whole StreamInfo when a publication's tracks
        # change (a new resolution); the SDKs update the stream's settings from it.
        if self.streams.get(stream.id) is stream:
            self.notify_stream("update", stream.id, {"field": ".", "value": stream.info()})

    # -- recordings -----------------------------------------------------

    def start_recording(self, container: str, media: MediaChoice) -> Recording:
        """Start recording (REST POST); raises ParameterError or MuxerError, keeping nothing."""
        recording = Recording(
            uuid.uuid4().hex,
            self.id,
            self.server.config.recording_dir() / self.id,
            container,
            media,
            host=self.server.advertised_host(),
            on_finished=self._recording_finished,
        )
        self._snapshot_into(recording)
        recording.start(self.streams)
        self.recordings[recording.id] = recording
        self.observers.append(recording.observe)
        self.server.recording_started(self, recording)
        return recording

    def start_streaming_out(
        self, protocol: str, url: str | None, media: MediaChoice, parameters: Any
    ) -> StreamingOut:
        """Push a stream out (REST POST); raises ParameterError or MuxerError, keeping nothing."""
        streaming_id = uuid.uuid4().hex
        hls_directory = served_at = None
        if protocol == "hls" and url is None:
            # No url to push to: Tessera writes the HLS and serves it itself.
            hls_directory = self.server.config.data_dir() / "hls" / streaming_id
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
        self.server.streaming_out_started(self, out)
        return out

    def _streaming_out_finished(self, out: StreamingOut) -> None:
        self.streaming_outs.pop(out.id, None)

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
        service = self.server.store.get_service(self.service_id)
        if service is None or not service.recording:
            return
        view = next(iter(self.views.values()))
        media = MediaChoice(
            audio_from=view.id if view.has_track("audio") else None,
            video_from=view.id if view.has_track("video") else None,
        )
        try:
            self.auto_recording = self.start_recording("auto", media)
        except Exception as exc:
            logger.error("automatic recording failed to start: %s", exc, extra={"room": self.id})

    def _recording_finished(self, recording: Recording) -> None:
        self.recordings.pop(recording.id, None)
        self.server.recording_finished(self, recording)
        if recording.observe in self.observers:
            self.observers.remove(recording.observe)
        if self.auto_recording is recording:
            self.auto_recording = None

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
        del self.streams[stream_id]
        for recording in list(self.recordings.values()):
            if recording.source_gone(stream_id):
                spawn(recording.stop(), "finishing a recording")
        for out in list(self.streaming_outs.values()):
            if out.source_gone(stream_id):
                spawn(out.stop(), "finishing a streaming-out")
        lost = [
            (participant, subscription)
            for participant in list(self.participants.values())
            for subscription in list(participant.subscriptions.values())
            if stream_id in subscription.stream_ids()
        ]
        for _, subscription in lost:
            subscription.detach_stream(stream_id)  # no more packets from it, from now on
        self.notify_stream("remove", stream_id)
        # OWT's conference agent ends every subscription that takes a track of the stream
        # (even one whose other track comes from elsewhere), and tells its owner why; the
        # SDKs route the error by sessionId and end the subscription.
        for participant, subscription in lost:
            participant.session_failed(subscription, SOURCE_STREAM_LOSS)
        ids = {"room": self.id, "participant": stream.owner, "stream": stream_id}
        logger.info("stream removed", extra=ids)

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

    async def close(self) -> None:
        """Idempotent: every participant is dropped, every stream ends."""
        if self.closed:
            return
        self.closed = True
        # Whoever closes a room with people in it (shutdown, REST delete) has
        # already sent them `drop`.
        for participant in list(self.participants.values()):
            await participant.close()
        self.participants.clear()
        for recording in list(self.recordings.values()):
            await recording.stop()
        for out in list(self.streaming_outs.values()):
            await out.stop()
        for view in self.views.values():
            view.close()
        if self.active_audio is not None:
            self.active_audio.close()
            self.active_audio = None
        for stream in list(self.streams.values()):
            if isinstance(stream, ForwardStream):
                stream.close()
        self.streams.clear()
        self.views.clear()

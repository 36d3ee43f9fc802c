"""Recording: a room's stream(s) written to a file, a sink beside subscriptions."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tessera.media.mediasource import Packet, ParameterError, Stream

from .muxer import MuxerError, PacketMuxer, choose_container
from .roomoutput import MediaChoice as MediaChoice  # the room service imports it from here
from .roomoutput import RoomOutput
from .sources import TrackSink, audio_source, video_source
from .timeline import Timeline, room_event

logger = logging.getLogger(__name__)

EXTENSIONS = {"webm": "webm", "mkv": "mkv", "mp4": "mp4", "ts": "ts"}
# OWT's description of the audio Tessera records (Opus as WebRTC carries it).
OPUS_FORMAT = {"codec": "opus", "sampleRate": 48000, "channelNum": 2}
# How often the timeline sidecar is rewritten while recording, so that a
# killed server still leaves it nearly complete next to the playable file.
SIDECAR_INTERVAL = 5.0


class Recording(RoomOutput):
    """One recording of a room: the packets already encoded for subscribers, muxed.

    It binds to shared PacketSources exactly like a subscription, so
    recording a view costs muxing, not another encode. A timeline sidecar
    (JSON) next to the file lists joins, leaves, layout changes, the active
    speaker, pauses and mutes on the recording's own clock.
    """

    def __init__(
        self,
        recording_id: str,
        room_id: str,
        directory: Path,
        container: str,
        media: MediaChoice,
        *,
        host: str,
        on_finished: Callable[[Recording], None] | None = None,
        disk_reserve: int = 0,
        part_of: str | None = None,
        on_media_start: Callable[[Recording], None] | None = None,
    ) -> None:
        self.id = recording_id
        self.room_id = room_id
        self.requested_container = container
        self.container = container
        self.media = media
        self.host = host
        self.directory = directory
        self.path = directory / f"{recording_id}.{EXTENSIONS.get(container, 'mkv')}"
        self.sidecar = directory / f"{recording_id}.timeline.json"
        self.state = "initializing"
        self.reason: str | None = None
        self.started_at = time.time()
        self.stopped_at: float | None = None
        self.timeline = Timeline(recording_id, room_id, self.started_at)
        self._sinks = {"audio": TrackSink(self, "audio"), "video": TrackSink(self, "video")}
        self._codecs: dict[str, str] = {}  # kind -> codec of the packets recorded
        self._paused: set[str] = set()  # kinds whose status is "inactive"
        # After a pause or a change of source, video resumes at a keyframe.
        self._video_waits_for_keyframe = False
        self._muxer: PacketMuxer | None = None
        self._has_video = media.video_from is not None
        self._loop = asyncio.get_running_loop()
        self._sidecar_task: asyncio.Task[None] | None = None
        self._finishing: asyncio.Task[None] | None = None
        self._on_finished = on_finished
        # Bytes the recording leaves free on its disk (it stops "disk full" before them).
        self.disk_reserve = disk_reserve
        # The per-stream recording this is one file of (perstream.py): its timeline is
        # that recording's sidecar, so the file has none of its own.
        self.part_of = part_of
        self._on_media_start = on_media_start

    # -- lifecycle ------------------------------------------------------

    def start(self, streams: dict[str, Stream]) -> None:
        """Bind to the sources and open the file; raises ParameterError or MuxerError."""
        audio = audio_source(streams, self.media.audio_from)
        video = video_source(
            streams, self.media.video_from, self.media.video_parameters, self.media.video_format
        )
        if audio is None and video is None:
            raise ParameterError("A recording needs an audio or a video source")
        self.container = choose_container(
            self.requested_container,
            video.codec if video is not None else None,
            audio.codec if audio is not None else None,
        )
        self.path = self.path.with_suffix("." + EXTENSIONS[self.container])
        self._codecs = {
            kind: source.codec for kind, source in (("audio", audio), ("video", video)) if source
        }
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise MuxerError(f"Cannot create {self.directory}: {exc.strerror or exc}") from exc
        self._muxer = PacketMuxer(
            self.path,
            self.container,
            video_codec=video.codec if video is not None else None,
            audio_codec=audio.codec if audio is not None else None,
            on_error=self._worker_failed,
            disk_reserve=self.disk_reserve,
            # A file of a per-stream recording starts with its publisher's first audio and
            # learns its time 0 from the muxer (its offset on the shared clock).
            hold_audio=self.part_of is not None,
            on_start=self._muxer_started if self.part_of is not None else None,
        )
        self.state = "recording"
        if audio is not None:
            self._sinks["audio"].attach(audio)
        if video is not None:
            self._sinks["video"].attach(video)
        if self.part_of is None:
            self._sidecar_task = asyncio.ensure_future(self._keep_sidecar())
        logger.info("recording started into %s", self.path, extra=self.log_ids)

    def update(
        self,
        streams: dict[str, Stream],
        audio_from: str | None,
        video_from: str | None,
        video_parameters: dict[str, Any] | None = None,
        active: dict[str, bool] | None = None,
    ) -> None:
        """PATCH: take a track from another stream or with other video parameters, pause or
        resume a track. Everything is checked before anything changes (ParameterError)."""
        if self.state != "recording":
            raise ParameterError("Recording is not running")
        for kind, wanted in (("audio", audio_from), ("video", video_from)):
            if wanted is not None and self._media_from(kind) is None:
                raise ParameterError(f"This recording has no {kind} track")
        for kind in active or {}:
            if self._media_from(kind) is None:
                raise ParameterError(f"This recording has no {kind} track")
        if video_parameters and self.media.video_from is None:
            raise ParameterError("This recording has no video track")
        audio = audio_source(streams, audio_from) if audio_from else None
        video = None
        parameters = self.media.video_parameters
        if video_from or video_parameters:
            parameters = {**(self.media.video_parameters or {}), **(video_parameters or {})}
            video = video_source(
                streams,
                video_from or self.media.video_from,
                parameters or None,
                self.media.video_format,
            )
        if audio is not None:
            self._sinks["audio"].attach(audio)
            self.media.audio_from = audio_from
        if video is not None:
            self._video_waits_for_keyframe = True
            self._sinks["video"].attach(video)
            self.media.video_from = video_from or self.media.video_from
            self.media.video_parameters = parameters or None
        if audio is not None or video is not None:
            self.timeline.add(
                "source-change", audio=self.media.audio_from, video=self.media.video_from
            )
        for kind, on in (active or {}).items():
            self._set_active(kind, on)

    def _media_from(self, kind: str) -> str | None:
        return self.media.audio_from if kind == "audio" else self.media.video_from

    def _set_active(self, kind: str, on: bool) -> None:
        if on == (kind not in self._paused):
            return
        if on:
            self._paused.discard(kind)
            source = self._sinks[kind].source
            if kind == "video":
                self._video_waits_for_keyframe = True
                if source is not None:
                    source.request_keyframe()
        else:
            self._paused.add(kind)
        self.timeline.add("play" if on else "pause", track=kind)
        logger.info("recording %s %s", kind, "resumed" if on else "paused", extra=self.log_ids)

    async def stop(self, reason: str | None = None) -> None:
        """Stop and finalise the file and the sidecar (idempotent).

        ``reason``: why it stops, if not on request (its room closed); kept as ``reason``.
        """
        if self.state not in ("recording", "failed", "initializing") or self.stopped_at:
            return
        self._stopping(reason)
        if self._sidecar_task is not None:
            self._sidecar_task.cancel()
        muxer = self._muxer
        if muxer is not None:
            await self._loop.run_in_executor(None, muxer.close)
        if self.state != "failed":
            self.state = "stopped"
        self.timeline.add("stop")
        if self.part_of is None:
            await self._loop.run_in_executor(None, self._write_sidecar)
        logger.info(
            "recording %s (%.1f s, %d bytes)",
            self.state,
            self.duration,
            self.size,
            extra=self.log_ids,
        )
        if self._on_finished is not None:
            self._on_finished(self)

    # -- media ----------------------------------------------------------

    def _write(self, kind: str, packet: Packet, keyframe: bool) -> None:
        muxer = self._muxer
        if muxer is None or self.state != "recording" or kind in self._paused:
            return
        if kind == "video" and self._video_waits_for_keyframe:
            if not keyframe:
                return
            self._video_waits_for_keyframe = False
        arrival = time.monotonic()
        if self.timeline.origin is None and self.part_of is None:
            starts = keyframe if kind == "video" else not self._has_video
            if starts:
                self.timeline.origin = arrival
        muxer.write(kind, packet, keyframe, arrival)

    def _muxer_started(self, origin: float) -> None:
        # On the muxer's thread: the file's time 0 is the arrival time `origin`.
        self._loop.call_soon_threadsafe(self._media_started, origin)

    def _media_started(self, origin: float) -> None:
        if self.timeline.origin is None:
            self.timeline.origin = origin
            if self._on_media_start is not None:
                self._on_media_start(self)

    def _fail(self, reason: str) -> None:
        if self.state == "recording" and self._muxer is not None and self._muxer.out_of_space:
            # Down to the disk's reserve: a stop, not a failure (the file is finished whole).
            logger.warning("recording stopped: %s", reason, extra=self.log_ids)
            if self._sidecar_task is not None:
                self._sidecar_task.cancel()
            self._finishing = asyncio.ensure_future(self.stop(reason))
            return
        if self.state == "recording":
            logger.error("recording failed: %s", reason, extra=self.log_ids)
            self.state = "failed"
            self.reason = reason
            self._detach_all()
            # Finished as a stop is: the sidecar task ends (on a full disk it rewrote the
            # timeline every 5 s), the file is closed, and the room lets it go.
            if self._sidecar_task is not None:
                self._sidecar_task.cancel()
            self._finishing = asyncio.ensure_future(self.stop())

    # -- timeline -------------------------------------------------------

    def observe(self, event: str, data: Any) -> None:
        """A room event (Room.observers)."""
        translated = room_event(event, data)
        if translated is not None:
            kind, details = translated
            self.timeline.add(kind, **details)

    async def _keep_sidecar(self) -> None:
        while True:
            await asyncio.sleep(SIDECAR_INTERVAL)
            try:
                await self._loop.run_in_executor(None, self._write_sidecar)
            except OSError as exc:
                logger.warning("cannot write the timeline: %s", exc, extra=self.log_ids)

    def _write_sidecar(self) -> None:
        try:
            self.timeline.write(self.sidecar)
        except OSError as exc:
            logger.warning("cannot write the timeline: %s", exc, extra=self.log_ids)

    # -- description ----------------------------------------------------

    @property
    def duration(self) -> float:
        return self._muxer.duration if self._muxer is not None else 0.0

    @property
    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except OSError:
            return 0

    @property
    def log_ids(self) -> dict[str, str]:
        """The ids a log line about this recording carries."""
        return {"room": self.room_id, "recording": self.id}

    def _media_json(self) -> dict[str, Any]:
        """OWT's ``media`` of a recording: ``{kind: {from, format, parameters, status}}``
        for each track it has (a kind it has not is absent)."""
        media: dict[str, Any] = {}
        for kind in ("audio", "video"):
            source = self._media_from(kind)
            if source is None:
                continue
            entry: dict[str, Any] = {"from": source}
            codec = self._codecs.get(kind)
            if kind == "audio":
                entry["format"] = dict(OPUS_FORMAT) if codec in (None, "opus") else {"codec": codec}
            else:
                entry["format"] = {"codec": codec or (self.media.video_format or {}).get("codec")}
                if self.media.video_parameters:
                    entry["parameters"] = dict(self.media.video_parameters)
            entry["status"] = "inactive" if kind in self._paused else "active"
            media[kind] = entry
        return media

    def describe(self) -> dict[str, Any]:
        """The REST object: OWT's {id, media, storage} plus state, times and size."""
        info: dict[str, Any] = {
            "id": self.id,
            "media": self._media_json(),
            "storage": {"host": self.host, "file": str(self.path)},
            "container": self.container,
            "state": self.state,
            "startTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started_at)),
            "duration": round(self.duration, 3),
            "size": self.size,
        }
        if self.reason:
            info["reason"] = self.reason
        if self.part_of is not None:
            info["partOf"] = self.part_of
        return info


class StoredRecording:
    """A recording of an earlier run of the server, as the store remembers it.

    Listed and downloadable like a live Recording; it can no longer change.
    """

    def __init__(self, recording_id: str, info: dict[str, Any], file: str) -> None:
        self.id = recording_id
        self.path = Path(file)
        # One cut off by a stop or a crash was closed at the next start, its duration read
        # from its file then (recovery.py).
        self.info = info
        self.state = str(self.info.get("state", "stopped"))

    def describe(self) -> dict[str, Any]:
        info = dict(self.info)
        try:
            info["size"] = self.path.stat().st_size
        except OSError:
            info["size"] = 0
        return info

    def update(
        self,
        streams: dict[str, Stream],
        audio_from: str | None,
        video_from: str | None,
        video_parameters: dict[str, Any] | None = None,
        active: dict[str, bool] | None = None,
    ) -> None:
        raise ParameterError("Recording is not running")

    async def stop(self) -> None:
        """Nothing to do: it ended with the run that made it."""

"""PerStreamRecording: each forward stream of a room in its own file, all on one clock.

Beside the composite (a view's mix), an editor who re-cuts a meeting wants every
participant's camera and microphone apart. A per-stream recording takes every forward
stream of a room (or those of one participant, or one stream), present and future,
each into a file of its own: an ordinary `Recording` (limits, disk reserve, crash
safety, durations, the store: each file is a recording like any other, marked
``partOf`` this one). Its timeline sidecar names who is in which file and when, on the
one clock of this recording: 0 is when it started, and a file's ``offset`` is where
its own time 0 (its first media) falls on that clock.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tessera.media.mediasource import ParameterError, Stream

from .muxer import MuxerError
from .recording import SIDECAR_INTERVAL, Recording
from .timeline import Timeline, room_event

logger = logging.getLogger(__name__)

# How long a stop waits for files that are closing already (their muxers' close).
FILE_CLOSE_WAIT = 30.0
CLOCK = "seconds from the start of the per-stream recording; a file's offset is where its 0 is"


@dataclass(frozen=True)
class PerStreamScope:
    """Which forward streams a per-stream recording takes: every one of the room (both
    None), those a participant publishes, or one stream."""

    participant: str | None = None
    stream: str | None = None

    def takes(self, stream_id: str, owner: str) -> bool:
        """Whether the stream ``stream_id`` published by ``owner`` is recorded (pure)."""
        if self.stream is not None:
            return stream_id == self.stream
        if self.participant is not None:
            return owner == self.participant
        return True

    def to_json(self, room_id: str) -> dict[str, str]:
        if self.stream is not None:
            return {"stream": self.stream}
        if self.participant is not None:
            return {"participant": self.participant}
        return {"room": room_id}


@dataclass
class StreamFile:
    """One file of a per-stream recording: whose stream it holds."""

    recording: Recording
    stream: str
    participant: str
    user: str

    def to_json(self, origin: float) -> dict[str, Any]:
        """The sidecar's (and REST's) entry: ``offset`` on the shared clock (None until
        its first media), ``duration`` of the file's media."""
        start = self.recording.timeline.origin
        info: dict[str, Any] = {
            "recording": self.recording.id,
            "stream": self.stream,
            "participant": self.participant,
            "user": self.user,
            "file": self.recording.path.name,
            "offset": None if start is None else round(max(0.0, start - origin), 3),
            "duration": round(self.recording.duration, 3),
            "state": self.recording.state,
        }
        if self.recording.reason:
            info["reason"] = self.recording.reason
        return info


class PerStreamRecording:
    """A set of files, one per forward stream, and the timeline sidecar that places them.

    The room starts and registers the files (`add_file`), as streams come; this object
    keeps the clock, the sidecar and the state. Stopping it stops every running file.
    """

    def __init__(
        self,
        recording_id: str,
        room_id: str,
        directory: Path,
        container: str,
        scope: PerStreamScope,
        *,
        host: str,
        on_finished: Callable[[PerStreamRecording], None] | None = None,
    ) -> None:
        self.id = recording_id
        self.room_id = room_id
        self.container = container  # asked of each file ("auto": chosen by its codecs)
        self.scope = scope
        self.host = host
        self.directory = directory
        # Its "file" is the sidecar: downloading it gives an editor the map of the files.
        self.path = directory / f"{recording_id}.timeline.json"
        self.state = "recording"
        self.reason: str | None = None
        self.started_at = time.time()
        self.stopped_at: float | None = None
        self.timeline = Timeline(
            recording_id, room_id, self.started_at, origin=time.monotonic(), clock=CLOCK
        )
        self.files: dict[str, StreamFile] = {}  # by the file's recording id
        # The room's other recordings while this one runs (the composite): placed on the
        # same clock, so that an editor lines the mix up with the files.
        self.alongside: dict[str, Recording] = {}
        # Files not yet closed: a stop waits for those a stream's end is closing already.
        self._open: dict[str, asyncio.Future[None]] = {}
        self._on_finished = on_finished
        self._loop = asyncio.get_running_loop()
        self._sidecar_task: asyncio.Task[None] | None = None
        self._stopped_mono: float | None = None
        # The sidecar is written from executor threads: one at a time (one .partial file).
        self._sidecar_lock = threading.Lock()

    @property
    def origin(self) -> float:
        # Set in __init__; a Timeline's origin is optional only for single recordings.
        return self.timeline.origin if self.timeline.origin is not None else 0.0

    # -- lifecycle ------------------------------------------------------

    def start(self) -> None:
        """Write the sidecar now and every few seconds (a killed server leaves it nearly
        whole); raises MuxerError if the directory cannot be made."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise MuxerError(f"Cannot create {self.directory}: {exc.strerror or exc}") from exc
        self.timeline.add("start", scope=self.scope.to_json(self.room_id))
        self._write_sidecar()
        self._sidecar_task = asyncio.ensure_future(self._keep_sidecar())
        logger.info("per-stream recording started", extra=self.log_ids)

    def takes(self, stream_id: str, owner: str) -> bool:
        """Whether a stream that comes now gets a file of this recording."""
        return self.state == "recording" and self.scope.takes(stream_id, owner)

    def has_file_for(self, stream_id: str) -> bool:
        """Whether a running file already takes ``stream_id``."""
        return any(
            f.stream == stream_id and f.recording.state == "recording" for f in self.files.values()
        )

    def add_file(self, recording: Recording, stream_id: str, participant: str, user: str) -> None:
        """A file was started for a stream (its media starts a moment later)."""
        self.files[recording.id] = StreamFile(recording, stream_id, participant, user)
        self._open[recording.id] = self._loop.create_future()
        self.timeline.add(
            "file-open",
            recording=recording.id,
            stream=stream_id,
            participant=participant,
            user=user,
            file=recording.path.name,
        )

    def add_alongside(self, recording: Recording) -> None:
        """Another recording of the room (a view's, a stream's) runs while this one does."""
        self.alongside[recording.id] = recording

    def file_refused(self, stream_id: str, participant: str, reason: str) -> None:
        """A stream that came could not get a file (a limit, the disk's reserve)."""
        logger.warning(
            "per-stream recording: no file for stream %s: %s",
            stream_id,
            reason,
            extra=self.log_ids,
        )
        self.timeline.add("file-refused", stream=stream_id, participant=participant, reason=reason)

    def media_started(self, recording: Recording) -> None:
        """Recording.on_media_start: the file's time 0 is now, placed on the shared clock."""
        entry = self.files.get(recording.id)
        if entry is None or recording.timeline.origin is None:
            return
        self.timeline.add(
            "file-start",
            at=recording.timeline.origin,
            recording=recording.id,
            stream=entry.stream,
            participant=entry.participant,
            user=entry.user,
            file=recording.path.name,
        )

    def file_finished(self, recording: Recording) -> None:
        """A file is closed (its stream ended, a stop, a failure): its end goes on the clock."""
        entry = self.files.get(recording.id)
        closed = self._open.pop(recording.id, None)
        if closed is not None and not closed.done():
            closed.set_result(None)
        if entry is None:
            return
        start = recording.timeline.origin
        details: dict[str, Any] = {
            "recording": recording.id,
            "stream": entry.stream,
            "participant": entry.participant,
            "duration": round(recording.duration, 3),
            "state": recording.state,
        }
        if recording.reason:
            details["reason"] = recording.reason
        at = None if start is None else start + recording.duration
        self.timeline.add("file-stop", at=at, **details)
        if self.state == "recording":
            self._loop.run_in_executor(None, self._write_sidecar)

    def abandon(self) -> None:
        """It was refused as it started: no sidecar is left, nobody is told."""
        self.state = "failed"
        self.stopped_at = time.time()
        if self._sidecar_task is not None:
            self._sidecar_task.cancel()
        self.path.unlink(missing_ok=True)

    async def stop(self, reason: str | None = None) -> None:
        """Stop every running file, then finalise the sidecar (idempotent)."""
        if self.stopped_at is not None:
            return
        self.stopped_at = time.time()
        self._stopped_mono = time.monotonic()
        if reason is not None and self.reason is None:
            self.reason = reason
        if self._sidecar_task is not None:
            self._sidecar_task.cancel()
        running = [f.recording for f in self.files.values() if f.recording.state == "recording"]
        await asyncio.gather(*(r.stop(reason) for r in running), return_exceptions=True)
        if self._open:
            # Closing on their own (their streams ended just before): their ends belong in
            # the sidecar. Bounded, so that a stalled disk cannot hold the stop forever.
            await asyncio.wait(list(self._open.values()), timeout=FILE_CLOSE_WAIT)
        self.state = "stopped"
        self.timeline.add("stop", at=self._stopped_mono)
        await self._loop.run_in_executor(None, self._write_sidecar)
        logger.info(
            "per-stream recording stopped (%d files, %.1f s)",
            len(self.files),
            self.duration,
            extra=self.log_ids,
        )
        if self._on_finished is not None:
            self._on_finished(self)

    # -- what a room asks of every recording ------------------------------

    def source_gone(self, stream_id: str) -> bool:
        """Its files end with their streams on their own; it goes on (False)."""
        return False

    def update(
        self,
        streams: dict[str, Stream],
        audio_from: str | None,
        video_from: str | None,
        video_parameters: dict[str, Any] | None = None,
        active: dict[str, bool] | None = None,
    ) -> None:
        raise ParameterError(
            "A per-stream recording takes whole streams: PATCH one of its files "
            "(listed in files), or stop it and start another"
        )

    def observe(self, event: str, data: Any) -> None:
        """A room event (Room.observers): joins, leaves, streams, mutes on the shared clock."""
        translated = room_event(event, data)
        if translated is not None:
            kind, details = translated
            self.timeline.add(kind, **details)

    # -- sidecar ----------------------------------------------------------

    async def _keep_sidecar(self) -> None:
        while True:
            await asyncio.sleep(SIDECAR_INTERVAL)
            await self._loop.run_in_executor(None, self._write_sidecar)

    def _write_sidecar(self) -> None:
        try:
            with self._sidecar_lock:
                extra = {"files": self._files_json(), "alongside": self._alongside_json()}
                self.timeline.write(self.path, extra)
        except OSError as exc:
            logger.warning("cannot write the timeline: %s", exc, extra=self.log_ids)

    def _files_json(self) -> list[dict[str, Any]]:
        return [f.to_json(self.origin) for f in list(self.files.values())]

    def _alongside_json(self) -> list[dict[str, Any]]:
        # An offset below 0: that recording's time 0 came before this one started.
        out = []
        for recording in list(self.alongside.values()):
            start = recording.timeline.origin
            out.append(
                {
                    "recording": recording.id,
                    "media": recording.media.to_json(),
                    "file": recording.path.name,
                    "offset": None if start is None else round(start - self.origin, 3),
                    "state": recording.state,
                }
            )
        return out

    # -- description ------------------------------------------------------

    @property
    def duration(self) -> float:
        """Seconds on the shared clock, from the start to now (or to the stop)."""
        end = self._stopped_mono if self._stopped_mono is not None else time.monotonic()
        return max(0.0, end - self.origin)

    @property
    def size(self) -> int:
        return sum(f.recording.size for f in list(self.files.values()))

    @property
    def log_ids(self) -> dict[str, str]:
        """The ids a log line about this recording carries."""
        return {"room": self.room_id, "recording": self.id}

    def describe(self) -> dict[str, Any]:
        """The REST object: Tessera's ``perStream`` (what it takes) and ``files`` (each a
        recording of its own, with its offset on this recording's clock)."""
        info: dict[str, Any] = {
            "id": self.id,
            "perStream": self.scope.to_json(self.room_id),
            "storage": {"host": self.host, "file": str(self.path)},
            "container": self.container,
            "state": self.state,
            "startTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started_at)),
            "duration": round(self.duration, 3),
            "size": self.size,
            "files": self._files_json(),
            "alongside": self._alongside_json(),
        }
        if self.reason:
            info["reason"] = self.reason
        return info

"""StreamingOut: a room's stream pushed out over RTMP, RTSP, HLS or DASH, as OWT does it.

Like a recording, a streaming-out is a sink of a stream's shared
`PacketSource`s. Its video is always bound as H.264 (what FLV, MPEG-TS, fMP4
and RTSP players take): a mixed view then shares the x264 encode of its
H.264 subscribers in the same format, and a VP8 forward stream gets its
shared transcoder; nothing is re-encoded here. Audio comes as Opus and is
transcoded to AAC on the worker thread (`aac.py`).

The parts: where it goes and how HLS/DASH are cut (`streamingtarget.py`,
`hlsdash.py`), the worker that muxes and sends (`streampusher.py`), and the
protocols (`rtmp.py` with `amf.py`, `rtsp.py` with `rtp.py`, `httppush.py`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tessera.media.mediasource import Packet, PacketSource, ParameterError, Stream

from .aac import AAC_RATE, AUDIO_DECODERS
from .httppush import RetryPolicy
from .muxer import MAX_QUEUE_SECONDS, MuxerError
from .outputpatch import OutputPatch
from .roomoutput import MediaChoice, RoomOutput
from .rtmp import check_rtmp_url
from .rtsp import check_rtsp_url
from .sources import TrackSink, audio_source, video_source
from .streamingtarget import PROTOCOLS, Segmenting, check_http_url, check_segmenting
from .streampusher import Destination, StreamPusher

logger = logging.getLogger(__name__)

# Streaming services want a keyframe at least every 2 s (players join on one).
PUSH_KEYFRAME_INTERVAL = 2.0
# stop() waits this long for the server to take the rest of the stream.
STOP_TIMEOUT = 5.0


class _TrackSink(TrackSink):
    """A TrackSink that keeps keyframes coming and can be paused (PATCH status)."""

    owner: StreamingOut

    def __init__(self, owner: StreamingOut, kind: str) -> None:
        super().__init__(owner, kind)
        self.active = True
        self._awaiting_keyframe = False
        self._last_keyframe = 0.0
        self._last_request = 0.0

    def on_packet(self, packet: Packet, keyframe: bool) -> None:
        if not self.active:
            return
        if self.kind == "video":
            now = time.monotonic()
            if keyframe:
                self._awaiting_keyframe = False
                self._last_keyframe = now
            else:
                # Ask for a keyframe every interval (HLS/DASH cut segments on them,
                # players join on them), and again if a new source sent none.
                due = 1.0 if self._awaiting_keyframe else self.owner.keyframe_interval
                if (
                    self.source is not None
                    and now - self._last_keyframe >= due
                    and now - self._last_request >= due
                ):
                    self._last_request = now
                    self.source.request_keyframe()
                if self._awaiting_keyframe:
                    return  # a new source's pictures refer to ones never sent
        self.owner._write(self.kind, packet, keyframe)

    def attach(self, source: PacketSource) -> None:
        self._await_keyframe()
        super().attach(source)

    def set_active(self, active: bool) -> None:
        if active and not self.active:
            self._await_keyframe()  # pictures after a pause refer to ones never sent
            if self.source is not None:
                self.source.request_keyframe()
        self.active = active

    def _await_keyframe(self) -> None:
        self._awaiting_keyframe = True
        self._last_keyframe = self._last_request = time.monotonic()


class StreamingOut(RoomOutput):
    """A room's stream pushed out: a sink of shared packet sources with a worker of its own.

    `protocol` is rtmp, rtsp, hls or dash; `url` where it goes (HLS without
    a url is written into `hls_directory` and served by the portal at
    `served_at`); `parameters` OWT's HlsParameters/DashParameters.
    """

    def __init__(
        self,
        streaming_id: str,
        room_id: str,
        protocol: str,
        url: str | None,
        media: MediaChoice,
        *,
        parameters: Any = None,
        hls_directory: Path | None = None,
        served_at: str | None = None,
        on_finished: Callable[[StreamingOut], None] | None = None,
        keyframe_interval: float | None = None,
        retry: RetryPolicy | None = None,
        max_queue_seconds: float = MAX_QUEUE_SECONDS,
    ) -> None:
        self.id = streaming_id
        self.room_id = room_id
        self.protocol = protocol.lower() if isinstance(protocol, str) else str(protocol)
        self.url = url
        self.media = media
        self.parameters = parameters
        self.hls_directory = Path(hls_directory) if hls_directory is not None else None
        self.served_at = served_at
        self.playlist = (
            self.hls_directory / f"{streaming_id}.m3u8" if self.hls_directory is not None else None
        )
        self.segmenting: Segmenting | None = None
        self._keyframe_interval = keyframe_interval
        self.retry = retry
        self.reason: str | None = None
        self.started_at = time.time()
        self.stopped_at: float | None = None
        self._state = "connecting"
        self._sinks: dict[str, _TrackSink] = {
            "audio": _TrackSink(self, "audio"),
            "video": _TrackSink(self, "video"),
        }
        self._pusher: StreamPusher | None = None
        self._max_queue_seconds = max_queue_seconds
        self._loop = asyncio.get_running_loop()
        self._on_finished = on_finished

    @property
    def state(self) -> str:
        """connecting | streaming | stopped | failed."""
        if self._state == "connecting" and self._pusher is not None and self._pusher.started:
            return "streaming"
        return self._state

    @property
    def pusher(self) -> StreamPusher | None:
        return self._pusher

    @property
    def keyframe_interval(self) -> float:
        """How often the video source is asked for a keyframe (seconds)."""
        if self._keyframe_interval is not None:
            return self._keyframe_interval
        wanted = (self.media.video_parameters or {}).get("keyFrameInterval")
        if self.segmenting is not None:
            # Segments are cut on keyframes: one at least every segment.
            duration = float(self.segmenting.duration)
            return min(duration, float(wanted)) if wanted else duration
        return float(wanted) if wanted else PUSH_KEYFRAME_INTERVAL

    # -- lifecycle ------------------------------------------------------

    def start(self, streams: dict[str, Stream]) -> None:
        """Bind to the sources and start pushing; raises ParameterError or MuxerError."""
        if self._pusher is not None or self.stopped_at is not None:
            raise ParameterError("Streaming-out has been started already")
        destination = self._check_destination()
        audio = self._audio_source(streams, self.media.audio_from)
        video = self._video_source(streams, self.media.video_from, self.media.video_parameters)
        if audio is None and video is None:
            raise ParameterError("A streaming-out needs an audio or a video source")
        if audio is not None and audio.codec not in AUDIO_DECODERS:
            raise MuxerError(f"Cannot stream {audio.codec} audio: AAC is made from Opus or G.711")
        segment_pattern = None
        if isinstance(destination, Path):
            assert self.hls_directory is not None
            segment_pattern = str(self.hls_directory / f"{self.id}-%05d.ts")
            try:
                self.hls_directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise MuxerError(
                    f"Cannot create {self.hls_directory}: {exc.strerror or exc}"
                ) from exc
        self._pusher = StreamPusher(
            destination,
            video=video is not None,
            audio_codec=audio.codec if audio is not None else None,
            on_error=self._worker_failed,
            segmenting=self.segmenting,
            segment_pattern=segment_pattern,
            retry=self.retry,
            max_queue_seconds=self._max_queue_seconds,
        )
        if audio is not None:
            self._sinks["audio"].attach(audio)
        if video is not None:
            self._sinks["video"].attach(video)
        logger.info(
            "streaming-out started (%s to %s)",
            self.protocol,
            self._pusher.target,
            extra=self.log_ids,
        )

    def _check_destination(self) -> Destination:
        """Where the output goes, or ParameterError/MuxerError naming what is wrong."""
        if self.protocol not in PROTOCOLS:
            raise ParameterError(
                f"protocol: {self.protocol!r} is not one of {', '.join(PROTOCOLS)}"
            )
        if self.protocol in ("rtmp", "rtsp"):
            if self.parameters not in (None, {}):
                raise ParameterError(f"parameters: {self.protocol} takes none")
            if self.protocol == "rtmp":
                return check_rtmp_url(self.url)
            return check_rtsp_url(self.url)
        local = self.protocol == "hls" and self.url is None
        self.segmenting = check_segmenting(self.protocol, self.parameters, pushed=not local)
        if not local:
            return check_http_url(self.url, self.protocol)
        if self.playlist is None:
            raise MuxerError("HLS streaming-outs without a url are not enabled here")
        return self.playlist

    def _audio_source(
        self, streams: dict[str, Stream], stream_id: str | None
    ) -> PacketSource | None:
        return audio_source(streams, stream_id)

    def _video_source(
        self, streams: dict[str, Stream], stream_id: str | None, parameters: dict[str, Any] | None
    ) -> PacketSource | None:
        wanted = self.media.video_format
        if wanted is not None and (
            not isinstance(wanted, dict) or str(wanted.get("codec", "")).lower() != "h264"
        ):
            raise ParameterError("Format is not acceptable: streaming-outs carry H.264 video")
        # Size, frame rate, bitrate and keyframe interval as a subscription asks
        # for them; the codec is always H.264 (shared encode or transcoder).
        return video_source(streams, stream_id, parameters, codec="h264")

    def update(self, streams: dict[str, Stream], patch: OutputPatch) -> None:
        """PATCH: other sources, other video parameters, tracks paused or resumed.

        Everything is checked before anything changes. A new video format is
        the shared output of that format (a mixed view) or the stream's
        transcoder; the output goes on from the new source's next keyframe.
        """
        if self.state not in ("connecting", "streaming"):
            raise ParameterError("Streaming-out is not running")
        for kind in ("audio", "video"):
            if (kind in patch.sources or kind in patch.status) and getattr(
                self.media, f"{kind}_from"
            ) is None:
                raise ParameterError(f"This streaming-out has no {kind} track")
        if patch.parameters and self.media.video_from is None:
            raise ParameterError("This streaming-out has no video track")
        audio = None
        if "audio" in patch.sources:
            audio = self._audio_source(streams, patch.sources["audio"])
            if audio is not None and audio.codec not in AUDIO_DECODERS:
                raise MuxerError(f"Cannot stream {audio.codec} audio")
        video = None
        parameters = self.media.video_parameters
        video_from = patch.sources.get("video", self.media.video_from)
        if patch.changes_video:
            parameters = {**(self.media.video_parameters or {}), **patch.parameters}
            try:
                video = self._video_source(streams, video_from, parameters)
            except ParameterError as exc:
                touched = [p for p in patch.paths if p.startswith("/media/video/")]
                raise ParameterError(f"{exc} ({', '.join(touched)})") from None
        if audio is not None:
            self._sinks["audio"].attach(audio)
            self.media.audio_from = patch.sources["audio"]
        if video is not None:
            self._sinks["video"].attach(video)
            self.media.video_from = video_from
            self.media.video_parameters = parameters or None
        for kind, active in patch.status.items():
            self._sinks[kind].set_active(active)
        logger.info("streaming-out updated (%s)", ", ".join(patch.paths), extra=self.log_ids)

    async def stop(self, reason: str | None = None) -> None:
        """Stop and finish the output (HLS: the playlist gets #EXT-X-ENDLIST); idempotent.

        ``reason``: why it stops, if not on request (its room closed); kept as ``reason``.
        """
        if self.stopped_at is not None:
            return
        self._stopping(reason)
        pusher = self._pusher
        if pusher is not None:
            finished = await self._loop.run_in_executor(None, pusher.close, STOP_TIMEOUT)
            if not finished:
                logger.warning(
                    "%s did not take the end of the stream", pusher.target, extra=self.log_ids
                )
        if self._state != "failed":
            if pusher is not None and pusher.error is not None and not pusher.aborted:
                # The end of the stream (the last segments, the playlist) did not get there.
                self._state = "failed"
                self.reason = pusher.error
            else:
                self._state = "stopped"
        logger.info("streaming-out %s (%.1f s)", self._state, self.duration, extra=self.log_ids)
        if self._on_finished is not None:
            try:
                self._on_finished(self)
            except Exception:
                logger.exception("streaming-out finish listener failed", extra=self.log_ids)

    # -- media ----------------------------------------------------------

    def _write(self, kind: str, packet: Packet, keyframe: bool) -> None:
        pusher = self._pusher
        if pusher is not None and self._state == "connecting":
            pusher.write(kind, packet, keyframe)

    def _fail(self, reason: str) -> None:
        if self._state != "connecting" or self.stopped_at is not None:
            return
        logger.error("streaming-out failed: %s", reason, extra=self.log_ids)
        self._state = "failed"
        self.reason = reason
        self._detach_all()

    # -- description ----------------------------------------------------

    @property
    def duration(self) -> float:
        return self._pusher.duration if self._pusher is not None else 0.0

    @property
    def log_ids(self) -> dict[str, str]:
        """The ids a log line about this streaming-out carries."""
        return {"room": self.room_id, "streaming_out": self.id}

    def describe(self) -> dict[str, Any]:
        """OWT's streaming-out {id, protocol, url, parameters, media}, plus state and times."""
        media = self.media.to_json()
        if isinstance(media.get("audio"), dict):
            media["audio"]["format"] = {"codec": "aac", "sampleRate": AAC_RATE, "channelNum": 2}
            if not self._sinks["audio"].active:
                media["audio"]["status"] = "inactive"
        if isinstance(media.get("video"), dict):
            media["video"]["format"] = {"codec": "h264"}
            if not self._sinks["video"].active:
                media["video"]["status"] = "inactive"
        url = self.url
        if url is None:
            url = self.served_at or (str(self.playlist) if self.playlist is not None else None)
        info: dict[str, Any] = {
            "id": self.id,
            "protocol": self.protocol,
            "url": url,
            "media": media,
            "state": self.state,
            "startTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started_at)),
        }
        if self.segmenting is not None:
            info["parameters"] = self.segmenting.to_json()
        if self.reason:
            info["reason"] = self.reason
        return info

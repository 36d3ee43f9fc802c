"""StreamingIn: an outside source (RTSP, RTMP, HLS, a file) pulled in as a forward stream.

OWT's streaming-in: the room's administrator names a URL, and the source
becomes a stream of the room like a participant's publication (owner
``admin``, ``info.type`` ``streaming``): subscribable, mixable, recordable,
streamable out. The work is an :class:`IngestPuller` thread; this side, on the
event loop, is the stream the room lists.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import av

from tessera.media.mediasource import Packet
from tessera.webrtc_agent.forwardstream import DecodedTrack, ForwardStream, ForwardTrack, TrackSpec
from tessera.webrtc_agent.mediaformats import CodecFormat
from tessera.webrtc_agent.transcodelimit import TranscodeLimit

from .plan import TrackPlan, plan_tracks
from .puller import (
    IngestError,
    IngestPuller,
    OpenedSource,
    SourceOptions,
    open_source,
    redact,
)

logger = logging.getLogger(__name__)

# OWT's owner of a streaming-in (its conference agent's built-in participant).
OWNER = "admin"
# How long opening a source may take (OWT waits up to 85 s; a REST caller should not).
OPEN_TIMEOUT = 10.0
READ_TIMEOUT = 5.0


class IngestFrames(DecodedTrack):
    """Decoded video of a streaming-in: the puller decodes only while someone listens."""

    def __init__(self, track: IngestTrack) -> None:
        super().__init__(track)
        self._ingest = track

    def _on_first_sink(self) -> None:
        self._ingest.wants_changed()

    def _on_last_sink(self) -> None:
        self._ingest.wants_changed()

    def close(self) -> None:
        self._sinks.clear()


class IngestTrack(ForwardTrack):
    """One track of a streaming-in: packets from the puller, offered as they come."""

    def __init__(
        self,
        plan: TrackPlan,
        keyframe_min_interval: float,
        on_wants: Callable[[], None],
    ) -> None:
        super().__init__(
            TrackSpec(kind=plan.kind, mid="", source="streaming"), keyframe_min_interval
        )
        self.plan = plan
        self.codec = plan.codec
        self.clock_rate = 90000 if plan.kind == "video" else 48000
        self.format = (
            CodecFormat("video", plan.codec, profile=plan.profile)
            if plan.kind == "video"
            else CodecFormat("audio", "opus", sample_rate=48000, channels=2)
        )
        self._on_wants = on_wants
        self.keyframe_wanted = False
        self.decoded = IngestFrames(self)

    def wants_changed(self) -> None:
        self._on_wants()

    def _on_first_sink(self) -> None:
        self._on_wants()

    def _on_last_sink(self) -> None:
        self._on_wants()

    def _send_pli(self) -> None:
        # A transcode encodes a keyframe; a passed-through source sends its own in time.
        self.keyframe_wanted = True
        self._on_wants()

    def push(self, packet: Packet, keyframe: bool) -> None:
        if self._sinks and self.active:
            self.emit(packet, keyframe)


class StreamingIn(ForwardStream):
    """A pulled source as a forward stream of a room (``connect`` first, then it runs).

    ``status``: ``streaming``, or ``reconnecting`` (with ``reason``) while the
    source is away; the room hears of each change (``on_info_changed``).
    """

    def __init__(
        self,
        room_id: str,
        options: SourceOptions,
        wishes: dict[str, str],
        attributes: dict[str, Any] | None,
        *,
        media_in: Mapping[str, Any],
        media_out: dict[str, Any],
        transcoding: dict[str, Any],
        keyframe_min_interval: float = 1.0,
        transcodes: TranscodeLimit | None = None,
    ) -> None:
        super().__init__(
            uuid.uuid4().hex,
            OWNER,
            [],
            attributes,
            media_in=media_in,
            media_out=media_out,
            transcoding=transcoding,
            keyframe_min_interval=keyframe_min_interval,
            transcodes=transcodes,
        )
        self.room_id = room_id
        self.options = options
        self.wishes = wishes
        self.status = "connecting"
        self.reason: str | None = None
        self.started_at = time.time()
        self.plans: dict[str, TrackPlan] = {}
        self._puller: IngestPuller | None = None
        self._first_media: asyncio.Future[None] | None = None
        # Told when the puller gave up for good (an internal error): the room removes it.
        self.on_failed: Callable[[StreamingIn], None] | None = None

    @property
    def log_ids(self) -> dict[str, str]:
        return {"room": self.room_id, "stream": self.id, "url": redact(self.options.url)}

    @property
    def reconnects(self) -> int:
        return self._puller.reconnects if self._puller is not None else 0

    @property
    def segments(self) -> int:
        return self._puller.segments if self._puller is not None else 0

    async def connect(self) -> None:
        """Open and probe the source (bounded by its open timeout), then start pulling.

        Raises IngestError (unreachable, unreadable) or IngestPlanError (a codec or a
        kind the room cannot take), leaving nothing open.
        """
        loop = asyncio.get_running_loop()
        opened: OpenedSource = await loop.run_in_executor(None, open_source, self.options)
        try:
            if self.closed:
                raise IngestError("The streaming-in was stopped while it connected")
            plans = plan_tracks(opened.tracks, self.wishes, dict(self.media_in))
        except BaseException:
            await loop.run_in_executor(None, opened.container.close)
            raise
        self.plans = plans
        for kind, plan in plans.items():
            track = IngestTrack(plan, self._keyframe_min_interval, self._wants_changed)
            track.on_resize = self._resized
            source = next(t for t in opened.tracks if t.kind == kind)
            if kind == "video" and source.width and source.height:
                track.frame_size = (source.width, source.height)
                track.frame_size_known.set()
            self.tracks[kind] = track
        self._puller = IngestPuller(
            self.options, opened, plans, self.wishes, dict(self.media_in), self, loop
        )
        self._wants_changed()
        self._first_media = loop.create_future()
        self._puller.start()
        # Answered once media flows, as OWT's agent answers once the stream is ready.
        try:
            await asyncio.wait_for(asyncio.shield(self._first_media), self.options.read_timeout)
        except TimeoutError:
            self.close()
            raise IngestError(
                f"{redact(self.options.url)} sent no media within "
                f"{self.options.read_timeout:g} s of opening"
            ) from None
        except BaseException:
            self.close()
            raise
        logger.info(
            "streaming-in connected: %s",
            ", ".join(
                f"{k} {p.source_codec}" + (f" -> {p.codec}" if p.transcode else " (as is)")
                for k, p in plans.items()
            ),
            extra=self.log_ids,
        )

    # -- IngestListener (event loop thread) ---------------------------------------

    def on_packet(self, kind: str, packet: Packet, keyframe: bool) -> None:
        track = self.tracks.get(kind)
        if isinstance(track, IngestTrack) and not self.closed:
            track.push(packet, keyframe)

    def on_frame(self, frame: av.VideoFrame) -> None:
        track = self.tracks.get("video")
        if track is None or self.closed:
            return
        track.decoded.width, track.decoded.height = frame.width, frame.height
        if track.active:
            track.decoded.emit(frame)

    def on_status(self, status: str, reason: str | None) -> None:
        if self.closed or (status == self.status and reason == self.reason):
            return
        self.status, self.reason = status, reason
        first = self._first_media
        if first is not None and not first.done():
            if status == "streaming":
                first.set_result(None)
            else:
                first.set_exception(IngestError(f"{redact(self.options.url)}: {reason}"))
        logger.info(
            "streaming-in %s%s", status, f": {reason}" if reason else "", extra=self.log_ids
        )
        if status == "streaming":
            # Subscribers start again from the next keyframe of the new connection.
            for track in self.tracks.values():
                track.request_keyframe()
        if status == "failed" and self.on_failed is not None:
            self.on_failed(self)
        elif self.on_info_changed is not None:
            self.on_info_changed(self)

    def on_resolution(self, width: int, height: int) -> None:
        track = self.tracks.get("video")
        if track is None or track.frame_size == (width, height):
            return
        known = track.frame_size is not None
        track.frame_size = (width, height)
        track.frame_size_known.set()
        if known and self.on_info_changed is not None and not self.closed:
            self.on_info_changed(self)

    def _wants_changed(self) -> None:
        puller = self._puller
        if puller is None:
            return
        wants = puller.wants
        for kind in ("audio", "video"):
            track = self.tracks.get(kind)
            wants.packets[kind] = track is not None and track.sink_count > 0
        video = self.tracks.get("video")
        wants.frames = video is not None and video.decoded.sink_count > 0
        if isinstance(video, IngestTrack) and video.keyframe_wanted:
            video.keyframe_wanted = False
            wants.keyframe = True

    # -- what the room and REST read ----------------------------------------------

    def info(self) -> dict[str, Any]:
        info = super().info()
        for track in info["media"]["tracks"]:
            track.pop("mid", None)
        info["info"]["type"] = "streaming"
        info["info"]["status"] = self.status
        if self.reason is not None and self.status != "streaming":
            info["info"]["reason"] = self.reason
        return info

    def describe(self) -> dict[str, Any]:
        """The REST object: the StreamInfo, and the source it is pulled from."""
        return {
            **self.info(),
            "connection": {
                "url": redact(self.options.url),
                "transportProtocol": self.options.transport_protocol,
                "bufferSize": self.options.buffer_size,
            },
            "reconnects": self.reconnects,
            "startTime": int(self.started_at * 1000),
        }

    def close(self) -> None:
        if self.closed:
            return
        if self._puller is not None:
            self._puller.stop()
        super().close()

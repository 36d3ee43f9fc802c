"""ForwardStream: one publication's tracks, offered to subscriptions and mixers."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any

import av
from aiortc import RTCRtpReceiver
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from av.video.reformatter import VideoReformatter

from tessera.media import aiortcext
from tessera.media.aiortcext import EncodedFrameTap
from tessera.media.bandwidth import Rung
from tessera.media.mediasource import (
    VIDEO_TIME_BASE,
    FrameSource,
    KeyframeRequester,
    Packet,
    PacketSource,
    ParameterError,
    Stream,
    VideoFormat,
    is_keyframe,
    vp8_frame_size,
)
from tessera.media.streaminfo import optional_video
from tessera.media.videoencoder import EncoderSettings, VideoEncoder, default_bitrate

from .forwardladder import ReceivedRate, forward_ladder
from .mediaformats import CodecFormat
from .transcodelimit import TranscodeLimit

logger = logging.getLogger(__name__)

# A transcode's keyframe at most 3x a frame's share of its bitrate (libwebrtc's least
# max-intra-rate): a subscriber is put on a rung because its link is small, and a keyframe
# several times larger than the bottleneck's queue (a fresh 320x180 VP8 encoder's first one
# of a noisy picture: 34 kB at 288 kbit/s) is lost at its tail at every rung switch.
MAX_INTRA_RATE = 300


@dataclass
class TrackSpec:
    """A track as the publisher declared it in its `publish` request."""

    kind: str
    mid: str
    source: str
    parameters: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)


class ForwardTrack(PacketSource):
    """The publisher's encoded frames of one track, as received (no decode)."""

    def __init__(self, spec: TrackSpec, keyframe_min_interval: float) -> None:
        super().__init__(spec.kind, "", 90000 if spec.kind == "video" else 48000)
        self.spec = spec
        self.receiver: RTCRtpReceiver | None = None
        self.tap: EncodedFrameTap | None = None
        self.decoded = DecodedTrack(self)
        self._keyframes = KeyframeRequester(self._send_pli, keyframe_min_interval)
        self.active = True  # False while the publisher has paused this track
        self.frame_size: tuple[int, int] | None = None  # from the latest VP8 keyframe
        self.frame_size_known = asyncio.Event()
        # Called when a later keyframe has another size (the publisher changed resolution).
        self.on_resize: Callable[[], None] | None = None
        self.format: CodecFormat | None = None  # what was negotiated, once bound
        self.received = ReceivedRate()  # the publisher's bitrate, for the ladder's top rung

    def bind(self, receiver: RTCRtpReceiver, codec: RTCRtpCodecParameters) -> None:
        """Attach to the aiortc receiver once the transport negotiated the track."""
        self.receiver = receiver
        self.codec = codec.name.lower()
        self.clock_rate = codec.clockRate
        self.codec_parameters = codec
        self.format = codec_format(self.kind, codec)
        self.tap = aiortcext.install_encoded_tap(receiver, self._on_encoded)
        # Forwarded and mixed media both leave sooner: -33 ms video, -80 ms audio.
        aiortcext.install_low_latency_buffer(receiver)
        if self.decoded.sink_count:
            self.tap.decode = True

    def _on_encoded(self, codec: RTCRtpCodecParameters, data: bytes, timestamp: int) -> None:
        if self.kind == "video":
            self.received.add(time.monotonic(), len(data))
            # Header bytes only: None for anything but a VP8 keyframe.
            size = vp8_frame_size(data) if self.codec == "vp8" else None
            if size is not None and size != self.frame_size:
                resized = self.frame_size is not None
                self.frame_size = size
                if resized and self.on_resize is not None:
                    self.on_resize()
            if not self.frame_size_known.is_set() and (size is not None or self.codec != "vp8"):
                self.frame_size_known.set()
        if not self._sinks or not self.active:
            return
        packet = av.Packet(data)
        packet.pts = timestamp
        packet.time_base = Fraction(1, codec.clockRate)
        keyframe = self.kind == "audio" or is_keyframe(codec.name.lower(), data)
        self.emit(packet, keyframe)

    def request_keyframe(self) -> None:
        if self.kind == "video":
            self._keyframes.request()

    def request_first_keyframe(self) -> None:
        if self.kind == "video":
            self._keyframes.request_first()

    def request_keyframe_now(self) -> None:
        if self.kind == "video":
            self._keyframes.request_now()

    def _send_pli(self) -> None:
        if self.receiver is not None:
            aiortcext.send_picture_loss(self.receiver)

    def close(self) -> None:
        self._keyframes.close()
        self.decoded.close()
        super().close()


class DecodedTrack(FrameSource):
    """Decoded frames of a ForwardTrack; decoding runs only while someone listens."""

    def __init__(self, track: ForwardTrack) -> None:
        super().__init__(track.kind)
        self._track = track
        self._reader: asyncio.Task[None] | None = None
        self.width: int | None = None
        self.height: int | None = None

    def _on_first_sink(self) -> None:
        track = self._track
        if track.tap is not None:
            track.tap.decode = True
        # The decoder has to start on a keyframe: asked for at once, not after the interval
        # keyframe requests keep (a transcoder starting is a subscriber waiting for its rung).
        track.request_keyframe_now()
        if self._reader is None and track.receiver is not None:
            self._reader = asyncio.ensure_future(self._read(track.receiver))

    def _on_last_sink(self) -> None:
        if self._track.tap is not None:
            self._track.tap.decode = False

    async def _read(self, receiver: RTCRtpReceiver) -> None:
        # aiortc's decoder thread hands frames to the receiver's track queue.
        try:
            while True:
                frame = await receiver.track.recv()
                if isinstance(frame, av.VideoFrame):
                    self.width, self.height = frame.width, frame.height
                elif not isinstance(frame, av.AudioFrame):
                    continue
                if self._sinks:
                    self.emit(frame)
        except (MediaStreamError, asyncio.CancelledError):
            pass

    def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            self._reader = None
        super().close()


class VideoTranscoder(PacketSource):
    """Decodes a forward track and encodes it in one other format, shared by all who want it.

    Scaling and encoding run on a worker thread of their own; the newest frame
    wins when the encoder falls behind, so a slow encode never queues up.
    """

    def __init__(
        self,
        track: ForwardTrack,
        fmt: VideoFormat,
        keyframe_min_interval: float,
        on_idle: Any,
    ) -> None:
        super().__init__("video", fmt.codec, 90000)
        self.track = track
        self.format = fmt
        self._on_idle = on_idle
        self._executor = concurrent.futures.ThreadPoolExecutor(1, "transcode")
        self._reformatter = VideoReformatter()
        self._encoder: VideoEncoder | None = None
        self._busy = False
        self._pending: tuple[av.VideoFrame, int] | None = None
        self._next_due = 0
        self._force_keyframe = True
        self._keyframes = KeyframeRequester(self._mark_keyframe, keyframe_min_interval)
        self.encoded = 0

    @property
    def encoder(self) -> VideoEncoder | None:
        return self._encoder

    def _on_first_sink(self) -> None:
        self.track.decoded.add_sink(self)

    def _on_last_sink(self) -> None:
        self.track.decoded.remove_sink(self)
        self._on_idle(self)

    def request_keyframe(self) -> None:
        self._keyframes.request()

    def request_first_keyframe(self) -> None:
        self._keyframes.request_first()

    def _mark_keyframe(self) -> None:
        self._force_keyframe = True

    def on_frame(self, frame: av.VideoFrame | av.AudioFrame) -> None:
        if not isinstance(frame, av.VideoFrame) or self.closed:
            return
        pts = int(frame.pts or 0)
        if self.format.framerate:
            if pts < self._next_due:
                return  # decimate to the requested frame rate
            step = 90000 // self.format.framerate
            self._next_due = max(self._next_due + step, pts - step)
        if self._busy:
            self._pending = (frame, pts)
            return
        self._submit(frame, pts)

    def _submit(self, frame: av.VideoFrame, pts: int) -> None:
        self._busy = True
        keyframe, self._force_keyframe = self._force_keyframe, False
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, self._encode, frame, pts, keyframe)
        future.add_done_callback(self._encoded)

    def _encode(self, frame: av.VideoFrame, pts: int, keyframe: bool) -> list[Packet]:
        width = self.format.width or frame.width
        height = self.format.height or frame.height
        if self._encoder is None or (
            self._encoder.settings.width,
            self._encoder.settings.height,
        ) != (
            width,
            height,
        ):
            framerate = self.format.framerate or 30
            bitrate = default_bitrate(width, height, framerate, self.format.codec)
            if self.format.bitrate:
                bitrate = int(bitrate * self.format.bitrate)
            self._encoder = VideoEncoder(
                EncoderSettings(
                    codec=self.format.codec,
                    width=width,
                    height=height,
                    framerate=framerate,
                    bitrate=bitrate,
                    keyframe_interval=self.format.keyframe_interval or 100,
                    max_intra_rate=MAX_INTRA_RATE,
                )
            )
            keyframe = True
        scaled = self._reformatter.reformat(
            frame, width=width, height=height, format="yuv420p", threads=1
        )
        return self._encoder.encode(scaled, pts, keyframe)

    def _encoded(self, future: asyncio.Future[list[Packet]]) -> None:
        self._busy = False
        if self.closed or future.cancelled():
            return
        if future.exception() is not None:
            logger.error("transcode failed: %s", future.exception())
        else:
            for packet in future.result():
                self.encoded += 1
                self.emit(packet, bool(packet.is_keyframe))
        if self._pending is not None:
            frame, pts = self._pending
            self._pending = None
            self._submit(frame, pts)

    def close(self) -> None:
        if self.closed:
            return
        super().close()
        self._keyframes.close()
        self.track.decoded.remove_sink(self)
        self._executor.shutdown(wait=False, cancel_futures=True)


class ForwardStream(Stream):
    """A participant's published stream, offered as is (and transcoded on demand)."""

    type = "forward"

    def __init__(
        self,
        stream_id: str,
        owner: str,
        tracks: list[TrackSpec],
        attributes: dict[str, Any] | None,
        *,
        media_in: Mapping[str, Any],
        media_out: dict[str, Any],
        transcoding: dict[str, Any],
        keyframe_min_interval: float = 1.0,
        transcodes: TranscodeLimit | None = None,
    ) -> None:
        self.id = stream_id
        self.owner = owner
        self.attributes = attributes or {}
        # The room's mediaIn (OWT's JSON form): the formats this publication may use.
        self.media_in = media_in
        self.media_out = media_out
        self.transcoding = transcoding
        self.in_views: list[str] = []
        self._keyframe_min_interval = keyframe_min_interval
        # The agent's limit on transcodes at once (None: none, as in unit tests).
        self._transcodes = transcodes
        self.tracks: dict[str, ForwardTrack] = {
            spec.kind: ForwardTrack(spec, keyframe_min_interval) for spec in tracks
        }
        # Told when info() changes other than by status (the room sends stream update ".").
        self.on_info_changed: Callable[[ForwardStream], None] | None = None
        for track in self.tracks.values():
            track.on_resize = self._resized
        self.transcoders: dict[VideoFormat, VideoTranscoder] = {}
        self.closed = False

    def track_by_mid(self, mid: str) -> ForwardTrack | None:
        return next((t for t in self.tracks.values() if t.spec.mid == mid), None)

    def has_track(self, kind: str) -> bool:
        return kind in self.tracks

    def accepts(self, kind: str, codec: RTCRtpCodecParameters) -> bool:
        """Whether the room takes `kind` from the publisher in this offered codec."""
        formats = self.media_in.get(kind)
        return isinstance(formats, list) and codec_format(kind, codec).accepted_by(formats)

    def codec(self, kind: str) -> str | None:
        track = self.tracks.get(kind)
        return track.codec if track else None

    def set_active(self, kind: str, active: bool) -> None:
        """Pause or resume forwarding a track (stream-control pause/play)."""
        track = self.tracks.get(kind)
        if track is None or track.active == active:
            return
        track.active = active
        if active:
            track.request_first_keyframe()

    def _resized(self) -> None:
        video = self.tracks.get("video")
        declared = video is not None and "resolution" in video.spec.parameters
        if not declared and self.on_info_changed is not None and not self.closed:
            self.on_info_changed(self)

    def _resolution(self, track: ForwardTrack) -> tuple[int, int] | None:
        res = track.spec.parameters.get("resolution")
        if isinstance(res, dict) and isinstance(res.get("width"), int):
            return int(res["width"]), int(res["height"])
        if track.frame_size is not None:
            return track.frame_size
        if track.decoded.width and track.decoded.height:
            return track.decoded.width, track.decoded.height
        return None

    async def first_media(self, timeout: float) -> None:
        """Wait (at most `timeout`) until the video's frame size is known, for StreamInfo."""
        video = self.tracks.get("video")
        if video is not None:
            try:
                await asyncio.wait_for(video.frame_size_known.wait(), timeout)
            except TimeoutError:
                pass

    def info(self) -> dict[str, Any]:
        tracks = []
        for track in self.tracks.values():
            entry: dict[str, Any] = {
                "id": track.spec.id,
                "type": track.kind,
                "source": track.spec.source,
                "mid": track.spec.mid,
                "status": "active" if track.active else "inactive",
            }
            if track.kind == "audio":
                fmt: dict[str, Any] = {"codec": track.codec or "opus"}
                if track.codec == "opus":
                    fmt.update(sampleRate=48000, channelNum=2)
                entry["format"] = track.format.to_json() if track.format else fmt
            else:
                codec = track.codec or "vp8"
                entry["format"] = track.format.to_json() if track.format else {"codec": codec}
                resolution = self._resolution(track)
                framerate = track.spec.parameters.get("framerate")
                params: dict[str, Any] = {}
                if resolution:
                    params["resolution"] = {"width": resolution[0], "height": resolution[1]}
                if isinstance(framerate, int):
                    params["framerate"] = framerate
                if params:
                    entry["parameters"] = params
                optional = optional_video(
                    codec,
                    resolution,
                    framerate if isinstance(framerate, int) else None,
                    self.media_out,
                    self.transcoding,
                )
                if optional:
                    entry["optional"] = optional
            tracks.append(entry)
        return {
            "id": self.id,
            "type": "forward",
            "data": False,
            "media": {"tracks": tracks},
            "info": {
                "owner": self.owner,
                "type": "webrtc",
                "inViews": list(self.in_views),
                "attributes": self.attributes,
            },
        }

    def packet_source(
        self, kind: str, fmt: VideoFormat | str, subscriber: str | None = None
    ) -> PacketSource:
        track = self.tracks.get(kind)
        if track is None:
            raise ParameterError(f"Stream has no {kind} track")
        if kind == "audio" or isinstance(fmt, str):
            codec = fmt if isinstance(fmt, str) else track.codec
            if codec != track.codec:
                raise ParameterError(f"Audio codec {codec} is not acceptable")
            return track
        if fmt.codec == track.codec and fmt.is_original:
            return track
        transcoder = self.transcoders.get(fmt)
        if transcoder is None:
            if self.closed:
                raise ParameterError("Stream does NOT exist")
            if self._transcodes is not None and not self._transcodes.take():
                # Logged by the caller (the subscription's failure, or the adaptive rung's).
                logger.debug("transcode of %s refused: %s", fmt, self._transcodes.refusal())
                raise ParameterError(self._transcodes.refusal())
            transcoder = VideoTranscoder(
                track, fmt, self._keyframe_min_interval, self._transcoder_idle
            )
            self.transcoders[fmt] = transcoder
        return transcoder

    # -- the adaptive ladder (forwardladder.py; webrtc_agent/adaptive.py moves subscribers) --

    def ladder(self, fmt: VideoFormat) -> tuple[Rung, ...]:
        """The rungs a subscriber of `fmt` is switched between, highest first.

        Only a subscriber of the publication as it is (its codec, no size, frame
        rate, bitrate or keyframe interval asked for) adapts, and only once the
        picture's size is known; one rung or none otherwise.
        """
        track = self.tracks.get("video")
        if track is None or track.codec == "" or fmt.codec != track.codec:
            return ()
        size = self._resolution(track)
        if size is None:
            return ()
        bitrate = track.received.bitrate(time.monotonic())
        if bitrate is None:
            bitrate = default_bitrate(size[0], size[1], 30, track.codec)
        if not fmt.is_original or not self._may_scale():
            return (Rung(size[0], size[1], bitrate),)
        return forward_ladder(size[0], size[1], bitrate, track.codec)

    def _may_scale(self) -> bool:
        """The room allows resolution transcoding (OWT's transcoding.video.parameters.resolution):
        rungs are such transcodes, so a room that forbids them keeps every subscriber on top."""
        video = self.transcoding.get("video") if self.transcoding else None
        parameters = video.get("parameters") if isinstance(video, dict) else None
        return isinstance(parameters, dict) and bool(parameters.get("resolution"))

    def rung_source(self, fmt: VideoFormat, rung: int) -> PacketSource:
        """Rung 0: the publisher's packets; below: the shared transcoder of that size (made
        on first use, closed when its last subscriber leaves). ParameterError if no such rung."""
        rungs = self.ladder(fmt)
        if not 0 <= rung < len(rungs):
            raise ParameterError(f"The stream has no rung {rung}")
        if self.closed:
            raise ParameterError("Stream does NOT exist")
        if rung == 0:
            return self.packet_source("video", fmt)
        step = rungs[rung]
        return self.packet_source("video", replace(fmt, width=step.width, height=step.height))

    def _transcoder_idle(self, transcoder: VideoTranscoder) -> None:
        if self.transcoders.get(transcoder.format) is transcoder:
            del self.transcoders[transcoder.format]
            if self._transcodes is not None:
                self._transcodes.give_back()
        transcoder.close()

    def frame_source(self, kind: str) -> FrameSource | None:
        track = self.tracks.get(kind)
        return track.decoded if track else None

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for transcoder in list(self.transcoders.values()):
            self._transcoder_idle(transcoder)
        for track in self.tracks.values():
            track.close()


def codec_format(kind: str, codec: RTCRtpCodecParameters) -> CodecFormat:
    """The OWT format of an aiortc codec of an SDP m-line."""
    return CodecFormat.from_sdp(kind, codec.name, codec.clockRate, codec.channels, codec.parameters)


__all__ = ["VIDEO_TIME_BASE", "ForwardStream", "ForwardTrack", "TrackSpec", "VideoTranscoder"]

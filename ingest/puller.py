"""IngestPuller: the worker thread of a streaming-in (PyAV demux, pass-through or transcode).

Everything here but ``start``/``stop`` runs on the puller's own thread, never on
the event loop: opening the source (bounded by a timeout), demuxing, the H.264
bitstream filter, decoding, encoding (one transcode per source, whoever
listens) and pacing. Results reach the loop through ``call_soon_threadsafe``
on an :class:`IngestListener`. When the source drops, the thread reconnects
with growing delays until it is stopped; a file loops.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import av
from av.audio.resampler import AudioResampler
from av.bitstream import BitStreamFilterContext
from av.video.reformatter import VideoReformatter

from tessera.media.mediasource import VIDEO_TIME_BASE, Packet, is_keyframe
from tessera.media.videoencoder import EncoderSettings, VideoEncoder, default_bitrate

from .clock import IngestClock
from .plan import IngestPlanError, SourceTrack, TrackPlan, plan_tracks

logger = logging.getLogger(__name__)

AUDIO_TIME_BASE = Fraction(1, 48000)
OPUS_FRAME = 960  # 20 ms at 48 kHz: what WebRTC receivers expect per packet
# Reconnection delays: 0.5 s, doubling, at most 15 s.
FIRST_DELAY = 0.5
MAX_DELAY = 15.0


class IngestError(Exception):
    """The source cannot be opened or read: the message names the source and why."""


def reconnect_delay(attempt: int) -> float:
    """Seconds before reconnection attempt ``attempt`` (0 for the first)."""
    return float(min(MAX_DELAY, FIRST_DELAY * 2 ** min(attempt, 10)))


def redact(url: str) -> str:
    """The url without its user and password (for logs and errors)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


@dataclass(frozen=True)
class SourceOptions:
    """How to reach a source: OWT's ``connection`` and Tessera's timeouts."""

    url: str
    scheme: str
    transport_protocol: str = "tcp"
    buffer_size: int = 8192
    open_timeout: float = 10.0
    read_timeout: float = 5.0

    @property
    def paced(self) -> bool:
        """Whether packets are held until their time: files and HLS are read faster than
        real time; an RTSP or RTMP server sends in real time itself (holding its packets
        would only add the probe's backlog as latency)."""
        return self.scheme not in ("rtsp", "rtsps", "rtmp", "rtmps")

    def container_options(self) -> dict[str, str]:
        if self.scheme in ("rtsp", "rtsps"):
            options = {"rtsp_transport": self.transport_protocol}
            if self.transport_protocol == "udp":
                options["buffer_size"] = str(self.buffer_size)
            return options
        return {}


@dataclass
class OpenedSource:
    """A source opened and probed: its container and what its tracks are."""

    container: Any  # av.container.InputContainer
    tracks: list[SourceTrack]
    streams: dict[str, Any]  # kind -> av stream (the first of each kind)
    loops: bool  # a file: it plays again from the start at its end


def open_source(options: SourceOptions) -> OpenedSource:
    """Open and probe a source (blocking: call it off the loop). IngestError if it fails."""
    try:
        container = av.open(
            options.url,
            options=options.container_options(),
            timeout=(options.open_timeout, options.read_timeout),
        )
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise IngestError(f"Cannot open {redact(options.url)}: {_reason(exc)}") from None
    tracks: list[SourceTrack] = []
    streams: dict[str, Any] = {}
    for stream in container.streams:
        if stream.type not in ("audio", "video") or stream.type in streams:
            continue
        context: Any = stream.codec_context
        streams[stream.type] = stream
        if stream.type == "video":
            tracks.append(
                SourceTrack(
                    "video",
                    context.name,
                    profile=context.profile,
                    b_frames=bool(context.has_b_frames),
                    width=context.width or None,
                    height=context.height or None,
                )
            )
        else:
            tracks.append(
                SourceTrack(
                    "audio",
                    context.name,
                    sample_rate=context.sample_rate or None,
                    channels=context.channels or None,
                )
            )
    duration = container.duration
    loops = options.scheme in ("file", "http", "https") and bool(duration and duration > 0)
    return OpenedSource(container, tracks, streams, loops)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, av.FFmpegError) and exc.strerror:
        return str(exc.strerror)
    return str(exc) or type(exc).__name__


class IngestListener(Protocol):
    """What the puller tells the stream (each call on the event loop thread)."""

    def on_packet(self, kind: str, packet: Packet, keyframe: bool) -> None: ...
    def on_frame(self, frame: av.VideoFrame) -> None: ...
    def on_status(self, status: str, reason: str | None) -> None: ...
    def on_resolution(self, width: int, height: int) -> None: ...


class Wants:
    """What the loop side wants now (plain attributes the thread reads)."""

    def __init__(self) -> None:
        self.packets: dict[str, bool] = {"audio": False, "video": False}
        self.frames = False
        self.keyframe = False


class _Timestamps:
    """Each kind's last timestamp, so that output timestamps only go up (across segments)."""

    def __init__(self) -> None:
        self.last: dict[str, int] = {}

    def next(self, kind: str, pts: int) -> int:
        last = self.last.get(kind)
        if last is not None and pts <= last:
            pts = last + 1
        self.last[kind] = pts
        return pts


class _VideoPath:
    """One segment's video: pass-through (with a decode for the mixer) or a transcode."""

    def __init__(self, stream: Any, plan: TrackPlan, puller: IngestPuller) -> None:
        self.plan = plan
        self.puller = puller
        self.stream = stream
        self.time_base = stream.time_base
        self.filter: BitStreamFilterContext | None = None
        extradata = bytes(stream.codec_context.extradata or b"")
        self.parameter_sets = b""
        if plan.passthrough and plan.codec == "h264":
            if extradata[:1] == b"\x01":
                # MP4/FLV (avcC): length-prefixed NAL units -> Annex B with SPS/PPS at IDRs.
                self.filter = BitStreamFilterContext("h264_mp4toannexb", stream)
            else:
                self.parameter_sets = extradata
        self.decoder: Any = None
        self.decoding = False  # started on a keyframe
        self.reformatter = VideoReformatter()

    def _decoder(self) -> Any:
        if self.decoder is None:
            context = av.CodecContext.create(self.stream.codec_context.name, "r")
            context.extradata = self.stream.codec_context.extradata
            context.thread_count = 1
            self.decoder = context
        return self.decoder

    def handle(self, packet: Any, clock: IngestClock) -> None:
        wants = self.puller.wants
        if self.plan.passthrough:
            # Before the filter: it takes the packet's contents (and its timestamps).
            pts = self._pts(packet, clock)
            if wants.frames:
                self._decode(packet, clock, encode=False)
            else:
                self.decoding = False
            for data in self._annexb(packet):
                keyframe = is_keyframe(self.plan.codec, data)
                if keyframe and self.parameter_sets and not _has_sps(data):
                    data = self.parameter_sets + data
                if wants.packets["video"]:
                    self.puller.emit_packet("video", data, pts, VIDEO_TIME_BASE, keyframe)
            return
        if not (wants.packets["video"] or wants.frames):
            self.decoding = False
            return
        self._decode(packet, clock, encode=wants.packets["video"])

    def _annexb(self, packet: Any) -> list[bytes]:
        if self.filter is None:
            return [bytes(packet)]
        return [bytes(p) for p in self.filter.filter(packet)]

    def _pts(self, packet: Any, clock: IngestClock) -> int:
        time_value = packet.pts if packet.pts is not None else packet.dts
        return round(clock.place(float(time_value * self.time_base)) * 90000)

    def _starts_picture(self, packet: Any) -> bool:
        # Not every demuxer flags keyframes (RTP depacketizers may not): read the bitstream.
        if packet.is_keyframe:
            return True
        codec = self.stream.codec_context.name
        return codec in ("vp8", "h264") and is_keyframe(codec, bytes(packet))

    def _decode(self, packet: Any, clock: IngestClock, *, encode: bool) -> None:
        if not self.decoding:
            if not self._starts_picture(packet):
                return
            self.decoding = True
        try:
            frames = self._decoder().decode(packet)
        except av.FFmpegError as exc:
            logger.debug("streaming-in video decode failed: %s", exc)
            return
        for frame in frames:
            if frame.pts is None:
                continue
            pts = round(clock.place(float(frame.pts * self.time_base)) * 90000)
            self.puller.note_resolution(frame.width, frame.height)
            if self.puller.wants.frames:
                self.puller.emit_frame(frame)
            if encode:
                self.puller.encode_video(frame, pts, self.reformatter)


class _AudioPath:
    """One segment's audio: Opus passed through, or decoded and encoded to Opus once."""

    def __init__(self, stream: Any, plan: TrackPlan, puller: IngestPuller) -> None:
        self.plan = plan
        self.puller = puller
        self.stream = stream
        self.time_base = stream.time_base
        self.decoder: Any = None
        self.resampler: AudioResampler | None = None
        self.next_pts: int | None = None

    def handle(self, packet: Any, clock: IngestClock) -> None:
        if not self.puller.wants.packets["audio"]:
            self.next_pts = None
            return
        if self.plan.passthrough:
            time_value = packet.pts if packet.pts is not None else packet.dts
            pts = round(clock.place(float(time_value * self.time_base)) * 48000)
            self.puller.emit_packet("audio", bytes(packet), pts, AUDIO_TIME_BASE, True)
            return
        if self.decoder is None:
            context = av.CodecContext.create(self.stream.codec_context.name, "r")
            context.extradata = self.stream.codec_context.extradata
            if self.stream.codec_context.sample_rate:
                context.sample_rate = self.stream.codec_context.sample_rate
            context.layout = self.stream.codec_context.layout
            self.decoder = context
            self.resampler = AudioResampler("s16", "stereo", 48000, frame_size=OPUS_FRAME)
        try:
            frames = self.decoder.decode(packet)
        except av.FFmpegError as exc:
            logger.debug("streaming-in audio decode failed: %s", exc)
            return
        assert self.resampler is not None
        for frame in frames:
            if self.next_pts is None:
                start = frame.pts if frame.pts is not None else packet.pts
                self.next_pts = round(clock.place(float(start * self.time_base)) * 48000)
            for out in self.resampler.resample(frame):
                out.pts = self.next_pts
                out.time_base = AUDIO_TIME_BASE
                self.next_pts += out.samples
                self.puller.encode_audio(out)


def _has_sps(data: bytes) -> bool:
    i = 0
    while True:
        i = data.find(b"\x00\x00\x01", i)
        if i < 0 or i + 3 >= len(data):
            return False
        if data[i + 3] & 0x1F == 7:
            return True
        i += 3


class IngestPuller:
    """The thread that pulls one source for its stream, until stopped."""

    def __init__(
        self,
        options: SourceOptions,
        opened: OpenedSource,
        plans: dict[str, TrackPlan],
        wishes: dict[str, str],
        media_in: dict[str, Any],
        listener: IngestListener,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.options = options
        self.plans = plans
        self.wishes = wishes
        self.media_in = media_in
        self.listener = listener
        self.wants = Wants()
        self._loop = loop
        self._opened: OpenedSource | None = opened
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="streaming-in", daemon=True)
        self._clock = IngestClock()
        self._timestamps = _Timestamps()
        self._video_encoder: VideoEncoder | None = None
        self._audio_encoder: Any = None
        self._size: tuple[int, int] | None = None
        self.reconnects = 0
        self.packets = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end (it closes the source itself, soon)."""
        self._stop.set()

    @property
    def segments(self) -> int:
        """Connections (and loops of a file) media was read from so far."""
        return self._clock.segments

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    # -- the thread -----------------------------------------------------------

    def _call(self, function: Callable[..., None], *args: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(function, *args)
        except RuntimeError:  # the loop closed under us
            self._stop.set()

    def _run(self) -> None:
        attempt = 0
        reason = ""
        try:
            while not self._stop.is_set():
                opened, self._opened = self._opened, None
                if opened is None:
                    opened, reason = self._reconnect(attempt, reason)
                    if opened is None:
                        attempt += 1
                        continue
                    self.reconnects += 1
                attempt = 0
                try:
                    ended = self._pump(opened)
                    reason = "the source ended"
                except Exception as exc:
                    ended = False
                    reason = f"the source failed: {_reason(exc)}"
                finally:
                    _close(opened.container)
                if self._stop.is_set():
                    break
                if ended and opened.loops:
                    self._opened = self._reopen_quietly()
                    if self._opened is not None:
                        continue
                logger.info(
                    "streaming-in source dropped: %s",
                    reason,
                    extra={"url": redact(self.options.url)},
                )
                self._call(self.listener.on_status, "reconnecting", reason)
        except Exception:
            logger.exception("streaming-in puller failed")
            self._call(self.listener.on_status, "failed", "internal error")
        finally:
            if self._opened is not None:
                _close(self._opened.container)

    def _reopen_quietly(self) -> OpenedSource | None:
        try:
            opened = open_source(self.options)
            plan_tracks(opened.tracks, self.wishes, self.media_in)
        except (IngestError, IngestPlanError):
            return None
        return opened

    def _reconnect(self, attempt: int, reason: str) -> tuple[OpenedSource | None, str]:
        if self._stop.wait(reconnect_delay(attempt)):
            return None, reason
        try:
            opened = open_source(self.options)
        except IngestError as exc:
            self._call(self.listener.on_status, "reconnecting", str(exc))
            return None, str(exc)
        try:
            plans = plan_tracks(opened.tracks, self.wishes, self.media_in)
        except IngestPlanError as exc:
            _close(opened.container)
            self._call(self.listener.on_status, "reconnecting", str(exc))
            return None, str(exc)
        changed = [k for k in self.plans if k not in plans or plans[k].codec != self.plans[k].codec]
        if changed or set(plans) != set(self.plans):
            _close(opened.container)
            why = "the source's tracks changed (another codec or kind); waiting for the original"
            self._call(self.listener.on_status, "reconnecting", why)
            return None, why
        self.plans = plans
        return opened, reason

    def _pump(self, opened: OpenedSource) -> bool:
        """Demux until the source ends (True) or stop is asked (False); raises if it fails."""
        paths: dict[int, _VideoPath | _AudioPath] = {}
        for kind, plan in self.plans.items():
            stream = opened.streams[kind]
            paths[stream.index] = (
                _VideoPath(stream, plan, self)
                if kind == "video"
                else _AudioPath(stream, plan, self)
            )
        self._clock.new_segment()
        streaming = False
        for packet in opened.container.demux(*[opened.streams[k] for k in self.plans]):
            if self._stop.is_set():
                return False
            path = paths.get(packet.stream.index)
            time_value = packet.dts if packet.dts is not None else packet.pts
            if path is None or time_value is None or packet.size == 0:
                continue
            now = time.monotonic()
            timeline = self._clock.timeline(float(time_value * packet.time_base), now)
            wait = self._clock.wait(timeline, now) if self.options.paced else 0.0
            if wait > 0 and self._stop.wait(wait):
                return False
            if not streaming:
                streaming = True
                self._call(self.listener.on_status, "streaming", None)
            path.handle(packet, self._clock)
            self.packets += 1
        return True

    # -- what paths call (on the thread) ----------------------------------------

    def emit_packet(
        self, kind: str, data: bytes, pts: int, time_base: Fraction, keyframe: bool
    ) -> None:
        packet = av.Packet(data)
        packet.pts = self._timestamps.next(kind, pts)
        packet.time_base = time_base
        self._call(self.listener.on_packet, kind, packet, keyframe)

    def emit_frame(self, frame: av.VideoFrame) -> None:
        self._call(self.listener.on_frame, frame)

    def note_resolution(self, width: int, height: int) -> None:
        if self._size != (width, height):
            self._size = (width, height)
            self._call(self.listener.on_resolution, width, height)

    def encode_video(self, frame: av.VideoFrame, pts: int, reformatter: VideoReformatter) -> None:
        encoder = self._video_encoder
        width, height = frame.width - frame.width % 2, frame.height - frame.height % 2
        keyframe = self.wants.keyframe
        if encoder is None or (encoder.settings.width, encoder.settings.height) != (width, height):
            codec = self.plans["video"].codec
            encoder = self._video_encoder = VideoEncoder(
                EncoderSettings(
                    codec=codec,
                    width=width,
                    height=height,
                    framerate=30,
                    bitrate=default_bitrate(width, height, 30, codec),
                    keyframe_interval=2,
                )
            )
            keyframe = True
        self.wants.keyframe = False
        scaled = reformatter.reformat(frame, width=width, height=height, format="yuv420p")
        for packet in encoder.encode(scaled, pts, keyframe):
            self.emit_packet("video", bytes(packet), pts, VIDEO_TIME_BASE, bool(packet.is_keyframe))

    def encode_audio(self, frame: av.AudioFrame) -> None:
        if self._audio_encoder is None:
            context = av.CodecContext.create("libopus", "w")
            context.sample_rate = 48000
            context.layout = "stereo"
            context.format = "s16"
            context.bit_rate = 64000
            context.time_base = AUDIO_TIME_BASE
            context.open()
            self._audio_encoder = context
        for packet in self._audio_encoder.encode(frame):
            pts = int(packet.pts) if packet.pts is not None else int(frame.pts or 0)
            self.emit_packet("audio", bytes(packet), pts, AUDIO_TIME_BASE, True)


def _close(container: Any) -> None:
    try:
        container.close()
    except Exception as exc:
        logger.debug("closing a streaming-in source: %s", exc)

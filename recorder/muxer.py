"""PacketMuxer: writes already-encoded audio/video packets into one recording file.

A recording is a sink of a stream's shared `PacketSource`s: it receives the
very packets that subscribers get and muxes them, so recording a view costs
muxing (≈ 0.05 ms per 720p frame), never another encode.

What FFmpeg (PyAV 18, libavformat 62) does here, checked rather than assumed:

- Which codecs a muxer takes is asked of FFmpeg (`avformat_query_codec`): WebM
  takes VP8, VP9, AV1, Opus, Vorbis (not H.264, not AAC); MP4 takes H.264, VP9,
  AV1, Opus and AAC but refuses VP8; Matroska takes everything recordable here.
  MPEG-TS takes any codec, unknown ones as private data that no player reads,
  so only H.264 and Opus (which have TS stream types) are recorded in it.
- A stream for pre-encoded packets needs a codec context that is never opened
  (opening libx264 would invent SPS/PPS that do not match the packets).
  `add_mux_stream()` has no codec context, so its extradata and channel count
  cannot be set; `add_stream_from_template(template, opaque=True)` gives a
  context that PyAV marks "template initialised" and therefore never opens,
  whose fields (size, extradata, layout) are copied into the stream at the
  header. The template comes from a scratch in-memory container.
- Matroska refuses H.264 without extradata (`InvalidDataError` at the header;
  MP4 would take it from the first packet). Both muxers accept Annex-B SPS/PPS
  as extradata, write avcC from it and convert the Annex-B packets themselves.
- MP4 refuses Opus without a 19-byte OpusHead (its `dOps` box); WebM accepts
  Opus without one but then has no CodecPrivate, which the Matroska spec
  requires for Opus: both get the OpusHead.
- A template stream carries the template's 24 fps, which Matroska would write
  as DefaultDuration: the frame rate is reset to 0 (real-time video is
  variable-rate; every block has its own timestamp).
- `av.open(path, "w")` creates nothing: the file is opened when the header is
  written, so a recording that never starts leaves no file.
- Matroska closes a cluster after `cluster_time_limit` ms or
  `cluster_size_limit` bytes; a cluster reaches the file when it is closed.
  With 1 s clusters and `flush_packets=1` (no AVIO buffering), a WebM/MKV
  file cut off at any point (process killed) plays up to its last cluster.
  Cues and the duration are written by `close()`, which makes it seekable.
- MP4 is written fragmented (`movflags=empty_moov+default_base_moof`, a
  fragment each second, `flush_packets=1`): the moov (without samples) is at
  the start and every second a moof+mdat pair reaches the file, so a file cut
  off at any point (process killed) plays up to its last whole fragment.
  Fragments are cut by time, not only at keyframes (a view's keyframes come
  when asked for); a fragment that starts between keyframes is legal and
  decodes from the one before. `close()` writes the last fragment and an
  `mfra` index (seeking). The moov has no duration (no `mehd`: FFmpeg writes
  it only when the moov is not empty): FFmpeg (ffprobe, PyAV) finds it from
  the fragments (checked); a player that reads only the moov sees none.
  `global_sidx` is not used: it rewrites the whole file at close.
- MPEG-TS is a stream of 188-byte packets with no index: written with
  `flush_packets=1`, a file cut off at any point plays up to its last packet.
  H.264 stays Annex B (SPS/PPS in band); Opus gets its OpusHead for the
  channel layout (TS's Opus descriptor).
"""

from __future__ import annotations

import errno
import functools
import io
import logging
import os
import struct
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, NamedTuple

import av

from tessera.media.mediasource import Packet, vp8_frame_size
from tessera.media.threadstart import LaunchedThread

from .diskreserve import DiskReserveReached, check_reserve

logger = logging.getLogger(__name__)

CONTAINERS = ("webm", "mkv", "mp4", "ts")
# Not a container: "auto" as OWT picks (see choose_container), and "playable": one a browser plays.
AUTO = "auto"
PLAYABLE = "playable"
VIDEO_CODECS = ("vp8", "vp9", "h264")
AUDIO_CODECS = ("opus",)

# The queue to the worker holds at most this much media (by arrival time).
MAX_QUEUE_SECONDS = 5.0
# The worker writes what arrived in this window at once (bounded extra latency).
BATCH_SECONDS = 0.05
MAX_QUEUE_BYTES = 64 << 20
# A track whose timestamps stray this far from arrival time is re-anchored on
# arrival (its source was switched).
REANCHOR_SECONDS = 2.0

VIDEO_TIME_BASE = Fraction(1, 90000)
AUDIO_TIME_BASE = Fraction(1, 48000)

# RFC 7845 5.1: version 1, 2 channels, pre-skip 312, 48 kHz, gain 0, family 0.
OPUS_HEAD = b"OpusHead" + struct.pack("<BBHIhB", 1, 2, 312, 48000, 0, 0)

_FORMATS = {"webm": "webm", "mkv": "matroska", "mp4": "mp4", "ts": "mpegts"}
_LABELS = {"webm": "WebM", "mkv": "Matroska (mkv)", "mp4": "MP4", "ts": "MPEG-TS"}
# FFmpeg's MPEG-TS muxer takes any codec (as private data no player reads): only these
# have a stream type that players know.
_TS_CODECS = frozenset({"h264", "opus"})
_CODEC_NAMES = {"vp8": "VP8", "vp9": "VP9", "h264": "H.264", "opus": "Opus"}
_MATROSKA_OPTIONS = {
    "cluster_time_limit": "1000",  # ms
    "cluster_size_limit": str(2 << 20),  # bytes
    "flush_packets": "1",
}
# Fragmented, a fragment a second: a killed server leaves a playable file (module docstring).
_MP4_OPTIONS = {
    "movflags": "empty_moov+default_base_moof",
    "frag_duration": "1000000",  # microseconds
    "flush_packets": "1",
}
_TS_OPTIONS = {"flush_packets": "1"}  # a cut-off file plays up to its last packet
_START_CODE = b"\x00\x00\x00\x01"


class MuxerError(Exception):
    """Why a file cannot be written (a message for the user)."""


# -- container choice ---------------------------------------------------------


@functools.cache
def _accepts(container: str, codec: str) -> bool:
    """Whether FFmpeg's muxer for `container` takes `codec` (asked in memory, no file)."""
    if container == "ts":
        return codec in _TS_CODECS
    scratch = av.open(io.BytesIO(), "w", format=_FORMATS[container])
    try:
        scratch.add_mux_stream(codec)
    except ValueError:
        return False
    finally:
        scratch.close()
    return True


def _fits(container: str, codecs: list[str]) -> bool:
    return all(_accepts(container, c) for c in codecs)


def _refusal(container: str, codecs: list[str]) -> str | None:
    refused = [c for c in codecs if not _accepts(container, c)]
    if not refused:
        return None
    names = " and ".join(_CODEC_NAMES[c] for c in refused)
    others = [c for c in CONTAINERS if c != container and _fits(c, codecs)]
    advice = f": record in {' or '.join(others)} instead" if others else ""
    return f"{_LABELS[container]} cannot hold {names}{advice}"


def _normalise(codec: str | None) -> str | None:
    return codec.lower() if codec else None


def choose_container(requested: str, video_codec: str | None, audio_codec: str | None) -> str:
    """The container to record these codecs in; raises MuxerError when they cannot go there.

    "auto" picks as OWT's conference agent does: MP4 when the audio is AAC and
    the video is absent, H.264 or H.265; Matroska otherwise (Tessera records
    audio as Opus, so that is Matroska). "playable" picks a container browsers
    play: WebM for VP8/VP9 and/or Opus, MP4 for H.264 (with Opus), Matroska
    otherwise. Nothing is opened or created: call this before a file exists, so
    that a refused combination leaves no empty file behind.
    """
    video = _normalise(video_codec)
    audio = _normalise(audio_codec)
    if video is None and audio is None:
        raise MuxerError("nothing to record: the stream has neither audio nor video")
    if video is not None and video not in VIDEO_CODECS:
        raise MuxerError(f"cannot record {video} video (recordable: {', '.join(VIDEO_CODECS)})")
    if audio is not None and audio not in AUDIO_CODECS:
        raise MuxerError(f"cannot record {audio} audio (recordable: {', '.join(AUDIO_CODECS)})")
    codecs = [c for c in (video, audio) if c is not None]
    wanted = requested.lower()
    if wanted == "matroska":
        wanted = "mkv"
    if wanted == AUTO:
        return owt_auto_container(video, audio)
    if wanted == PLAYABLE:
        preferred = "mp4" if video == "h264" else "webm"
        for candidate in (preferred, "mkv"):
            if _fits(candidate, codecs):
                return candidate
        raise MuxerError(f"no container takes {' and '.join(_CODEC_NAMES[c] for c in codecs)}")
    if wanted not in CONTAINERS:
        raise MuxerError(f"unknown container {requested!r} (use auto, {', '.join(CONTAINERS)})")
    reason = _refusal(wanted, codecs)
    if reason is not None:
        raise MuxerError(reason)
    return wanted


def owt_auto_container(video_codec: str | None, audio_codec: str | None) -> str:
    """OWT's "auto": mp4 for AAC audio with no, H.264 or H.265 video; mkv for anything else.

    (OWT's conference agent, addServerSideSubscription: a recording without
    audio counts as "none-aac" and so is Matroska too.)
    """
    if audio_codec == "aac" and video_codec in (None, "h264", "h265"):
        return "mp4"
    return "mkv"


# -- bitstream helpers ----------------------------------------------------------


def h264_parameter_sets(data: bytes) -> tuple[bytes | None, bytes | None]:
    """The first SPS and PPS NAL units of an Annex-B access unit (without start codes)."""
    sps: bytes | None = None
    pps: bytes | None = None
    start = data.find(b"\x00\x00\x01")
    while start >= 0:
        begin = start + 3
        if begin >= len(data):
            break
        nal_type = data[begin] & 0x1F
        if nal_type in (1, 5):
            break  # a slice: parameter sets come before it, and it is the big part
        nxt = data.find(b"\x00\x00\x01", begin)
        end = len(data) if nxt < 0 else nxt
        if nal_type in (7, 8):
            # A zero before the next start code belongs to a 4-byte start code.
            unit = data[begin:end].rstrip(b"\x00") if nxt >= 0 else data[begin:end]
            if nal_type == 7 and sps is None:
                sps = unit
            elif nal_type == 8 and pps is None:
                pps = unit
        start = nxt
    return sps, pps


def probe_video_size(codec: str, data: bytes) -> tuple[int, int] | None:
    """Width and height of an encoded keyframe: the VP8 header, else one decode."""
    if codec == "vp8":
        size = vp8_frame_size(data)
        if size is not None:
            return size
    try:
        decoder: Any = av.CodecContext.create(codec, "r")
        frames = list(decoder.decode(av.Packet(data))) + list(decoder.decode(None))
    except (av.error.FFmpegError, ValueError):
        return None
    for frame in frames:
        return int(frame.width), int(frame.height)
    return None


# -- timestamps ------------------------------------------------------------------


@dataclass
class TrackClock:
    """Maps one track's source timestamps onto the recording's clock.

    A track starts at its first packet's arrival (relative to the recording's
    first packet) and then follows its own pts, so each track keeps its own
    smooth timing while A/V sync is as good as the arrival times. If the
    source is switched and its pts jump backwards, or stray more than
    `limit` seconds from arrival, the track is re-anchored on arrival.
    Output timestamps strictly increase.
    """

    time_base: Fraction  # of the output stream
    limit: float = REANCHOR_SECONDS
    last: int | None = None
    reanchors: int = 0
    _anchor: int = 0
    _anchor_pts: int = 0
    _source_base: Fraction | None = None
    _scale: Fraction = Fraction(1)

    def place(self, pts: int | None, time_base: Fraction | None, arrival: float) -> int:
        """Output pts (in `time_base`) of a packet that arrived `arrival` s into the recording."""
        arrival_ticks = round(max(0.0, arrival) / self.time_base)
        if pts is None or time_base is None:
            ticks = arrival_ticks
        elif self.last is None or time_base != self._source_base:
            ticks = self._reanchor(pts, time_base, arrival_ticks)
        else:
            ticks = self._anchor + round((pts - self._anchor_pts) * self._scale)
            limit_ticks = self.limit / self.time_base
            if ticks < self.last or abs(ticks - arrival_ticks) > limit_ticks:
                ticks = self._reanchor(pts, time_base, arrival_ticks)
                self.reanchors += 1
        if self.last is not None and ticks <= self.last:
            ticks = self.last + 1
        self.last = ticks
        return ticks

    def _reanchor(self, pts: int, time_base: Fraction, arrival_ticks: int) -> int:
        start = arrival_ticks if self.last is None else max(arrival_ticks, self.last + 1)
        self._anchor = start
        self._anchor_pts = pts
        self._source_base = time_base
        self._scale = time_base / self.time_base
        return start

    def rescale(self, duration: int, time_base: Fraction | None) -> int:
        if not duration or time_base is None:
            return 0
        return round(duration * time_base / self.time_base)


# -- the worker ------------------------------------------------------------------------


class QueuedPacket(NamedTuple):
    """A copy of a shared packet's bytes and timing, waiting for the worker."""

    kind: str
    data: bytes
    pts: int | None
    time_base: Fraction | None
    duration: int
    keyframe: bool
    arrival: float


def describe_error(exc: BaseException, path: Path, subject: str = "recording") -> str:
    """A message for the user about why `path` (a `subject`) cannot be written."""
    code = getattr(exc, "errno", None)
    if code in (errno.ENOSPC, errno.EDQUOT):
        what = "disk full"
    elif code in (errno.EACCES, errno.EPERM, errno.EROFS):
        what = "directory not writable"
    elif code == errno.ENOENT:
        what = "directory does not exist"
    elif code == errno.ENOTDIR:
        what = "directory does not exist (a part of the path is a file)"
    elif code == errno.EISDIR:
        what = "the path is a directory"
    elif code == errno.EFBIG:
        what = "file too large for the file system"
    elif isinstance(exc, OSError) and exc.strerror:
        what = exc.strerror
    else:
        what = f"muxing failed ({type(exc).__name__}: {exc})"
    return f"cannot write {subject} {path}: {what}"


def check_directory(directory: Path) -> None:
    """Raise the OSError that writing a file into `directory` would meet (creates nothing)."""
    if not directory.exists():
        raise FileNotFoundError(errno.ENOENT, "no such directory", str(directory))
    if not directory.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "not a directory", str(directory))
    if not os.access(directory, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, "permission denied", str(directory))


def h264_extradata(sps: bytes, pps: bytes) -> bytes:
    """Annex-B SPS/PPS as extradata: the Matroska, MP4 and FLV muxers write avcC from it."""
    return _START_CODE + sps + _START_CODE + pps


def add_packet_stream(output: Any, codec: str) -> Any:
    """A stream for pre-encoded `codec` packets whose codec context is never opened."""
    scratch: Any = av.open(io.BytesIO(), "w", format="matroska")
    try:
        template = scratch.add_stream(codec)
        return output.add_stream_from_template(template, opaque=True)
    finally:
        scratch.close()


class PacketWriter(ABC):
    """The worker behind a sink of shared encoded packets: queue, keyframe start, clocks, errors.

    `write()` is called on the event loop thread and only queues a copy of
    the packet's bytes and timing (the packets are shared with other sinks and
    never touched afterwards). A worker thread of its own starts the output
    on the first video keyframe (audio before it is dropped so that A/V start
    together; an audio-only output starts on its first packet), maps every
    track onto the output's clock (see `TrackClock`) and writes the packets.

    On an error the worker stops, calls `on_error(reason)` once from its own
    thread and discards whatever is still queued; `write()` never raises. The
    queue holds at most `max_queue_seconds` of media; beyond that packets are
    dropped (video until the next keyframe) and counted in `dropped`.

    Subclasses open the output in `_open` (and may override `_prepare`,
    `_clock_base`, `_emit`, `_flush`, `_stat` and `_describe`); they call
    `_start_worker()` at the end of their `__init__`.
    """

    def __init__(
        self,
        label: str,
        *,
        video_codec: str | None,
        audio_codec: str | None,
        on_error: Callable[[str], None],
        max_queue_seconds: float = MAX_QUEUE_SECONDS,
        thread_name: str,
    ) -> None:
        self.label = label  # "recording /path/file.webm", for log lines
        self.video_codec = _normalise(video_codec)
        self.audio_codec = _normalise(audio_codec)
        self._on_error = on_error
        self._max_queue_seconds = max_queue_seconds
        self._kinds = frozenset(
            kind
            for kind, codec in (("video", self.video_codec), ("audio", self.audio_codec))
            if codec is not None
        )

        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._queue: deque[QueuedPacket] = deque()
        self._queued_bytes = 0
        self._closing = False
        self._video_gap = False  # dropping video until the next keyframe
        # Audio that came before the first video keyframe is kept, not dropped, and the
        # output starts at the first of it (a per-stream file: its time 0 is when its
        # publisher's media came, not when a keyframe did). At most max_queue_seconds.
        self._hold_audio = False
        self._held: deque[QueuedPacket] = deque()
        # Told (on the worker's thread) the arrival time that is the output's time 0.
        self._on_start: Callable[[float], None] | None = None

        # Worker state.
        self._output: Any = None
        self._streams: dict[str, Any] = {}
        self._clocks: dict[str, TrackClock] = {}
        self._origin = 0.0
        self._ends: dict[str, int] = {}
        self._sps: bytes | None = None
        self._pps: bytes | None = None
        self._last_stat = 0.0

        self.dropped = 0  # queue overflow (loop thread)
        self.skipped = 0  # before the first keyframe (worker thread)
        self.packets_written = 0
        self.error: str | None = None
        self._failed = False
        self._started = False
        self._video_size: tuple[int, int] | None = None

        self._thread = LaunchedThread(self._run, thread_name)

    def _start_worker(self) -> None:
        self._thread.launch()  # never waits on the event loop thread

    # -- loop thread ---------------------------------------------------------

    def write(
        self, kind: str, packet: Packet, keyframe: bool, arrival: float | None = None
    ) -> None:
        """Queue a copy of `packet` (arrival defaults to `time.monotonic()`); never blocks."""
        if self._closing or self._failed or kind not in self._kinds:
            return
        try:
            now = time.monotonic() if arrival is None else arrival
            video = kind == "video"
            if video and self._video_gap and not keyframe:
                self.dropped += 1
                return
            data = bytes(packet)
            time_base = packet.time_base
            item = QueuedPacket(
                kind,
                data,
                packet.pts,
                Fraction(time_base) if time_base is not None else None,
                packet.duration or 0,
                keyframe,
                now,
            )
            with self._lock:
                if self._queue and (
                    now - self._queue[0].arrival > self._max_queue_seconds
                    or self._queued_bytes + len(data) > MAX_QUEUE_BYTES
                ):
                    self.dropped += 1
                    if video:
                        self._video_gap = True
                    return
                if video:
                    self._video_gap = False
                self._queue.append(item)
                self._queued_bytes += len(data)
                self._wakeup.notify()
        except Exception:
            logger.exception("%s: cannot queue a packet", self.label)

    def close(self, timeout: float | None = None) -> bool:
        """Write what is queued, then finish the output; blocks (use run_in_executor).

        With a `timeout`, gives up waiting for a worker stuck in I/O (a stalled
        server): what is still queued is discarded, the worker finishes the
        output whenever its I/O returns, and False is returned.
        """
        with self._lock:
            self._closing = True
            self._wakeup.notify()
        if threading.current_thread() is self._thread:
            return True
        self._thread.join(timeout)
        if not self._thread.is_alive():
            return True
        with self._lock:
            self._queue.clear()
            self._queued_bytes = 0
        logger.warning("%s: the worker did not finish in %.1f s", self.label, timeout or 0)
        return False

    @property
    def duration(self) -> float:
        """Seconds of media written."""
        ends = [
            float(end * self._clocks[kind].time_base)
            for kind, end in self._ends.items()
            if kind in self._clocks
        ]
        return max(ends, default=0.0)

    @property
    def started(self) -> bool:
        """The first video keyframe (or, audio-only, the first audio packet) is written."""
        return self._started

    @property
    def failed(self) -> bool:
        return self._failed

    @property
    def video_size(self) -> tuple[int, int] | None:
        return self._video_size

    # -- worker thread -------------------------------------------------------

    def _run(self) -> None:
        try:
            self._prepare()
        except Exception as exc:
            self._fail(exc)
        while not self._failed:
            with self._lock:
                while not self._queue and not self._closing:
                    self._wakeup.wait()
                if not self._queue:
                    break
                closing = self._closing
            if not closing:
                # Gather a batch: one wake-up per 50 ms instead of one per packet
                # (a 720p view with audio sends ~80 packets a second).
                time.sleep(BATCH_SECONDS)
            with self._lock:
                items = list(self._queue)
                self._queue.clear()
                self._queued_bytes = 0
            for item in items:
                try:
                    self._handle(item)
                except Exception as exc:
                    self._fail(exc)
                    break
        if self._failed:
            with self._lock:  # write() ignores new packets from now on
                self._queue.clear()
                self._queued_bytes = 0
        self._finish()

    def _prepare(self) -> None:  # noqa: B027 - an optional hook
        """Checks before any media arrives (raise to fail early)."""

    def _handle(self, item: QueuedPacket) -> None:
        if self._output is None:
            if self._hold_audio and item.kind == "audio" and self.video_codec is not None:
                self._hold(item)
                return
            if not self._can_start(item):
                self.skipped += 1
                return
            self._open(item)
            # Some muxers choose their own time base at the header.
            self._clocks = {kind: TrackClock(self._clock_base(kind)) for kind in self._streams}
            held, self._held = list(self._held), deque()
            self._origin = held[0].arrival if held else item.arrival
            if self._on_start is not None:
                self._on_start(self._origin)
            for early in held:
                self._mux(early)
        self._mux(item)

    def _hold(self, item: QueuedPacket) -> None:
        self._held.append(item)
        while item.arrival - self._held[0].arrival > self._max_queue_seconds:
            self._held.popleft()
            self.skipped += 1

    def _can_start(self, item: QueuedPacket) -> bool:
        if self.video_codec is None:
            return item.kind == "audio"
        if item.kind != "video":
            return False  # audio waits for the first video keyframe
        if self.video_codec == "h264":
            sps, pps = h264_parameter_sets(item.data)
            self._sps = sps or self._sps
            self._pps = pps or self._pps
        if not item.keyframe:
            return False
        if self.video_codec == "h264" and (self._sps is None or self._pps is None):
            logger.warning("%s: H.264 keyframe without SPS/PPS, waiting", self.label)
            return False
        size = probe_video_size(self.video_codec, item.data)
        if size is None:
            logger.warning("%s: cannot read the keyframe's size, waiting", self.label)
            return False
        self._video_size = size
        return True

    @abstractmethod
    def _open(self, first: QueuedPacket) -> None:
        """Create the output (set `_output` first), its `_streams`, and write the header."""

    def _add_video_stream(self, output: Any) -> Any:
        """The video stream for the packets as they are, described by the first keyframe."""
        assert self.video_codec is not None and self._video_size is not None
        stream = add_packet_stream(output, self.video_codec)
        ctx = stream.codec_context
        ctx.width, ctx.height = self._video_size
        ctx.framerate = Fraction(0, 1)  # variable: no Matroska DefaultDuration
        if self.video_codec == "h264" and self._sps and self._pps:
            ctx.extradata = h264_extradata(self._sps, self._pps)
        stream.time_base = VIDEO_TIME_BASE
        self._streams["video"] = stream
        return stream

    def _clock_base(self, kind: str) -> Fraction:
        """The time base a track's `TrackClock` counts in (its stream's, by default)."""
        return Fraction(self._streams[kind].time_base)

    def _mux(self, item: QueuedPacket) -> None:
        clock = self._clocks[item.kind]
        pts = clock.place(item.pts, item.time_base, item.arrival - self._origin)
        duration = clock.rescale(item.duration, item.time_base)
        self._ends[item.kind] = self._emit(item, pts, duration)
        self.packets_written += 1
        self._started = True
        now = time.monotonic()
        if now - self._last_stat > 0.25:
            self._last_stat = now
            self._stat()

    def _emit(self, item: QueuedPacket, pts: int, duration: int) -> int:
        """Write one packet at `pts` on its track's clock; returns where it ends."""
        self._output.mux(self._packet(item, pts, duration))
        return pts + duration

    def _packet(self, item: QueuedPacket, pts: int, duration: int) -> Any:
        """The packet to mux for `item`, on its track's stream and clock."""
        packet = av.Packet(item.data)
        packet.stream = self._streams[item.kind]
        packet.time_base = self._clocks[item.kind].time_base
        packet.pts = pts
        packet.dts = pts  # no B-frames in real-time streams
        if duration > 0:
            packet.duration = duration
        packet.is_keyframe = item.keyframe
        return packet

    def _stat(self) -> None:  # noqa: B027 - an optional hook
        """Called now and then while writing, and at the end."""

    def _flush(self, output: Any) -> None:  # noqa: B027 - an optional hook
        """Before the trailer: write what encoders still hold."""

    def _finish(self) -> None:
        output = self._output
        if output is not None:
            try:
                self._flush(output)
                self._output = None
                output.close()  # trailer: cues, duration, MP4 index, HLS playlist
            except Exception as exc:
                self._fail(exc)
        self._stat()

    def _describe(self, exc: BaseException) -> str:
        """A message for the user about an error of the worker."""
        return f"{self.label}: {exc}"

    def _fail(self, exc: BaseException) -> None:
        if self._failed:
            return
        self._failed = True
        reason = self._describe(exc)
        self.error = reason
        logger.warning("%s", reason)
        output, self._output = self._output, None
        if output is not None:
            try:
                output.close()
            except Exception:
                pass  # the output is lost already; this only releases the descriptor
        try:
            self._on_error(reason)
        except Exception:
            logger.exception("%s: error listener failed", self.label)


class PacketMuxer(PacketWriter):
    """Writes one recording file from encoded audio/video packets on a worker thread of its own.

    `write()` is called on the event loop thread and only queues a copy of
    the packet's bytes and timing (the packets are shared with other sinks and
    never touched afterwards). The worker starts the file on the first video
    keyframe (audio before it is dropped so that A/V start together; an
    audio-only recording starts on its first packet), maps every track onto
    the recording's clock (see `TrackClock`) and muxes without re-encoding.
    With `hold_audio` (a per-stream file) the audio before the keyframe is kept
    and the file's time 0 is its first packet; `on_start` is told that arrival.

    On an I/O error (directory not writable, disk full) the worker stops
    writing, calls `on_error(reason)` once from its own thread and discards
    whatever is still queued; `write()` never raises. The queue holds at most
    `max_queue_seconds` of media; beyond that packets are dropped (video until
    the next keyframe) and counted in `dropped`.

    WebM/MKV files are playable up to their last 1 s cluster even if the
    process dies; MP4 files are only playable after `close()`.
    """

    def __init__(
        self,
        path: Path,
        container: str,
        *,
        video_codec: str | None,
        audio_codec: str | None,
        on_error: Callable[[str], None],
        max_queue_seconds: float = MAX_QUEUE_SECONDS,
        disk_reserve: int = 0,
        hold_audio: bool = False,
        on_start: Callable[[float], None] | None = None,
    ) -> None:
        self.path = Path(path)
        # Bytes left free on the file's disk: the file stops (out_of_space) before them.
        self.disk_reserve = disk_reserve
        self.out_of_space = False
        # Raises MuxerError before anything exists on disk.
        self.container = choose_container(container, video_codec, audio_codec)
        super().__init__(
            f"recording {self.path}",
            video_codec=video_codec,
            audio_codec=audio_codec,
            on_error=on_error,
            max_queue_seconds=max_queue_seconds,
            thread_name=f"muxer {self.path.name}",
        )
        self._bytes_written = 0
        self._hold_audio = hold_audio
        self._on_start = on_start
        self._start_worker()

    @property
    def bytes_written(self) -> int:
        return self._bytes_written

    # -- worker thread -------------------------------------------------------

    def _prepare(self) -> None:
        # Fail early (before any media arrives) without creating the file.
        check_directory(self.path.parent)

    def _open(self, first: QueuedPacket) -> None:
        options = {"mp4": _MP4_OPTIONS, "ts": _TS_OPTIONS}.get(self.container, _MATROSKA_OPTIONS)
        output: Any = av.open(
            str(self.path), "w", format=_FORMATS[self.container], container_options=options
        )
        self._output = output
        if self.video_codec is not None and self._video_size is not None:
            self._add_video_stream(output)
        if self.audio_codec is not None:
            stream = add_packet_stream(output, self.audio_codec)
            ctx = stream.codec_context
            ctx.sample_rate = 48000
            ctx.layout = "stereo"
            ctx.extradata = OPUS_HEAD
            stream.time_base = AUDIO_TIME_BASE
            self._streams["audio"] = stream
        output.start_encoding()  # opens the file and writes the header

    def _stat(self) -> None:
        try:
            self._bytes_written = self.path.stat().st_size
        except OSError:
            pass
        if self.disk_reserve > 0 and self._output is not None:
            try:
                check_reserve(self.path.parent, self.disk_reserve)
            except DiskReserveReached:
                # Stopped here, the file is finished in the space the reserve keeps.
                self.out_of_space = True
                raise

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, DiskReserveReached):
            return str(exc.strerror)
        return describe_error(exc, self.path)

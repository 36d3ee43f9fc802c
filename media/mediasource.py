"""The stream registry's media interface: what a subscription or a recording binds to.

A *stream* (a participant's forward stream, or a view's mixed stream) offers
encoded tracks as `PacketSource`s and decoded tracks as `FrameSource`s. A
`PacketSource` is shared: every subscription and recording of the same format
receives the very same `av.Packet`s, so a format is encoded at most once.
All methods run on the event loop thread; only encoders and decoders behind a
source use other threads.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Protocol, TypeAlias

import av

logger = logging.getLogger(__name__)

# An encoded frame as aiortc senders and PyAV muxers take it.
Packet: TypeAlias = "av.Packet[Any]"

VIDEO_CLOCK_RATE = 90000
VIDEO_TIME_BASE = Fraction(1, VIDEO_CLOCK_RATE)


class ParameterError(Exception):
    """A subscription asked for something a stream does not offer (message for the client)."""


class PacketSink(Protocol):
    """Receives the encoded packets of a PacketSource (on the event loop thread)."""

    def on_packet(self, packet: Packet, keyframe: bool) -> None: ...


class FrameSink(Protocol):
    """Receives the decoded frames of a FrameSource (on the event loop thread)."""

    def on_frame(self, frame: av.VideoFrame | av.AudioFrame) -> None: ...


@dataclass(frozen=True)
class VideoFormat:
    """What a subscriber wants of a video track; None means "as the stream has it"."""

    codec: str
    width: int | None = None
    height: int | None = None
    framerate: int | None = None
    bitrate: float | None = None  # a multiplier of the stream's bitrate ("x0.8" -> 0.8)
    keyframe_interval: int | None = None

    def with_codec(self, codec: str) -> VideoFormat:
        return dataclasses.replace(self, codec=codec)

    @property
    def is_original(self) -> bool:
        return (
            self.width is None
            and self.framerate is None
            and self.bitrate is None
            and self.keyframe_interval is None
        )


# How soon a new receiver's first keyframe may follow the last one (s). Shorter than a
# source's interval for repeated requests: everyone of a room joining at once would
# otherwise wait up to that whole interval for their first picture.
FIRST_KEYFRAME_INTERVAL = 0.25


class KeyframeRequester:
    """Forwards keyframe requests to `send`, at most one per `min_interval` seconds.

    A request inside the interval is not dropped but deferred to the end of it,
    so that a new subscriber still gets its keyframe promptly. A receiver's
    first picture (`request_first`) waits at most `first_interval` after the
    last keyframe: a burst of joins costs a keyframe every quarter second,
    not a second's wait for most of them.
    """

    def __init__(
        self,
        send: Callable[[], None],
        min_interval: float,
        first_interval: float = FIRST_KEYFRAME_INTERVAL,
    ) -> None:
        self._send = send
        self._min_interval = min_interval
        self._first_interval = min(first_interval, min_interval)
        self._last = -1e9
        self._pending: asyncio.TimerHandle | None = None
        self._due = 0.0
        self.sent = 0

    def request(self) -> None:
        """A receiver lost a picture: a keyframe within `min_interval` of the last."""
        self._request_within(self._min_interval)

    def request_first(self) -> None:
        """A receiver's first picture (it joined, or moved to this source)."""
        self._request_within(self._first_interval)

    def _request_within(self, interval: float) -> None:
        due = self._last + interval
        if self._pending is not None:
            if self._due <= due:
                return  # one is coming soon enough
            self._pending.cancel()
            self._pending = None
        wait = due - time.monotonic()
        if wait <= 0:
            self._fire()
        else:
            self._due = due
            self._pending = asyncio.get_running_loop().call_later(wait, self._fire)

    def request_now(self) -> None:
        """A request that must not wait for the interval (a decoder that cannot start without
        a keyframe); the next ordinary one waits a whole interval after it."""
        if self._pending is not None:
            self._pending.cancel()
        self._fire()

    def _fire(self) -> None:
        self._pending = None
        self._last = time.monotonic()
        self.sent += 1
        try:
            self._send()
        except Exception:
            logger.exception("keyframe request failed")

    def close(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None


class PacketSource:
    """An encoded track shared by any number of sinks.

    Subclasses learn through `_on_first_sink` / `_on_last_sink` when to start
    and stop the work behind them (an encoder with no receivers stops).
    """

    def __init__(self, kind: str, codec: str, clock_rate: int) -> None:
        self.kind = kind
        self.codec = codec.lower()  # "vp8", "h264", "opus", ...
        self.clock_rate = clock_rate
        self._sinks: list[PacketSink] = []
        self.packets = 0
        self.closed = False

    @property
    def sink_count(self) -> int:
        return len(self._sinks)

    def add_sink(self, sink: PacketSink) -> None:
        if sink in self._sinks:
            return
        self._sinks.append(sink)
        if len(self._sinks) == 1:
            self._on_first_sink()

    def remove_sink(self, sink: PacketSink) -> None:
        if sink not in self._sinks:
            return
        self._sinks.remove(sink)
        if not self._sinks:
            self._on_last_sink()

    def emit(self, packet: Packet, keyframe: bool) -> None:
        self.packets += 1
        for sink in tuple(self._sinks):
            try:
                sink.on_packet(packet, keyframe)
            except Exception:
                logger.exception("packet sink failed")

    def request_keyframe(self) -> None:
        """A receiver lost a picture."""

    def request_first_keyframe(self) -> None:
        """A receiver's first picture (it joined, resumed or switched to this source): may
        come sooner after the last keyframe than a repeated request."""
        self.request_keyframe()

    def _on_first_sink(self) -> None:
        pass

    def _on_last_sink(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True
        self._sinks.clear()


class FrameSource:
    """Decoded frames of one track, fanned out to mixers and transcoders."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._sinks: list[FrameSink] = []
        self.frames = 0

    @property
    def sink_count(self) -> int:
        return len(self._sinks)

    def add_sink(self, sink: FrameSink) -> None:
        if sink in self._sinks:
            return
        self._sinks.append(sink)
        if len(self._sinks) == 1:
            self._on_first_sink()

    def remove_sink(self, sink: FrameSink) -> None:
        if sink not in self._sinks:
            return
        self._sinks.remove(sink)
        if not self._sinks:
            self._on_last_sink()

    def emit(self, frame: av.VideoFrame | av.AudioFrame) -> None:
        self.frames += 1
        for sink in tuple(self._sinks):
            try:
                sink.on_frame(frame)
            except Exception:
                logger.exception("frame sink failed")

    def _on_first_sink(self) -> None:
        pass

    def _on_last_sink(self) -> None:
        pass

    def close(self) -> None:
        self._sinks.clear()


class Stream(ABC):
    """A stream in a room's registry: forward (one publisher) or mixed (a view)."""

    id: str
    type: str  # "forward" | "mixed"

    @abstractmethod
    def info(self) -> dict[str, Any]:
        """The StreamInfo of PROTOCOL.md."""

    @abstractmethod
    def has_track(self, kind: str) -> bool: ...

    @abstractmethod
    def codec(self, kind: str) -> str | None:
        """The codec a track is available in without transcoding ("vp8", "opus")."""

    def offered_codecs(self, kind: str) -> list[str]:
        """Codecs a subscriber can get this track in: its own and its optional formats."""
        for track in self.info().get("media", {}).get("tracks", []):
            if track.get("type") == kind:
                own = [str(track.get("format", {}).get("codec", ""))]
                optional = (track.get("optional") or {}).get("format") or []
                return own + [str(f.get("codec", "")) for f in optional]
        return []

    @abstractmethod
    def packet_source(
        self, kind: str, fmt: VideoFormat | str, subscriber: str | None = None
    ) -> PacketSource:
        """A shared encoded source: `fmt` is a VideoFormat for video, a codec name for audio.

        `subscriber` is the participant that will receive it (a mixed stream
        gives a publishing participant a mix without its own voice).
        Raises ParameterError when the stream cannot produce it.
        """

    @abstractmethod
    def frame_source(self, kind: str) -> FrameSource | None:
        """Decoded frames, for mixers and transcoders (None if the track is absent)."""


def is_keyframe(codec: str, data: bytes) -> bool:
    """Whether an encoded video frame starts a new picture chain."""
    if not data:
        return False
    if codec == "vp8":
        # RFC 6386 9.1: the inverse key frame flag is bit 0 of the first byte.
        return not (data[0] & 0x01)
    if codec == "h264":
        return _h264_has_idr(data)
    if codec == "vp9":
        return not (data[0] & 0x04) if (data[0] >> 6) == 0b10 else False
    return True


def vp8_frame_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from a VP8 keyframe header (RFC 6386 9.1), else None."""
    if len(data) < 10 or data[0] & 0x01 or data[3:6] != b"\x9d\x01\x2a":
        return None
    width = int.from_bytes(data[6:8], "little") & 0x3FFF
    height = int.from_bytes(data[8:10], "little") & 0x3FFF
    return (width, height) if width and height else None


def _h264_has_idr(data: bytes) -> bool:
    i = 0
    n = len(data)
    while True:
        i = data.find(b"\x00\x00\x01", i)
        if i < 0 or i + 3 >= n:
            return False
        nal_type = data[i + 3] & 0x1F
        if nal_type in (5, 7):  # IDR slice or SPS
            return True
        i += 3

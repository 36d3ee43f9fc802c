"""PacketTrack: an aiortc track that yields shared, already-encoded packets."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from fractions import Fraction

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from .mediasource import Packet, PacketSource

logger = logging.getLogger(__name__)

# A subscriber that falls this many frames behind is not reading (a stalled
# network or tab): drop what is queued and restart it at the next keyframe
# rather than let memory grow or hold back the shared source.
MAX_QUEUED_VIDEO = 90
MAX_QUEUED_AUDIO = 100


class PacketTrack(MediaStreamTrack):
    """Feeds one RTCRtpSender from a shared PacketSource without re-encoding.

    aiortc's sender only packetizes when `recv()` returns an `av.Packet`; each
    sender needs its own track object (its own queue), while the packets
    themselves are shared. The track can be switched to another source
    (subscription-control update): timestamps then continue from where they
    were, so the receiver sees one unbroken stream.
    """

    def __init__(self, kind: str, source: PacketSource) -> None:
        super().__init__()
        self.kind = kind
        self.source: PacketSource | None = None
        self._queue: deque[Packet] = deque()
        self._ready = asyncio.Event()
        self._waiting_keyframe = kind == "video"
        self._paused = False
        self._offset = 0
        self._rebase = False
        self._last_pts: int | None = None
        self._time_base: Fraction | None = None
        self.delivered = 0
        self.dropped = 0
        self.attach(source)

    def attach(self, source: PacketSource) -> None:
        """Start taking packets from `source` (detaching from the previous one)."""
        if self.source is source:
            return
        if self.source is not None:
            self.source.remove_sink(self)
            self._rebase = self._last_pts is not None
        self.source = source
        self._waiting_keyframe = self.kind == "video"
        source.add_sink(self)
        self._request_first_keyframe()

    def request_keyframe(self) -> None:
        if self.source is not None and self.kind == "video":
            self.source.request_keyframe()

    def _request_first_keyframe(self) -> None:
        if self.source is not None and self.kind == "video":
            self.source.request_first_keyframe()

    def set_paused(self, paused: bool) -> None:
        if paused == self._paused:
            return
        self._paused = paused
        self._queue.clear()
        if not paused:
            self._waiting_keyframe = self.kind == "video"
            self._request_first_keyframe()

    def on_packet(self, packet: Packet, keyframe: bool) -> None:
        if self._paused or self.readyState != "live":
            return
        if self._waiting_keyframe:
            if not keyframe:
                return
            self._waiting_keyframe = False
        limit = MAX_QUEUED_VIDEO if self.kind == "video" else MAX_QUEUED_AUDIO
        if len(self._queue) >= limit:
            self.dropped += len(self._queue)
            self._queue.clear()
            if self.kind == "video":
                self._waiting_keyframe = not keyframe
                if not keyframe:
                    self.request_keyframe()
                    return
        self._queue.append(self._retimed(packet))
        self._ready.set()

    def _retimed(self, packet: Packet) -> Packet:
        pts = int(packet.pts or 0)
        if self._rebase and self._last_pts is not None:
            # One frame (or 20 ms of audio) after the last packet of the old source.
            step = 3000 if self.kind == "video" else 960
            self._offset = self._last_pts + step - pts
            self._rebase = False
        self._last_pts = pts + self._offset
        if self._offset == 0:
            return packet
        copy = av.Packet(bytes(packet))
        copy.pts = pts + self._offset
        copy.time_base = packet.time_base
        return copy

    async def recv(self) -> Packet:  # type: ignore[override]  # aiortc sends av.Packet too
        while not self._queue:
            if self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        self.delivered += 1
        return self._queue.popleft()

    def stop(self) -> None:
        if self.source is not None:
            self.source.remove_sink(self)
            self.source = None
        self._queue.clear()
        super().stop()
        self._ready.set()

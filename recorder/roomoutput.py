"""RoomOutput: what a recording and a streaming-out share, from binding their tracks to the end.

Both are sinks of a room's streams, like subscriptions: a `TrackSink` per kind
on the shared packet sources that `MediaChoice` names, a worker (a muxer, a
pusher) that may fail on its own thread, and a stop that lets go of the
sources first.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .sources import TrackSink

# OWT's words when a source stream ends (as a subscription's, a recording's, a streaming-out's).
SOURCE_LOSS = "Source stream loss"


@dataclass
class MediaChoice:
    """Which stream each track of a recording or streaming-out comes from."""

    audio_from: str | None
    video_from: str | None
    video_parameters: dict[str, Any] | None = None
    video_format: dict[str, Any] | None = None  # {"codec": "h264"} to record another format

    def to_json(self) -> dict[str, Any]:
        video: dict[str, Any] | bool = False
        if self.video_from is not None:
            video = {"from": self.video_from}
            if self.video_format:
                video["format"] = self.video_format
            if self.video_parameters:
                video["parameters"] = self.video_parameters
        return {
            "audio": {"from": self.audio_from} if self.audio_from is not None else False,
            "video": video,
        }


class RoomOutput(ABC):
    """The part of a Recording and a StreamingOut that binds and lets go of sources.

    A subclass sets `media`, `reason`, `stopped_at`, `_sinks` (a TrackSink per
    kind) and `_loop`, and says in `_fail(reason)` what failing means for it.
    """

    media: MediaChoice
    reason: str | None
    stopped_at: float | None
    _sinks: Mapping[str, TrackSink]
    _loop: asyncio.AbstractEventLoop

    def source_gone(self, stream_id: str) -> bool:
        """A source stream ended: drop its track; True when nothing is left to take."""
        if self.media.audio_from == stream_id:
            self._sinks["audio"].detach()
        if self.media.video_from == stream_id:
            self._sinks["video"].detach()
        gone = all(s.source is None for s in self._sinks.values())
        if gone and self.reason is None and self.stopped_at is None:
            self.reason = SOURCE_LOSS
        return gone

    def _stopping(self, reason: str | None) -> None:
        """A stop begins: keep `reason` (why, if not on request), let go of the sources."""
        if reason is not None and self.reason is None:
            self.reason = reason
        self._detach_all()
        self.stopped_at = time.time()

    def _detach_all(self) -> None:
        for sink in self._sinks.values():
            sink.detach()

    def _worker_failed(self, reason: str) -> None:
        # Called on the worker's thread: the room must not notice beyond the state,
        # and learns of it on its own loop.
        self._loop.call_soon_threadsafe(self._fail, reason)

    @abstractmethod
    def _fail(self, reason: str) -> None:
        """End the output as failed with ``reason`` (on the loop)."""

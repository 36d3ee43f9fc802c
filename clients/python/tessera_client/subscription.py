"""Subscription: a stream of the room this client receives."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiortc import MediaStreamTrack, RTCRtpTransceiver

from .errors import ClientError
from .session import Session, SessionOwner, check_media_kind

logger = logging.getLogger(__name__)


class Subscription(Session):
    """A subscription to ``stream_id``; ``id`` is the subscription id from the portal.

    ``audio_track`` and ``video_track`` are the remote tracks aiortc created for
    this subscription's m-lines (None for a kind not asked for). Created by
    :meth:`ConferenceClient.subscribe`.
    """

    def __init__(
        self,
        client: SessionOwner,
        subscription_id: str,
        stream_id: str,
        transceivers: dict[str, RTCRtpTransceiver],
    ) -> None:
        super().__init__(client, subscription_id, transceivers)
        self.stream_id = stream_id
        #: The keyword arguments of ``subscribe`` that made it (subscribed again alike on rejoin).
        self.options: dict[str, Any] = {}
        self.audio_track: MediaStreamTrack | None = None
        self.video_track: MediaStreamTrack | None = None

    def _set_track(self, kind: str, track: MediaStreamTrack) -> None:
        if kind == "audio":
            self.audio_track = track
        elif kind == "video":
            self.video_track = track

    async def unsubscribe(self) -> None:
        """Stop the subscription: ``unsubscribe``, then renegotiate with the m-lines inactive.

        The remote tracks end (``recv()`` raises ``MediaStreamError``). Calling it
        again does nothing. An error reply is raised after the local cleanup.
        """
        if self._stopped:
            return
        self._stopped = True
        error: ClientError | None = None
        if not self.ended.is_set() and self.client.is_joined:
            try:
                await self.client.request("unsubscribe", {"id": self.id})
            except ClientError as exc:
                error = exc
        self._end()
        await self.client.retire_session(self, stop_sending=False)
        if error is not None:
            raise error

    def _end(self) -> None:
        super()._end()
        if self._stopped:
            for track in (self.audio_track, self.video_track):
                if track is not None:
                    _end_remote_track(track)

    async def update(
        self,
        video_parameters: dict[str, Any] | None = None,
        video_from: str | None = None,
        audio_from: str | None = None,
    ) -> None:
        """``subscription-control`` ``update``: other video parameters and/or other sources."""
        data: dict[str, Any] = {}
        if video_parameters is not None or video_from is not None:
            video: dict[str, Any] = {}
            if video_from is not None:
                video["from"] = video_from
            if video_parameters is not None:
                video["parameters"] = video_parameters
            data["video"] = video
        if audio_from is not None:
            data["audio"] = {"from": audio_from}
        if not data:
            raise ValueError("update needs video_parameters, video_from or audio_from")
        await self.control("update", data)

    async def pause(self, kind: str = "av") -> None:
        """Ask the portal to stop sending this subscription's ``kind`` (audio, video or av)."""
        await self.control("pause", check_media_kind(kind))

    async def play(self, kind: str = "av") -> None:
        """Ask the portal to resume sending this subscription's ``kind``."""
        await self.control("play", check_media_kind(kind))

    async def query_bwe(self) -> int:
        """``subscription-control`` ``querybwe``: the portal's estimated bitrate (bit/s)."""
        reply = await self.client.request(
            "subscription-control", {"id": self.id, "operation": "querybwe"}
        )
        if not isinstance(reply, dict) or "estimatedBitrate" not in reply:
            raise ClientError(f"Unexpected querybwe reply: {reply!r}")
        return int(reply["estimatedBitrate"])

    async def control(self, operation: str, data: Any = None, timeout: float = 10.0) -> Any:
        """Send any ``subscription-control`` operation for this subscription."""
        message: dict[str, Any] = {"id": self.id, "operation": operation}
        if data is not None:
            message["data"] = data
        return await self.client.request("subscription-control", message, timeout)


def _end_remote_track(track: MediaStreamTrack) -> None:
    # aiortc's RemoteStreamTrack ends a pending recv() only when None reaches its queue;
    # stop() alone leaves a waiting consumer blocked for ever.
    queue = getattr(track, "_queue", None)
    if isinstance(queue, asyncio.Queue):
        queue.put_nowait(None)
    track.stop()

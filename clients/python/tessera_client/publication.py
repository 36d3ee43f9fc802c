"""Publication: a stream this client sends to the room."""

from __future__ import annotations

import logging
from typing import Any

from aiortc import MediaStreamTrack, RTCRtpTransceiver

from .errors import ClientError
from .session import Session, SessionOwner, check_media_kind

logger = logging.getLogger(__name__)


class Publication(Session):
    """A published stream: ``id`` is the stream id the room knows it by.

    ``tracks`` maps kind (``"audio"``/``"video"``) to the local track being sent.
    Created by :meth:`ConferenceClient.publish`.
    """

    def __init__(
        self,
        client: SessionOwner,
        stream_id: str,
        transceivers: dict[str, RTCRtpTransceiver],
        tracks: dict[str, MediaStreamTrack],
        attributes: dict[str, Any],
        *,
        sources: dict[str, str] | None = None,
        codecs: dict[str, list[str]] | None = None,
    ) -> None:
        super().__init__(client, stream_id, transceivers)
        self.tracks = dict(tracks)
        self.attributes = dict(attributes)
        #: kind -> source ("mic", "camera", "screen-cast"...) as published.
        self.sources = dict(sources or {})
        #: kind -> the only codecs offered, as asked (published again alike on rejoin).
        self.codecs = dict(codecs or {})

    @property
    def stream(self) -> dict[str, Any] | None:
        """This publication's StreamInfo as the room last described it, if known."""
        return self.client.streams.get(self.id)

    async def unpublish(self) -> None:
        """Stop publishing: ``unpublish``, then renegotiate with the m-lines inactive.

        The m-lines stay in the offer (inactive, no track), as OWT's JavaScript SDK
        leaves them. Calling it again does nothing. An error reply from the portal
        is raised after the local side has been cleaned up.
        """
        if self._stopped:
            return
        self._stopped = True
        error: ClientError | None = None
        if not self.ended.is_set() and self.client.is_joined:
            try:
                await self.client.request("unpublish", {"id": self.id})
            except ClientError as exc:
                error = exc
        self._end()
        await self.client.retire_session(self, stop_sending=True)
        if error is not None:
            raise error

    async def pause(self, kind: str = "av") -> None:
        """Ask the portal to stop forwarding this stream's ``kind`` (audio, video or av)."""
        await self.control("pause", check_media_kind(kind))

    async def play(self, kind: str = "av") -> None:
        """Ask the portal to resume forwarding this stream's ``kind``."""
        await self.control("play", check_media_kind(kind))

    async def control(self, operation: str, data: Any, timeout: float = 10.0) -> Any:
        """Send ``stream-control`` for this stream (pause, play, mix, unmix, set-region, ...)."""
        return await self.client.request(
            "stream-control", {"id": self.id, "operation": operation, "data": data}, timeout
        )

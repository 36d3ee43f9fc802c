"""Session: what a Publication and a Subscription share on the client's transport."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from aiortc import RTCRtpTransceiver

from .errors import ClientError, RequestTimeout

#: The media a pause/play request can name.
MEDIA_KINDS = ("audio", "video", "av")


class SessionOwner(Protocol):
    """What a session uses of the client that created it (a ConferenceClient)."""

    @property
    def streams(self) -> dict[str, dict[str, Any]]: ...

    @property
    def is_joined(self) -> bool: ...

    async def request(self, name: str, data: Any = None, timeout: float = 10.0) -> Any: ...

    async def retire_session(self, session: Session, *, stop_sending: bool) -> None:
        """The session stopped: its m-lines go inactive in a new offer."""
        ...


class Session:
    """One publication or subscription: an id from the portal and its transceivers.

    ``ready`` is set when the portal reports ``progress {sessionId: id, status: "ready"}``;
    ``error`` holds the reason of a ``status: "error"`` report, which also sets
    ``ended``. ``ended`` is set too when the session is stopped by either side.
    """

    def __init__(
        self,
        client: SessionOwner,
        session_id: str,
        transceivers: dict[str, RTCRtpTransceiver],
    ) -> None:
        self.client = client
        self.id = session_id
        #: kind ("audio" / "video") -> the transceiver carrying it on the shared connection.
        self.transceivers = dict(transceivers)
        self.ready = asyncio.Event()
        self.ended = asyncio.Event()
        self.error: str | None = None
        self._stopped = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} mids={self.mids}>"

    @property
    def mids(self) -> dict[str, str]:
        """kind -> mid of this session's m-lines."""
        return {kind: t.mid for kind, t in self.transceivers.items() if t.mid is not None}

    async def wait_ready(self, timeout: float = 10.0) -> None:
        """Wait for ``ready``; raise :class:`ClientError` if the session failed or ended first."""
        ready = asyncio.ensure_future(self.ready.wait())
        ended = asyncio.ensure_future(self.ended.wait())
        try:
            await asyncio.wait({ready, ended}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
            ended.cancel()
        if self.ready.is_set():
            return
        if self.error is not None:
            raise ClientError(self.error)
        if self.ended.is_set():
            raise ClientError(f"{type(self).__name__} {self.id} ended before it was ready")
        raise RequestTimeout(
            f"Waiting for {type(self).__name__} {self.id} to be ready timed out after {timeout} s"
        )

    def _on_progress(self, status: str, data: Any) -> None:
        if status == "ready":
            self.ready.set()
        elif status == "error":
            self.error = data if isinstance(data, str) else ClientError(data).message
            self._end()

    def _end(self) -> None:
        self.ended.set()


def check_media_kind(kind: str) -> str:
    """Validate the ``data`` of a pause/play request."""
    if kind not in MEDIA_KINDS:
        raise ValueError(f"kind must be one of {', '.join(MEDIA_KINDS)}, not {kind!r}")
    return kind

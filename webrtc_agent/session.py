"""What a publication or subscription and the transport carrying it know of each other.

Publication and Subscription hold their Transport, and Transport creates and
binds them: typing that back-reference with these protocols keeps the import
graph a tree (transport -> publication, subscription -> session).
"""

from __future__ import annotations

from typing import Protocol


class MediaSession(Protocol):
    """A publication or a subscription, as its transport refers to it."""

    @property
    def id(self) -> str: ...

    @property
    def mids(self) -> dict[str, str]:
        """mid -> kind of the session's m-lines."""
        ...


class SessionTransport(Protocol):
    """The transport a session rides on, as the session and its owner use it."""

    @property
    def id(self) -> str: ...

    def session_closed(self, session: MediaSession) -> None:
        """The session closed: its m-lines are released."""
        ...

    def estimated_bitrate(self, session: MediaSession) -> int | None:
        """The receiver's bandwidth estimate for the session's video, if known."""
        ...

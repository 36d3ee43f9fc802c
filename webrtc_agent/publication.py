"""Publication: a participant's published tracks, exposed as a ForwardStream."""

from __future__ import annotations

from typing import Any

from tessera.media import aiortcext

from .forwardstream import ForwardStream, TrackSpec
from .session import SessionTransport


class Publication:
    """A publish session on a Transport; its media is the ForwardStream `stream`."""

    kind = "publication"

    def __init__(self, transport: SessionTransport, stream: ForwardStream) -> None:
        self.id = stream.id
        self.transport = transport
        self.stream = stream
        self.ready = False
        self.closed = False

    @property
    def mids(self) -> dict[str, str]:
        """mid -> kind of the tracks whose mid is known."""
        return {t.spec.mid: t.kind for t in self.stream.tracks.values() if t.spec.mid}

    def kinds_without_mid(self) -> list[str]:
        return [t.kind for t in self.stream.tracks.values() if not t.spec.mid]

    def assign_mid(self, kind: str, mid: str) -> None:
        """An older client did not name its mids: the offer's m-line of `kind` is it."""
        self.stream.tracks[kind].spec.mid = mid

    @property
    def tracks(self) -> list[TrackSpec]:
        return [t.spec for t in self.stream.tracks.values()]

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "type": "publication", "ready": self.ready}

    def received_counts(self) -> tuple[int, int]:
        """(packets expected, packets received) from the publisher so far, every track."""
        expected = received = 0
        for track in self.stream.tracks.values():
            if track.receiver is not None:
                more_expected, more_received = aiortcext.received_counts(track.receiver)
                expected += more_expected
                received += more_received
        return expected, received

    def close(self) -> None:
        """Idempotent; the owning Transport forgets the session."""
        if self.closed:
            return
        self.closed = True
        self.stream.close()
        self.transport.session_closed(self)

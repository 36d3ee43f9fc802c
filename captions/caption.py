"""Caption: what a speaker said, as the room sends it to clients and recordings."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

# The push event carrying captions (Tessera's extension to OWT's Client-Portal protocol).
CAPTION_EVENT = "caption"


@dataclass(frozen=True)
class Caption:
    """One utterance of one publication's speaker, partial (still being spoken) or final.

    Partial captions of an utterance share its ``id``; the final one replaces them.
    ``start`` and ``end`` are ``time.monotonic()`` times of the speech.
    """

    id: str
    stream_id: str
    participant: str
    user: str
    language: str
    text: str
    final: bool
    start: float
    end: float

    def to_event(self) -> dict[str, Any]:
        """The ``caption`` push: times in milliseconds since the Unix epoch, as clients
        compare them with their own clock."""
        offset = time.time() - time.monotonic()
        return {
            "id": self.id,
            "from": self.stream_id,
            "participant": self.participant,
            "user": self.user,
            "language": self.language,
            "text": self.text,
            "final": self.final,
            "start": round((self.start + offset) * 1000),
            "end": round((self.end + offset) * 1000),
        }

"""TranscodeLimit: how many forward transcodes one agent runs at once (pure).

Each running transcode is a decode, a scale and an encode of a publication on this
agent's cores, made on demand: by an OWT subscription asking for another format, or
by a forward stream's adaptive rung. Past the limit a new one is refused (the
subscription gets an error naming it; an adaptive subscriber stays on a rung that
runs) rather than let every room on the agent slow down.
"""

from __future__ import annotations

import os

# Transcodes per core when the configured limit is 0 (automatic).
PER_CORE = 4


class TranscodeLimit:
    """At most `limit` transcodes at once (0: `PER_CORE` per core of this machine)."""

    def __init__(self, limit: int = 0) -> None:
        if limit < 0:
            raise ValueError(f"max_transcodes {limit} is negative")
        self.limit = limit or PER_CORE * (os.cpu_count() or 1)
        self.running = 0
        self.refused = 0

    def take(self) -> bool:
        """One more transcode starts, if the limit allows (False, counted, if not)."""
        if self.running >= self.limit:
            self.refused += 1
            return False
        self.running += 1
        return True

    def give_back(self) -> None:
        """A transcode stopped."""
        self.running = max(0, self.running - 1)

    def refusal(self) -> str:
        """The error a subscriber refused a transcode gets."""
        return f"No transcoding capacity: the agent runs its {self.limit} transcodes"

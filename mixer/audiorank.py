"""AudioRanker: the most active audio inputs of a room, each kept in a numbered slot.

Pure: no asyncio, no threads, no frames. The active audio selector feeds it
every input's level (dBov) each 20 ms tick and forwards each slot's input as
one of the room's active audio streams (OWT's ``selectActiveAudio``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .audiomix import LevelEnvelopes


@dataclass(frozen=True)
class RankChange:
    """Slot `slot` now carries `input_id` (None: nobody).

    `speaking` tells whether the input was speaking (its envelope at or above
    the threshold) when it took the slot, or only filled a free one.
    """

    slot: int
    input_id: str | None
    speaking: bool = False


class AudioRanker:
    """Keeps the `slots` most active inputs in numbered slots, as OWT's audio ranker does.

    Each input's level goes through an envelope follower (it rises at once and
    falls with a `release_ms` time constant: `LevelEnvelopes`, as `TalkerSelection`'s). An input
    keeps its slot for as long as it stays among the ranked: the stream that
    carries it does not change under a listener while they talk.

    - A free slot is taken at once by the loudest input without one, speaking
      or not: like OWT's, the slots are filled while there are inputs.
    - When every slot is taken, a *speaking* input (envelope at or above
      `threshold_dbov`) that is louder than the quietest slot holder by
      `switch_margin_db` for `min_ticks` consecutive ticks (OWT changes its
      ranking at most every 200 ms) takes that holder's slot.
    - An input missing from a tick counts as silent; `remove()` frees its slot.

    Ties go to the louder envelope, then the smaller id: deterministic.
    """

    def __init__(
        self,
        slots: int,
        *,
        threshold_dbov: float = -50.0,
        release_ms: float = 200.0,
        switch_margin_db: float = 6.0,
        min_ticks: int = 10,
    ) -> None:
        if slots < 1:
            raise ValueError(f"slots must be at least 1, not {slots}")
        if min_ticks < 1 or switch_margin_db < 0 or release_ms <= 0:
            raise ValueError("min_ticks >= 1, switch_margin_db >= 0 and release_ms > 0 needed")
        self.threshold_dbov = threshold_dbov
        self.switch_margin_db = switch_margin_db
        self.min_ticks = min_ticks
        self._slots: list[str | None] = [None] * slots
        self._envelopes = LevelEnvelopes(threshold_dbov, release_ms)
        self._streak: dict[str, int] = {}  # input -> consecutive ticks beating the quietest

    @property
    def slots(self) -> tuple[str | None, ...]:
        """The input of each slot (None: free)."""
        return tuple(self._slots)

    def envelope(self, input_id: str) -> float | None:
        """The envelope of an input in dBov, or None if unknown."""
        return self._envelopes.levels.get(input_id)

    def update(self, levels: Mapping[str, float]) -> list[RankChange]:
        """Feed one tick of levels (dBov per input); return the slots that changed."""
        envelope = self._envelopes.update(levels)
        ranked = set(self._slots)
        waiting = sorted((i for i in envelope if i not in ranked), key=lambda i: (-envelope[i], i))
        changes: list[RankChange] = []
        # Free slots go at once, loudest first, lowest slot first.
        for slot, holder in enumerate(self._slots):
            if holder is None and waiting:
                changes.append(self._assign(slot, waiting.pop(0)))
        if not waiting or None in self._slots:
            self._streak.clear()
            return changes
        # Full: the loudest speaking input may take the quietest holder's slot.
        holders = [h for h in self._slots if h is not None]
        quietest = min(holders, key=lambda i: (envelope[i], i))
        bar = envelope[quietest] + self.switch_margin_db
        contenders = [
            i for i in waiting if envelope[i] >= self.threshold_dbov and envelope[i] >= bar
        ]
        self._streak = {i: self._streak.get(i, 0) + 1 for i in contenders}
        ready = [i for i in contenders if self._streak[i] >= self.min_ticks]
        if ready:
            changes.append(self._assign(self._slots.index(quietest), ready[0]))
            self._streak.clear()  # measured against the previous holders
        return changes

    def remove(self, input_id: str) -> list[RankChange]:
        """Forget an input (it was unpublished); its slot is free until the next update."""
        self._envelopes.forget(input_id)
        self._streak.pop(input_id, None)
        if input_id not in self._slots:
            return []
        slot = self._slots.index(input_id)
        self._slots[slot] = None
        return [RankChange(slot, None)]

    def _assign(self, slot: int, input_id: str) -> RankChange:
        self._slots[slot] = input_id
        return RankChange(slot, input_id, self._envelopes.levels[input_id] >= self.threshold_dbov)

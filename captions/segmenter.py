"""Segmenting speech into captions: when an utterance's words go out, and in what lines (pure)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

# About what a viewer reads at a glance; a long utterance is cut at this length so its
# final caption comes within seconds (a speaker who never pauses still gets captions).
MAX_UTTERANCE = 6.0
# A partial result while someone speaks, at most this often (each one is an event to every
# participant).
PARTIAL_EVERY = 0.5


class Step(enum.Enum):
    """What to do after one more piece of speech was recognised."""

    NOTHING = "nothing"
    PARTIAL = "partial"  # send the words so far
    CUT = "cut"  # end the utterance now: its words are final


@dataclass
class Segmenter:
    """Decides, for one speaker's utterance, when a partial result is due and when the
    utterance is cut, from seconds of speech recognised (not from the wall clock)."""

    partial_every: float = PARTIAL_EVERY
    max_utterance: float = MAX_UTTERANCE
    _last_partial: float = 0.0

    def start(self) -> None:
        """A new utterance begins."""
        self._last_partial = 0.0

    def step(self, speech_seconds: float) -> Step:
        """``speech_seconds``: how long the utterance has been going on."""
        if speech_seconds >= self.max_utterance:
            return Step.CUT
        if speech_seconds - self._last_partial >= self.partial_every:
            self._last_partial = speech_seconds
            return Step.PARTIAL
        return Step.NOTHING


def wrap_lines(text: str, width: int, max_lines: int | None = None) -> list[str]:
    """``text`` in lines of at most ``width`` characters, broken between words (a longer
    word gets a line of its own, cut). With ``max_lines``, the last lines: a caption shows
    what was said most recently."""
    if width < 1:
        raise ValueError("width must be at least 1")
    lines: list[str] = []
    line = ""
    for word in text.split():
        word = word[:width]
        if not line:
            line = word
        elif len(line) + 1 + len(word) <= width:
            line = f"{line} {word}"
        else:
            lines.append(line)
            line = word
    if line:
        lines.append(line)
    if max_lines is not None:
        lines = lines[-max_lines:] if max_lines > 0 else []
    return lines

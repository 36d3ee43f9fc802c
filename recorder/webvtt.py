"""WebVTT: a recording's captions as a sidecar file, on the recording's own clock."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from tessera.captions.segmenter import wrap_lines

# Lines of a cue as players show them best (about 42 characters, as broadcasters use).
LINE_WIDTH = 42


@dataclass(frozen=True)
class Cue:
    """One final caption: ``start`` and ``end`` are ``time.monotonic()`` times."""

    start: float
    end: float
    speaker: str
    text: str


def timestamp(seconds: float) -> str:
    """A WebVTT timestamp ``hh:mm:ss.ttt`` (hours always written: a meeting can be long)."""
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"


def escape(text: str) -> str:
    """Cue text as WebVTT reads it literally ('&', '<' and '>' are markup there)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _voice(name: str) -> str:
    # A voice span's annotation ends at '>' and may not hold a line break.
    return escape(" ".join(name.split()))


def to_webvtt(cues: list[Cue], origin: float | None) -> str:
    """The WebVTT file of ``cues`` with times from ``origin`` (the monotonic time of the
    recording's first media; None: nothing recorded yet, every cue at 0).

    Each cue names its speaker with a voice span (``<v Ada>``); cues are in start order,
    and a cue that would end before it starts ends when it starts.
    """
    out = ["WEBVTT", ""]
    for number, cue in enumerate(sorted(cues, key=lambda c: (c.start, c.end)), 1):
        start = 0.0 if origin is None else max(0.0, cue.start - origin)
        end = 0.0 if origin is None else max(start, cue.end - origin)
        lines = [escape(line) for line in wrap_lines(cue.text, LINE_WIDTH)]
        if not lines:
            continue
        if cue.speaker.strip():
            lines[0] = f"<v {_voice(cue.speaker)}>{lines[0]}"
        out.append(str(number))
        out.append(f"{timestamp(start)} --> {timestamp(end)}")
        out.extend(lines)
        out.append("")
    return "\n".join(out)


@dataclass
class CaptionTrack:
    """The final captions of one recording, written beside it as ``<id>.vtt``."""

    cues: list[Cue] = field(default_factory=list)

    def add_event(self, data: object) -> bool:
        """Keep a room's ``caption`` event if it is final and has words; whether it was kept.

        The event's times are milliseconds since the epoch (as clients get them); they
        are kept as monotonic times, as the recording's clock is.
        """
        if not isinstance(data, dict) or data.get("final") is not True:
            return False
        text, start, end = data.get("text"), data.get("start"), data.get("end")
        speaker = data.get("user")
        if not isinstance(text, str) or not text.strip():
            return False
        if not isinstance(start, int | float) or not isinstance(end, int | float):
            return False
        offset = time.time() - time.monotonic()
        self.cues.append(
            Cue(
                start=start / 1000 - offset,
                end=end / 1000 - offset,
                speaker=speaker if isinstance(speaker, str) else "",
                text=text,
            )
        )
        return True

    def write(self, path: Path, origin: float | None) -> None:
        """Write atomically: a reader (or a crash) never sees half a file."""
        partial = path.with_suffix(path.suffix + ".partial")
        try:
            partial.write_text(to_webvtt(self.cues, origin), encoding="utf-8")
            partial.replace(path)
        except OSError:
            partial.unlink(missing_ok=True)
            raise

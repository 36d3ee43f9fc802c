"""IngestClock: one unbroken timeline for a streaming-in across loops and reconnections.

Pure: times are passed in (seconds), nothing is read from a clock here. Each
connection to a source (a *segment*) has timestamps of its own; the clock maps
them onto the stream's timeline, which starts at 0 and keeps going: a new
segment starts where the outage left the wall clock (a gap as long as the
outage, as RTP expects), a file that loops starts one tick after its last
packet. Pacing: a packet is due when the wall clock reaches its place on the
timeline, so a file or a buffered HLS playlist is sent in real time, not as
fast as it can be read.
"""

from __future__ import annotations

# A source timestamp this far ahead of the wall clock, or this far back, is a
# discontinuity (a wrapped or reset clock): the segment is anchored again.
MAX_AHEAD = 3.0
MAX_BACK = 1.0
# The smallest step between two segments (one 90 kHz tick).
TICK = 1 / 90000


class IngestClock:
    """Maps a segment's source times (seconds) onto the stream's timeline (seconds)."""

    def __init__(self) -> None:
        self._origin: float | None = None  # wall time of timeline 0
        self._offset: float | None = None  # timeline - source time, in this segment
        self._last: float | None = None  # the latest timeline time handed out
        self.segments = 0

    def new_segment(self) -> None:
        """The source was opened again (reconnected or looped): anchor at the next packet."""
        self._offset = None

    def _anchor(self, source: float, now: float) -> None:
        if self._origin is None or self._last is None:
            self._origin = now
            base = 0.0
        else:
            base = max(self._last + TICK, now - self._origin)
        self._offset = base - source
        self.segments += 1

    def timeline(self, source: float, now: float) -> float:
        """Where a packet of source time ``source`` read at wall time ``now`` goes."""
        if self._offset is None or self._origin is None:
            self._anchor(source, now)
        assert self._offset is not None and self._origin is not None
        out = source + self._offset
        if out > now - self._origin + MAX_AHEAD or (
            self._last is not None and out < self._last - MAX_BACK
        ):
            self._anchor(source, now)
            out = source + self._offset
        if self._last is None or out > self._last:
            self._last = out
        return out

    def place(self, source: float) -> float:
        """The timeline time of another time of the current segment (a decoded frame's)."""
        if self._offset is None:
            return 0.0 if self._last is None else self._last
        return source + self._offset

    def wait(self, timeline: float, now: float) -> float:
        """Seconds until a packet at ``timeline`` is due (0: now)."""
        if self._origin is None:
            return 0.0
        return max(0.0, self._origin + timeline - now)

"""A forward stream's ladder: the publisher's own stream on top, transcoded rungs below (pure).

The top rung is the publication as received (no transcode) at the bitrate it
arrives at. Below it come 1/2 and 1/4 of its height at OWT's automatic bitrate
for that size (`default_bitrate`, 30 fps): a 1280x720 publisher gives 640x360
at 640 kbit/s and 320x180 at 288 kbit/s; a 640x360 one, 320x180 and 160x90 at
72 kbit/s. A rung under 90 pixels high is left out. The sizes depend on the
picture's size only, never on the measured bitrate: a subscriber's rung index
keeps naming the same size while the publisher's rate moves. Two rungs at most:
each one in use is a real encoder (decode once, scale + encode per rung).
"""

from __future__ import annotations

from collections import deque

from tessera.media.bandwidth import Rung
from tessera.media.videoencoder import default_bitrate

__all__ = ["ReceivedRate", "forward_ladder"]

# The rungs below the top: shares of the publisher's height.
STEPS = ((1, 2), (1, 4))
# Smaller rungs than this are left out (pixels of height).
MIN_HEIGHT = 90
# The frame rate the transcoded rungs are sized for (VideoTranscoder's default).
RUNG_FRAMERATE = 30


def _even(value: float) -> int:
    return max(2, round(value / 2) * 2)


def forward_ladder(width: int, height: int, bitrate: int, codec: str) -> tuple[Rung, ...]:
    """The rungs of a publication of `width` x `height` arriving at `bitrate` bit/s.

    The top rung counts at least OWT's bitrate for its size (a publisher sending less
    now may rise to it at any time), so the bitrates fall from rung to rung whatever
    the publisher sends, as the rung chooser needs.
    """
    floor = default_bitrate(width, height, RUNG_FRAMERATE, codec)
    rungs = [Rung(width, height, max(bitrate, floor))]
    for numerator, denominator in STEPS:
        rung_height = _even(height * numerator / denominator)
        if rung_height < MIN_HEIGHT:
            break
        rung_width = _even(width * numerator / denominator)
        rung_bitrate = default_bitrate(rung_width, rung_height, RUNG_FRAMERATE, codec)
        if rung_bitrate >= rungs[-1].bitrate or rung_bitrate >= floor:
            break  # OWT's bitrates bottom out at 50 kbit/s: no cheaper rung below
        rungs.append(Rung(rung_width, rung_height, rung_bitrate))
    return tuple(rungs)


class ReceivedRate:
    """The bitrate a publication arrives at, over the last `window` seconds.

    Fed with (time, bytes) of each received frame; times are a monotonic clock
    passed in by the caller. None until it has seen `window`/2 of frames.
    """

    def __init__(self, window: float = 2.0) -> None:
        self.window = window
        self._samples: deque[tuple[float, int]] = deque()
        self._bytes = 0

    def add(self, now: float, size: int) -> None:
        self._samples.append((now, size))
        self._bytes += size
        self._trim(now)

    def _trim(self, now: float) -> None:
        while self._samples and self._samples[0][0] < now - self.window:
            self._bytes -= self._samples.popleft()[1]

    def bitrate(self, now: float) -> int | None:
        self._trim(now)
        if len(self._samples) < 2:
            return None
        span = now - self._samples[0][0]
        if span < self.window / 2:
            return None
        return int(self._bytes * 8 / span)

"""Whether a subscriber's Opus should carry in-band FEC, from its loss: pure logic.

In-band FEC costs bitrate (the encoder spends part of it on a coarse copy of
the previous frame) and helps only a receiver that loses packets, so a view
encodes it only for subscribers that need it (MixedStream's FEC encoding).
`FecSwitch` reads the fraction lost of each receiver report about the
subscriber's audio and turns FEC on when the smoothed loss rises above
`on_above` (a few %), off again only after it has stayed under `off_below`
(~1 %) for `off_hold` seconds: a link that loses now and then does not flap
between the encodings. Times are seconds of a monotonic clock passed in.
"""

from __future__ import annotations

# Smoothed loss above which FEC goes on, and under which it may go off (fractions).
ON_ABOVE = 0.03
OFF_BELOW = 0.01
# Seconds the loss must stay under OFF_BELOW before FEC goes off.
OFF_HOLD = 4.0
# Weight of a new report in the smoothed loss: a report covers ~1 s of audio (50
# packets), so one lost packet is 2 %; two reports in a row with loss turn FEC on.
SMOOTHING = 0.5


class FecSwitch:
    """One subscriber's FEC decision, fed its receiver reports' fraction lost."""

    def __init__(
        self,
        on_above: float = ON_ABOVE,
        off_below: float = OFF_BELOW,
        off_hold: float = OFF_HOLD,
        smoothing: float = SMOOTHING,
    ) -> None:
        if not 0 <= off_below <= on_above <= 1:
            raise ValueError(
                f"need 0 <= off_below <= on_above <= 1, not {off_below} and {on_above}"
            )
        if off_hold < 0 or not 0 < smoothing <= 1:
            raise ValueError("off_hold must not be negative and smoothing must be in (0, 1]")
        self.on_above = on_above
        self.off_below = off_below
        self.off_hold = off_hold
        self.smoothing = smoothing
        self.on = False
        self.loss: float | None = None  # smoothed fraction lost; None before a report
        self.reports = 0
        self.switches = 0
        self._low_since: float | None = None  # when the loss went under off_below

    def update(self, now: float, fraction_lost: float) -> bool:
        """Feed one receiver report's fraction lost (0..1); True when `on` changed.

        A value outside 0..1 (a broken or forged report) is clamped.
        """
        lost = min(1.0, max(0.0, fraction_lost))
        self.reports += 1
        previous = self.loss
        self.loss = lost if previous is None else previous + self.smoothing * (lost - previous)
        if not self.on:
            if self.loss > self.on_above:
                self.on = True
                self._low_since = None
                self.switches += 1
                return True
            return False
        if self.loss >= self.off_below:
            self._low_since = None
            return False
        if self._low_since is None:
            self._low_since = now
        if now - self._low_since >= self.off_hold:
            self.on = False
            self._low_since = None
            self.switches += 1
            return True
        return False

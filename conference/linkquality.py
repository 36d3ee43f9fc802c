"""The figures a participant's connection quality is judged by (pure).

The conference page shows each participant's connection quality as good, fair or
poor. It judges every participant, itself included, with one function
(``connectionQuality`` in web/js/tessera.js) of three figures: the share of packets
lost, the round-trip time, and whether video is held back for bandwidth. The page
measures its own; the room service makes the others' from the adaptive estimates of
their subscriptions (``AdaptiveVideo.describe()``, webrtc_agent/adaptive.py) and the loss
of what their publications send (``ReceivedLoss``): the worst of them, as a participant's
connection is as good as its worst path.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# Seconds a publisher's loss is measured over, at least: a shorter window is noise.
LOSS_WINDOW = 1.0


@dataclass(frozen=True)
class LinkFigures:
    """Loss (0..1), round trip (s) and whether video is held back; None: not measured."""

    loss: float | None = None
    rtt: float | None = None
    limited: bool = False

    def to_json(self) -> dict[str, Any]:
        """What the page's ``connectionQuality`` takes (its ``loss``, ``rtt``, ``limited``)."""
        return {"loss": self.loss, "rtt": self.rtt, "limited": self.limited}


def subscription_figures(described: Mapping[str, Any]) -> LinkFigures:
    """One adapted subscription's figures from its ``describe()``. Loss and round trip count
    once the subscriber has sent a receiver report. Its video is held back while it is on a
    rung below the top, or while its estimate says the link cannot carry what is sent
    (``congested``: loss over 10 %, a falling REMB under half the rate sent, or NACKs for
    over a tenth of the packets). The estimate is not compared with the top rung's nominal
    bitrate: a still picture is sent far below it, and the estimate follows what is sent."""
    reported = _number(described.get("reports")) or 0
    loss = _number(described.get("fractionLost")) if reported > 0 else None
    rtt = _number(described.get("roundTripTime")) if reported > 0 else None
    rung = _number(described.get("rung")) or 0
    limited = rung > 0 or described.get("congested") is True
    return LinkFigures(
        loss=None if loss is None else min(max(loss, 0.0), 1.0),
        rtt=None if rtt is None or rtt < 0 else rtt,
        limited=limited,
    )


@dataclass
class ReceivedLoss:
    """The share of a publisher's packets that did not arrive, over the last window of at
    least ``window`` seconds, from the receiver's cumulative counts (the caller gives the
    time and the counts). None until two looks a window apart, and for a window in which
    nothing was sent (a paused publication has nothing to judge)."""

    window: float = LOSS_WINDOW
    loss: float | None = None
    _at: float | None = None
    _expected: int = 0
    _received: int = 0

    def update(self, now: float, expected: int, received: int) -> float | None:
        """Take the counts now; the loss of the last whole window."""
        if self._at is not None and now - self._at < self.window and expected >= self._expected:
            return self.loss
        if self._at is not None and expected >= self._expected:
            more = expected - self._expected
            # Retransmissions count as received again: never below no loss.
            arrived = received - self._received
            self.loss = min(max(1 - arrived / more, 0.0), 1.0) if more > 0 else None
        # First look, a whole window, or counts that went back (a receiver restarted).
        self._at, self._expected, self._received = now, expected, received
        return self.loss

    def figures(self) -> LinkFigures:
        return LinkFigures(loss=self.loss)


def worst(figures: Iterable[LinkFigures]) -> LinkFigures:
    """The worst of several paths' figures: the highest loss and round trip measured, held
    back if any is."""
    listed = list(figures)
    losses = [f.loss for f in listed if f.loss is not None]
    rtts = [f.rtt for f in listed if f.rtt is not None]
    return LinkFigures(
        loss=max(losses) if losses else None,
        rtt=max(rtts) if rtts else None,
        limited=any(f.limited for f in listed),
    )


def _number(value: Any) -> float | None:
    # bool is an int: not a figure; nor is NaN or an infinity.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None

"""A view's ladder: the sizes and bitrates one composited canvas is encoded in (pure).

The top rung is the view's own format. Below it come the configured rungs
(``video.ladder`` of the view's options) or, by default, the sizes 1/2 and
1/4 of the view's height at 24 % and 8 % of its bitrate (1280x720 at 1.9
Mbit/s gives 640x360 at 460 kbit/s and 320x180 at 150 kbit/s). A 3/4 rung
(960x540 at 1 Mbit/s) is not in the default: it costs 80 % of the top rung's
encode, and the whole ladder then 2.2x the top rung alone (bench.adaptive),
against at most 1.6x; a view that wants it configures it. A rung is encoded
only while a subscriber is on it.
"""

from __future__ import annotations

from tessera.media.bandwidth import Rung

from .viewoptions import LadderRung

__all__ = ["Rung", "view_ladder"]

# The default rungs below the top: (share of the view's height, share of its bitrate).
DEFAULT_STEPS = ((1, 2, 0.24), (1, 4, 0.08))
# Smaller rungs than this are left out of the default ladder (pixels of height).
MIN_HEIGHT = 90
# Nor is a rung under this bitrate (bit/s) worth a subscriber's switch.
MIN_RUNG_BITRATE = 50_000


def _even(value: float) -> int:
    return max(2, round(value / 2) * 2)


def view_ladder(
    width: int, height: int, bitrate: int, configured: list[LadderRung] | None
) -> tuple[Rung, ...]:
    """The rungs of a view of `width` x `height` at `bitrate` (bit/s), highest first.

    `configured` None gives the default ladder, [] only the top rung (no adaptation).
    """
    top = Rung(width, height, bitrate)
    if configured is not None:
        return (
            top,
            *(Rung(r.resolution.width, r.resolution.height, r.bitrate * 1000) for r in configured),
        )
    rungs = [top]
    for numerator, denominator, share in DEFAULT_STEPS:
        rung_height = _even(height * numerator / denominator)
        rung_bitrate = int(bitrate * share)
        if rung_height < MIN_HEIGHT or rung_bitrate < MIN_RUNG_BITRATE:
            break
        rungs.append(Rung(_even(width * numerator / denominator), rung_height, rung_bitrate))
    return tuple(rungs)

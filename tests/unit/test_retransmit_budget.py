"""An adaptive subscriber's retransmission budget (SharedRtpTrack._within_budget)."""

from __future__ import annotations

from tessera.media.mediasource import PacketSource
from tessera.media.rtpfanout import RETRANSMIT_BURST, SharedRtpTrack
from tessera.webrtc_agent.adaptive import MIN_RETRANSMIT_BUDGET, RETRANSMIT_SHARE


async def test_a_low_rungs_budget_still_repeats_a_whole_packet() -> None:
    # 72 kbit/s at a quarter is 2.25 kB/s, half a second of it 1.1 kB: less than one full
    # packet, so a lost keyframe packet of a low rung could never be repeated.
    assert RETRANSMIT_SHARE * 72_000 / 8 < MIN_RETRANSMIT_BUDGET
    track = SharedRtpTrack("video", PacketSource("video", "vp8", 90000))
    try:
        track.retransmit_budget = MIN_RETRANSMIT_BUDGET
        track._rtx_time = 0.0  # long ago: the bucket is full
        assert track._within_budget(1200)
        assert track._within_budget(1200)  # two full packets at once
        assert RETRANSMIT_BURST >= 2 * 1200
    finally:
        track.stop()

"""AdaptiveVideo: one subscriber's video moved along a view's ladder by its own feedback.

The subscriber's RTCP (receiver reports, REMB, NACK, PLI), the sender's own
delay-based estimate from its transport-cc feedback (when it sends that
instead of REMB) and what the fan-out sent it feed a `BandwidthEstimator`; every `INTERVAL` a
`RungChooser` picks the rung, and a change re-points the subscriber's
`SharedRtpTrack` to that rung's shared output at its next keyframe
(`rtpfanout.switch_rung`: the old rung plays until then); once it is sent,
the estimator hears where the new rung's packets begin, so the feedback
still arriving about the old rung's is not taken for congestion of the
new one. Audio is not
adapted: its bitrate is kept out of what the video may take, so under
congestion the video yields first.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from aiortc import RTCRtpSender, clock
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    AnyRtcpPacket,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSrPacket,
    unpack_remb_fci,
)

from tessera.media import aiortcext
from tessera.media.bandwidth import MIN_BITRATE, BandwidthEstimator, Estimate, Rung, RungChooser
from tessera.media.mediasource import PacketSource, ParameterError, VideoFormat
from tessera.media.rtpfanout import SharedRtpTrack, switch_rung

logger = logging.getLogger(__name__)

# Seconds between two looks at a subscriber's figures.
INTERVAL = 0.25
# What a subscription's audio is kept aside for (bit/s): the mixed view's Opus.
AUDIO_RESERVE = 64_000
# Retransmissions a subscriber is answered, as a share of its rung's bitrate (half a
# second's worth at once).
RETRANSMIT_SHARE = 0.25
# ... but never less (bytes/s): a quarter of a low rung's bitrate (2.2 kB/s at 72 kbit/s)
# could not repeat its lost keyframe, and the subscriber froze until the next one.
MIN_RETRANSMIT_BUDGET = 4_000


@runtime_checkable
class LadderStream(Protocol):
    """A stream that encodes a ladder of one picture (a mixed view)."""

    def ladder(self, fmt: VideoFormat) -> tuple[Rung, ...]: ...

    def rung_source(self, fmt: VideoFormat, rung: int) -> PacketSource: ...


def rtt_of(lsr: int, dlsr: int, ntp_now: int) -> float | None:
    """Round-trip time (s) from a report block's LSR/DLSR and the 64-bit NTP time now.

    None when the receiver has had no sender report yet (LSR 0) or the figure is
    negative (clocks of the middle 32 bits wrapped oddly, a forged block).
    """
    if lsr == 0:
        return None
    compact = (ntp_now >> 16) & 0xFFFFFFFF
    delay = (compact - lsr - dlsr) & 0xFFFFFFFF
    rtt = delay / 65536
    return rtt if rtt < 60 else None


class AdaptiveVideo:
    """One subscriber's video on a view's ladder (event loop thread)."""

    def __init__(
        self,
        track: SharedRtpTrack,
        sender: RTCRtpSender,
        stream: LadderStream,
        fmt: VideoFormat,
        audio_reserve: int,
        log_ids: dict[str, str],
    ) -> None:
        self.track = track
        self.sender = sender
        self.stream = stream
        self.format = fmt
        self.rungs: Sequence[Rung] = stream.ladder(fmt)
        self.audio_reserve = audio_reserve
        self.estimator = BandwidthEstimator()
        self.chooser = RungChooser(tuple(r.bitrate for r in self.rungs))
        self.log_ids = log_ids
        self.last: Estimate = self.estimator.estimate(time.monotonic())
        self._feedbacks_seen = 0  # of the transport's transport-cc feedback
        self._timer: asyncio.TimerHandle | None = None
        self.closed = False
        self._budget_retransmissions()
        track.on_rung_switch = self._on_switched
        aiortcext.watch_rtcp(sender, self._on_rtcp)
        self._schedule()

    @property
    def rung(self) -> int:
        return self.chooser.rung

    def _schedule(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(INTERVAL, self._tick)

    def _on_rtcp(self, packet: AnyRtcpPacket) -> None:
        if self.closed:
            return
        now = time.monotonic()
        ssrc = aiortcext.sender_ssrcs(self.sender)[0]
        if isinstance(packet, RtcpRrPacket | RtcpSrPacket):
            for report in packet.reports:
                if report.ssrc == ssrc:
                    rtt = rtt_of(report.lsr, report.dlsr, clock.current_ntp_time())
                    self.estimator.on_receiver_report(
                        now,
                        report.fraction_lost,
                        report.jitter,
                        rtt,
                        highest_sequence=report.highest_sequence,
                        packets_lost=report.packets_lost,
                    )
        elif isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            if packet.media_ssrc == ssrc:
                self.estimator.on_nacked(now, packet.lost)
        elif isinstance(packet, RtcpPsfbPacket):
            if packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR) and packet.media_ssrc in (ssrc, 0):
                self.estimator.on_pli(now)
            elif packet.fmt == RTCP_PSFB_APP:
                try:
                    bitrate, ssrcs = unpack_remb_fci(packet.fci)
                except ValueError:
                    return  # another application-layer feedback
                if ssrc in ssrcs and not self.estimator.on_remb(now, bitrate):
                    logger.info(
                        "REMB of %d bit/s ignored (outside %d..%d)",
                        bitrate,
                        MIN_BITRATE,
                        100_000_000,
                        extra=self.log_ids,
                    )

    def _on_switched(self, first_sequence: int) -> None:
        if not self.closed:
            self.estimator.on_switch(time.monotonic(), first_sequence)

    def _tick(self) -> None:
        if self.closed:
            return
        try:
            self._update(time.monotonic())
        except Exception:
            # A failing subscriber keeps its rung; it must not stop adapting the others.
            logger.exception("adaptive delivery failed", extra=self.log_ids)
        self._schedule()

    def _update(self, now: float) -> None:
        track = self.track
        self.estimator.on_sent(now, track.octets_sent, track.packets_sent)
        transport_cc = track.transport_cc
        if transport_cc is not None and self.last.rtt is not None:
            transport_cc.rtt = self.last.rtt  # GCC's response time (the transport's RTT)
        if transport_cc is not None and transport_cc.feedbacks != self._feedbacks_seen:
            bitrate = transport_cc.bitrate
            if bitrate is not None:
                overused = transport_cc.last_overuse > self._feedbacks_seen
                self.estimator.on_delay_based(now, bitrate, overused)
            self._feedbacks_seen = transport_cc.feedbacks
        estimate = self.estimator.estimate(now)
        self.last = estimate
        if estimate.bitrate is not None:
            # The audio keeps its share: the video yields first.
            estimate = dataclasses.replace(
                estimate, bitrate=max(MIN_BITRATE, estimate.bitrate - self.audio_reserve)
            )
        before = self.chooser.rung
        rung = self.chooser.choose(now, estimate)
        if rung == before:
            return
        source = self._rung_source(rung, before)
        if source is None:
            return
        rung = self.chooser.rung
        switch_rung(track, source)
        self._budget_retransmissions()
        target = self.rungs[rung]
        logger.info(
            "subscriber switched to rung %d (%dx%d, %d bit/s): estimate %s, loss %.3f,"
            " delay-based %s (%s), sent %d bit/s, NACKed %.1f packets/s",
            rung,
            target.width,
            target.height,
            target.bitrate,
            estimate.bitrate,
            estimate.loss,
            estimate.delay_based,
            "transport-cc" if estimate.transport_cc else "REMB",
            estimate.sent_rate,
            estimate.nack_rate,
            extra=self.log_ids,
        )

    def _rung_source(self, rung: int, before: int) -> PacketSource | None:
        """The source of `rung`, or (going down) of the highest lower rung that can be had;
        None (the subscriber stays on `before`) when none can: a forward rung is a
        transcode, and the agent may run all it may (`TranscodeLimit`)."""
        candidates = range(rung, len(self.rungs)) if rung > before else range(rung, rung + 1)
        for candidate in candidates:
            try:
                source = self.stream.rung_source(self.format, candidate)
            except ParameterError as exc:
                reason = str(exc)
                continue
            self.chooser.correct(candidate)
            return source
        self.chooser.correct(before)
        # Tried again at most every down_gap while congested: said once, then every tenth.
        log = logger.warning if self.chooser.refused % 10 == 1 else logger.debug
        log(
            "subscriber stays on rung %d, rung %d cannot be had (%d times): %s",
            before,
            rung,
            self.chooser.refused,
            reason,
            extra=self.log_ids,
        )
        return None

    def _budget_retransmissions(self) -> None:
        share = RETRANSMIT_SHARE * self.rungs[self.chooser.rung].bitrate / 8
        self.track.retransmit_budget = max(share, MIN_RETRANSMIT_BUDGET)

    def describe(self) -> dict[str, Any]:
        """The estimate and rung, for querybwe, REST and metrics (camelCase)."""
        rung = self.rungs[self.chooser.rung]
        transport_cc = self.track.transport_cc
        return {
            **self.last.to_json(),
            **(transport_cc.describe() if transport_cc is not None else {}),
            "rung": self.chooser.rung,
            "rungs": len(self.rungs),
            "rungResolution": {"width": rung.width, "height": rung.height},
            "rungBitrate": rung.bitrate,
            "rungSwitches": self.chooser.switches,
            "failedProbes": self.chooser.failed_probes,
            "rungsRefused": self.chooser.refused,
            "retransmitted": self.track.retransmitted,
            "retransmitsRefused": self.track.retransmits_refused,
            "retransmitsOverBudget": self.track.retransmits_over_budget,
            "nacksUnanswered": self.track.nacks_unanswered,
        }

    def close(self) -> None:
        """Idempotent: stops looking (the track stays on the rung it is on)."""
        self.closed = True
        if self.track.on_rung_switch == self._on_switched:
            self.track.on_rung_switch = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

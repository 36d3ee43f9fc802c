"""AdaptiveAudio: one subscriber's mixed audio with in-band FEC while its link loses packets.

A view encodes its Opus plainly and, while a lossy subscriber receives it,
once more with in-band FEC (MixedStream.audio_source). Each receiver report
about the subscriber's audio (its loss counted over at least 20 packets, as the
video's estimate counts it: `bandwidth.CountedLoss`) feeds a `FecSwitch`; when it turns FEC on or
off, the subscriber's `SharedRtpTrack` moves to the other encoding at a
packet boundary (`rtpfanout.switch_rung`: its sequence numbers and
timestamps go on).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol, runtime_checkable

from aiortc import RTCRtpSender
from aiortc.rtp import RtcpRrPacket, RtcpSrPacket

from tessera.media import aiortcext
from tessera.media.bandwidth import CountedLoss
from tessera.media.fecswitch import FecSwitch
from tessera.media.mediasource import PacketSource, ParameterError
from tessera.media.rtpfanout import SharedRtpTrack, switch_rung

logger = logging.getLogger(__name__)


@runtime_checkable
class FecStream(Protocol):
    """A stream that encodes its audio with and without in-band FEC (a mixed view)."""

    def audio_source(self, subscriber: str | None, fec: bool) -> PacketSource: ...


class AdaptiveAudio:
    """One subscriber's audio switched to the FEC encoding and back (event loop thread)."""

    def __init__(
        self,
        track: SharedRtpTrack,
        sender: RTCRtpSender,
        stream: FecStream,
        subscriber: str | None,
        log_ids: dict[str, str],
    ) -> None:
        self.track = track
        self.stream = stream
        self.subscriber = subscriber
        self.switch = FecSwitch()
        self.loss = CountedLoss()
        self.log_ids = log_ids
        self.closed = False
        self._ssrc = aiortcext.sender_ssrcs(sender)[0]
        aiortcext.watch_rtcp(sender, self._on_rtcp)

    @property
    def fec(self) -> bool:
        """Whether the subscriber is (being switched) on the FEC encoding."""
        return self.switch.on

    def _on_rtcp(self, packet: Any) -> None:
        if self.closed or not isinstance(packet, RtcpRrPacket | RtcpSrPacket):
            return
        for report in packet.reports:
            if report.ssrc == self._ssrc:
                loss = self.loss.update(
                    report.fraction_lost, report.highest_sequence, report.packets_lost
                )
                if loss is not None:
                    self._on_loss(loss)

    def _on_loss(self, loss: float) -> None:
        if not self.switch.update(time.monotonic(), loss):
            return
        try:
            source = self.stream.audio_source(self.subscriber, self.switch.on)
        except ParameterError as exc:
            logger.warning("audio FEC switch not made: %s", exc, extra=self.log_ids)
            return
        switch_rung(self.track, source)
        logger.info(
            "subscriber's audio %s in-band FEC: loss %.3f",
            "switched to" if self.switch.on else "switched back from",
            self.switch.loss or 0.0,
            extra=self.log_ids,
        )

    @property
    def encoding(self) -> str:
        """What the subscriber receives now: "opus" or "opus+fec" (after the switch)."""
        source = self.track.source
        return "opus+fec" if getattr(source, "fec", False) else "opus"

    def describe(self) -> dict[str, Any]:
        """Which audio the subscriber gets and why, for querybwe, REST and metrics."""
        return {
            "encoding": self.encoding,
            "inbandFec": self.switch.on,
            "fractionLost": self.switch.loss,
            "fecSwitches": self.switch.switches,
        }

    def close(self) -> None:
        """Idempotent: stops listening (the track stays on the encoding it has)."""
        self.closed = True

"""TransportWideCc: transport-wide congestion control of one subscriber's transport.

Every video packet the shared fan-out sends on a transport whose subscriber
negotiated transport-cc carries the transport's next sequence number
(`sent`, on the fan-out thread), logged with its send time and size. The
subscriber's feedback (RTCP RTPFB FMT 15, taken off aiortc's RTCP path by
`aiortcext.watch_transport_feedback`) is matched with that log and fed to a
`DelayBasedEstimator`: the delay-based estimate a receiver's REMB used to give
(Chromium sends no REMB once the packets carry the numbers), made by the sender.

Only video carries the numbers: a receiver that gives no feedback on audio
would otherwise report the audio packets' numbers as lost. (REMB covered
audio and video; the adaptive video keeps the audio's share aside either way.)
"""

from __future__ import annotations

import logging
import time
import weakref
from typing import Any

from . import aiortcext
from .delaybased import DelayBasedEstimator
from .transportcc import SentPacketLog, parse_transport_feedback

logger = logging.getLogger(__name__)

_by_transport: weakref.WeakKeyDictionary[Any, TransportWideCc] = weakref.WeakKeyDictionary()


class TransportWideCc:
    """One DTLS transport's transport-wide sequence numbers, sent log and delay-based estimate.

    `sent` runs on the fan-out thread only (the numbers of one transport are
    counted there in send order); feedback is handled on the event loop thread.
    """

    def __init__(self) -> None:
        self.log = SentPacketLog()
        self.estimator = DelayBasedEstimator()
        self._next = 1  # fan-out thread only
        self.feedbacks = 0
        self.malformed = 0
        self.unknown = 0  # packets a feedback named that were never sent (or long ago)
        # The count of feedbacks when the detector last said "overusing" (0: never).
        self.last_overuse = 0
        # The latest round-trip time (s) a receiver report gave, set by whoever reads them.
        self.rtt: float | None = None

    @classmethod
    def of(cls, dtls: Any) -> TransportWideCc:
        """The transport's (made, and its feedback watched, on first use; loop thread)."""
        existing = _by_transport.get(dtls)
        if existing is None:
            existing = cls()
            _by_transport[dtls] = existing
            aiortcext.watch_transport_feedback(dtls, existing.on_feedback)
        return existing

    @classmethod
    def find(cls, dtls: Any) -> TransportWideCc | None:
        """The transport's, if a sender on it negotiated transport-cc."""
        return _by_transport.get(dtls)

    def sent(self, now: float, size: int) -> int:
        """The number of a packet of `size` bytes sent now (fan-out thread); logged."""
        sequence = self._next
        self._next = (sequence + 1) & 0xFFFF
        self.log.add(sequence, now, size)
        return sequence

    def on_feedback(self, body: bytes) -> None:
        """One feedback's body, as the network gave it (loop thread)."""
        try:
            feedback = parse_transport_feedback(body)
        except ValueError as exc:
            self.malformed += 1
            logger.info("transport-cc feedback ignored: %s", exc)
            return
        results, unknown = self.log.results(feedback)
        self.unknown += unknown
        self.feedbacks += 1
        rejected = self.estimator.rejected
        self.estimator.on_feedback(time.monotonic(), results, self.rtt)
        if self.estimator.rejected != rejected:
            logger.info("transport-cc feedback: %s", self.estimator.last_rejection)
        if self.estimator.state == "overusing":
            self.last_overuse = self.feedbacks

    @property
    def bitrate(self) -> int | None:
        """The delay-based estimate (bit/s) of the whole transport, once there is one."""
        return self.estimator.bitrate

    def describe(self) -> dict[str, Any]:
        """The figures REST and querybwe show (camelCase)."""
        return {
            "delayBasedBitrate": self.estimator.bitrate,
            "acknowledgedBitrate": self.estimator.acknowledged_rate,
            "delayState": self.estimator.state,
            "feedbackLoss": round(self.estimator.loss, 4),
            "feedbacks": self.feedbacks,
            "feedbacksMalformed": self.malformed,
            "feedbackRejected": self.estimator.rejected,
        }

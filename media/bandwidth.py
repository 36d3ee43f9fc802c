"""A subscriber's link estimate and the rung it should get: pure logic, no asyncio, no I/O.

`BandwidthEstimator` turns what a subscriber's peer connection reports
(receiver report blocks: loss, jitter, round-trip time; REMB; NACKs and
PLIs) plus what was sent to it into an `Estimate`. Every time is passed in
(seconds of a monotonic clock), so tests drive it without waiting.

The estimate combines a loss-based rate (after Google congestion control,
draft-ietf-rmcat-gcc: below 2 % loss it grows 5 % per loss figure (receiver reports
counted together until they cover `LOSS_MIN_PACKETS`), between 2 and
10 % it holds; above 10 % it drops to what arrived, sent times 1 - loss,
not GCC's 1 - loss/2: a ladder jumps to a rung rather than easing a
sender's rate down) with a delay-based estimate, the lower of the two: the
receiver's REMB, or, when the subscriber sends transport-cc feedback (and
then no REMB), the sender's own (media/transportwide.py; its overuse
detector's signal stands for a falling REMB). A delay-based estimate of
0, one below `MIN_BITRATE` or above `MAX_BITRATE` is no estimate: it is
counted as rejected and ignored, never followed.

`RungChooser` picks a rung of a ladder (bitrates, highest first) from the
estimate, with hysteresis: down at once on congestion (loss over 10 %, a
falling delay-based estimate under half of what is sent, or NACKs for over 10 % of the packets, each
packet counted once however often it is NACKed), to the
highest rung the estimate carries; up one rung at a time only after the
current rung has held for `hold` seconds without congestion (a probe).
Going down on congestion makes the next hold at least `congested_hold` and
doubles it each time after a climb (up to `max_hold`): a link at its limit is not probed
again and again; stepping down again without a climb between (one congestion of a
link that fell far) keeps the hold; a climb that meets no congestion within `probe_window`
brings the hold back to `hold`. Without
fresh feedback (no report for `stale_after` seconds) the rung holds and
never climbs.

A switch of rung tells the estimator where the new rung's packets begin
(`BandwidthEstimator.on_switch`): from then on congestion is judged only on
feedback about those packets (NACKs of later sequence numbers, loss counted
from a report past the switch), so the NACKs and loss of the congestion that
caused a step down, which go on arriving for a round trip and more, do not
cause a second step. What does is the new rung itself: its own NACK and
packet rates since the switch, and its send rate (`Estimate.rung_rate`):
a rung stepped down to that sends more than the estimate carries and over
`OVERSHOOT` times its nominal bitrate (content that encodes well over what
the rung was chosen by) goes down again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

# Estimates outside these bounds are no estimate (bit/s).
MIN_BITRATE = 30_000
MAX_BITRATE = 100_000_000
# Loss (fraction) above which the link is congested, and below which the rate may grow.
LOSS_HIGH = 0.10
LOSS_LOW = 0.02
# A REMB under this share of what is being sent: the receiver sees its queue grow. Half, not
# 0.85: aiortc's receiver answers any delay blip of a loaded machine with 0.85 x what arrived.
REMB_OVERUSE = 0.5
# Window of the sent, NACK and PLI rates (s).
RATE_WINDOW = 2.0
# The shortest span the NACK and packet rates are counted over after a switch (s).
MIN_RATE_SPAN = 0.5
# The span a rung's own send rate is measured over after a switch before it is judged (s).
RUNG_RATE_SPAN = 1.0
# A rung sending more than this times its nominal bitrate encodes over what it was chosen by.
OVERSHOOT = 1.25
# Sequence numbers of NACKed packets remembered, so that a packet NACKed again counts once.
NACK_MEMORY = 2048
# The fewest packets a loss figure covers. Chromium sends a receiver report with every NACK
# and REMB, as often as every few ms: a report's own fraction lost then covers 0-10 packets
# (2 lost of 4: "50 %" on a link losing a third). Loss is counted from the reports'
# cumulative figures until this many packets were expected (as libwebrtc's sender does).
LOSS_MIN_PACKETS = 20


class CountedLoss:
    """The loss of a receiver's reports counted over at least `min_packets` packets, from
    their cumulative figures (extended highest sequence number, cumulative packets lost).

    A block covering fewer gives None (the count goes on to the next). The first block
    (nothing to count from) and one whose figures go backwards (a receiver that
    restarted, a forged block) give their own fraction lost and start the count again.
    """

    def __init__(self, min_packets: int = LOSS_MIN_PACKETS) -> None:
        self.min_packets = min_packets
        self._base: tuple[int, int] | None = None
        self._from: int | None = None  # a 16-bit sequence number the next count starts past

    def restart_at(self, sequence_number: int) -> None:
        """Count again from the first report whose highest sequence number reaches
        `sequence_number` (16 bits): the loss of earlier packets is not counted."""
        self._from = sequence_number & 0xFFFF

    def update(self, fraction_lost: int, highest: int, lost: int) -> float | None:
        """One report block's figures (fraction lost /256); the counted loss (0..1) or None."""
        base = self._base
        expected = None if base is None else (highest - base[0]) & 0xFFFFFFFF
        if self._from is not None:
            if (highest - self._from) & 0xFFFF >= 0x8000:
                return None  # the report covers nothing past the switch yet
            self._from = None
            self._base = (highest, lost)  # count from here: the switch's packets onwards
            return None
        if base is None or expected is None or expected >= 2**31:
            self._base = (highest, lost)
            return min(max(fraction_lost, 0), 255) / 256
        if expected < self.min_packets:
            return None
        self._base = (highest, lost)
        return min(max((lost - base[1]) / expected, 0.0), 1.0)


@dataclass(frozen=True)
class Rung:
    """One rung of a ladder: the size and bitrate (bit/s) an output is encoded at."""

    width: int
    height: int
    bitrate: int


@dataclass(frozen=True)
class Estimate:
    """What is known of one subscriber's link at one moment (bit/s, fractions, seconds)."""

    bitrate: int | None  # the estimate: min(loss-based, REMB); None before any feedback
    loss: float  # fraction lost over the latest counted reports (0..1)
    rtt: float | None  # round-trip time (s) from the latest report with an SR reference
    jitter: float  # interarrival jitter (s) of the latest receiver report
    remb: int | None  # the latest accepted REMB
    delay_based: int | None  # the latest delay-based estimate: REMB's, or transport-cc's
    transport_cc: bool  # the delay-based estimate is the sender's own (transport-cc)
    sent_rate: int  # what was sent to the subscriber over the last RATE_WINDOW
    nack_rate: float  # NACKed packets per second over the last RATE_WINDOW
    pli_rate: float  # keyframe requests per second over the last RATE_WINDOW
    congested: bool  # loss, REMB or NACKs say the link carries less than is sent
    # Bit/s sent since the last switch once it spans RUNG_RATE_SPAN (None before): what the
    # rung costs as encoded, which on hard content can be well over its nominal bitrate.
    rung_rate: int | None
    fresh: bool  # a receiver report or REMB arrived within stale_after seconds
    reports: int  # receiver reports taken
    rejected: int  # REMBs ignored as absurd (0, below MIN_BITRATE, above MAX_BITRATE)

    def to_json(self) -> dict[str, object]:
        """The camelCase figures REST, querybwe and metrics show."""
        return {
            "estimatedBitrate": self.bitrate,
            "fractionLost": round(self.loss, 4),
            "roundTripTime": None if self.rtt is None else round(self.rtt, 4),
            "jitter": round(self.jitter, 4),
            "remb": self.remb,
            "delayBasedBitrate": self.delay_based,
            "transportCc": self.transport_cc,
            "sentBitrate": self.sent_rate,
            "nackRate": round(self.nack_rate, 2),
            "pliRate": round(self.pli_rate, 2),
            "congested": self.congested,
            "rungRate": self.rung_rate,
            "fresh": self.fresh,
            "reports": self.reports,
            "rembRejected": self.rejected,
        }


@dataclass
class BandwidthEstimator:
    """One subscriber's estimate from its feedback (see the module docstring)."""

    clock_rate: int = 90000  # of the RTP timestamps jitter is counted in
    stale_after: float = 4.0
    _loss_based: float | None = None
    _loss: float = 0.0
    _rtt: float | None = None
    _jitter: float = 0.0
    # The latest delay-based estimate: the receiver's REMB, or the sender's own from
    # transport-cc feedback (a receiver sending that sends no REMB). Falling: the
    # receiver's estimator (or the sender's overuse detector) saw its queue grow.
    _delay: int | None = None
    _delay_falling: bool = False
    _transport_cc: bool = False
    _last_feedback: float | None = None
    _reports: int = 0
    _rejected: int = 0
    # (time, cumulative octets, cumulative packets) of what was sent.
    _sent: deque[tuple[float, int, int]] = field(default_factory=deque)
    _nacks: deque[tuple[float, int]] = field(default_factory=deque)
    _plis: deque[float] = field(default_factory=deque)
    _nacked: dict[int, None] = field(default_factory=dict)  # insertion-ordered, bounded
    # (extended highest sequence number, cumulative lost) where the loss count started
    _counted: CountedLoss = field(default_factory=CountedLoss)
    # The first sequence number of the current rung (None: no switch yet): NACKs of earlier
    # packets and loss figures from before it are the previous rung's, not congestion now.
    _switched_at: int | None = None
    _switch_time: float | None = None
    _loss_stale: bool = False

    # -- inputs ------------------------------------------------------------

    def on_sent(self, now: float, octets: int, packets: int) -> None:
        """The cumulative octets and packets sent to the subscriber so far."""
        if self._sent and (octets < self._sent[-1][1] or packets < self._sent[-1][2]):
            self._sent.clear()  # a counter restarted: the rate starts again
        self._sent.append((now, octets, packets))
        while len(self._sent) > 2 and self._sent[1][0] <= now - RATE_WINDOW:
            self._sent.popleft()

    def on_receiver_report(
        self,
        now: float,
        fraction_lost: int,
        jitter: int,
        rtt: float | None = None,
        highest_sequence: int | None = None,
        packets_lost: int | None = None,
    ) -> None:
        """A receiver report block: fraction lost (/256), jitter (RTP units), RTT (s) if known.

        With the block's extended highest sequence number and cumulative packets lost, the
        loss is counted over at least `LOSS_MIN_PACKETS` packets: a block covering fewer
        refreshes jitter and RTT, and the loss waits for the next.
        """
        self._jitter = max(jitter, 0) / self.clock_rate
        if rtt is not None and 0 <= rtt < 60:
            self._rtt = rtt
        self._reports += 1
        self._last_feedback = now
        if highest_sequence is None or packets_lost is None:
            loss: float | None = min(max(fraction_lost, 0), 255) / 256
        else:
            loss = self._counted.update(fraction_lost, highest_sequence, packets_lost)
        if loss is None:
            return
        self._loss = loss
        self._loss_stale = False
        sent = self.sent_rate(now)
        if sent <= 0:
            return
        if loss > LOSS_HIGH:
            self._loss_based = sent * (1 - loss)
        elif loss < LOSS_LOW:
            self._loss_based = max(self._loss_based or 0.0, sent) * 1.05
        elif self._loss_based is None:
            self._loss_based = float(sent)
        self._loss_based = min(max(self._loss_based, MIN_BITRATE), MAX_BITRATE)

    def on_remb(self, now: float, bitrate: int) -> bool:
        """A REMB naming the subscriber's stream; False (ignored) when it is absurd."""
        if not MIN_BITRATE <= bitrate <= MAX_BITRATE:
            self._rejected += 1
            return False
        # A receiver ramping up after a climb sends REMBs under the new rate that rise: only a
        # falling one is its estimator seeing the queue grow (GCC's decrease).
        self._delay_falling = self._delay is not None and bitrate < self._delay * 0.97
        self._delay = bitrate
        self._transport_cc = False
        self._last_feedback = now
        return True

    def on_delay_based(self, now: float, bitrate: int, overused: bool) -> bool:
        """The sender's own delay-based estimate of the link (from transport-cc feedback,
        media/transportwide.py), and whether its detector saw the link overused since the
        last one: what a REMB and its fall say. False (ignored) when it is absurd."""
        if not MIN_BITRATE <= bitrate <= MAX_BITRATE:
            self._rejected += 1
            return False
        self._delay_falling = overused
        self._delay = bitrate
        self._transport_cc = True
        self._last_feedback = now
        return True

    def on_switch(self, now: float, first_sequence: int) -> None:
        """The subscriber's packets from `first_sequence` (16 bits) on are of a new rung.

        Feedback about earlier packets still arrives for a round trip or more (queued
        packets, the receiver's NACK retries): it describes the rung left, so from here
        congestion is judged on later packets only. The loss figure stays shown until a
        counted one of the new rung replaces it, but no longer counts as congestion; the
        NACK and packet rates congestion is judged on are the new rung's, over the time
        since the switch (at least `MIN_RATE_SPAN`) until it spans RATE_WINDOW.
        """
        self._switched_at = first_sequence & 0xFFFF
        self._switch_time = now
        self._nacks.clear()
        self._counted.restart_at(first_sequence)
        self._loss_stale = True
        self._delay_falling = False

    def on_nack(self, now: float, packets: int = 1) -> None:
        """The subscriber asked for `packets` packets again."""
        if packets > 0:
            self._nacks.append((now, packets))

    def on_nacked(self, now: float, sequence_numbers: Iterable[int]) -> int:
        """A NACK's sequence numbers: each packet counts once, however often it is asked for.

        A receiver repeats what it still misses: aiortc sends its whole list of missing
        packets (up to 128) in every NACK, so after a rung switch, whose left rung's packets
        are not repeated, each new loss would count them all again. Packets sent before the
        last rung switch are not counted (`on_switch`). Returns how many counted.
        """
        fresh = 0
        switched = self._switched_at
        for number in sequence_numbers:
            if number in self._nacked:
                continue
            if switched is not None and (number - switched) & 0xFFFF >= 0x8000:
                continue  # a packet of the rung left
            self._nacked[number] = None
            fresh += 1
            if len(self._nacked) > NACK_MEMORY:
                del self._nacked[next(iter(self._nacked))]
        self.on_nack(now, fresh)
        return fresh

    def on_pli(self, now: float) -> None:
        """The subscriber asked for a keyframe."""
        self._plis.append(now)

    # -- outputs -----------------------------------------------------------

    def sent_rate(self, now: float) -> int:
        """Bit/s sent over the last RATE_WINDOW (0 until two samples span some time)."""
        if len(self._sent) < 2:
            return 0
        first, last = self._sent[0], self._sent[-1]
        span = last[0] - first[0]
        if span <= 0:
            return 0
        return int((last[1] - first[1]) * 8 / span)

    def _sent_since(self, since: float) -> tuple[float, float, float]:
        """(span s, bit/s, packets/s) sent from the first sample at or after `since`."""
        first = next((s for s in self._sent if s[0] >= since), None)
        if first is None:
            return (0.0, 0.0, 0.0)
        last = self._sent[-1]
        span = last[0] - first[0]
        if span <= 0:
            return (0.0, 0.0, 0.0)
        return (span, (last[1] - first[1]) * 8 / span, (last[2] - first[2]) / span)

    def _rung_rate(self) -> int | None:
        """Bit/s sent since the last switch, once that spans RUNG_RATE_SPAN."""
        if self._switch_time is None:
            return None
        span, bitrate, _ = self._sent_since(self._switch_time)
        return int(bitrate) if span >= RUNG_RATE_SPAN else None

    def estimate(self, now: float) -> Estimate:
        """The figures now (old NACK/PLI samples are forgotten here)."""
        while self._nacks and self._nacks[0][0] < now - RATE_WINDOW:
            self._nacks.popleft()
        while self._plis and self._plis[0] < now - RATE_WINDOW:
            self._plis.popleft()
        # Since a switch the rates are the new rung's alone: a window still holding the old
        # rung's packets would make its NACK threshold too high to see it congest.
        since = now - RATE_WINDOW
        if self._switch_time is not None and self._switch_time > since:
            since = min(self._switch_time, now - MIN_RATE_SPAN)
        nack_rate = sum(n for _, n in self._nacks) / (now - since)
        pli_rate = len(self._plis) / RATE_WINDOW
        sent = self.sent_rate(now)
        fresh = self._last_feedback is not None and now - self._last_feedback <= self.stale_after
        candidates = [int(v) for v in (self._loss_based, self._delay) if v is not None]
        bitrate = min(candidates) if candidates else None
        packet_rate = self._sent_since(since)[2]
        congested = fresh and (
            (self._loss > LOSS_HIGH and not self._loss_stale)
            or (
                self._delay is not None
                and self._delay_falling
                and sent > 0
                and self._delay < REMB_OVERUSE * sent
            )
            or (packet_rate > 0 and nack_rate > LOSS_HIGH * packet_rate)
        )
        return Estimate(
            bitrate=bitrate,
            loss=self._loss,
            rtt=self._rtt,
            jitter=self._jitter,
            remb=None if self._transport_cc else self._delay,
            delay_based=self._delay,
            transport_cc=self._transport_cc,
            sent_rate=sent,
            nack_rate=nack_rate,
            pli_rate=pli_rate,
            congested=congested,
            rung_rate=self._rung_rate(),
            fresh=fresh,
            reports=self._reports,
            rejected=self._rejected,
        )


@dataclass
class RungChooser:
    """Which rung of a ladder (bitrates in bit/s, highest first) one subscriber gets.

    Starts at `start` (the top: what every subscriber got before a ladder).
    """

    bitrates: tuple[int, ...]
    start: int = 0
    hold: float = 3.0  # seconds a rung holds, uncongested, before a probe one rung up
    congested_hold: float = 8.0  # the least hold after going down on congestion
    max_hold: float = 12.0  # the most: a lifted limit is found again within it
    probe_window: float = 3.0  # congestion this soon after climbing: the probe failed
    down_gap: float = 1.5  # a report this soon after going down may still count old loss
    headroom: float = 0.85  # a rung fits when its bitrate <= estimate * headroom
    rung: int = field(init=False)
    _changed: float | None = field(default=None, init=False)
    _climbed: float | None = field(default=None, init=False)
    _went_down: float | None = field(default=None, init=False)
    _hold: float = field(default=0.0, init=False)
    switches: int = field(default=0, init=False)
    failed_probes: int = field(default=0, init=False)
    refused: int = field(default=0, init=False)  # moves that could not be had (`correct`)
    _previous: int = field(default=0, init=False)  # the rung before the last move

    def __post_init__(self) -> None:
        if not self.bitrates:
            raise ValueError("a ladder needs at least one rung")
        if any(b <= 0 for b in self.bitrates) or list(self.bitrates) != sorted(
            self.bitrates, reverse=True
        ):
            raise ValueError("rung bitrates must be positive and highest first")
        self.rung = min(max(self.start, 0), len(self.bitrates) - 1)
        self._hold = self.hold

    def fitting(self, bitrate: int) -> int:
        """The highest rung that `bitrate` carries with headroom (the lowest if none does)."""
        for index, rung_bitrate in enumerate(self.bitrates):
            if rung_bitrate <= bitrate * self.headroom:
                return index
        return len(self.bitrates) - 1

    def choose(self, now: float, estimate: Estimate) -> int:
        """The rung for now; moves `rung` (and counts the switch) when it changes."""
        if self._changed is None:
            self._changed = now
        if not estimate.fresh:
            return self.rung  # no feedback: hold, never climb
        lowest = len(self.bitrates) - 1
        # A rung just stepped down to that sends more than the estimate carries because its
        # content encodes well over its nominal bitrate (the rung was chosen by that) does
        # not fit: down again, as on congestion. A rung near its nominal rate was chosen
        # right; a receiver's REMB lagging behind after the step is no reason. (On
        # the lowest rung there is nowhere to go: a receiver's REMB there follows what
        # arrives, and must not keep it from climbing.)
        overshoot = (
            self.rung < lowest
            and estimate.rung_rate is not None
            and estimate.bitrate is not None
            and self._went_down is not None
            and self._changed == self._went_down
            and estimate.rung_rate > max(estimate.bitrate, self.bitrates[self.rung] * OVERSHOOT)
        )
        if estimate.congested or overshoot:
            if self.rung == lowest or (
                self._went_down is not None and now - self._went_down < self.down_gap
            ):
                return self.rung
            target = self.rung + 1
            if estimate.bitrate is not None:
                target = max(target, self.fitting(estimate.bitrate))
            if self._climbed is not None and now - self._climbed <= self.probe_window:
                self.failed_probes += 1
            if self._went_down is not None and self._changed == self._went_down:
                # Down again without a climb between: one congestion stepping down (a link
                # that fell far), not a failed probe; the hold stays.
                self._hold = max(self._hold, self.congested_hold)
            else:
                self._hold = min(max(self._hold * 2, self.congested_hold), self.max_hold)
            self._climbed = None
            self._went_down = now
            return self._move(now, min(target, lowest))
        if self._climbed is not None and now - self._climbed > self.probe_window:
            self._climbed = None
            self._hold = self.hold  # the probe held: the next climb comes as soon
        if self.rung > 0 and now - self._changed >= self._hold and estimate.loss < LOSS_LOW * 2.5:
            self._climbed = now
            return self._move(now, self.rung - 1)
        return self.rung

    def correct(self, rung: int) -> None:
        """The rung chosen could not be had (no capacity to encode it): the subscriber is on
        `rung` (the one it was on, or another that runs). The time of the move stands: the
        next climb waits a hold, the next step down `down_gap`; a move that did not happen
        is not counted, and a climb that did not happen is no probe."""
        rung = min(max(rung, 0), len(self.bitrates) - 1)
        if rung == self.rung:
            return
        self.refused += 1
        self.rung = rung
        if rung == self._previous:
            self.switches -= 1
            self._climbed = None

    def _move(self, now: float, rung: int) -> int:
        if rung != self.rung:
            self._previous = self.rung
            self.rung = rung
            self.switches += 1
            self._changed = now
        return self.rung

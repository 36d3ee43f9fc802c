"""A sender's delay-based bandwidth estimate from transport-cc feedback: pure logic, no asyncio.

Once a subscriber's packets carry transport-wide sequence numbers, Chromium stops sending
REMB and reports instead when each packet arrived (transport-cc feedback, RTCP RTPFB
FMT 15): the delay-based half of the estimate is then the sender's. `DelayBasedEstimator`
takes each feedback's packets (`PacketResult`: when sent, by the sender's clock; when
arrived, by the receiver's clock, or lost; size) and gives the estimate, the overuse
detector's signal, the rate the receiver got and the loss. Every time is passed in
(seconds), so tests drive it with a simulated link and no clock.

It follows Google congestion control as draft-ietf-rmcat-gcc-02 describes it and libwebrtc
implements it (`modules/congestion_controller/goog_cc/`): packets sent within 5 ms of a
group's first form a group (`InterArrival`); each pair of groups gives a delay variation
that a trendline filter turns into a trend of the queueing delay (`TrendlineEstimator`),
compared with an adaptive threshold (overusing, normal, underusing); an AIMD controller
(`AimdRateControl`) backs off to 0.85 times the acknowledged rate on overuse, holds on
underuse and otherwise grows by 8 %/s, or by about half a packet per response time once
near the link capacity it has seen at its decreases, never past 1.5 times what arrives
plus 10 kbit/s. The start bitrate is a guess: unless the estimate decreased first, it
starts again from the acknowledged rate once that has been measured for 5 s (as
libwebrtc's rate control initialises).

Where it departs from libwebrtc: no probing (Tessera probes by climbing one rung of its
ladder after a hold, `media/bandwidth.py`) and no pacer (a frame's packets leave in one
burst). A packet group is then a video frame, 33 ms apart at 30 frames/s, and on an
overloaded link one arrives only every 100 ms or more: libwebrtc fits the trend only once
its 20-point window is full (its pacer makes a group every 5 ms), which would take 2-3 s
at a cold start, so here the slope is fitted from `TRENDLINE_MIN_POINTS` points on (the
trend's scaling by the number of deltas keeps the first ones weak): 2 Mbit/s into a
500 kbit/s link is signalled after 1.2 s of a cold start, a capacity drop under way
after about 0.5 s. A group arriving before the one sent before it is dropped and the next
is measured from the group before it (libwebrtc measures from the dropped one, and lets
it join its predecessor as a burst). The acknowledged rate is the bytes received over a
sliding `ACK_WINDOW` of arrival time, not libwebrtc's Bayesian estimator. The round-trip
time is 100 ms until the caller gives one. The backoff is 0.85 times the acknowledged
rate without libwebrtc's extra 5 kbit/s. An overuse before any acknowledged rate halves
the estimate at most once a round trip (libwebrtc's intent; its code halves on every
feedback). No application limited region (ALR) handling. Loss is reported (`loss`) but
not acted on: the loss-based half of the estimate is `bandwidth.BandwidthEstimator`'s.

Feedback comes from the network: a packet with a size outside 1..65535, a time that is
not a finite number, a send time more than 1 s before the latest (a reused sequence
number) is skipped; an arrival clock that jumps (arrival delta more than 3 s off the
send delta) restarts the packet grouping; both count in `rejected` (the reason of the
latest in `last_rejection`, for the caller's log) and never raise.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Usage = Literal["normal", "overusing", "underusing"]

# -- packet groups (libwebrtc inter_arrival_delta.cc) -------------------------------------
# Packets sent within this long of a group's first packet belong to the group (s).
GROUP_LENGTH = 0.005
# A later-sent packet arriving within this long after its group's last, sooner than it was
# sent after it, was queued behind it: it joins the group (a burst), up to MAX_BURST (s).
# One arriving before the group's last is reordering, not a burst.
BURST_DELTA = 0.005
MAX_BURST = 0.1
# An arrival delta this far (s) off the send delta is a jump of the receiver's clock.
ARRIVAL_OFFSET_THRESHOLD = 3.0
# After this many reordered groups in a row the grouping starts again.
REORDERED_RESET = 3
# A gap in the feedback this long (s) starts the grouping and the trend again.
STREAM_TIMEOUT = 2.0
# A send time this far (s) before the latest one is a reused sequence number.
MAX_SEND_BACKWARDS = 1.0
MAX_PACKET_SIZE = 65_535

# -- trendline filter and overuse detector (trendline_estimator.cc) ------------------------
TRENDLINE_WINDOW = 20  # points of the linear regression
# The fewest points a slope is fitted to. libwebrtc waits for a full window; without a pacer
# a group is a frame, and an overloaded link delivers one only every 100+ ms: a full
# window would take 2-3 s to fill at a cold start (see the module docstring).
TRENDLINE_MIN_POINTS = 5
SMOOTHING = 0.9  # of the accumulated delay
THRESHOLD_GAIN = 4.0
MAX_DELTAS = 60  # the trend is multiplied by min(deltas, MAX_DELTAS)
DELTA_COUNTER_MAX = 1000
INITIAL_THRESHOLD = 12.5  # ms
K_UP = 0.0087
K_DOWN = 0.039
MIN_THRESHOLD = 6.0
MAX_THRESHOLD = 600.0
# A trend this far (ms) over the threshold is a sudden capacity drop: not adapted to.
MAX_ADAPT_OFFSET = 15.0
OVERUSE_TIME = 10.0  # ms of sending the trend must exceed the threshold for
MAX_THRESHOLD_STEP = 100.0  # ms: the longest time one threshold adaptation counts

# -- AIMD rate control (aimd_rate_control.cc, link_capacity_estimator.cc) -------------------
BACKOFF = 0.85
INCREASE_PER_SECOND = 1.08
MIN_MULTIPLICATIVE_INCREASE = 1_000.0  # bit/s per step
MIN_ADDITIVE_INCREASE = 4_000.0  # bit/s per second
INCREASE_LIMIT_FACTOR = 1.5  # of the acknowledged rate, plus INCREASE_LIMIT_EXTRA
INCREASE_LIMIT_EXTRA = 10_000.0
DEFAULT_RTT = 0.1  # s, until the caller gives one
# Seconds of acknowledged rates after which an estimate that has not decreased yet starts
# again from what arrives (libwebrtc's AimdRateControl initialisation): the start bitrate
# is a guess.
INITIALIZATION_TIME = 5.0
MAX_RTT = 10.0
DETECTOR_DELAY = 0.1  # s the overuse detector takes to react, part of the response time
FRAME_RATE = 30.0  # of the additive increase's packet size estimate
PACKET_SIZE = 1200  # bytes, ditto
REDUCE_INTERVAL_MIN = 0.01  # s between two decreases: the RTT, clamped to this range
REDUCE_INTERVAL_MAX = 0.2
CAPACITY_ALPHA = 0.05  # weight of one decrease's acknowledged rate in the link capacity
CAPACITY_DEVIATION_MIN = 0.4  # normalised variance bounds (kbit/s)
CAPACITY_DEVIATION_MAX = 2.5

# -- acknowledged rate and loss -----------------------------------------------------------
ACK_WINDOW = 0.5  # s of arrival time the acknowledged rate is counted over
LOSS_MIN_PACKETS = 20  # the fewest packets a loss figure covers


@dataclass(frozen=True)
class PacketResult:
    """One sent packet as a transport-cc feedback reports it."""

    send_time: float  # s, the sender's monotonic clock, when it was sent
    arrival_time: float | None  # s, the receiver's clock (arbitrary origin); None: reported lost
    size: int  # bytes on the wire (RTP header + payload)


def _finite(value: object) -> bool:
    """A real number that is neither NaN nor infinite (bools are not times)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class _Group:
    """Packets sent within GROUP_LENGTH of the first: a frame's burst."""

    first_send: float
    send: float  # the latest send time of its packets
    first_arrival: float
    arrival: float  # its last packet's arrival


class InterArrival:
    """Groups packets by send time and gives the deltas between consecutive groups.

    `add` returns (send delta, arrival delta, arrival time) in seconds when a packet
    starts a new group and so completes the pair before it; reordered groups (arriving
    before the previous one) are counted in `reordered` and give nothing.
    """

    def __init__(self) -> None:
        self._current: _Group | None = None
        self._previous: _Group | None = None
        self._reordered_in_row = 0
        self.groups = 0  # groups started since the last reset
        self.reordered = 0  # groups dropped as reordered, ever

    def reset(self) -> None:
        """Forget the groups (a jump of the arrival clock, a gap in the feedback)."""
        self._current = None
        self._previous = None
        self._reordered_in_row = 0
        self.groups = 0

    def add(self, send: float, arrival: float) -> tuple[float, float, float] | None:
        """One received packet, in transport sequence order."""
        current = self._current
        if current is None:
            self._current = _Group(send, send, arrival, arrival)
            self.groups = 1
            return None
        if send < current.first_send:
            return None  # sent before its group began (reordered): not part of any group
        if not self._new_group(current, send, arrival):
            current.send = max(current.send, send)
            current.arrival = arrival
            return None
        deltas: tuple[float, float, float] | None = None
        previous = self._previous
        if previous is not None:
            send_delta = current.send - previous.send
            arrival_delta = current.arrival - previous.arrival
            if arrival_delta < 0:
                # The group arrived before the one sent before it: reordered on the way. The
                # next pair is measured from the group before it, so that the accumulated
                # delay does not keep the reordering's offset.
                self.reordered += 1
                self._reordered_in_row += 1
                if self._reordered_in_row >= REORDERED_RESET:
                    self.reset()
                    self.groups = 1
                else:
                    self.groups += 1
                self._current = _Group(send, send, arrival, arrival)
                return None
            else:
                self._reordered_in_row = 0
                deltas = (send_delta, arrival_delta, current.arrival)
        self._previous = current
        self._current = _Group(send, send, arrival, arrival)
        self.groups += 1
        return deltas

    @staticmethod
    def _new_group(current: _Group, send: float, arrival: float) -> bool:
        if send - current.send == 0:
            return False
        arrival_delta = arrival - current.arrival
        propagation_delta = arrival_delta - (send - current.send)
        if (
            propagation_delta < 0
            and 0 <= arrival_delta <= BURST_DELTA
            and arrival - current.first_arrival < MAX_BURST
        ):
            return False  # queued behind the group on the way: part of its burst
        return send - current.first_send > GROUP_LENGTH


class TrendlineEstimator:
    """The trend of the queueing delay over the last groups, and the overuse signal.

    Each group pair's delay variation (arrival delta minus send delta, ms) is accumulated,
    smoothed, and a line fitted over the last TRENDLINE_WINDOW points; its slope, scaled
    by the number of deltas and THRESHOLD_GAIN, is compared with a threshold that adapts
    to the trend's own noise.
    """

    def __init__(self) -> None:
        self.deltas = 0
        self._first_arrival: float | None = None
        self._accumulated = 0.0
        self._smoothed = 0.0
        self._history: deque[tuple[float, float]] = deque(maxlen=TRENDLINE_WINDOW)
        self._slope = 0.0
        self._previous_slope = 0.0
        self.modified_trend = 0.0
        self.threshold = INITIAL_THRESHOLD
        self._last_threshold_update: float | None = None
        self._time_over_using = -1.0
        self._overuse_counter = 0
        self.state: Usage = "normal"

    def update(self, arrival_delta: float, send_delta: float, arrival: float) -> None:
        """One group pair: deltas and the later group's arrival time, all in seconds."""
        arrival_ms = arrival * 1000.0
        send_delta_ms = send_delta * 1000.0
        self.deltas = min(self.deltas + 1, DELTA_COUNTER_MAX)
        if self._first_arrival is None:
            self._first_arrival = arrival_ms
        self._accumulated += arrival_delta * 1000.0 - send_delta_ms
        self._smoothed = SMOOTHING * self._smoothed + (1 - SMOOTHING) * self._accumulated
        self._history.append((arrival_ms - self._first_arrival, self._smoothed))
        if len(self._history) >= TRENDLINE_MIN_POINTS:
            slope = linear_fit_slope(self._history)
            if slope is not None:
                self._slope = slope
        self._detect(send_delta_ms, arrival_ms)

    def _detect(self, send_delta_ms: float, now_ms: float) -> None:
        if self.deltas < 2:
            self.state = "normal"
            return
        trend = min(self.deltas, MAX_DELTAS) * self._slope * THRESHOLD_GAIN
        self.modified_trend = trend
        if trend > self.threshold:
            if self._time_over_using == -1:
                # Assume it has been overusing for half the time since the last group.
                self._time_over_using = send_delta_ms / 2
            else:
                self._time_over_using += send_delta_ms
            self._overuse_counter += 1
            if (
                self._time_over_using > OVERUSE_TIME
                and self._overuse_counter > 1
                and self._slope >= self._previous_slope
            ):
                self._time_over_using = 0
                self._overuse_counter = 0
                self.state = "overusing"
        elif trend < -self.threshold:
            self._time_over_using = -1
            self._overuse_counter = 0
            self.state = "underusing"
        else:
            self._time_over_using = -1
            self._overuse_counter = 0
            self.state = "normal"
        self._previous_slope = self._slope
        self._adapt_threshold(trend, now_ms)

    def _adapt_threshold(self, trend: float, now_ms: float) -> None:
        if self._last_threshold_update is None:
            self._last_threshold_update = now_ms
        if abs(trend) > self.threshold + MAX_ADAPT_OFFSET:
            # A sudden capacity drop: adapting to it would hide the next one.
            self._last_threshold_update = now_ms
            return
        k = K_DOWN if abs(trend) < self.threshold else K_UP
        elapsed = min(max(now_ms - self._last_threshold_update, 0.0), MAX_THRESHOLD_STEP)
        self.threshold += k * (abs(trend) - self.threshold) * elapsed
        self.threshold = min(max(self.threshold, MIN_THRESHOLD), MAX_THRESHOLD)
        self._last_threshold_update = now_ms


def linear_fit_slope(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of (x, y) points; None when the x values are all equal."""
    count = len(points)
    if count < 2:
        return None
    x_mean = sum(x for x, _ in points) / count
    y_mean = sum(y for _, y in points) / count
    numerator = sum((x - x_mean) * (y - y_mean) for x, y in points)
    denominator = sum((x - x_mean) ** 2 for x, _ in points)
    if denominator == 0:
        return None
    return numerator / denominator


class LinkCapacity:
    """The acknowledged rate at overuse, averaged with its deviation (kbit/s)."""

    def __init__(self) -> None:
        self.estimate: float | None = None  # kbit/s
        self._deviation = CAPACITY_DEVIATION_MIN

    def reset(self) -> None:
        """The rate has moved far from the estimate: forget it."""
        self.estimate = None

    def upper_bound(self) -> float:
        """Bit/s above which the rate is no longer near the capacity."""
        if self.estimate is None:
            return math.inf
        return (self.estimate + 3 * self._deviation_kbps(self.estimate)) * 1000

    def lower_bound(self) -> float:
        """Bit/s below which the rate is no longer near the capacity."""
        if self.estimate is None:
            return 0.0
        return max(0.0, self.estimate - 3 * self._deviation_kbps(self.estimate)) * 1000

    def on_overuse(self, acknowledged: float) -> None:
        """The acknowledged rate (bit/s) when an overuse made the rate decrease."""
        sample = acknowledged / 1000
        estimate = (
            sample
            if self.estimate is None
            else (1 - CAPACITY_ALPHA) * self.estimate + CAPACITY_ALPHA * sample
        )
        self.estimate = estimate
        error = estimate - sample
        deviation = (1 - CAPACITY_ALPHA) * self._deviation + CAPACITY_ALPHA * error * error / max(
            estimate, 1.0
        )
        self._deviation = min(max(deviation, CAPACITY_DEVIATION_MIN), CAPACITY_DEVIATION_MAX)

    def _deviation_kbps(self, estimate: float) -> float:
        return math.sqrt(self._deviation * estimate)


class AimdRateControl:
    """Additive-increase, multiplicative-decrease of the estimate by the detector's signal.

    States hold, increase and decrease: overusing decreases (then holds until the signal
    is normal again), underusing holds (the queue drains), normal increases.
    """

    def __init__(self, start_bitrate: float, min_bitrate: float, max_bitrate: float) -> None:
        self.bitrate = float(start_bitrate)
        self.min_bitrate = float(min_bitrate)
        self.max_bitrate = float(max_bitrate)
        self.rtt = DEFAULT_RTT
        self.state: Literal["hold", "increase", "decrease"] = "hold"
        self.link_capacity = LinkCapacity()
        self._latest_throughput = float(start_bitrate)
        self._last_change: float | None = None
        # The estimate started from the acknowledged rate, or decreased: no longer a guess.
        self._initialized = False
        self._first_acknowledged: float | None = None

    def time_to_reduce_further(self, now: float, throughput: float | None) -> bool:
        """Whether a decrease may follow the last change: a round trip later, or at once
        when what arrives (bit/s, None: not measured) is under half the estimate."""
        interval = min(max(self.rtt, REDUCE_INTERVAL_MIN), REDUCE_INTERVAL_MAX)
        if self._last_change is None or now - self._last_change >= interval:
            return True
        return throughput is not None and throughput < 0.5 * self.bitrate

    def set_estimate(self, now: float, bitrate: float) -> None:
        """Set the estimate (an overuse before any acknowledged rate halves it)."""
        self.bitrate = self._clamp(bitrate)
        self._last_change = now

    def update(self, now: float, usage: Usage, acknowledged: float | None) -> None:
        """The detector's signal and the acknowledged rate (bit/s, None if not measured)."""
        throughput = self._latest_throughput if acknowledged is None else acknowledged
        self._latest_throughput = throughput
        if not self._initialized and acknowledged is not None:
            if self._first_acknowledged is None:
                self._first_acknowledged = now
            elif now - self._first_acknowledged >= INITIALIZATION_TIME:
                self.bitrate = self._clamp(acknowledged)
                self._initialized = True
        if usage == "normal":
            if self.state == "hold":
                self._last_change = now
                self.state = "increase"
        elif usage == "overusing":
            self.state = "decrease"
        else:
            self.state = "hold"
        new_bitrate: float | None = None
        if self.state == "increase":
            if throughput > self.link_capacity.upper_bound():
                self.link_capacity.reset()
            limit = INCREASE_LIMIT_FACTOR * throughput + INCREASE_LIMIT_EXTRA
            if self.bitrate < limit:
                if self.link_capacity.estimate is not None:
                    increased = self.bitrate + self._additive_increase(now)
                else:
                    increased = self.bitrate + self._multiplicative_increase(now)
                new_bitrate = min(increased, limit)
            self._last_change = now
        elif self.state == "decrease":
            decreased = BACKOFF * throughput
            if decreased > self.bitrate and self.link_capacity.estimate is not None:
                decreased = BACKOFF * self.link_capacity.estimate * 1000
            if decreased < self.bitrate:  # never increase on overuse
                new_bitrate = decreased
            if throughput < self.link_capacity.lower_bound():
                self.link_capacity.reset()  # far from the capacity seen: start it again
            self.link_capacity.on_overuse(throughput)
            self._initialized = True
            self.state = "hold"  # until the queue has drained
            self._last_change = now
        if new_bitrate is not None:
            self.bitrate = self._clamp(new_bitrate)

    def _elapsed(self, now: float) -> float:
        if self._last_change is None:
            return 0.0
        return max(now - self._last_change, 0.0)

    def _multiplicative_increase(self, now: float) -> float:
        factor = math.pow(INCREASE_PER_SECOND, min(self._elapsed(now), 1.0))
        return max(self.bitrate * (factor - 1.0), MIN_MULTIPLICATIVE_INCREASE)

    def _additive_increase(self, now: float) -> float:
        # About half a packet per response time (the draft's alpha = 0.5, libwebrtc's
        # response time doubled): the packet is the mean of a frame's packets at 30 fps.
        frame_bits = self.bitrate / FRAME_RATE
        packets_per_frame = max(math.ceil(frame_bits / (PACKET_SIZE * 8)), 1)
        packet_bits = frame_bits / packets_per_frame
        response_time = 2 * (self.rtt + DETECTOR_DELAY)
        per_second = max(packet_bits / response_time, MIN_ADDITIVE_INCREASE)
        return per_second * self._elapsed(now)

    def _clamp(self, bitrate: float) -> float:
        return min(max(bitrate, self.min_bitrate), self.max_bitrate)


class AcknowledgedRate:
    """Bit/s the receiver got over the last `window` s of arrival time, once the arrivals
    span the window; the last value stays through a reset until a new window is covered.

    Each packet's bytes count as spread over the time since the arrival before it, so the
    oldest packet in the window counts only for its part inside: a link delivering one
    packet every 19 ms (500 kbit/s) measures 500 kbit/s, not one packet more.
    """

    def __init__(self, window: float = ACK_WINDOW) -> None:
        self.window = window
        self._packets: deque[tuple[float, int]] = deque()  # (arrival, size)
        self._bytes = 0
        self._before: float | None = None  # the latest arrival that left the window
        self._latest = -math.inf
        self.rate: float | None = None

    def reset(self) -> None:
        """The arrival clock jumped: count from the next packet."""
        self._packets.clear()
        self._bytes = 0
        self._before = None
        self._latest = -math.inf

    def add(self, arrival: float, size: int) -> None:
        """One received packet."""
        start = max(self._latest, arrival) - self.window
        if arrival <= start:
            return  # reordered by more than the window: already out of it
        self._latest = max(self._latest, arrival)
        self._packets.append((arrival, size))
        self._bytes += size
        while self._packets and self._packets[0][0] <= start:
            left, left_size = self._packets.popleft()
            self._bytes -= left_size
            self._before = left if self._before is None else max(self._before, left)
        if self._before is None or not self._packets:
            return  # the arrivals do not span the window yet
        oldest, oldest_size = self._packets[0]
        span = oldest - self._before
        outside = 0.0 if span <= 0 else min(max((start - self._before) / span, 0.0), 1.0)
        self.rate = (self._bytes - oldest_size * outside) * 8 / self.window


class RecentLoss:
    """The fraction of packets reported lost over the latest feedbacks that cover at
    least `min_packets` packets (0 until that many were reported)."""

    def __init__(self, min_packets: int = LOSS_MIN_PACKETS) -> None:
        self.min_packets = min_packets
        self._feedbacks: deque[tuple[int, int]] = deque()  # (packets, lost)
        self._packets = 0
        self._lost = 0
        self.fraction = 0.0

    def add(self, packets: int, lost: int) -> None:
        """One feedback's count of valid packets and of those reported lost."""
        if packets <= 0:
            return
        self._feedbacks.append((packets, lost))
        self._packets += packets
        self._lost += lost
        while len(self._feedbacks) > 1 and self._packets - self._feedbacks[0][0] >= (
            self.min_packets
        ):
            oldest_packets, oldest_lost = self._feedbacks.popleft()
            self._packets -= oldest_packets
            self._lost -= oldest_lost
        if self._packets >= self.min_packets:
            self.fraction = self._lost / self._packets


class DelayBasedEstimator:
    """One subscriber's delay-based estimate from its transport-cc feedback (see the
    module docstring): feed `on_feedback`, read `bitrate`, `state`, `acknowledged_rate`
    and `loss`."""

    def __init__(
        self,
        start_bitrate: int = 1_000_000,
        min_bitrate: int = 30_000,
        max_bitrate: int = 100_000_000,
    ) -> None:
        if not 0 < min_bitrate <= max_bitrate:
            raise ValueError(
                f"min_bitrate {min_bitrate} and max_bitrate {max_bitrate}: "
                "need 0 < min_bitrate <= max_bitrate"
            )
        if not min_bitrate <= start_bitrate <= max_bitrate:
            raise ValueError(
                f"start_bitrate {start_bitrate} is outside {min_bitrate}..{max_bitrate}"
            )
        self._inter_arrival = InterArrival()
        self._trendline = TrendlineEstimator()
        self._rate_control = AimdRateControl(start_bitrate, min_bitrate, max_bitrate)
        self._acknowledged = AcknowledgedRate()
        self._loss = RecentLoss()
        self._valid = False  # two packet groups seen: the estimate is one
        self._last_now: float | None = None
        self._last_packets: float | None = None  # `now` of the last feedback with packets
        self._latest_send: float | None = None
        self._last_received: tuple[float, float] | None = None  # (send, arrival)
        self.feedbacks = 0  # feedbacks taken
        self.rejected = 0  # feedbacks or packets dropped as absurd
        self.last_rejection: str | None = None  # why the latest was rejected, for a log

    # -- outputs ------------------------------------------------------------------------

    @property
    def bitrate(self) -> int | None:
        """The delay-based estimate (bit/s); None until feedback has shown two groups."""
        return round(self._rate_control.bitrate) if self._valid else None

    @property
    def state(self) -> Usage:
        """The overuse detector's latest signal."""
        return self._trendline.state

    @property
    def acknowledged_rate(self) -> int | None:
        """Bit/s the receiver got, measured from the feedback (None until a window is
        covered)."""
        rate = self._acknowledged.rate
        return None if rate is None else round(rate)

    @property
    def loss(self) -> float:
        """Fraction of packets reported lost over the recent feedback (0..1)."""
        return self._loss.fraction

    @property
    def reordered(self) -> int:
        """Packet groups dropped because they arrived before the group sent before them."""
        return self._inter_arrival.reordered

    @property
    def rate_control_state(self) -> str:
        """The AIMD controller's state: hold, increase or decrease."""
        return self._rate_control.state

    # -- input ----------------------------------------------------------------------------

    def on_feedback(
        self, now: float, packets: Sequence[PacketResult], rtt: float | None = None
    ) -> None:
        """One feedback's packets, in transport sequence order (now: the sender's clock, s).

        `rtt` (s), when known, is the latest round-trip time: it sets how soon a decrease
        may follow another and how fast the rate grows near the link capacity.
        """
        if not _finite(now):
            self._reject(f"feedback time {now!r} is not a finite number")
            return
        if self._last_now is not None and now < self._last_now:
            self._reject(f"feedback time {now} is before the previous one ({self._last_now})")
            return
        self._last_now = now
        self.feedbacks += 1
        if rtt is not None:
            if _finite(rtt) and 0 <= rtt <= MAX_RTT:
                self._rate_control.rtt = rtt
            else:
                self._reject(f"round-trip time {rtt!r} is outside 0..{MAX_RTT} s")
        if self._last_packets is not None and now - self._last_packets > STREAM_TIMEOUT:
            # The stream paused: the groups and the trend before the gap say nothing now.
            self._inter_arrival.reset()
            self._trendline = TrendlineEstimator()
        counted = 0
        lost = 0
        for packet in packets:
            if not self._valid_packet(packet):
                continue
            counted += 1
            if packet.arrival_time is None:
                lost += 1
            else:
                self._received(packet.send_time, packet.arrival_time, packet.size)
        self._loss.add(counted, lost)
        if counted == lost:
            return  # nothing arrived: no delay was measured, the estimate stays
        self._last_packets = now
        if not self._valid and self._inter_arrival.groups >= 2:
            self._valid = True
        if self._valid:
            self._update_estimate(now)

    # -- internals ------------------------------------------------------------------------

    def _reject(self, reason: str) -> None:
        self.rejected += 1
        self.last_rejection = reason

    def _valid_packet(self, packet: PacketResult) -> bool:
        size = packet.size
        if not isinstance(size, int) or isinstance(size, bool) or not 0 < size <= MAX_PACKET_SIZE:
            self._reject(f"packet size {size!r} is outside 1..{MAX_PACKET_SIZE}")
            return False
        if not _finite(packet.send_time):
            self._reject(f"send time {packet.send_time!r} is not a finite number")
            return False
        if packet.arrival_time is not None and not _finite(packet.arrival_time):
            self._reject(f"arrival time {packet.arrival_time!r} is not a finite number")
            return False
        latest = self._latest_send
        if latest is not None and packet.send_time < latest - MAX_SEND_BACKWARDS:
            self._reject(
                f"send time {packet.send_time} is over {MAX_SEND_BACKWARDS} s before the "
                f"latest ({latest}): a reused sequence number"
            )
            return False
        self._latest_send = packet.send_time if latest is None else max(latest, packet.send_time)
        return True

    def _received(self, send: float, arrival: float, size: int) -> None:
        last = self._last_received
        if last is not None:
            offset = (arrival - last[1]) - (send - last[0])
            if abs(offset) > ARRIVAL_OFFSET_THRESHOLD:
                self._reject(
                    f"arrival clock jumped by {offset:.3f} s against the send clock: "
                    "packet grouping restarts"
                )
                self._inter_arrival.reset()
                self._acknowledged.reset()
        self._last_received = (send, arrival)
        self._acknowledged.add(arrival, size)
        deltas = self._inter_arrival.add(send, arrival)
        if deltas is not None:
            send_delta, arrival_delta, group_arrival = deltas
            self._trendline.update(arrival_delta, send_delta, group_arrival)

    def _update_estimate(self, now: float) -> None:
        usage = self._trendline.state
        acknowledged = self._acknowledged.rate
        control = self._rate_control
        if usage != "overusing":
            control.update(now, usage, acknowledged)
        elif acknowledged is not None:
            if control.time_to_reduce_further(now, acknowledged):
                control.update(now, usage, acknowledged)
        elif control.time_to_reduce_further(now, None):
            # Overusing before any rate was measured: halve, at most once a round trip.
            control.set_estimate(now, control.bitrate / 2)

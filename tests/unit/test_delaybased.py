"""The send-side delay-based estimate (media/delaybased.py): pure, driven by a simulated link.

A sender sends 30 frames/s of 1200-byte packets (each frame in one burst, as Tessera has no
pacer) through a bottleneck: a FIFO queue drained at the link's capacity, then a fixed
propagation delay. The receiver's feedback, every 50-100 ms, carries the packets that
arrived since the last one, their arrival times on the receiver's own clock.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from tessera.media.delaybased import (
    INITIAL_THRESHOLD,
    MAX_THRESHOLD,
    MIN_THRESHOLD,
    AcknowledgedRate,
    AimdRateControl,
    DelayBasedEstimator,
    InterArrival,
    PacketResult,
    RecentLoss,
    TrendlineEstimator,
    linear_fit_slope,
)

PACKET = 1200  # bytes
FPS = 30
RECEIVER_CLOCK = 5000.0  # the receiver's clock is this far ahead of the sender's (s)


@dataclass
class Link:
    """A bottleneck of `capacity` bit/s with a FIFO queue, a propagation delay, random loss
    and jitter (uniform, +-`jitter` s) added after the queue."""

    capacity: float
    delay: float = 0.02
    loss: float = 0.0
    jitter: float = 0.0
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    _free_at: float = 0.0  # when the queue will have drained

    def carry(self, send: float, size: int) -> tuple[float, bool]:
        """When the packet leaves the link (sender's clock), and whether it arrives."""
        start = max(send, self._free_at)
        self._free_at = start + size * 8 / self.capacity
        arrival = self._free_at + self.delay
        if self.jitter:
            arrival += self.rng.uniform(-self.jitter, self.jitter)
        return arrival, self.rng.random() >= self.loss


@dataclass(frozen=True)
class Sample:
    """The estimator's figures after one feedback."""

    now: float
    bitrate: int | None
    state: str
    acknowledged: int | None
    loss: float


@dataclass
class Simulation:
    """A sender at `rate()` bit/s through `link`, with transport-cc feedback to `estimator`."""

    estimator: DelayBasedEstimator
    link: Link
    rate: Callable[[], float]
    rng: random.Random = field(default_factory=lambda: random.Random(11))
    feedback_delay: float = 0.02  # from the receiver back to the sender (s)
    samples: list[Sample] = field(default_factory=list)
    # (send time, arrival time, delivered, size) not reported yet
    _pending: list[tuple[float, float, bool, int]] = field(default_factory=list)
    _next_frame: float = 0.0
    _next_feedback: float = 0.05

    def run_until(self, end: float) -> None:
        """Send frames and feedback until `end` (s of the sender's clock)."""
        while min(self._next_frame, self._next_feedback) <= end:
            if self._next_feedback <= self._next_frame:
                self._feedback(self._next_feedback)
                self._next_feedback += self.rng.uniform(0.05, 0.1)
            else:
                self._send_frame(self._next_frame)
                self._next_frame += 1 / FPS

    def _send_frame(self, now: float) -> None:
        # A frame of rate / FPS: packets of PACKET bytes, the last one what remains.
        remaining = max(round(self.rate() / FPS / 8), 100)
        index = 0
        while remaining > 0:
            size = min(remaining, PACKET)
            remaining -= size
            send = now + index * 0.0001
            index += 1
            arrival, delivered = self.link.carry(send, size)
            self._pending.append((send, arrival, delivered, size))

    def _feedback(self, at: float) -> None:
        # The feedback reports packets in sequence order up to the last one that arrived;
        # one that did not arrive by then is reported lost.
        count = 0
        while count < len(self._pending) and self._pending[count][1] <= at:
            count += 1
        reported, self._pending = self._pending[:count], self._pending[count:]
        results = [
            PacketResult(send, arrival + RECEIVER_CLOCK if delivered else None, size)
            for send, arrival, delivered, size in reported
        ]
        now = at + self.feedback_delay
        self.estimator.on_feedback(now, results)
        e = self.estimator
        self.samples.append(Sample(now, e.bitrate, e.state, e.acknowledged_rate, e.loss))

    def since(self, start: float) -> list[Sample]:
        """The samples of feedback taken at or after `start`."""
        return [s for s in self.samples if s.now >= start]


def fixed(bitrate: float) -> Callable[[], float]:
    """A sender that does not adapt."""
    return lambda: bitrate


def following(estimator: DelayBasedEstimator, start: float) -> Callable[[], float]:
    """A sender whose encoder follows the estimate (`start` until there is one)."""
    return lambda: estimator.bitrate or start


def first_time(samples: list[Sample], condition: Callable[[Sample], bool]) -> float | None:
    """When the condition first held, or None."""
    return next((s.now for s in samples if condition(s)), None)


# -- the link ---------------------------------------------------------------------------


def test_under_capacity_the_estimate_grows_and_is_capped_by_what_arrives() -> None:
    estimator = DelayBasedEstimator(start_bitrate=600_000)
    sim = Simulation(estimator, Link(capacity=20_000_000), fixed(1_000_000))
    sim.run_until(16.0)
    assert {s.state for s in sim.samples} == {"normal"}
    for s in sim.samples:
        if s.bitrate is not None and s.acknowledged is not None:
            # Growing, it never runs more than 1.5 x what arrives + 10 kbit/s ahead.
            assert s.bitrate <= max(600_000, 1.5 * s.acknowledged + 10_000) + 1
    last = sim.samples[-1]
    assert last.acknowledged == pytest.approx(1_000_000, rel=0.1)
    assert last.bitrate is not None and last.acknowledged is not None
    # 600 kbit/s x 1.08^t reaches the cap after about 12 s and stays there.
    assert last.bitrate == pytest.approx(1.5 * last.acknowledged + 10_000, rel=0.03)
    assert estimator.rate_control_state == "increase"
    assert estimator.loss == 0.0
    assert estimator.rejected == 0


def test_a_start_estimate_under_what_arrives_starts_again_from_it_after_five_seconds() -> None:
    estimator = DelayBasedEstimator(start_bitrate=300_000)
    sim = Simulation(estimator, Link(capacity=20_000_000), fixed(2_000_000))
    sim.run_until(4.5)
    guessed = estimator.bitrate
    assert guessed is not None and guessed < 1_000_000  # 300 kbit/s x 1.08^4.5: a guess
    sim.run_until(6.5)
    # 5 s of acknowledged rates: the estimate is what arrives, then grows from there.
    assert estimator.bitrate is not None and estimator.bitrate >= 1_900_000
    assert {s.state for s in sim.samples} == {"normal"}


def test_two_megabits_into_half_a_megabit_overuses_and_drops_under_the_capacity() -> None:
    capacity = 500_000
    estimator = DelayBasedEstimator()
    sim = Simulation(estimator, Link(capacity=capacity), fixed(2_000_000))
    sim.run_until(2.5)
    overuse = first_time(sim.samples, lambda s: s.state == "overusing")
    # Without a pacer a packet group is a frame, and the link delivers a 2 Mbit/s frame
    # only every 133 ms: the trend needs about 7 of them (measured: 1.2 s).
    assert overuse is not None and overuse < 1.5
    under = first_time(sim.samples, lambda s: s.bitrate is not None and s.bitrate <= capacity)
    assert under is not None and under < 2.0
    final = sim.samples[-1]
    assert final.bitrate is not None
    assert 0.75 * capacity <= final.bitrate <= capacity  # 0.85 x what arrives
    assert final.acknowledged == pytest.approx(capacity, rel=0.05)


def test_a_sender_following_the_estimate_backs_off_on_a_capacity_drop_and_climbs_again() -> None:
    estimator = DelayBasedEstimator(start_bitrate=1_000_000)
    link = Link(capacity=5_000_000)
    sim = Simulation(estimator, link, following(estimator, 1_000_000))
    sim.run_until(5.0)
    assert {s.state for s in sim.samples} == {"normal"}
    before = estimator.bitrate
    assert before is not None and before > 1_300_000  # 8 %/s for 5 s

    link.capacity = 500_000
    sim.run_until(10.0)
    after_drop = sim.since(5.0)
    overuse = first_time(after_drop, lambda s: s.state == "overusing")
    assert overuse is not None and overuse - 5.0 < 0.8  # measured: 0.56 s
    under = first_time(after_drop, lambda s: s.bitrate is not None and s.bitrate <= 500_000)
    assert under is not None and under - 5.0 < 1.0
    settled = sim.since(8.0)
    assert all(s.bitrate is not None and 300_000 <= s.bitrate <= 600_000 for s in settled)

    link.capacity = 5_000_000
    sim.run_until(22.0)
    assert "overusing" not in {s.state for s in sim.since(10.0)}
    # Additive increase near the capacity it backed off at (about 20 kbit/s per second),
    # then, once what arrives is well past it, 8 %/s again.
    climbed = estimator.bitrate
    assert climbed is not None and climbed > 750_000


def test_random_loss_without_a_queue_is_not_delay_and_is_reported() -> None:
    estimator = DelayBasedEstimator(start_bitrate=800_000)
    link = Link(capacity=100_000_000, loss=0.05, rng=random.Random(3))
    sim = Simulation(estimator, link, fixed(1_000_000))
    sim.run_until(10.0)
    assert {s.state for s in sim.samples} == {"normal"}
    losses = [s.loss for s in sim.since(2.0)]
    assert sum(losses) / len(losses) == pytest.approx(0.05, abs=0.02)
    assert max(losses) < 0.25  # never one small feedback's say
    assert estimator.bitrate is not None and estimator.bitrate > 800_000
    assert estimator.acknowledged_rate == pytest.approx(950_000, rel=0.1)


def test_jitter_of_two_milliseconds_without_a_queue_is_not_overuse() -> None:
    estimator = DelayBasedEstimator()
    link = Link(capacity=100_000_000, jitter=0.002, rng=random.Random(5))
    sim = Simulation(estimator, link, fixed(1_500_000))
    sim.run_until(20.0)
    assert "overusing" not in {s.state for s in sim.samples}
    assert estimator.bitrate is not None and estimator.bitrate >= 1_000_000


# -- the parts ----------------------------------------------------------------------------


def frame(send: float, arrival: float, packets: int = 3) -> list[PacketResult]:
    """One burst of `packets` packets, 0.1 ms apart on both clocks."""
    return [PacketResult(send + i * 0.0001, arrival + i * 0.0001, PACKET) for i in range(packets)]


def test_no_estimate_until_two_packet_groups() -> None:
    estimator = DelayBasedEstimator(start_bitrate=700_000)
    assert estimator.bitrate is None and estimator.acknowledged_rate is None
    estimator.on_feedback(0.1, frame(0.0, 10.05))
    assert estimator.bitrate is None  # one group
    assert estimator.feedbacks == 1
    estimator.on_feedback(0.2, frame(0.033, 10.083))
    assert estimator.bitrate is not None and estimator.bitrate >= 700_000
    assert estimator.state == "normal"


def test_packets_sent_within_five_milliseconds_form_one_group() -> None:
    groups = InterArrival()
    assert groups.add(0.0, 1.0) is None
    assert groups.add(0.004, 1.004) is None  # same group
    assert groups.add(0.02, 1.03) is None  # second group: no pair before it yet
    deltas = groups.add(0.04, 1.05)  # third group completes the first pair
    assert deltas == pytest.approx((0.016, 0.026, 1.03))
    assert groups.groups == 3


def test_a_reordered_group_is_dropped_not_fed_to_the_trend() -> None:
    estimator = DelayBasedEstimator()
    t = 0.0
    for _ in range(5):
        estimator.on_feedback(t + 0.05, frame(t, 100.0 + t))
        t += 1 / FPS
    # This frame arrives before the one sent before it.
    estimator.on_feedback(t + 0.05, frame(t, 100.0 + t - 0.05))
    estimator.on_feedback(t + 0.1, frame(t + 1 / FPS, 100.0 + t + 1 / FPS))
    assert estimator.reordered == 1
    assert estimator.rejected == 0
    assert estimator.state == "normal"


def test_hostile_feedback_is_counted_and_the_estimate_survives() -> None:
    estimator = DelayBasedEstimator(start_bitrate=500_000, min_bitrate=50_000)
    sim = Simulation(estimator, Link(capacity=10_000_000), fixed(500_000))
    sim.run_until(3.0)
    assert estimator.bitrate is not None
    rejected = estimator.rejected
    now = sim.samples[-1].now
    send = now - 0.05
    hostile = [
        PacketResult(send, send + RECEIVER_CLOCK, 0),
        PacketResult(send, send + RECEIVER_CLOCK, -5),
        PacketResult(send, send + RECEIVER_CLOCK, 70_000),
        PacketResult(math.nan, send + RECEIVER_CLOCK, PACKET),
        PacketResult(send, math.inf, PACKET),
        PacketResult(send, -math.inf, PACKET),
        PacketResult(math.inf, None, PACKET),
        PacketResult(send - 5.0, send + RECEIVER_CLOCK, PACKET),  # a reused sequence number
    ]
    estimator.on_feedback(now + 0.001, hostile)
    assert estimator.rejected == rejected + len(hostile)
    assert estimator.last_rejection is not None and "reused sequence" in estimator.last_rejection
    estimator.on_feedback(math.nan, [])
    estimator.on_feedback(now - 1.0, [])  # the sender's clock does not go back
    estimator.on_feedback(now + 0.002, [], rtt=-1.0)
    assert estimator.rejected == rejected + len(hostile) + 3
    assert estimator.loss == 0.0  # skipped packets are not losses
    # The receiver's clock jumps by three hours and back: the grouping restarts each time.
    jump = [PacketResult(send + 0.001, send + RECEIVER_CLOCK + 3 * 3600, PACKET)]
    estimator.on_feedback(now + 0.003, jump)
    assert estimator.rejected == rejected + len(hostile) + 4
    assert "jumped" in (estimator.last_rejection or "")
    sim.run_until(8.0)  # the link goes on as before
    assert estimator.rejected == rejected + len(hostile) + 5  # the jump back
    assert {s.state for s in sim.since(3.0)} == {"normal"}
    for s in sim.since(3.0):
        assert s.bitrate is not None and 50_000 <= s.bitrate <= 100_000_000
    assert estimator.acknowledged_rate == pytest.approx(500_000, rel=0.1)


def test_absurd_arrivals_keep_the_estimate_within_its_bounds() -> None:
    rng = random.Random(13)
    estimator = DelayBasedEstimator(
        start_bitrate=300_000, min_bitrate=30_000, max_bitrate=2_000_000
    )
    seen: set[int | None] = set()
    for index in range(400):
        now = index * 0.05
        packets = [
            PacketResult(
                now - 0.05 + i * 0.004,
                rng.choice([None, rng.uniform(-1e6, 1e6), now + rng.uniform(0, 0.5)]),
                rng.choice([PACKET, 1, 65_535]),
            )
            for i in range(rng.randrange(0, 15))
        ]
        estimator.on_feedback(now, packets)
        seen.add(estimator.bitrate)
        if estimator.bitrate is not None:
            assert 30_000 <= estimator.bitrate <= 2_000_000
        assert 0.0 <= estimator.loss <= 1.0
    assert estimator.bitrate is not None
    assert estimator.rejected > 0
    assert estimator.feedbacks == 400


def test_bad_configuration_is_an_error_naming_it() -> None:
    with pytest.raises(ValueError, match="start_bitrate 10"):
        DelayBasedEstimator(start_bitrate=10)
    with pytest.raises(ValueError, match="min_bitrate 0"):
        DelayBasedEstimator(min_bitrate=0)


def test_the_trend_of_a_growing_delay_signals_overuse_and_of_a_draining_one_underuse() -> None:
    def drive(delay_change_ms: float, groups: int = 40) -> TrendlineEstimator:
        trend = TrendlineEstimator()
        arrival = 0.0
        for _ in range(groups):
            arrival += 1 / FPS + delay_change_ms / 1000
            trend.update(1 / FPS + delay_change_ms / 1000, 1 / FPS, arrival)
        return trend

    assert drive(0.0).state == "normal"
    growing = drive(3.0)
    assert growing.state == "overusing"
    assert growing.modified_trend > growing.threshold
    assert drive(-3.0).state == "underusing"
    # A delay growing 1 ms a frame stays under the initial threshold.
    slow = drive(1.0, groups=21)
    assert slow.state == "normal" and 0 < slow.modified_trend < INITIAL_THRESHOLD


def test_the_threshold_stays_within_its_bounds() -> None:
    trend = TrendlineEstimator()
    arrival = 0.0
    for index in range(2000):
        change = 0.0 if index < 1000 else 0.02 * (1 if index % 2 else -1)
        arrival += 1 / FPS + change
        trend.update(1 / FPS + change, 1 / FPS, arrival)
        assert MIN_THRESHOLD <= trend.threshold <= MAX_THRESHOLD
    assert trend.threshold < MAX_THRESHOLD


def test_linear_fit_slope() -> None:
    assert linear_fit_slope([(0, 1), (1, 3), (2, 5)]) == pytest.approx(2.0)
    assert linear_fit_slope([(1, 1), (1, 2)]) is None
    assert linear_fit_slope([(1, 1)]) is None


def test_rate_control_decreases_to_085_of_what_arrives_and_never_increases_on_overuse() -> None:
    control = AimdRateControl(1_000_000, 30_000, 100_000_000)
    control.update(1.0, "overusing", 600_000)
    assert control.bitrate == pytest.approx(510_000)
    assert control.state == "hold"
    control.update(2.0, "overusing", 900_000)  # more arrived than the estimate allows
    assert control.bitrate == pytest.approx(510_000)
    control.update(3.0, "underusing", 500_000)
    assert control.bitrate == pytest.approx(510_000) and control.state == "hold"


def test_rate_control_grows_8_percent_a_second_far_from_capacity_additively_near_it() -> None:
    control = AimdRateControl(1_000_000, 30_000, 100_000_000)
    control.update(0.0, "normal", 1_000_000)  # hold -> increase: no time elapsed yet
    control.update(1.0, "normal", 1_000_000)
    assert control.bitrate == pytest.approx(1_001_000 * 1.08, rel=1e-3)
    control.update(3.0, "normal", 1_000_000)  # at most 1 s counted
    assert control.bitrate == pytest.approx(1_001_000 * 1.08**2, rel=1e-3)
    control.update(4.0, "normal", 100_000)  # capped at 1.5 x what arrives + 10 kbit/s
    assert control.bitrate == pytest.approx(1_001_000 * 1.08**2, rel=1e-3)

    near = AimdRateControl(1_000_000, 30_000, 100_000_000)
    near.update(0.0, "overusing", 1_000_000)  # a decrease measures the link capacity
    assert near.bitrate == pytest.approx(850_000)
    near.update(0.1, "normal", 850_000)
    near.update(1.1, "normal", 850_000)
    # About half a 1180-byte packet per 2 x (100 ms + RTT 100 ms): ~24 kbit/s in a second.
    assert near.bitrate - 850_000 == pytest.approx(850_000 / 30 / 3 / 0.4, rel=0.01)


def test_rate_control_stays_within_min_and_max() -> None:
    control = AimdRateControl(100_000, 80_000, 120_000)
    control.update(0.0, "overusing", 1_000)
    assert control.bitrate == 80_000
    for second in range(1, 20):
        control.update(float(second), "normal", 10_000_000)
    assert control.bitrate == 120_000


def test_the_acknowledged_rate_counts_what_arrived_in_the_window() -> None:
    paced = AcknowledgedRate(window=0.5)
    for index in range(100):  # 1200 bytes every 19.2 ms: 500 kbit/s
        paced.add(10.0 + index * 0.0192, PACKET)
        if index < 26:
            assert paced.rate is None  # the arrivals do not span the window yet
    assert paced.rate == pytest.approx(500_000, rel=1e-6)
    bursts = AcknowledgedRate(window=0.5)
    for index in range(100):  # frames of 4 packets at 30 fps: 1.152 Mbit/s
        for packet in range(4):
            bursts.add(index / FPS + packet * 0.0001, PACKET)
    assert bursts.rate == pytest.approx(1_152_000, rel=0.01)
    bursts.reset()  # a jump of the arrival clock: the last rate stays until a new window
    bursts.add(1e6, PACKET)
    assert bursts.rate == pytest.approx(1_152_000, rel=0.01)


def test_loss_is_counted_over_at_least_twenty_packets() -> None:
    loss = RecentLoss()
    loss.add(3, 1)
    assert loss.fraction == 0.0  # one feedback of 3 packets is no figure
    loss.add(17, 1)
    assert loss.fraction == pytest.approx(2 / 20)
    loss.add(20, 0)  # the oldest feedbacks leave once the newer cover 20 packets
    assert loss.fraction == 0.0
    loss.add(10, 5)
    assert loss.fraction == pytest.approx(5 / 30)


def test_a_pause_in_the_feedback_starts_the_grouping_and_the_trend_again() -> None:
    estimator = DelayBasedEstimator()
    t = 0.0
    for _ in range(60):
        estimator.on_feedback(t + 0.1, frame(t, 50.0 + t))
        t += 1 / FPS
    # Nothing sent for 3 s, then a path 1 s longer (a new route, an ICE restart): not a
    # queue growing 1 s in one frame.
    t += 3.0
    states: set[str] = set()
    for _ in range(30):
        estimator.on_feedback(t + 1.1, frame(t, 51.0 + t))
        states.add(estimator.state)
        t += 1 / FPS
    assert states == {"normal"}
    assert estimator.rejected == 0


def test_the_round_trip_time_sets_the_additive_increase() -> None:
    control = AimdRateControl(900_000, 30_000, 100_000_000)
    control.rtt = 0.3
    control.update(0.0, "overusing", 1_000_000)  # 850 kbit/s, near the capacity seen
    control.update(0.1, "normal", 850_000)
    control.update(1.1, "normal", 850_000)
    assert control.bitrate - 850_000 == pytest.approx(850_000 / 30 / 3 / 0.8, rel=0.01)
    estimator = DelayBasedEstimator()
    estimator.on_feedback(0.1, frame(0.0, 3.0), rtt=0.25)
    estimator.on_feedback(0.2, [], rtt=math.inf)
    assert estimator.rejected == 1


def test_a_feedback_of_lost_packets_only_reports_loss_and_leaves_the_estimate() -> None:
    estimator = DelayBasedEstimator()
    sim = Simulation(estimator, Link(capacity=10_000_000), fixed(1_000_000))
    sim.run_until(2.0)
    before = estimator.bitrate
    now = sim.samples[-1].now
    estimator.on_feedback(
        now + 0.1, [PacketResult(now + i * 0.001, None, PACKET) for i in range(30)]
    )
    assert estimator.bitrate == before
    assert estimator.loss == 1.0
    assert estimator.rejected == 0

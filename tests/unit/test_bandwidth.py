"""The per-subscriber estimate and the rung chooser (media/bandwidth.py): pure, driven by time."""

from __future__ import annotations

import itertools

import pytest

from tessera.media.bandwidth import (
    LOSS_MIN_PACKETS,
    MAX_BITRATE,
    MIN_RATE_SPAN,
    BandwidthEstimator,
    Estimate,
    RungChooser,
)

LADDER = (1_900_000, 1_000_000, 450_000, 150_000)


def sending(estimator: BandwidthEstimator, start: float, end: float, bitrate: int) -> None:
    """Record a steady send of `bitrate` from `start` to `end`, 10 samples a second."""
    octets = estimator._sent[-1][1] if estimator._sent else 0
    packets = estimator._sent[-1][2] if estimator._sent else 0
    t = start
    while t <= end + 1e-9:
        estimator.on_sent(t, octets, packets)
        octets += bitrate // 80
        packets += max(1, bitrate // 80 // 1200)
        t += 0.1


def test_sent_rate_is_measured_over_the_window() -> None:
    estimator = BandwidthEstimator()
    sending(estimator, 0.0, 3.0, 800_000)
    assert estimator.sent_rate(3.0) == pytest.approx(800_000, rel=0.02)


def test_heavy_loss_drops_the_estimate_to_what_arrived() -> None:
    estimator = BandwidthEstimator()
    sending(estimator, 0.0, 2.0, 2_000_000)
    estimator.on_receiver_report(2.0, fraction_lost=128, jitter=900)  # 50 % lost
    estimate = estimator.estimate(2.0)
    assert estimate.congested
    assert estimate.loss == pytest.approx(0.5)
    assert estimate.jitter == pytest.approx(0.01)
    assert estimate.bitrate == pytest.approx(2_000_000 * 0.5, rel=0.02)


def test_low_loss_grows_the_estimate_and_remb_caps_it() -> None:
    estimator = BandwidthEstimator()
    sending(estimator, 0.0, 2.0, 1_000_000)
    estimator.on_receiver_report(2.0, fraction_lost=0, jitter=0, rtt=0.08)
    first = estimator.estimate(2.0)
    assert not first.congested
    assert first.rtt == pytest.approx(0.08)
    assert first.bitrate is not None and first.bitrate > 1_000_000
    estimator.on_remb(2.1, 900_000)
    assert estimator.estimate(2.1).bitrate == 900_000


@pytest.mark.parametrize("remb", [0, -5, 1, MAX_BITRATE + 1, 2**40])
def test_absurd_rembs_are_ignored_and_counted(remb: int) -> None:
    estimator = BandwidthEstimator()
    assert not estimator.on_remb(1.0, remb)
    estimate = estimator.estimate(1.0)
    assert estimate.remb is None and estimate.bitrate is None
    assert estimate.rejected == 1
    assert not estimate.fresh  # an absurd figure is no feedback either


def test_a_falling_remb_well_under_the_sent_rate_is_congestion() -> None:
    estimator = BandwidthEstimator()
    sending(estimator, 0.0, 2.0, 1_000_000)
    # Rising (a receiver ramping up after a climb): not congestion.
    estimator.on_remb(1.0, 300_000)
    estimator.on_remb(2.0, 400_000)
    assert not estimator.estimate(2.0).congested
    # Falling, under half of what is sent: the receiver's queue grows.
    estimator.on_remb(2.1, 380_000)
    assert estimator.estimate(2.1).congested
    # aiortc's answer to a delay blip (0.85 x what arrived) is not.
    estimator.on_remb(2.2, 850_000)
    estimator.on_remb(2.3, 800_000)
    assert not estimator.estimate(2.3).congested


def test_nacks_for_many_packets_are_congestion_and_age_out() -> None:
    estimator = BandwidthEstimator()
    sending(estimator, 0.0, 2.0, 1_200_000)  # ~125 packets/s
    estimator.on_receiver_report(2.0, 0, 0)
    estimator.on_nack(2.0, packets=40)
    assert estimator.estimate(2.0).congested
    assert estimator.estimate(2.0).nack_rate == pytest.approx(20)
    assert not estimator.estimate(4.5).congested  # outside the window (and fresh still)


def test_pli_rate_is_counted() -> None:
    estimator = BandwidthEstimator()
    for t in (1.0, 1.5, 2.0):
        estimator.on_pli(t)
    assert estimator.estimate(2.0).pli_rate == pytest.approx(1.5)


def test_out_of_range_report_fields_are_bounded() -> None:
    estimator = BandwidthEstimator()
    estimator.on_receiver_report(1.0, fraction_lost=999, jitter=-4, rtt=1e9)
    estimate = estimator.estimate(1.0)
    assert estimate.loss < 1.0 and estimate.jitter == 0.0 and estimate.rtt is None


def test_feedback_goes_stale() -> None:
    estimator = BandwidthEstimator(stale_after=4.0)
    estimator.on_receiver_report(1.0, 0, 0)
    assert estimator.estimate(5.0).fresh
    assert not estimator.estimate(5.1).fresh


def test_a_restarted_counter_restarts_the_rate() -> None:
    estimator = BandwidthEstimator()
    sending(estimator, 0.0, 1.0, 1_000_000)
    estimator.on_sent(1.1, 10, 1)
    assert estimator.sent_rate(1.1) == 0


def figures(
    *,
    bitrate: int | None = None,
    loss: float = 0.0,
    congested: bool = False,
    fresh: bool = True,
    rung_rate: int | None = None,
) -> Estimate:
    return Estimate(
        bitrate=bitrate,
        loss=loss,
        rtt=None,
        jitter=0.0,
        remb=None,
        delay_based=None,
        transport_cc=False,
        sent_rate=0,
        nack_rate=0.0,
        pli_rate=0.0,
        congested=congested,
        rung_rate=rung_rate,
        fresh=fresh,
        reports=1,
        rejected=0,
    )


def test_chooser_goes_down_at_once_to_the_rung_that_fits() -> None:
    chooser = RungChooser(LADDER)
    assert chooser.choose(0.0, figures()) == 0
    # 2 Mbit/s -> 300 kbit/s: the estimate is under every rung but the lowest.
    assert chooser.choose(1.5, figures(bitrate=300_000, loss=0.6, congested=True)) == 3
    assert chooser.switches == 1


def test_chooser_goes_down_one_rung_without_an_estimate() -> None:
    chooser = RungChooser(LADDER)
    chooser.choose(0.0, figures())
    assert chooser.choose(2.0, figures(loss=0.2, congested=True)) == 1


def test_chooser_waits_before_a_second_step_down() -> None:
    chooser = RungChooser(LADDER)
    chooser.choose(0.0, figures())
    chooser.choose(2.0, figures(loss=0.2, congested=True))
    # The next report may still count the loss from before the switch.
    assert chooser.choose(2.5, figures(loss=0.2, congested=True)) == 1
    assert chooser.choose(3.6, figures(loss=0.2, congested=True)) == 2


def test_chooser_climbs_one_rung_per_hold() -> None:
    chooser = RungChooser(LADDER, start=3, hold=3.0)
    rungs = [chooser.choose(t / 2, figures()) for t in range(0, 40)]
    assert rungs[0] == 3
    assert rungs[5] == 3  # 2.5 s: still holding
    assert rungs[6] == 2  # 3.0 s: one rung up
    assert 1 in rungs and rungs[-1] == 0
    # Never two rungs at once.
    assert all(a - b <= 1 for a, b in itertools.pairwise(rungs))


def test_congestion_lengthens_the_hold_and_a_good_probe_shortens_it() -> None:
    chooser = RungChooser(LADDER, start=2, hold=3.0, congested_hold=8.0, max_hold=12.0)
    chooser.choose(0.0, figures())
    assert chooser.choose(3.0, figures()) == 1  # probe
    assert chooser.choose(4.0, figures(loss=0.3, congested=True)) == 2  # it failed
    assert chooser.failed_probes == 1
    assert chooser.choose(11.5, figures()) == 2  # 7.5 s later: the hold is 8 s now
    assert chooser.choose(12.0, figures()) == 1
    # Failing again doubles it, up to max_hold.
    assert chooser.choose(13.0, figures(loss=0.3, congested=True)) == 2
    assert chooser.choose(24.5, figures()) == 2
    assert chooser.choose(25.0, figures()) == 1
    # This probe holds past the window (3 s): the hold is back to 3 s, already passed.
    assert chooser.choose(27.9, figures()) == 1
    assert chooser.choose(28.1, figures()) == 0


def test_heavy_loss_goes_straight_to_what_arrived() -> None:
    estimator = BandwidthEstimator()
    sending(estimator, 0.0, 2.0, 1_900_000)
    # 2 Mbit/s -> 300 kbit/s: 85 % of the top rung is lost.
    estimator.on_receiver_report(2.0, fraction_lost=218, jitter=0)
    chooser = RungChooser(LADDER)
    chooser.choose(0.0, figures())
    assert chooser.choose(2.0, estimator.estimate(2.0)) == 3


def test_no_feedback_holds_the_rung_and_never_climbs() -> None:
    chooser = RungChooser(LADDER, start=1)
    for t in range(0, 60):
        assert chooser.choose(float(t), figures(fresh=False, loss=0.9, congested=True)) == 1
    assert chooser.switches == 0


def test_moderate_loss_holds() -> None:
    chooser = RungChooser(LADDER, start=2)
    for t in range(0, 30):
        assert chooser.choose(float(t), figures(loss=0.08)) == 2


def test_the_lowest_rung_is_the_floor() -> None:
    chooser = RungChooser(LADDER, start=3)
    for t in range(0, 10):
        assert chooser.choose(float(t), figures(bitrate=40_000, loss=0.9, congested=True)) == 3


@pytest.mark.parametrize("ladder", [(), (100, 200), (0,), (500, -1)])
def test_a_bad_ladder_is_refused(ladder: tuple[int, ...]) -> None:
    with pytest.raises(ValueError):
        RungChooser(ladder)


def test_estimate_json_names_the_figures() -> None:
    data = figures(bitrate=500_000).to_json()
    assert data["estimatedBitrate"] == 500_000
    assert set(data) >= {"fractionLost", "roundTripTime", "remb", "nackRate", "pliRate"}


def test_a_packet_nacked_again_counts_once() -> None:
    estimator = BandwidthEstimator()
    sending(estimator, 0.0, 2.0, 1_200_000)  # ~125 packets/s
    estimator.on_receiver_report(2.0, 0, 0)
    # aiortc repeats its whole list of missing packets in every NACK.
    assert estimator.on_nacked(1.0, [10, 11]) == 2
    assert estimator.on_nacked(1.5, [10, 11, 40]) == 1
    assert estimator.on_nacked(2.0, [10, 11, 40, 70]) == 1
    assert estimator.estimate(2.0).nack_rate == pytest.approx(2.0)  # 4 packets in 2 s
    assert not estimator.estimate(2.0).congested


def test_nack_memory_is_bounded() -> None:
    estimator = BandwidthEstimator()
    estimator.on_nacked(0.0, range(5000))
    assert len(estimator._nacked) <= 2048
    assert estimator.on_nacked(0.1, [0]) == 1  # long forgotten: counts again


def test_stepping_down_twice_in_one_congestion_keeps_the_hold() -> None:
    # A link that fell far: down a rung, and down again once down_gap passed. That is one
    # congestion, not a failed probe: the climb comes congested_hold after the last step.
    chooser = RungChooser(LADDER, hold=3.0, congested_hold=8.0, max_hold=12.0)
    chooser.choose(0.0, figures())
    assert chooser.choose(1.0, figures(loss=0.3, congested=True)) == 1
    assert chooser.choose(2.6, figures(loss=0.3, congested=True)) == 2
    assert chooser.choose(10.5, figures()) == 2
    assert chooser.choose(10.6, figures()) == 1  # 8 s after the last step, not 12
    assert chooser.failed_probes == 0


def test_loss_of_frequent_short_reports_is_counted_over_enough_packets() -> None:
    # Chromium's reports ride on each NACK: 2 lost of 4 reads "50 %" on a link losing 20 %.
    estimator = BandwidthEstimator()
    sending(estimator, 0.0, 2.0, 1_000_000)
    estimator.on_receiver_report(2.0, 0, 0, highest_sequence=1000, packets_lost=0)
    highest, lost = 1000, 0
    for step in range(4):
        highest, lost = highest + 4, lost + (2 if step == 0 else 0)
        estimator.on_receiver_report(2.0, 128 if step == 0 else 0, 0, None, highest, lost)
        figures = estimator.estimate(2.0)
        assert figures.loss == 0.0 and not figures.congested  # under LOSS_MIN_PACKETS yet
    assert estimator.estimate(2.0).reports == 5  # counted, fresh, just no loss figure yet
    highest += LOSS_MIN_PACKETS - 16
    estimator.on_receiver_report(2.0, 0, 0, None, highest, lost)
    assert estimator.estimate(2.0).loss == pytest.approx(2 / LOSS_MIN_PACKETS)
    # The count starts again from there.
    estimator.on_receiver_report(2.0, 255, 0, None, highest + 5, lost + 5)
    assert estimator.estimate(2.0).loss == pytest.approx(2 / LOSS_MIN_PACKETS)


def test_the_first_report_and_figures_going_backwards_give_the_reports_own_loss() -> None:
    estimator = BandwidthEstimator()
    sending(estimator, 0.0, 2.0, 1_000_000)
    estimator.on_receiver_report(2.0, 64, 0, None, highest_sequence=500, packets_lost=3)
    assert estimator.estimate(2.0).loss == pytest.approx(0.25)  # nothing to count from
    estimator.on_receiver_report(2.0, 0, 0, None, highest_sequence=100, packets_lost=3)
    assert estimator.estimate(2.0).loss == 0.0  # a receiver that restarted: its own figure
    estimator.on_receiver_report(2.0, 0, 0, None, highest_sequence=140, packets_lost=13)
    assert estimator.estimate(2.0).loss == pytest.approx(0.25)  # 10 of 40 since the restart


def test_sequence_numbers_wrapping_count_on() -> None:
    estimator = BandwidthEstimator()
    sending(estimator, 0.0, 2.0, 1_000_000)
    estimator.on_receiver_report(2.0, 0, 0, None, highest_sequence=2**32 - 10, packets_lost=0)
    estimator.on_receiver_report(2.0, 0, 0, None, highest_sequence=30, packets_lost=4)
    assert estimator.estimate(2.0).loss == pytest.approx(0.1)


def test_feedback_about_the_rung_left_is_not_congestion_of_the_new_one() -> None:
    # Down a rung at sequence number 5000: the receiver goes on NACKing what the old rung lost
    # in the queue and reporting its loss for a round trip and more. None of it is about the
    # new rung, so it must not step down again; NACKs and loss of the new rung's packets do.
    estimator = BandwidthEstimator()
    sending(estimator, 0.0, 2.0, 1_200_000)  # ~125 packets/s
    estimator.on_receiver_report(1.0, 0, 0, None, highest_sequence=4800, packets_lost=0)
    estimator.on_receiver_report(2.0, 0, 0, None, highest_sequence=4990, packets_lost=40)
    estimator.on_nacked(2.0, range(4950, 4990))
    assert estimator.estimate(2.0).congested  # the old rung's congestion: 40 of 190 lost
    estimator.on_switch(2.0, 5000)
    figures = estimator.estimate(2.1)
    assert not figures.congested and figures.loss > 0.1  # still shown, no longer counted
    # Retries of the old packets and a report not yet past the switch: still nothing.
    assert estimator.on_nacked(2.2, range(4940, 5000)) == 0
    estimator.on_receiver_report(2.3, 60, 0, None, highest_sequence=4999, packets_lost=55)
    assert not estimator.estimate(2.3).congested
    # The first report past the switch starts the new count; clean packets after it: clear.
    estimator.on_receiver_report(2.5, 0, 0, None, highest_sequence=5010, packets_lost=55)
    estimator.on_receiver_report(2.8, 0, 0, None, highest_sequence=5060, packets_lost=55)
    assert estimator.estimate(2.8).loss == 0.0
    assert not estimator.estimate(2.8).congested
    # The new rung losing too (a link that fell far): congestion again.
    estimator.on_receiver_report(3.1, 0, 0, None, highest_sequence=5110, packets_lost=70)
    assert estimator.estimate(3.1).loss == pytest.approx(15 / 50)
    assert estimator.estimate(3.1).congested
    assert estimator.on_nacked(3.1, range(5090, 5130)) == 40


def test_the_switch_point_wraps_with_the_sequence_numbers() -> None:
    estimator = BandwidthEstimator()
    sending(estimator, 0.0, 2.0, 1_200_000)
    estimator.on_receiver_report(1.0, 0, 0, None, highest_sequence=65500, packets_lost=0)
    estimator.on_switch(1.0, 65530)
    assert estimator.on_nacked(2.0, [65500, 65529]) == 0  # before the switch
    assert estimator.on_nacked(2.0, [65530, 65535, 0, 20]) == 4  # at and after it, wrapped
    estimator.on_receiver_report(2.0, 0, 0, None, highest_sequence=65536 + 10, packets_lost=0)
    estimator.on_receiver_report(2.5, 0, 0, None, highest_sequence=65536 + 40, packets_lost=9)
    assert estimator.estimate(2.5).loss == pytest.approx(9 / 30)


def test_after_a_switch_congestion_is_judged_on_the_new_rungs_rates() -> None:
    # From 16 Mbit/s (~1400 packets/s) down to ~50 packets/s: 8 NACKs a second are 16 % of
    # the new rung, congestion, though a 2 s window still holding the old rung's packets
    # would put the threshold at hundreds a second.
    estimator = BandwidthEstimator()
    sending(estimator, 0.0, 2.0, 16_000_000)
    estimator.on_receiver_report(2.0, 0, 0)
    estimator.on_switch(2.0, 1000)
    sending(estimator, 2.1, 3.0, 500_000)
    estimator.on_receiver_report(3.0, 0, 0)
    estimator.on_nacked(3.0, range(1100, 1108))
    figures = estimator.estimate(3.0)
    assert figures.nack_rate == pytest.approx(8.0)  # 8 over the 1 s since the switch
    assert figures.congested
    # A few NACKs right after the switch count over at least MIN_RATE_SPAN, not 0.1 s.
    estimator = BandwidthEstimator()
    sending(estimator, 0.0, 2.0, 500_000)
    estimator.on_receiver_report(2.0, 0, 0)
    estimator.on_switch(2.0, 1000)
    estimator.on_nacked(2.1, [1001])
    assert estimator.estimate(2.1).nack_rate == pytest.approx(1 / MIN_RATE_SPAN)


def test_a_rung_that_sends_more_than_the_estimate_goes_down_again_but_not_below_the_floor() -> None:
    # Stepped down to 1 Mbit/s on a 1.2 Mbit/s estimate, the rung's hard content sends 1.5:
    # it does not fit, down again once down_gap passed. On the lowest rung nothing is lower,
    # and the receiver's REMB there follows what arrives: it must not keep it from climbing.
    chooser = RungChooser(LADDER, hold=3.0, congested_hold=8.0)
    chooser.choose(0.0, figures())
    assert chooser.choose(1.0, figures(bitrate=1_200_000, congested=True)) == 1
    assert chooser.choose(1.5, figures(bitrate=1_200_000, rung_rate=1_500_000)) == 1  # gap
    assert chooser.choose(2.6, figures(bitrate=1_200_000, rung_rate=1_100_000)) == 1  # fits
    # Near its nominal rate the rung was chosen right: a REMB lagging under it is no reason.
    assert chooser.choose(2.65, figures(bitrate=800_000, rung_rate=1_200_000)) == 1
    assert chooser.choose(2.7, figures(bitrate=1_200_000, rung_rate=1_500_000)) == 2
    assert chooser.choose(3.0, figures(bitrate=400_000, congested=True)) == 2  # down_gap
    assert chooser.choose(4.6, figures(bitrate=140_000, congested=True)) == 3
    assert chooser.choose(12.7, figures(bitrate=140_000, rung_rate=160_000)) == 2
    # After a climb a rung over the estimate is a probe, not an overshoot: it holds.
    assert chooser.choose(13.0, figures(bitrate=300_000, rung_rate=450_000)) == 2


def test_a_move_that_cannot_be_had_is_undone_and_not_retried_at_once() -> None:
    chooser = RungChooser(LADDER)
    assert chooser.choose(0.0, figures()) == 0
    congested = figures(bitrate=300_000, loss=0.6, congested=True)
    assert chooser.choose(1.0, congested) == 3
    chooser.correct(0)  # no capacity to encode rung 3: the subscriber is still on the top
    assert (chooser.rung, chooser.switches, chooser.refused) == (0, 0, 1)
    assert chooser.choose(1.5, congested) == 0  # within down_gap: no new try yet
    assert chooser.choose(3.0, congested) == 3  # then again
    chooser.correct(2)  # rung 2 runs (for someone else): the move went there
    assert (chooser.rung, chooser.switches, chooser.refused) == (2, 1, 2)
    chooser.correct(2)  # what is already so changes nothing
    assert chooser.refused == 2

"""bench.density's cluster arithmetic: agents' /metrics merged, one process against the cluster."""

from __future__ import annotations

import math

from bench.clusterprocess import merge_metrics
from bench.density import DensityBenchConfig, DensityComparison, DensityFigures, DensityStep
from bench.subscribers import Metrics, loop_lag_p99_ms

P99 = (("quantile", "0.99"),)


def test_agents_metrics_merge_views_and_sum_counts_and_take_the_worst_lag() -> None:
    agent1: Metrics = {
        "tessera_view_frames_total": {(("view", "a-common"),): 300.0},
        "tessera_rooms": {(): 1.0},
        "tessera_event_loop_lag_seconds": {P99: 0.012},
    }
    agent2: Metrics = {
        "tessera_view_frames_total": {(("view", "b-common"),): 150.0},
        "tessera_rooms": {(): 2.0},
        "tessera_event_loop_lag_seconds": {P99: 0.040},
    }
    merged = merge_metrics([agent1, agent2])
    assert merged["tessera_view_frames_total"] == {
        (("view", "a-common"),): 300.0,
        (("view", "b-common"),): 150.0,
    }
    assert merged["tessera_rooms"] == {(): 3.0}
    assert loop_lag_p99_ms(merged) == 40.0
    assert agent1["tessera_rooms"] == {(): 1.0}  # the parts are left as they were


def _step(rooms: int, fps: float) -> DensityStep:
    return DensityStep(
        rooms=rooms,
        server_cpu_percent=20.0 * rooms,  # within 70% of 2 cores up to 7 rooms
        clients_cpu_percent=20.0,
        others_cpu_percent=0.0,
        view_fps=[fps] * rooms,
        received_fps_min=[fps] * rooms,
        loop_lag_p99_ms=5.0,
        cores=2,
    )


def _figures(agents: int, fps: list[float], joins: list[list[float]]) -> DensityFigures:
    steps = [_step(i + 1, f) for i, f in enumerate(fps)]
    return DensityFigures(
        DensityBenchConfig(), cores=2, steps=steps, agents=agents, join_to_first_frame_ms=joins
    )


def test_comparison_counts_rooms_and_compares_joins_over_the_rooms_both_entered() -> None:
    single = _figures(0, [30.0, 30.0, 30.0, 20.0], [[100, 110], [120, 130], [140], [150]])
    cluster = _figures(
        2, [30.0] * 5, [[120, 130], [150, 160], [170], [180], [5000]]
    )  # the fifth room is not compared: one process never entered one
    comparison = DensityComparison(single=single, cluster=cluster)
    assert (single.rooms, cluster.rooms) == (3, 5)
    assert comparison.rooms_target == 4 and comparison.meets_rooms_target
    assert comparison.common_rooms == 4
    assert comparison.single_join_ms == (125.0, 150.0)
    assert comparison.cluster_join_ms == (155.0, 180.0)
    assert comparison.join_delay_ms == 30.0 and comparison.meets_join_target


def test_comparison_misses_when_the_cluster_joins_late_or_holds_too_few_rooms() -> None:
    single = _figures(0, [30.0, 30.0, 30.0], [[100], [100], [100]])
    cluster = _figures(2, [30.0, 30.0, 30.0, 25.0], [[151], [151], [151], [151]])
    comparison = DensityComparison(single=single, cluster=cluster)
    assert not comparison.meets_rooms_target
    assert comparison.join_delay_ms == 51.0 and not comparison.meets_join_target


def test_comparison_without_a_common_room_meets_nothing() -> None:
    comparison = DensityComparison(single=_figures(0, [], []), cluster=_figures(1, [], []))
    assert comparison.common_rooms == 0
    assert all(math.isnan(v) for v in comparison.single_join_ms)
    assert not comparison.meets_join_target and not comparison.meets_rooms_target


def test_with_keep_going_a_room_counts_only_if_every_step_before_it_passed() -> None:
    # A loaded machine failed step 2; steps 3 and 4 happened to pass.
    figures = _figures(2, [30.0, 25.0, 30.0, 30.0], [[100]] * 4)
    assert figures.rooms == 1
    assert _figures(2, [20.0, 30.0], [[100]] * 2).rooms == 0


def test_a_view_at_30_fps_of_stale_inputs_does_not_hold_the_room() -> None:
    import dataclasses

    step = _step(1, 30.0)
    assert dataclasses.replace(step, input_fps=[29.6]).passed
    assert not dataclasses.replace(step, input_fps=[21.0]).passed


def test_rooms_over_the_cpu_limit_count_at_frame_rate_but_not_within_it() -> None:
    import dataclasses

    # Four rooms at 30 fps taking 85 % of the machine: held at frame rate (the cluster's
    # target), not within the 70 % density bound; a fifth at 25 fps ends both counts.
    steps = [_step(1, 30.0), _step(2, 30.0), _step(3, 30.0)]
    steps.append(dataclasses.replace(_step(4, 30.0), server_cpu_percent=170.0))
    steps.append(dataclasses.replace(_step(5, 25.0), server_cpu_percent=170.0))
    cluster = DensityFigures(DensityBenchConfig(), cores=2, steps=steps, agents=2)
    assert (cluster.rooms, cluster.rooms_at_frame_rate) == (3, 4)
    single = _figures(0, [30.0, 30.0, 30.0, 24.0], [[100]] * 4)
    comparison = DensityComparison(single=single, cluster=cluster)
    assert single.rooms_at_frame_rate == 3 and comparison.meets_rooms_target
    assert not dataclasses.replace(cluster, steps=steps[:3]).rooms_at_frame_rate >= 4

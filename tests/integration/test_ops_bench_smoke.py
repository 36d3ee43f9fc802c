"""bench.load, bench.soak and bench.density (one process, then a cluster), tiny: they
complete and report sane numbers (no timing thresholds)."""

from __future__ import annotations

import math

import pytest

from bench.density import QUICK, format_comparison, run_comparison
from bench.load import LoadConfig, format_load, run_load
from bench.soak import SoakConfig, format_soak, run_soak
from tests.redisserver import require_redis_server


@pytest.mark.timeout(120)
async def test_load_three_clients() -> None:
    figures = await run_load(
        LoadConfig(clients=3, subscribers=1, spread=0.5, settle=1.0, window=2.0)
    )
    assert figures.errors == []
    assert figures.joined == figures.ready == 3 and figures.subscribed == 1
    assert figures.all_accounted and figures.refused == {}
    assert 0 < figures.join_ms_p50 <= figures.join_ms_p95 < 30_000
    assert figures.join_ms_p50 < figures.ready_ms_p50 <= figures.ready_ms_p95
    assert figures.view_fps > 0 and figures.subscriber_fps_min > 0  # rates: bench/
    assert figures.mixed_inputs == 3
    for value in (figures.server_cpu_percent, figures.bench_cpu_percent, figures.server_rss_mb):
        assert math.isfinite(value) and value > 0
    assert "view fps" in "\n".join(format_load(figures))


@pytest.mark.timeout(120)
async def test_soak_six_cycles() -> None:
    figures = await run_soak(SoakConfig(cycles=6, checkpoint=2, concurrency=2, linger=0.0))
    assert figures.failures == [] and figures.completed == 6
    assert [s.after_cycles for s in figures.snapshots] == [0, 2, 6]
    for snapshot in figures.snapshots:
        assert snapshot.participants == snapshot.peer_connections == 0
        assert snapshot.encoders == snapshot.views_running == 0
        assert snapshot.threads >= 1 and snapshot.open_fds > 0 and snapshot.rss_mb > 10
        assert snapshot.tasks >= 1
    assert 0 < figures.cycle_ms_p50 <= figures.cycle_ms_p95
    assert math.isfinite(figures.rss_growth)
    assert "open fds" in "\n".join(format_soak(figures))


@pytest.mark.timeout(150)
async def test_density_one_process_then_cluster() -> None:
    require_redis_server()
    comparison = await run_comparison(QUICK, agents=2)

    for figures in (comparison.single, comparison.cluster):
        assert figures.error is None and figures.node_errors == []
        (step,) = figures.steps
        assert step.rooms == 1
        assert all(rate > 0 for rate in step.view_fps + step.received_fps_min)
        assert len(step.view_fps) == 1  # the room's one view, wherever it runs
        assert math.isfinite(step.server_cpu_percent) and step.server_cpu_percent > 0
        (joins,) = figures.join_to_first_frame_ms
        assert len(joins) == QUICK.participants
        assert all(math.isfinite(t) and 0 < t < 40_000 for t in joins)
    # The room was placed on one of the two agents; their /metrics were merged.
    (cluster_step,) = comparison.cluster.steps
    assert sorted(cluster_step.rooms_by_agent) == [0, 1]
    assert cluster_step.portal_lag_p99_ms is not None
    assert comparison.common_rooms == 1
    assert all(math.isfinite(v) and v > 0 for v in comparison.cluster_join_ms)
    printed = "\n".join(format_comparison(comparison))
    assert "join -> first mixed frame" in printed and "cluster: 1 portal + 2 agent(s)" in printed
    # The views' inputs were counted; each process of the cluster has its CPU figure.
    for figures in (comparison.single, comparison.cluster):
        (step,) = figures.steps
        assert len(step.input_fps) == 1 and step.input_fps[0] > 0
        assert step.udp_drops >= 0 and step.encode_ms_per_frame > 0
    assert {"redis", "portal-1", "agent-1", "agent-2"} <= set(cluster_step.nodes_cpu_percent)

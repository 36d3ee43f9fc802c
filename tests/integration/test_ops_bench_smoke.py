"""bench.load and bench.soak, tiny: they complete and report sane numbers (no timing thresholds)."""

from __future__ import annotations

import math

import pytest

from bench.load import LoadConfig, format_load, run_load
from bench.soak import SoakConfig, format_soak, run_soak


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
    assert figures.view_fps > 5 and figures.subscriber_fps_min > 5
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

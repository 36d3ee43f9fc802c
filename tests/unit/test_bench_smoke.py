"""The mixer benchmark runs and reports sane numbers (no timing thresholds: machines differ)."""

from __future__ import annotations

import math

import pytest

from bench.mixer import format_mixer, format_subscribers
from bench.pipeline import MixerBenchConfig, PipelineFigures, run_mixer_bench
from bench.subscribers import SubscriberBenchConfig, run_subscriber_bench

TINY = MixerBenchConfig(input_seconds=10 / 30, measured_frames=12)


def _check_pipeline(figures: PipelineFigures, stages: set[str]) -> None:
    assert figures.frames == TINY.measured_frames
    assert set(figures.stages) == stages
    for stage in (*figures.stages.values(), figures.total):
        for value in (stage.median_ms, stage.p90_ms, stage.mean_ms):
            assert math.isfinite(value) and value > 0
        assert stage.p90_ms >= stage.median_ms
    # The split adds up: every frame's total is the sum of its stages.
    split = sum(stage.mean_ms for stage in figures.stages.values())
    assert math.isclose(split, figures.total.mean_ms, rel_tol=1e-9)
    medians = sum(stage.median_ms for stage in figures.stages.values())
    assert 0.5 * figures.total.median_ms < medians < 2 * figures.total.median_ms
    assert 0 <= figures.helper_thread_share < 1
    assert figures.output_kbps > 0


def test_view_pipelines_quick() -> None:
    figures = run_mixer_bench(TINY)

    _check_pipeline(figures.tessera, {"decode", "composite", "encode"})
    _check_pipeline(figures.codec_only, {"decode", "encode"})
    assert figures.regions == 9
    assert figures.input_kbps > 0
    # The codec-only encoder got the very pictures Tessera composed.
    assert figures.same_bitstream
    assert math.isfinite(figures.ratio) and figures.ratio > 0
    assert figures.ratio == pytest.approx(
        figures.tessera.total.median_ms / figures.codec_only.total.median_ms
    )
    assert figures.core_percent == pytest.approx(figures.tessera.total.median_ms * 3)
    report = "\n".join(format_mixer(figures))
    assert "composite" in report and "Tessera / codec-only" in report


@pytest.mark.timeout(90)
@pytest.mark.parametrize("full_receivers", [False, True], ids=["rtp-headers", "full-receivers"])
async def test_two_subscribers_quick(full_receivers: bool) -> None:
    config = SubscriberBenchConfig(
        steps=(0, 2), window=1.5, settle=0.5, full_receivers=full_receivers
    )
    figures = await run_subscriber_bench(config)

    assert [step.subscribers for step in figures.steps] == [0, 2]
    for step in figures.steps:
        for value in (step.server_cpu_percent, step.bench_cpu_percent, step.window_s):
            assert math.isfinite(value) and value >= 0
    idle, watched = figures.steps
    # Media reached both subscribers: counted from the RTP headers, or through the
    # encoded-frame taps (nothing decoded); both count whole frames at about 30 a second.
    assert figures.late_taps == 0
    assert 0 < watched.fps_min <= watched.fps_mean < 40 and watched.kbps_mean > 100
    assert idle.fps_mean == 0
    assert watched.server_cpu_percent > 0
    assert [(c.start, c.end) for c in figures.costs] == [(0, 2)]
    assert "subscribers" in "\n".join(format_subscribers(figures))

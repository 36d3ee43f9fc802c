"""Every benchmark command completes in its --quick mode and reports sane figures.

No timing thresholds: the figures depend on the machine and its load. These
check that each command runs end to end (server, real aiortc peers, tables,
JSON) and that what it reports is physically possible.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench import adaptive, audio, compositor, density, fanout, latency, memory


def _run(module: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Any, str]:
    target = tmp_path / "figures.json"
    assert module.main(["--quick", "--json", str(target)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(target.read_text())
    assert result["machine"]["cores"] >= 1
    return result["figures"], printed


def _finite(*values: float) -> bool:
    return all(isinstance(v, int | float) and math.isfinite(v) for v in values)


def test_compositor_quick(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    figures, printed = _run(compositor, tmp_path, capsys)

    for name in ("tessera", "xstack"):
        stage = figures[name]
        assert _finite(stage["median_ms"], stage["p90_ms"]) and stage["median_ms"] > 0
    # Both drew the same picture: same rectangles, same scaler, same canvas.
    assert figures["max_pixel_difference"] <= 2
    assert len(figures["rects"]) == 9
    gst = figures["gstreamer"]
    if gst["available"] and gst["frames"]:
        assert _finite(gst["composite_ms"], gst["pipeline_ms"])
    assert "Tessera / xstack" in printed
    # Today's composite against the gallery with labels and marks, in the same run.
    picture = figures["picture"]
    for name in ("before_composite", "after_composite", "before_frame", "after_frame"):
        assert _finite(picture[name]["median_ms"]) and picture[name]["median_ms"] > 0
    assert picture["after_frame"]["median_ms"] > picture["after_composite"]["median_ms"]
    assert picture["labels_rendered"] == 9  # once per name, not once per frame
    assert "per view frame: now / today" in printed


def test_latency_code_round_trip() -> None:
    for number in (0, 1, 77, 4095, 4096 + 5):
        assert latency.decode_number(latency.encode_number(number)) == number % 4096
    bits = latency.encode_number(1234)
    bits[3] ^= 1
    assert latency.decode_number(bits) is None  # a misread block fails the check


def test_latency_number_survives_scaling() -> None:
    import av

    yuv = np.full((540, 640), 128, np.uint8)
    latency.draw_number(yuv[:360], 321)
    frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
    assert latency.read_number(frame.reformat(width=1280, height=720)) == 321


@pytest.mark.timeout(60)
def test_latency_quick(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    figures, printed = _run(latency, tmp_path, capsys)

    for name in ("video_mixed", "video_forward", "audio_mixed"):
        delays = figures[name]
        assert delays["samples"] > 0, name
        assert 0 < delays["min_ms"] <= delays["median_ms"] <= delays["p95_ms"] < 2000, name
    # The mixed path decodes, composites and encodes again: it cannot beat forwarding.
    assert figures["video_mixed"]["median_ms"] > figures["video_forward"]["median_ms"]
    assert "video (mixed) median" in printed


@pytest.mark.timeout(120)
def test_fanout_quick(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    figures, printed = _run(fanout, tmp_path, capsys)

    # Both ways of sending subscribers, in one run.
    assert list(figures["runs"]) == ["aiortc", "shared"]
    for run in figures["runs"].values():
        steps = run["steps"]
        assert [s["subscribers"] for s in steps] == [0, 2]
        for step in steps[1:]:
            assert step["fps_min"] > 0 and step["view_fps"] > 0  # frames flowed (rates: bench/)
            assert _finite(step["server_cpu_percent"]) and step["server_cpu_percent"] > 0
        assert run["late_taps"] == 0
    assert len(figures["load_before"]) == 3
    assert "per sub" in printed and "aiortc    shared" in printed


@pytest.mark.timeout(60)
def test_audio_quick(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    figures, printed = _run(audio, tmp_path, capsys)

    steps = figures["steps"]
    assert [s["participants"] for s in steps] == [2, 4]
    for step in steps:
        # 50 frames a second when everything keeps up; a loaded machine may lose a few.
        assert 0 < step["audio_fps_mean"] <= 55
        assert step["server_cpu_percent"] > 0 and step["per_core"] > 0
    assert "participants per core" in printed


@pytest.mark.timeout(60)
def test_memory_quick(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    figures, printed = _run(memory, tmp_path, capsys)

    assert 20 < figures["idle_mb"] < 2000
    assert figures["one_room_mb"] > figures["idle_mb"]
    assert figures["peak_mb"] >= figures["two_rooms_mb"]
    assert len(figures["after_leave_mb"]) == 1
    assert figures["video_fps_min"] > 0  # frames flowed; how fast is the bench's figure
    assert "per participant" in printed


@pytest.mark.timeout(60)
def test_density_quick(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    figures, printed = _run(density, tmp_path, capsys)

    assert figures["error"] is None
    (step,) = figures["steps"]
    assert step["rooms"] == 1
    assert all(rate > 0 for rate in step["view_fps"] + step["received_fps_min"])
    assert step["server_cpu_percent"] > 0
    assert "rooms that fit" in printed


def test_ingest_quick(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bench import ingest

    figures, printed = _run(ingest, tmp_path, capsys)
    sources = figures["sources"]
    assert set(sources) == {"pass-through", "pass-through + decode", "transcode"}
    for result in sources.values():
        assert _finite(result["percent_of_one_core"]) and result["percent_of_one_core"] >= 0
        assert result["video_packets_per_second"] > 0 and result["audio_packets_per_second"] > 0
    assert "(as is)" in sources["pass-through"]["plans"]["video"]
    assert "(transcoded)" in sources["transcode"]["plans"]["video"]
    assert sources["pass-through + decode"]["decoded_frames"] > 0
    assert "streaming-in benchmark" in printed


def test_adaptive_quick(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    figures, printed = _run(adaptive, tmp_path, capsys)
    assert len(figures["top_ms"]) == len(figures["ladder_ms"]) == len(figures["four_rungs_ms"])
    assert all(_finite(v) and v > 0 for v in figures["top_ms"] + figures["ladder_ms"])
    # More rungs cost more: each of the default ladder's lower rungs is encoded on top.
    assert np.mean(figures["ladder_ms"]) > np.mean(figures["top_ms"])
    assert "whole default ladder / top rung alone" in printed
    # The FEC encode runs beside the plain one: it costs something, both in one run.
    assert len(figures["audio_plain_ms"]) == len(figures["audio_fec_ms"]) > 0
    assert np.mean(figures["audio_fec_ms"]) > np.mean(figures["audio_plain_ms"])
    assert "the FEC encode adds" in printed


def test_forwardadapt_figures_and_verdicts() -> None:
    # The scenario itself needs root and a network lab: tests/integration/test_forward_adaptive.py
    # runs it (bench.forwardadapt.RunWatch); here the figures' arithmetic and the table.
    from bench import forwardadapt
    from bench.report import json_ready

    figures = forwardadapt.ForwardAdaptFigures(
        publisher_bitrate=1_500_000,
        runs=[
            forwardadapt.RunFigures(
                decided=0.6, switched=0.7, settled=2.0, settled_size=(320, 180),
                fps_on_lower=29.5, longest_gap_ms=40.0, climb_decided=5.5, climbed=5.6,
            ),
            forwardadapt.RunFigures(
                decided=0.7, switched=0.8, settled=12.5, settled_size=(160, 90),
                fps_on_lower=24.0, longest_gap_ms=600.0,
            ),
        ],
    )  # fmt: skip
    assert figures.settle_times == [2.0, 12.5] and figures.climb_times == [5.6]
    assert figures.settled_in_time == 1 and figures.climbed_in_time == 1
    lines = forwardadapt.format_figures(figures, forwardadapt.ForwardAdaptConfig(runs=2))
    text = "\n".join(lines)
    assert "settled within 10 s: 1 of 2 (MISSED)" in text
    assert "back on top within 20 s: 1 of 2 (MISSED)" in text
    assert "longest gap 600 ms" in text
    assert "no gap over 500 ms on the lower rungs: 1 of 2 (MISSED)" in text
    assert "back on top missed" in forwardadapt.describe_run(figures.runs[1])
    assert json_ready(figures)["settled_in_time"] == 1
    # A lab's first looks: the first moment each condition held.
    timeline = forwardadapt.Timeline()
    state = {"rung": 0}
    timeline.watch("down", lambda: state["rung"] > 0)
    timeline.look(1.0)
    state["rung"] = 2
    timeline.look(1.5)
    state["rung"] = 0
    timeline.look(2.0)
    assert timeline.since("down", 0.5) == 1.0 and timeline.since("up", 0.5) is None

"""Canvas, Tile and the overlay hook: drawing is undone, budgets are enforced, config is checked."""

from __future__ import annotations

import logging
import time

import numpy as np
import pydantic
import pytest

from tessera.mixer.canvas import Canvas, Tile, rgb_to_yuv
from tessera.mixer.clockoverlay import ClockOverlay
from tessera.mixer.overlay import (
    EXAMPLE_OVERLAY,
    OverlayError,
    OverlayRunner,
    allow_overlays,
    allowed_overlays,
    check_overlay,
    load_overlay,
)
from tessera.mixer.viewoptions import ViewOptions
from tessera.portal.config import ConfigError, load_config
from tessera.portal.server import conference_settings

W, H = 64, 48


def canvas_of(rgb: tuple[int, int, int]) -> tuple[np.ndarray, Canvas]:
    buffer = np.empty((H * 3 // 2, W), np.uint8)
    y, u, v = rgb_to_yuv(rgb)
    buffer[:H] = y
    buffer[H : H + H // 4] = u
    buffer[H + H // 4 :] = v
    return buffer, Canvas(buffer, W, H)


def rgba(rgb: tuple[int, int, int], alpha: int, w: int = 8, h: int = 6) -> np.ndarray:
    image = np.zeros((h, w, 4), np.uint8)
    image[..., :3] = rgb
    image[..., 3] = alpha
    return image


def test_an_opaque_tile_replaces_and_a_clear_one_keeps_the_picture() -> None:
    buffer, canvas = canvas_of((0, 0, 200))
    before = buffer.copy()
    canvas.blend(Tile.from_rgba(rgba((255, 255, 255), 255)), 10, 10)
    assert abs(int(buffer[12, 12]) - rgb_to_yuv((255, 255, 255))[0]) <= 1
    assert buffer[5, 5] == before[5, 5]  # outside the tile
    canvas.restore()
    assert np.array_equal(buffer, before)
    canvas.blend(Tile.from_rgba(rgba((255, 0, 0), 0)), 10, 10)
    assert np.array_equal(buffer, before)


def test_half_transparency_mixes_luma_halfway_and_restore_undoes_in_order() -> None:
    buffer, canvas = canvas_of((0, 0, 0))
    before = buffer.copy()
    canvas.blend(Tile.from_rgba(rgba((255, 255, 255), 128)), 0, 0)
    expected = (16 * 127 + 235 * 128) / 255
    assert abs(int(buffer[2, 2]) - expected) <= 2
    canvas.fill((4, 4, 10, 10), (255, 0, 0))
    canvas.frame((0, 0, W, H), 2, (0, 255, 0))
    assert buffer[0, 30] == rgb_to_yuv((0, 255, 0))[0]
    canvas.restore()
    assert np.array_equal(buffer, before)


def test_drawing_is_clipped_to_the_canvas_and_made_even() -> None:
    buffer, canvas = canvas_of((10, 10, 10))
    before = buffer.copy()
    canvas.blend(Tile.from_rgba(rgba((255, 255, 255), 255, w=7, h=5)), W - 3, H - 3)
    assert buffer[H - 1, W - 1] != before[H - 1, W - 1]
    canvas.blend(Tile.from_rgba(rgba((255, 255, 255), 255)), -100, -100)  # wholly outside
    assert canvas.clip((W, 0, 10, 10)) is None
    assert canvas.clip((3, 3, 4, 4)) == (2, 2, 6, 6)
    canvas.restore()
    assert np.array_equal(buffer, before)
    with pytest.raises(ValueError):
        Tile.from_rgba(np.zeros((4, 4, 3), np.uint8))


class SlowOverlay:
    """Burns ``cost`` seconds of CPU per draw: a real overrun."""

    def __init__(self, cost: float) -> None:
        self.cost = cost
        self.calls = 0

    def draw(self, canvas: Canvas, now: float) -> None:
        self.calls += 1
        end = time.thread_time() + self.cost
        while time.thread_time() < end:
            pass
        canvas.fill((0, 0, 4, 4), (255, 255, 255))


class BrokenOverlay:
    def draw(self, canvas: Canvas, now: float) -> None:
        raise RuntimeError("no logo file")


def test_a_slow_overlay_is_skipped_so_that_it_keeps_its_budget_on_average(
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, canvas = canvas_of((0, 0, 0))
    slow = SlowOverlay(0.010)
    fast = SlowOverlay(0.0)
    runner = OverlayRunner([("slow", slow), ("fast", fast)], budget=0.002)
    frames = 60
    spent = time.thread_time()
    with caplog.at_level(logging.WARNING, logger="tessera.mixer.overlay"):
        for frame in range(frames):
            runner.draw(canvas, float(frame) / 30)
            canvas.restore()
    spent = time.thread_time() - spent
    counts = runner.counts()
    assert fast.calls == frames and counts["fast"]["skipped"] == 0
    # Each overrun of >= 5 budgets costs at least 4 skipped frames, doubling in a row.
    assert slow.calls <= frames // 5 + 1 and counts["slow"]["overruns"] == slow.calls
    assert counts["slow"]["skipped"] == frames - slow.calls
    # The CPU it had is within budget over the run (one overrun's worth of slack).
    assert slow.calls * 0.010 <= frames * 0.002 + 0.010
    assert spent >= slow.calls * 0.010
    # Logged, but not once per overrun: at most once per LOG_INTERVAL (10 s; 2 s went by).
    lines = [r for r in caplog.records if "overlay slow" in r.getMessage()]
    assert len(lines) == 1 and "budget 2" in lines[0].getMessage()


def test_an_overlay_that_raises_is_skipped_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    _, canvas = canvas_of((0, 0, 0))
    runner = OverlayRunner([("broken", BrokenOverlay())], budget=0.002)
    with caplog.at_level(logging.WARNING, logger="tessera.mixer.overlay"):
        for frame in range(10):
            runner.draw(canvas, float(frame))
    counts = runner.counts()["broken"]
    assert counts["errors"] >= 2 and counts["skipped"] >= 4
    assert any("RuntimeError: no logo file" in r.getMessage() for r in caplog.records)


def test_overlays_load_only_when_allowed_and_well_formed() -> None:
    check_overlay(EXAMPLE_OVERLAY, {"position": "bottom-left"})
    clock = load_overlay(EXAMPLE_OVERLAY, {"utc": True})
    assert isinstance(clock, ClockOverlay)
    with pytest.raises(OverlayError, match="not allowed"):
        check_overlay("os:system", {})
    with pytest.raises(OverlayError, match="not a 'module:Class'"):
        check_overlay("os.system()", {})
    with pytest.raises(OverlayError, match="options do not fit"):
        check_overlay(EXAMPLE_OVERLAY, {"colour": "red"})
    with pytest.raises(OverlayError, match="ValueError: position must be"):
        load_overlay(EXAMPLE_OVERLAY, {"position": "middle"})
    allow_overlays(["tests.unit.test_overlay:BrokenOverlay", "tests.unit.test_overlay:Nothing"])
    check_overlay("tests.unit.test_overlay:BrokenOverlay", {})
    with pytest.raises(OverlayError, match="is not a class with a draw"):
        check_overlay("tests.unit.test_overlay:Nothing", {})
    with pytest.raises(OverlayError):
        allow_overlays(["not a name"])


def test_view_options_refuse_a_disallowed_overlay_with_a_clear_message() -> None:
    view = ViewOptions.model_validate(
        {"video": {"overlays": [{"overlay": EXAMPLE_OVERLAY, "options": {"utc": True}}]}}
    )
    assert view.video is not None and view.video.overlays[0].options == {"utc": True}
    with pytest.raises(pydantic.ValidationError, match="not allowed on this server"):
        ViewOptions.model_validate({"video": {"overlays": [{"overlay": "subprocess:Popen"}]}})
    with pytest.raises(pydantic.ValidationError, match=r"overlayBudgetMs|overlay_budget_ms"):
        ViewOptions.model_validate({"video": {"overlayBudgetMs": 0}})


def test_the_clock_draws_the_time_and_renders_once_a_second() -> None:
    big = np.zeros((360 * 3 // 2, 640), np.uint8)
    big[:] = 16
    surface = Canvas(big, 640, 360)
    clock = ClockOverlay("top-left", utc=True)
    clock.draw(surface, 0.0)
    first, first_text = clock._tile, clock._text
    clock.draw(surface, 0.0)
    assert clock._tile is first or clock._text != first_text  # a new second: a new tile
    assert big[:40, :200].max() > 150  # white digits top-left
    assert clock.text(0.0) == "00:00:00"
    surface.restore()
    assert big.max() == 16


def test_the_servers_overlays_setting_allows_them_in_views() -> None:
    spec = "tests.unit.test_overlay:SlowOverlay"
    config = load_config(None, env={}, overrides={"mixer.overlays": [spec]})
    assert spec not in allowed_overlays()
    conference_settings(config, lambda: "localhost")
    assert spec in allowed_overlays()
    check_overlay(spec, {"cost": 0.0})
    with pytest.raises(ConfigError, match="overlay class name"):
        load_config(None, env={}, overrides={"mixer.overlays": ["os.system()"]})

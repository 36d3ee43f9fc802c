"""Connection quality: the figures the room service makes of a participant's subscriptions
(conference/linkquality.py), and the page's one classification of figures into good, fair
or poor (``connectionQuality`` in web/js/tessera.js, run by Node)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tessera.conference.linkquality import (
    LinkFigures,
    ReceivedLoss,
    subscription_figures,
    worst,
)
from tests.nodedriver import ROOT, run_node

NODE_SCRIPT = Path(__file__).with_name("quality_node.mjs")


def described(**figures: Any) -> dict[str, Any]:
    """An adapted subscription's describe(), on the top rung after two reports."""
    base: dict[str, Any] = {
        "estimatedBitrate": 2_500_000,
        "fractionLost": 0.0,
        "roundTripTime": 0.02,
        "reports": 2,
        "congested": False,
        "rung": 0,
        "rungs": 4,
    }
    return {**base, **figures}


@pytest.mark.parametrize(
    ("figures", "expected"),
    [
        ({}, LinkFigures(loss=0.0, rtt=0.02, limited=False)),
        ({"fractionLost": 0.2, "rung": 2}, LinkFigures(loss=0.2, rtt=0.02, limited=True)),
        # An estimate that cannot carry what is sent holds video back before a switch; one
        # below the top rung's nominal bitrate does not (a still picture is sent below it).
        ({"congested": True}, LinkFigures(loss=0.0, rtt=0.02, limited=True)),
        ({"estimatedBitrate": 90_000}, LinkFigures(loss=0.0, rtt=0.02, limited=False)),
        # No receiver report yet: loss and round trip are not measured (0 means nothing).
        ({"reports": 0, "roundTripTime": None}, LinkFigures(limited=False)),
        ({"estimatedBitrate": None, "roundTripTime": None}, LinkFigures(loss=0.0)),
        # Figures that are not figures are not taken; a share stays within 0..1.
        (
            {"fractionLost": float("nan"), "roundTripTime": -1.0, "rung": True, "congested": 1},
            LinkFigures(loss=None, rtt=None, limited=False),
        ),
        ({"fractionLost": 7.0, "reports": "2"}, LinkFigures(limited=False)),
        ({"fractionLost": 7.0}, LinkFigures(loss=1.0, rtt=0.02)),
    ],
)
def test_subscription_figures(figures: dict[str, Any], expected: LinkFigures) -> None:
    assert subscription_figures(described(**figures)) == expected


def test_a_participant_is_as_good_as_its_worst_path() -> None:
    paths = [
        LinkFigures(loss=0.01, rtt=0.3),
        LinkFigures(loss=0.15, rtt=None, limited=True),
        LinkFigures(),
    ]
    assert worst(paths) == LinkFigures(loss=0.15, rtt=0.3, limited=True)
    assert worst([]) == LinkFigures()
    assert worst([LinkFigures()]).to_json() == {"loss": None, "rtt": None, "limited": False}


def test_a_publishers_loss_is_measured_over_whole_windows() -> None:
    meter = ReceivedLoss(window=1.0)
    assert meter.update(0.0, 100, 100) is None  # one look: nothing to compare yet
    assert meter.update(0.4, 150, 140) is None  # within the window: not yet
    assert meter.update(1.0, 200, 180) == pytest.approx(0.2)  # 80 of the 100 sent
    assert meter.update(1.5, 300, 300) == pytest.approx(0.2)  # the last whole window
    # Retransmitted packets arrive twice: never below no loss.
    assert meter.update(2.0, 250 + 50, 330) == pytest.approx(0.0)
    assert meter.update(3.0, 300, 330) is None  # nothing sent (paused): nothing to judge
    assert meter.figures() == LinkFigures()
    # Counts that go back (a receiver restarted) start a new window, keeping the figure.
    assert meter.update(4.0, 400, 405) == pytest.approx(0.25)
    assert meter.update(4.5, 10, 10) == pytest.approx(0.25)
    assert meter.update(5.5, 110, 60) == pytest.approx(0.5)
    assert meter.figures() == LinkFigures(loss=0.5)


def levels(figures: list[dict[str, Any]]) -> list[str]:
    needs = ROOT / "node_modules" / "socket.io-client"  # web/js/tessera.js imports it
    answer: list[str] = run_node(NODE_SCRIPT, figures, needs, "the page's connectionQuality")
    return answer


def test_the_page_classifies_figures_into_levels() -> None:
    table = [
        ({"loss": None, "rtt": None, "limited": False}, "unknown"),
        ({"loss": 0.0, "rtt": 0.02, "limited": False}, "good"),
        ({"loss": None, "rtt": 0.05, "limited": False}, "good"),
        ({"loss": 0.05, "rtt": 0.02, "limited": False}, "fair"),
        ({"loss": 0.0, "rtt": 0.3, "limited": False}, "fair"),
        ({"loss": 0.0, "rtt": 0.02, "limited": True}, "fair"),
        ({"loss": 0.2, "rtt": 0.02, "limited": False}, "poor"),
        ({"loss": 0.0, "rtt": 0.6, "limited": True}, "poor"),
    ]
    assert levels([figures for figures, _ in table]) == [level for _, level in table]


def test_server_figures_and_the_page_agree_on_a_lossy_subscriber() -> None:
    # What the room service sends for a participant whose subscription loses a fifth of
    # its packets and fell two rungs, as the page judges it; and one not yet measured.
    lossy = worst([subscription_figures(described(fractionLost=0.2, rung=2))])
    fresh = worst([subscription_figures(described(reports=0))])
    assert levels([lossy.to_json(), fresh.to_json()]) == ["poor", "unknown"]

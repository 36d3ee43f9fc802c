"""The agent's limit on forward transcodes running at once."""

from __future__ import annotations

import os

import pytest

from tessera.webrtc_agent.transcodelimit import PER_CORE, TranscodeLimit


def test_transcodes_past_the_limit_are_refused_until_one_stops() -> None:
    limit = TranscodeLimit(2)
    assert limit.take() and limit.take()
    assert not limit.take()
    assert (limit.running, limit.refused) == (2, 1)
    assert "runs its 2 transcodes" in limit.refusal()
    limit.give_back()
    assert limit.take()
    for _ in range(5):
        limit.give_back()  # more stops than starts never go below none
    assert limit.running == 0


def test_zero_is_four_per_core_and_a_negative_limit_is_refused() -> None:
    assert TranscodeLimit(0).limit == PER_CORE * (os.cpu_count() or 1)
    with pytest.raises(ValueError, match="negative"):
        TranscodeLimit(-1)

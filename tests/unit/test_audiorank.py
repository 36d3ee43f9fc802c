"""AudioRanker: the most active inputs in stable, numbered slots (OWT's active audio)."""

from __future__ import annotations

import numpy as np
import pytest

from tessera.mixer.audiomix import MIN_DBOV, level_dbov
from tessera.mixer.audiorank import AudioRanker, RankChange

LOUD = -20.0
SOFT = -40.0
SILENT = MIN_DBOV


def run(ranker: AudioRanker, levels: dict[str, float], ticks: int) -> list[RankChange]:
    changes: list[RankChange] = []
    for _ in range(ticks):
        changes += ranker.update(levels)
    return changes


def test_level_of_known_signals() -> None:
    assert level_dbov(np.zeros(1920, np.int16)) == MIN_DBOV
    square = np.full(1920, 32767, np.int16)
    assert level_dbov(square) == pytest.approx(0.0, abs=0.01)
    t = np.arange(1920)
    sine = np.rint(0.5 * 32767 * np.sin(2 * np.pi * 440 * t / 48000)).astype(np.int16)
    assert level_dbov(sine) == pytest.approx(-9.03, abs=0.1)  # -6 dB amplitude, -3 dB for a sine


def test_free_slots_fill_at_once_loudest_first() -> None:
    ranker = AudioRanker(3)
    changes = ranker.update({"b": SOFT, "a": SILENT, "c": LOUD, "d": SILENT})
    assert changes == [
        RankChange(0, "c", speaking=True),
        RankChange(1, "b", speaking=True),
        RankChange(2, "a", speaking=False),  # a silent input fills a free slot too
    ]
    assert ranker.slots == ("c", "b", "a")
    assert ranker.update({"b": SOFT, "a": SILENT, "c": LOUD, "d": SILENT}) == []


def test_a_holder_keeps_its_slot_while_a_newcomer_speaks_as_loud() -> None:
    ranker = AudioRanker(2)
    run(ranker, {"a": LOUD, "b": LOUD}, 5)
    # c speaks as loud as the holders: not 6 dB louder, so nobody is displaced.
    assert run(ranker, {"a": LOUD, "b": LOUD, "c": LOUD}, 100) == []
    assert ranker.slots == ("a", "b")


def test_a_louder_speaker_takes_the_quietest_slot_after_min_ticks() -> None:
    ranker = AudioRanker(2, min_ticks=10)
    run(ranker, {"a": LOUD, "b": SOFT}, 50)
    # c goes in b's slot (b is the quietest), after ten ticks of being louder, not before.
    changes = run(ranker, {"a": LOUD, "b": SOFT, "c": -25.0}, 9)
    assert changes == []
    assert ranker.update({"a": LOUD, "b": SOFT, "c": -25.0}) == [RankChange(1, "c", speaking=True)]
    assert ranker.slots == ("a", "c")


def test_a_quiet_newcomer_never_displaces_anyone() -> None:
    ranker = AudioRanker(1, threshold_dbov=-50.0)
    run(ranker, {"a": SILENT}, 100)
    # b is louder than a by far, but not speaking (under the threshold): a keeps the slot.
    assert run(ranker, {"a": SILENT, "b": -60.0}, 100) == []
    assert run(ranker, {"a": SILENT, "b": -30.0}, 10) == [RankChange(0, "b", speaking=True)]


def test_brief_pauses_do_not_lose_the_slot() -> None:
    ranker = AudioRanker(1)
    run(ranker, {"a": LOUD}, 5)
    changes: list[RankChange] = []
    for tick in range(200):
        # a talks in bursts (200 ms on, 100 ms off); b talks steadily 3 dB quieter
        a_level = LOUD if tick % 15 < 10 else SILENT
        changes += ranker.update({"a": a_level, "b": LOUD - 3})
    assert changes == []


def test_removed_input_frees_its_slot_for_the_next_loudest() -> None:
    ranker = AudioRanker(2)
    run(ranker, {"a": LOUD, "b": LOUD, "c": SOFT}, 5)
    assert ranker.slots == ("a", "b")
    assert ranker.remove("a") == [RankChange(0, None)]
    assert ranker.remove("a") == []
    assert ranker.update({"b": LOUD, "c": SOFT}) == [RankChange(0, "c", speaking=True)]
    assert ranker.remove("zzz") == []


def test_an_input_missing_from_ticks_fades_and_yields_to_a_speaker() -> None:
    ranker = AudioRanker(1)
    run(ranker, {"a": LOUD}, 5)
    # a stops sending (paused); b speaks: a's envelope falls and b takes over.
    changes = run(ranker, {"b": SOFT}, 60)
    assert changes == [RankChange(0, "b", speaking=True)]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        AudioRanker(0)
    with pytest.raises(ValueError):
        AudioRanker(3, min_ticks=0)

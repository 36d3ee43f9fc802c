"""AudioMix (sum, mix-minus, limiter, levels, fades), TalkerSelection and VoiceActivity."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from tessera.mixer.audiomix import (
    FRAME_SAMPLES,
    INT16_MAX,
    MIN_DBOV,
    AudioMix,
    TalkerSelection,
    VoiceActivity,
)

RATE = 48_000
Int16Array = npt.NDArray[np.int16]


def tone(freq: float, amplitude: float, *, channels: int = 2, tick: int = 0) -> Int16Array:
    """A sine at `amplitude` of full scale, phase-continuous across ticks."""
    n = np.arange(tick * FRAME_SAMPLES, (tick + 1) * FRAME_SAMPLES)
    mono = np.rint(amplitude * INT16_MAX * np.sin(2 * np.pi * freq * n / RATE)).astype(np.int16)
    return np.repeat(mono, channels) if channels == 2 else mono


def energy_at(signal: Int16Array, freq: float, channels: int = 2) -> float:
    """Amplitude (fraction of full scale) of the component at `freq` in the left channel."""
    left = signal.reshape(-1, channels)[:, 0].astype(np.float64)
    n = np.arange(left.size)
    phasor = np.exp(-2j * np.pi * freq * n / RATE)
    return float(2 * abs(np.dot(left, phasor)) / left.size / INT16_MAX)


# 20 ms holds whole periods of multiples of 50 Hz: the DFT bins do not leak.
A_HZ, B_HZ = 400.0, 1000.0


def test_mix_contains_both_tones() -> None:
    result = AudioMix().mix({"a": tone(A_HZ, 0.25), "b": tone(B_HZ, 0.25)})
    assert result.full.dtype == np.int16
    assert result.full.shape == (2 * FRAME_SAMPLES,)
    assert energy_at(result.full, A_HZ) == pytest.approx(0.25, abs=0.01)
    assert energy_at(result.full, B_HZ) == pytest.approx(0.25, abs=0.01)


def test_mix_minus_excludes_own_input() -> None:
    result = AudioMix().mix({"a": tone(A_HZ, 0.25), "b": tone(B_HZ, 0.25)})
    assert set(result.minus) == {"a", "b"}
    assert energy_at(result.minus["a"], A_HZ) < 1e-3
    assert energy_at(result.minus["a"], B_HZ) == pytest.approx(0.25, abs=0.01)
    assert energy_at(result.minus["b"], B_HZ) < 1e-3
    assert energy_at(result.minus["b"], A_HZ) == pytest.approx(0.25, abs=0.01)
    # Below the limiter's knee everything is exact integer arithmetic.
    np.testing.assert_array_equal(result.minus["a"], tone(B_HZ, 0.25))


def test_three_inputs_exact_sum_and_minus() -> None:
    frames = {k: tone(f, 0.1) for k, f in (("a", 200.0), ("b", 600.0), ("c", 1400.0))}
    result = AudioMix().mix(frames)
    total = sum(f.astype(np.int32) for f in frames.values())
    np.testing.assert_array_equal(result.full, total)
    for key, frame in frames.items():
        np.testing.assert_array_equal(result.minus[key], total - frame)


def test_single_input_minus_is_silence_and_no_inputs_is_silence() -> None:
    mix = AudioMix()
    result = mix.mix({"a": tone(A_HZ, 0.5)})
    assert not result.minus["a"].any()
    empty = mix.mix({})
    assert empty.full.shape == (2 * FRAME_SAMPLES,) and not empty.full.any()
    assert empty.minus == {} and empty.levels == {}


def test_fifty_full_scale_inputs_do_not_wrap() -> None:
    mix = AudioMix()
    positive = {f"p{i}": np.full(2 * FRAME_SAMPLES, INT16_MAX, np.int16) for i in range(50)}
    for _ in range(5):
        result = mix.mix(positive)
        for out in [result.full, *result.minus.values()]:
            assert out.dtype == np.int16
            assert (out >= 0).all()  # a wrap would flip the sign
            assert out.max() > INT16_MAX // 2  # limited, not muted
    negative = {k: -v for k, v in positive.items()}
    result = mix.mix(negative)
    assert (result.full <= 0).all() and (result.full >= -INT16_MAX).all()


def test_loud_mix_is_limited_smoothly_not_hard_clipped() -> None:
    # Fifty speakers, each at -6 dBFS: the plain sum would clip on most samples.
    mix = AudioMix()
    attack = 72 * 2  # 1.5 ms of stereo samples
    for tick in range(25):
        frames = {f"p{i}": tone(100.0 + 20 * i, 0.5, tick=tick) for i in range(50)}
        result = mix.mix(frames)
        for out in [result.full, *result.minus.values()]:
            magnitude = np.abs(out.astype(np.int32))
            assert magnitude.max() <= INT16_MAX
            # A 25x overload from silence saturates the knee only while the
            # gain ramps down, in the first 1.5 ms; after that nothing sits at
            # full scale.
            saturated = np.flatnonzero(magnitude >= INT16_MAX)
            if tick == 0:
                assert saturated.size == 0 or saturated.max() < attack
            else:
                assert saturated.size == 0
    # After the attack the gain stage holds the mix under the knee (-3 dBFS).
    assert np.abs(result.full.astype(np.int32)).max() <= int(INT16_MAX * 10 ** (-3 / 20)) + 1
    assert np.abs(result.full.astype(np.int32)).max() > INT16_MAX // 4


def test_limiter_releases_back_to_unity() -> None:
    mix = AudioMix()
    loud = {f"p{i}": tone(A_HZ, 0.9) for i in range(10)}
    for _ in range(5):
        mix.mix(loud)
    quiet = {"p0": tone(A_HZ, 0.1)}
    for _ in range(150):  # 3 s, far beyond the 150 ms release
        result = mix.mix(quiet)
    np.testing.assert_array_equal(result.full, tone(A_HZ, 0.1))


def test_levels_in_dbov() -> None:
    frames = {
        "sine": tone(A_HZ, 1.0),
        "half": tone(A_HZ, 0.5),
        "square": np.full(2 * FRAME_SAMPLES, -32768, np.int16),
        "silent": np.zeros(2 * FRAME_SAMPLES, np.int16),
        "mono": tone(A_HZ, 0.1, channels=1),
    }
    levels = AudioMix().mix(frames).levels
    assert levels["sine"] == pytest.approx(-3.01, abs=0.05)
    assert levels["half"] == pytest.approx(-9.03, abs=0.05)
    assert levels["square"] == pytest.approx(0.0, abs=1e-3)
    assert levels["silent"] == MIN_DBOV
    assert levels["mono"] == pytest.approx(-23.01, abs=0.05)
    assert all(MIN_DBOV <= v <= 0.0 for v in levels.values())


def test_mono_input_is_upmixed_to_stereo() -> None:
    mono = tone(A_HZ, 0.3, channels=1)
    result = AudioMix(channels=2).mix({"m": mono, "s": tone(B_HZ, 0.2)})
    frames = result.full.reshape(-1, 2)
    np.testing.assert_array_equal(frames[:, 0], frames[:, 1])
    assert energy_at(result.full, A_HZ) == pytest.approx(0.3, abs=0.01)
    np.testing.assert_array_equal(result.minus["s"], np.repeat(mono, 2))


def test_packed_frame_shape_and_mono_mix() -> None:
    packed = tone(A_HZ, 0.2).reshape(1, -1)  # as av.AudioFrame.to_ndarray() gives 's16'
    result = AudioMix().mix({"a": packed})
    assert result.full.shape == (2 * FRAME_SAMPLES,)
    mono_mix = AudioMix(channels=1).mix({"a": packed, "b": tone(B_HZ, 0.2, channels=1)})
    assert mono_mix.full.shape == (FRAME_SAMPLES,)
    assert energy_at(mono_mix.full, A_HZ, channels=1) == pytest.approx(0.2, abs=0.01)


def test_bad_frames_are_rejected() -> None:
    mix = AudioMix()
    with pytest.raises(ValueError, match="int16"):
        mix.mix({"a": np.zeros(2 * FRAME_SAMPLES, np.float32)})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="samples"):
        mix.mix({"a": np.zeros(100, np.int16)})
    with pytest.raises(ValueError):
        AudioMix(channels=3)


def test_many_inputs_grow_buffers() -> None:
    mix = AudioMix()
    for n in (3, 40, 5):
        frames = {f"p{i}": tone(A_HZ, 0.001) for i in range(n)}
        result = mix.mix(frames)
        assert len(result.minus) == n
        np.testing.assert_array_equal(result.full, n * tone(A_HZ, 0.001).astype(np.int32))


def test_outputs_are_fresh_each_tick() -> None:
    mix = AudioMix()
    first = mix.mix({"a": tone(A_HZ, 0.2)}).full
    kept = first.copy()
    mix.mix({"a": tone(B_HZ, 0.2)})
    np.testing.assert_array_equal(first, kept)


# --- VoiceActivity ---------------------------------------------------------------

SILENT = -90.0
TALK = -30.0
LOUD = -15.0


def run(vad: VoiceActivity, levels: dict[str, float], ticks: int) -> list[tuple[int, str]]:
    changes = []
    for tick in range(ticks):
        changed = vad.update(levels)
        if changed is not None:
            changes.append((tick, changed))
    return changes


def test_speaker_becomes_active_after_min_ticks() -> None:
    vad = VoiceActivity(min_ticks=15)
    assert run(vad, {"a": TALK, "b": SILENT}, 14) == []
    assert vad.active is None
    changes = run(vad, {"a": TALK, "b": SILENT}, 20)
    assert [who for _, who in changes] == ["a"]
    assert vad.active == "a"
    assert vad.changed is False  # only the tick of the change reports it


def test_quiet_input_never_becomes_active() -> None:
    vad = VoiceActivity(threshold_dbov=-50.0)
    assert run(vad, {"a": -60.0, "b": SILENT}, 200) == []
    assert vad.active is None


def test_brief_louder_blip_does_not_switch() -> None:
    vad = VoiceActivity(min_ticks=15)
    run(vad, {"a": TALK, "b": SILENT}, 60)
    assert vad.active == "a"
    assert run(vad, {"a": TALK, "b": LOUD}, 10) == []  # 200 ms cough
    assert run(vad, {"a": TALK, "b": SILENT}, 60) == []
    assert vad.active == "a"


def test_louder_sustained_speaker_takes_over() -> None:
    vad = VoiceActivity(min_ticks=15, switch_margin_db=6.0)
    run(vad, {"a": TALK, "b": SILENT}, 60)
    changes = run(vad, {"a": TALK, "b": LOUD}, 60)
    assert [who for _, who in changes] == ["b"]
    assert 15 <= changes[0][0] < 40
    assert vad.active == "b"


def test_similar_levels_within_margin_do_not_flap() -> None:
    vad = VoiceActivity(switch_margin_db=6.0)
    run(vad, {"a": TALK}, 40)
    assert vad.active == "a"
    assert run(vad, {"a": TALK, "b": TALK + 4.0}, 300) == []


def test_silence_releases_after_hold_ticks() -> None:
    vad = VoiceActivity(hold_ticks=50)
    run(vad, {"a": TALK, "b": SILENT}, 40)
    assert vad.active == "a"
    released_at = None
    for tick in range(120):
        assert vad.update({"a": SILENT, "b": SILENT}) is None
        if vad.changed:
            released_at = tick
            break
    assert vad.active is None
    assert released_at is not None and 50 <= released_at < 60


def test_next_talker_takes_over_from_a_silent_speaker() -> None:
    vad = VoiceActivity(hold_ticks=50, min_ticks=15)
    run(vad, {"a": TALK, "b": SILENT}, 40)
    changes = run(vad, {"a": SILENT, "b": TALK}, 40)
    assert [who for _, who in changes] == ["b"]
    assert changes[0][0] < 30  # before the hold would have released "a"


def test_missing_input_counts_as_silent() -> None:
    vad = VoiceActivity(hold_ticks=20)
    run(vad, {"a": TALK}, 40)
    run(vad, {}, 40)
    assert vad.active is None


def test_remove_clears_active() -> None:
    vad = VoiceActivity()
    run(vad, {"a": TALK, "b": SILENT}, 40)
    assert vad.active == "a"
    vad.remove("b")
    assert vad.active == "a"
    vad.remove("a")
    assert vad.active is None
    assert vad.smoothed("a") is None
    vad.remove("never-seen")  # harmless


def test_vad_is_deterministic() -> None:
    script = [{"a": TALK, "b": SILENT, "c": SILENT}] * 30 + [{"a": TALK, "b": LOUD, "c": LOUD}] * 50
    outcomes = []
    for _ in range(2):
        vad = VoiceActivity()
        outcomes.append([vad.update(levels) for levels in script])
    assert outcomes[0] == outcomes[1]
    # "b" and "c" are equally loud: the tie goes to the smaller id.
    assert [x for x in outcomes[0] if x is not None] == ["a", "b"]


def test_vad_on_mix_levels() -> None:
    mix = AudioMix()
    vad = VoiceActivity()
    for tick in range(40):
        frames = {
            "a": tone(A_HZ, 0.3, tick=tick),
            "b": np.zeros(2 * FRAME_SAMPLES, np.int16),
        }
        vad.update(mix.mix(frames).levels)
    assert vad.active == "a"


# -- mixing only the loudest talkers ------------------------------------------

LOUD, QUIET, SILENT = -20.0, -40.0, MIN_DBOV


def choose(selection: TalkerSelection, levels: dict[str, float], ticks: int) -> frozenset[str]:
    talkers = selection.update(levels)
    for _ in range(ticks - 1):
        talkers = selection.update(levels)
    assert talkers is not None
    return talkers


def test_no_limit_means_everyone() -> None:
    selection = TalkerSelection(0)
    assert selection.update({"a": LOUD, "b": SILENT}) is None
    assert selection.talkers is None


def test_speaking_inputs_take_free_places_at_once() -> None:
    selection = TalkerSelection(2)
    assert selection.update({"a": LOUD, "b": SILENT, "c": QUIET}) == {"a", "c"}
    # Silence takes no place.
    assert TalkerSelection(3).update({"a": SILENT, "b": SILENT}) == frozenset()


def test_loudest_first_when_places_are_few() -> None:
    selection = TalkerSelection(2)
    assert selection.update({"a": QUIET, "b": LOUD, "c": -10.0, "d": -30.0}) == {"b", "c"}


def test_a_talker_keeps_its_place_through_a_pause_then_gives_it_up() -> None:
    selection = TalkerSelection(1, hold_ticks=25)
    choose(selection, {"a": LOUD, "b": SILENT}, 10)
    # a pauses (a breath): it stays the talker; b starting now must wait.
    assert choose(selection, {"a": SILENT, "b": SILENT}, 10) == {"a"}
    assert choose(selection, {"a": SILENT, "b": QUIET}, 3) == {"a"}
    # a stays quiet: after the hold its place goes to b.
    assert choose(selection, {"a": SILENT, "b": QUIET}, 40) == {"b"}


def test_a_clearly_louder_input_replaces_the_quietest_talker_after_min_ticks() -> None:
    selection = TalkerSelection(2, switch_margin_db=6.0, min_ticks=5)
    choose(selection, {"a": -20.0, "b": -30.0, "c": SILENT}, 10)
    levels = {"a": -20.0, "b": -30.0, "c": -15.0}
    assert choose(selection, levels, 4) == {"a", "b"}  # not yet: hysteresis
    assert choose(selection, levels, 1) == {"a", "c"}  # b, the quietest, gave way


def test_a_chorus_of_equals_does_not_flap() -> None:
    selection = TalkerSelection(2)
    rng = np.random.default_rng(7)
    changes, previous = 0, None
    for _ in range(500):  # 10 s of five people talking at about the same level
        levels = {k: -25.0 + float(rng.normal(0, 2)) for k in "abcde"}
        talkers = selection.update(levels)
        changes += previous is not None and talkers != previous
        previous = talkers
    assert changes == 0


def test_removed_input_frees_its_place() -> None:
    selection = TalkerSelection(1)
    choose(selection, {"a": LOUD, "b": QUIET}, 5)
    selection.remove("a")
    assert selection.update({"b": QUIET}) == {"b"}
    assert selection.envelope("a") is None


def test_bad_selection_settings() -> None:
    with pytest.raises(ValueError):
        TalkerSelection(-1)
    with pytest.raises(ValueError):
        TalkerSelection(3, hold_ticks=0)


def test_only_talkers_are_mixed_and_only_they_get_a_mix_minus() -> None:
    frames = {"a": tone(200.0, 0.1), "b": tone(600.0, 0.1), "c": tone(1400.0, 0.1)}
    result = AudioMix().mix(frames, talkers={"a", "b"})
    np.testing.assert_array_equal(result.full, frames["a"].astype(np.int32) + frames["b"])
    assert set(result.minus) == {"a", "b"}
    np.testing.assert_array_equal(result.minus["a"], frames["b"])
    # c is not heard, so the full mix is what c gets: it never hears itself either.
    assert energy_at(result.full, 1400.0) < 1e-3
    assert set(result.levels) == {"a", "b", "c"}  # every input is measured


def test_mix_selects_talkers_from_this_ticks_levels() -> None:
    mix = AudioMix(selection=TalkerSelection(1))
    result = mix.mix({"a": tone(A_HZ, 0.01), "b": tone(B_HZ, 0.3)})
    assert set(result.minus) == {"b"}  # heard from its first tick
    assert energy_at(result.full, B_HZ) == pytest.approx(0.3, abs=0.01)
    assert energy_at(result.full, A_HZ) < 1e-3


def test_talker_changes_fade_without_a_step() -> None:
    mix = AudioMix()
    a = np.full(2 * FRAME_SAMPLES, 8000, np.int16)  # DC: any step would show as a jump
    b = np.full(2 * FRAME_SAMPLES, 4000, np.int16)
    first = mix.mix({"a": a, "b": b}, talkers={"a"})
    np.testing.assert_array_equal(first.full, a)
    switch = mix.mix({"a": a, "b": b}, talkers={"b"})  # a fades out, b fades in
    # a leaving is still heard in this tick, so it gets its mix-minus (b only).
    assert set(switch.minus) == {"a", "b"}
    # a's mix-minus is b fading in; b's is a fading out; together they are the full mix.
    a_hears = switch.minus["a"].reshape(-1, 2)[:, 0]
    b_hears = switch.minus["b"].reshape(-1, 2)[:, 0]
    assert a_hears[0] <= 10 and a_hears[-1] == pytest.approx(4000, abs=10)
    assert b_hears[0] == pytest.approx(8000, abs=10) and b_hears[-1] <= 10
    np.testing.assert_array_equal(
        switch.minus["a"].astype(np.int32) + switch.minus["b"], switch.full
    )
    then = mix.mix({"a": a, "b": b}, talkers={"b"})
    np.testing.assert_array_equal(then.full, b)
    assert set(then.minus) == {"b"}
    signal = np.concatenate([first.full, switch.full, then.full]).reshape(-1, 2)[:, 0]
    jumps = np.abs(np.diff(signal.astype(np.int32)))
    assert jumps.max() <= 8  # a ramp over 960 samples, not a 4000-step
    assert signal[FRAME_SAMPLES] == pytest.approx(8000, abs=20)
    assert signal[2 * FRAME_SAMPLES - 1] == pytest.approx(4000, abs=20)

"""In-band FEC for lossy subscribers: the switch's decision (pure) and reading whether an
Opus packet carries FEC (checked against real libopus packets)."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import numpy.typing as npt
import pytest

from tessera.media.fecswitch import FecSwitch
from tessera.mixer.outputs import OpusEncoder, SharedMixEncoder
from tests.opuspacket import inspect_packet, silk_frames

RATE = 48_000
FRAME = 960


def speechlike(ticks: int) -> list[npt.NDArray[np.int16]]:
    """Voiced, syllable-paced stereo frames: what SILK codes (and codes LBRR for)."""
    t = np.arange(ticks * FRAME) / RATE
    voiced = sum(
        np.sin(2 * np.pi * f * t * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))) / k
        for k, f in enumerate((150, 300, 450, 600, 900), 1)
    )
    envelope = (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)) ** 2
    noise = np.random.default_rng(1).normal(0, 0.05, t.size)
    mono = ((voiced * envelope * 0.3 + noise * envelope) * 10000).astype(np.int16)
    stereo = np.repeat(mono, 2)
    return [stereo[i * 2 * FRAME : (i + 1) * 2 * FRAME] for i in range(ticks)]


def encode(fec: bool, ticks: int = 100) -> list[bytes]:
    encoder = OpusEncoder(2, fec)
    return [
        bytes(p)
        for i, frame in enumerate(speechlike(ticks))
        for p in encoder.encode(frame, i * FRAME)
    ]


# -- FecSwitch -----------------------------------------------------------------


def test_fec_goes_on_above_a_few_percent_of_loss() -> None:
    switch = FecSwitch()
    assert not switch.update(0.0, 0.0)
    assert not switch.update(1.0, 0.02)  # 1 packet in 50: smoothed 1 %
    assert not switch.on
    assert switch.update(2.0, 0.06)  # smoothed 3.5 %
    assert switch.on and switch.switches == 1


def test_one_lossy_report_on_a_clean_link_does_not_turn_it_on() -> None:
    switch = FecSwitch()
    for second in range(10):
        switch.update(float(second), 0.0)
    assert not switch.update(10.0, 0.05)  # smoothed 2.5 %
    assert not switch.update(11.0, 0.0)
    assert not switch.on


def test_fec_goes_off_only_after_the_loss_stayed_under_one_percent() -> None:
    switch = FecSwitch(off_hold=4.0)
    switch.update(0.0, 0.10)
    assert switch.on
    now = 1.0
    # Between 1 and 3 %: hysteresis, it stays on however long.
    for _ in range(20):
        switch.update(now, 0.02)
        now += 1.0
    assert switch.on
    changed = [switch.update(now + i, 0.0) for i in range(12)]
    assert switch.on is False and changed.count(True) == 1
    # The smoothed loss needs a few reports to fall under 1 %, then 4 s of them.
    assert changed.index(True) >= 4


def test_a_lossy_report_restarts_the_hold() -> None:
    switch = FecSwitch(off_hold=4.0)
    switch.update(0.0, 0.2)
    for second in range(1, 8):  # under 1 % from 5 s on: 2 s of the 4 s hold
        assert not switch.update(float(second), 0.0)
    switch.update(8.0, 0.2)  # a burst: the smoothed loss is over 1 % again
    # Under 1 % again from 12 s on: off at 16 s, not at 9 s as the first hold would have.
    changed = {second: switch.update(float(second), 0.0) for second in range(9, 17)}
    assert [s for s, c in changed.items() if c] == [16]
    assert not switch.on


def test_absurd_reports_are_clamped() -> None:
    switch = FecSwitch()
    switch.update(0.0, -5.0)
    assert switch.loss == 0.0 and not switch.on
    assert switch.update(1.0, 42.0)
    assert switch.loss is not None and switch.loss <= 1.0


def test_bad_thresholds_are_refused() -> None:
    with pytest.raises(ValueError, match="off_below"):
        FecSwitch(on_above=0.01, off_below=0.03)
    with pytest.raises(ValueError, match="smoothing"):
        FecSwitch(smoothing=0.0)


# -- reading Opus packets ------------------------------------------------------


def test_fec_encoder_packets_carry_lbrr_and_plain_ones_do_not() -> None:
    fec = [inspect_packet(p) for p in encode(True)]
    plain = [inspect_packet(p) for p in encode(False)]
    # With FEC on, libopus codes speech in hybrid mode (SILK carries the LBRR).
    assert {i.mode for i in fec} == {"hybrid"}
    assert sum(i.has_fec for i in fec) > len(fec) // 2
    assert not any(i.has_fec for i in plain)


def test_silk_without_fec_reads_no_lbrr() -> None:
    # At a low bitrate libopus codes speech in SILK or hybrid mode without FEC: the
    # voice activity flags are read (some set), the LBRR flags are clear.
    context = av.CodecContext.create("libopus", "w")
    context.sample_rate, context.layout, context.format = RATE, "stereo", "s16"
    context.time_base = Fraction(1, RATE)
    context.bit_rate = 24_000
    context.options = {"application": "voip", "frame_duration": "20"}
    context.open()
    infos = []
    for i, frame in enumerate(speechlike(100)):
        audio = av.AudioFrame.from_ndarray(frame.reshape(1, -1), format="s16", layout="stereo")
        audio.sample_rate, audio.pts, audio.time_base = RATE, i * FRAME, Fraction(1, RATE)
        infos += [inspect_packet(bytes(p)) for p in context.encode(audio)]
    silk = [i for i in infos if i.mode != "celt"]
    assert silk, "no SILK or hybrid packet to read"
    assert any(any(i.voice_activity) for i in silk)
    assert not any(i.has_fec for i in silk)


def test_toc_figures_and_bad_packets() -> None:
    celt = inspect_packet(bytes([31 << 3 | 0x04, 0xFF, 0x00]))
    assert (celt.config, celt.stereo, celt.frames_code, celt.mode) == (31, True, 0, "celt")
    assert celt.lbrr == () and not celt.has_fec
    assert silk_frames(3) == 3 and silk_frames(1) == 1 and silk_frames(15) == 1
    with pytest.raises(ValueError, match="TOC"):
        inspect_packet(b"")
    with pytest.raises(ValueError, match="code 2"):
        inspect_packet(bytes([1 << 3 | 2]))
    with pytest.raises(ValueError, match="code 3"):
        inspect_packet(bytes([1 << 3 | 3, 0x42, 255]))
    # A SILK packet with no frame bytes reads as zeros (the range decoder pads): no FEC.
    assert not inspect_packet(bytes([1 << 3])).has_fec


def test_shared_mix_encoder_runs_only_while_used_and_keeps_the_clock() -> None:
    frames = speechlike(10)
    plain, fec = SharedMixEncoder(False), SharedMixEncoder(True)
    plain_pts = [p.pts for i, f in enumerate(frames) for p in plain.encode(f, i * FRAME)]
    # The FEC encode starts at tick 5, primed with the three ticks before.
    fec_pts = [
        p.pts for i in range(5, 10) for p in fec.encode(frames[i], i * FRAME, frames[i - 3 : i])
    ]
    assert fec_pts == plain_pts[5:]
    assert fec.ticks == 5 and fec.starts == 1
    fec.idle()
    assert fec.encoder is None
    fec.encode(frames[0], 10 * FRAME)
    assert fec.starts == 2

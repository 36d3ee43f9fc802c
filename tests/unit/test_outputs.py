"""Mixed outputs: a participant switching from the shared full-mix encode to its own; an
output closed while its view thread encodes."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import av
import numpy as np
import numpy.typing as npt

from tessera.media.videoencoder import EncoderSettings
from tessera.mixer.outputs import MixedAudioOutput, MixedVideoOutput, OpusEncoder

RATE = 48_000
FRAME = 960
SWITCH = 30  # the tick the participant becomes a talker


def tone(tick: int, freq: float = 440.0, amplitude: float = 0.3) -> npt.NDArray[np.int16]:
    n = np.arange(tick * FRAME, (tick + 1) * FRAME)
    mono = np.rint(amplitude * 32767 * np.sin(2 * np.pi * freq * n / RATE)).astype(np.int16)
    return np.repeat(mono, 2)


def decode_left(packets: list[Any]) -> npt.NDArray[np.int32]:
    """What the participant's browser plays: one decoder across the whole stream."""
    decoder: Any = av.CodecContext.create("libopus", "r")
    decoder.format, decoder.layout, decoder.sample_rate = "s16", "stereo", RATE
    out = [f.to_ndarray().reshape(-1) for p in packets for f in decoder.decode(av.Packet(bytes(p)))]
    return np.concatenate(out).reshape(-1, 2)[:, 0].astype(np.int32)


def worst_error_at_switch(history_ticks: int) -> tuple[int, int]:
    """(error near the switch, error in steady state) against the ideal delayed tone."""
    loop = asyncio.new_event_loop()
    try:
        output = MixedAudioOutput("p", loop, lambda _output, _active: None)
        shared = OpusEncoder(2)
        packets: list[Any] = []
        for tick in range(SWITCH + 20):
            if tick < SWITCH:  # a listener: the shared encode of the full mix
                packets += shared.encode(tone(tick), tick * FRAME)
            else:  # a talker: its own mix-minus (the same signal here)
                history = [tone(t) for t in range(tick - history_ticks, tick)]
                packets += output.encode_minus(tone(tick), tick * FRAME, history)
    finally:
        loop.close()
    played = decode_left(packets)
    ideal = np.concatenate([tone(t) for t in range(SWITCH + 20)]).reshape(-1, 2)[:, 0]
    ideal = ideal.astype(np.int32)
    # Opus delays the signal by its look-ahead: find that delay on the steady part.
    steady = slice(5 * FRAME, 25 * FRAME)
    delay = min(
        range(FRAME),
        key=lambda d: int(np.abs(played[steady.start + d : steady.stop + d] - ideal[steady]).sum()),
    )
    error = np.abs(played[delay : delay + len(ideal) - FRAME] - ideal[: len(ideal) - FRAME])
    around = error[(SWITCH - 1) * FRAME : (SWITCH + 3) * FRAME]
    return int(around.max()), int(error[steady].max())


def test_a_primed_own_encoder_takes_over_without_a_glitch() -> None:
    switch, steady = worst_error_at_switch(history_ticks=3)
    assert switch <= 2 * steady + 50, (switch, steady)


def test_an_unprimed_own_encoder_would_glitch() -> None:
    # What the priming is for: a fresh encoder starts from silence.
    switch, steady = worst_error_at_switch(history_ticks=0)
    assert switch > 0.3 * 32767 * 0.5 and switch > 10 * steady, (switch, steady)


class _GatedScaler:
    """A real scaler that holds the view thread inside `encode` until the test lets it go."""

    def __init__(self) -> None:
        from av.video.reformatter import VideoReformatter

        self._real = VideoReformatter()
        self.entered = threading.Event()
        self.release = threading.Event()

    def reformat(self, frame: av.VideoFrame, **kwargs: Any) -> av.VideoFrame:
        self.entered.set()
        assert self.release.wait(10), "the test never let the encode go on"
        return self._real.reformat(frame, **kwargs)


def test_closing_a_video_output_while_it_encodes_is_safe() -> None:
    # The race the mixed view's churn test found: the loop thread closes an output (its
    # last subscriber left) while the view thread is between creating the encoder and
    # using it. The encode must finish (or stop) cleanly, not raise on a dropped encoder.
    loop = asyncio.new_event_loop()
    try:
        settings = EncoderSettings("vp8", 320, 180, 30, 300_000, 100)
        output = MixedVideoOutput(settings, loop, 1.0, lambda _output, _active: None)
        scaler = _GatedScaler()
        output._scaler = scaler  # type: ignore[assignment]
        canvas = av.VideoFrame(640, 360, "yuv420p")
        errors: list[BaseException] = []

        def view_thread() -> None:
            try:
                output.encode(canvas, 0)
            except BaseException as exc:  # the finding is any exception
                errors.append(exc)

        thread = threading.Thread(target=view_thread)
        thread.start()
        assert scaler.entered.wait(10)
        output.close()  # the loop thread, mid-encode
        scaler.release.set()
        thread.join(10)
        assert not thread.is_alive()
        assert errors == []
        # Closed: later frames are not encoded, and the encoder is gone.
        output.encode(canvas, 3000)
        assert output.encoder is None
    finally:
        loop.close()

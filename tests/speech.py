"""Speech for caption tests: a sentence spoken by Debian's espeak-ng, played as a real-time
audio track that notes when the speech began and ended."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import av
import numpy as np
from aiortc.mediastreams import MediaStreamTrack

from tests.synthetic import AUDIO_RATE, RealTimePace, mono_frame

RATE = AUDIO_RATE
FRAME = RATE // 50  # 20 ms
# A voice and pace the shipped English model hears well (measured: 9-11 of 13-14 words).
VOICE = "en-us+f2"
WORDS_PER_MINUTE = 120
SILENCE = 300  # sample values under this are not speech (-40 dBFS)


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def synthesise(sentence: str, path: Path) -> np.ndarray:
    """``sentence`` spoken by espeak-ng, as 48 kHz mono int16 samples."""
    subprocess.run(
        ["espeak-ng", "-v", VOICE, "-s", str(WORDS_PER_MINUTE), "-w", str(path), sentence],
        check=True,
        capture_output=True,
    )
    resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
    with av.open(str(path)) as container:
        chunks = [
            out.to_ndarray().reshape(-1)
            for frame in container.decode(audio=0)
            for out in resampler.resample(frame)
        ]
    chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
    samples = np.concatenate(chunks).astype(np.int16)
    # Only the speech: espeak-ng's leading and trailing silence would blur when it was said.
    audible = np.flatnonzero(np.abs(samples.astype(np.int32)) > SILENCE)
    return samples[audible[0] : audible[-1] + 1]


class SpeechTrack(MediaStreamTrack):
    """Silence in real time; after ``speak()``, the speech once, then silence again.

    ``spoken`` holds the monotonic times the speech's first and last frames were handed
    to the sender.
    """

    kind = "audio"

    def __init__(self, samples: np.ndarray) -> None:
        super().__init__()
        self._speech_samples = samples
        self._samples = np.zeros(0, np.int16)
        self._speech = (-1, -1)
        self._sent = 0
        self._pace = RealTimePace()
        self.spoken: list[float] = []  # [start, end] once played

    def speak(self) -> None:
        """Say the sentence once, from the next frame on."""
        begin = self._sent
        self._samples = np.concatenate([np.zeros(begin, np.int16), self._speech_samples])
        self._speech = (begin, begin + len(self._speech_samples))

    async def recv(self) -> av.AudioFrame:
        await self._pace.until(self._sent, RATE)
        chunk = self._samples[self._sent : self._sent + FRAME]
        if len(chunk) < FRAME:
            chunk = np.concatenate([chunk, np.zeros(FRAME - len(chunk), np.int16)])
        now = time.monotonic()
        begin, end = self._speech
        if self._sent <= begin < self._sent + FRAME:
            self.spoken.append(now)
        if self._sent < end <= self._sent + FRAME:
            self.spoken.append(now)
        frame = mono_frame(chunk, self._sent)
        self._sent += FRAME
        return frame

"""SpeechRecogniser: one speaker's 16 kHz speech in, partial and final utterances out.

pocketsphinx (its English model ships inside the PyPI package: nothing is downloaded)
behind its voice activity endpointer. CPU work: call it from a worker thread, never
from the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pocketsphinx import Config, Decoder, Endpointer, get_model_path

from .languages import LANGUAGES
from .segmenter import Segmenter, Step
from .words import spoken_words

SAMPLE_RATE = 16000
BYTES_PER_SECOND = SAMPLE_RATE * 2  # 16-bit mono
# A stream whose clock strays this far from the arrival times is anchored again between
# utterances (lost packets leave gaps the decoder does not fill).
MAX_DRIFT = 0.5
# The decoder normalises the audio by a running mean (live CMN) that starts from the
# model's guess and takes seconds of speech to settle: until a speaker has said this much,
# each final result comes from a second pass over the whole utterance with its own mean
# (measured with espeak-ng's voice: a first sentence goes from 2 of 13 words right to 10).
WARM_UP = 10.0


@dataclass(frozen=True)
class Heard:
    """An utterance so far (partial) or whole (final); times are ``time.monotonic()``."""

    text: str
    final: bool
    start: float
    end: float


def model_config(language: str) -> Config:
    """The decoder configuration for ``language``'s model shipped with pocketsphinx."""
    folder = LANGUAGES[language]
    root = Path(get_model_path()) / folder
    return Config(
        hmm=str(root / folder),
        lm=str(root / f"{folder}.lm.bin"),
        dict=str(root / f"cmudict-{folder}.dict"),
        samprate=SAMPLE_RATE,
        loglevel="FATAL",
    )


class SpeechRecogniser:
    """Recognises the speech of one publication, fed its audio in arrival order."""

    def __init__(self, language: str, segmenter: Segmenter | None = None) -> None:
        self._decoder = Decoder(model_config(language))
        self._segmenter = segmenter or Segmenter()
        self._endpointer = Endpointer(sample_rate=SAMPLE_RATE)
        self._frame_bytes: int = self._endpointer.frame_bytes
        self._pending = b""
        self._origin: float | None = None  # monotonic time of the endpointer's 0
        self._fed = 0  # bytes given to the endpointer since its 0
        self._utterance_start: float | None = None  # endpointer seconds
        self._partial = ""
        self._speech_seconds = 0.0  # speech decoded so far (the live mean's warm-up)
        self._utterance_pcm: list[bytes] | None = None  # kept while warming up

    @property
    def in_utterance(self) -> bool:
        return self._utterance_start is not None

    def feed(self, pcm: bytes, end_at: float) -> list[Heard]:
        """16-bit mono PCM that ended arriving at monotonic ``end_at``; what was heard."""
        position = (self._fed + len(self._pending) + len(pcm)) / BYTES_PER_SECOND
        if self._origin is None or (
            not self.in_utterance and abs(self._origin + position - end_at) > MAX_DRIFT
        ):
            self._origin = end_at - position
        data = self._pending + pcm
        out: list[Heard] = []
        size = self._frame_bytes
        whole = len(data) - len(data) % size
        for offset in range(0, whole, size):
            out.extend(self._frame(data[offset : offset + size]))
        self._pending = data[whole:]
        return out

    def _frame(self, frame: bytes) -> list[Heard]:
        endpointer = self._endpointer
        was_in_speech = endpointer.in_speech
        before = self._fed / BYTES_PER_SECOND
        speech = endpointer.process(frame)
        self._fed += len(frame)
        if speech is None:
            return []
        out: list[Heard] = []
        if not self.in_utterance:
            # After a cut, speech goes on: the next utterance starts where the last ended.
            self._begin(before if was_in_speech else endpointer.speech_start)
        self._decoder.process_raw(speech, False, False)
        if self._utterance_pcm is not None:
            self._utterance_pcm.append(speech)
        if not endpointer.in_speech:
            out.extend(self._end(endpointer.speech_end))
            return out
        now = self._fed / BYTES_PER_SECOND
        assert self._utterance_start is not None
        step = self._segmenter.step(now - self._utterance_start)
        if step is Step.CUT:
            out.extend(self._end(now))
        elif step is Step.PARTIAL:
            text = self._text()
            if text and text != self._partial:
                self._partial = text
                out.append(self._heard(text, False, now))
        return out

    def _begin(self, start: float) -> None:
        self._decoder.start_utt()
        self._utterance_start = start
        self._partial = ""
        self._segmenter.start()
        self._utterance_pcm = [] if self._speech_seconds < WARM_UP else None

    def _end(self, end: float) -> list[Heard]:
        self._decoder.end_utt()
        start = self._utterance_start or 0.0
        self._speech_seconds += max(0.0, end - start)
        if self._utterance_pcm is not None:
            # Again, the whole utterance at once: normalised by its own mean.
            self._decoder.start_utt()
            self._decoder.process_raw(b"".join(self._utterance_pcm), False, True)
            self._decoder.end_utt()
            self._utterance_pcm = None
        text = self._text()
        heard = self._heard(text, True, end) if text or self._partial else None
        self._utterance_start = None
        self._partial = ""
        return [heard] if heard is not None else []

    def _text(self) -> str:
        hypothesis = self._decoder.hyp()
        if hypothesis is None:
            return ""
        return " ".join(spoken_words(hypothesis.hypstr.split()))

    def _heard(self, text: str, final: bool, end: float) -> Heard:
        origin = self._origin or 0.0
        start = self._utterance_start or 0.0
        return Heard(text, final, origin + start, origin + max(end, start))

    def flush(self) -> list[Heard]:
        """The stream ends or has a gap: an utterance going on is final now, and the next
        audio starts a new stream."""
        out: list[Heard] = []
        if self.in_utterance:
            speech = self._endpointer.end_stream(self._pending[: self._frame_bytes])
            if speech:
                self._decoder.process_raw(speech, False, False)
            out = self._end(self._fed / BYTES_PER_SECOND)
        self._endpointer = Endpointer(sample_rate=SAMPLE_RATE)
        self._pending = b""
        self._origin = None
        self._fed = 0
        return out

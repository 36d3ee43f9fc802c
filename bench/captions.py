"""Live captions: `python -m bench.captions [--quick] [--json FILE]`.

What recognising one speaker costs: sentences spoken by espeak-ng (Debian's
package) go through what the room's caption thread does for each publication
(48 kHz frames resampled to 16 kHz mono, the voice endpointer, pocketsphinx
with its shipped English model) on one thread, as fast as it can; that
thread's CPU time over the seconds of audio is the share of one core a
speaker takes in real time. Two talkers: one who speaks all the time, one
who speaks half of the time (silence costs the endpointer only). The first
seconds of each speaker cost more (each final result is decoded twice until
the decoder's running mean settles, see captions/recogniser.py): reported
apart. Also: the memory of one recogniser and the words recognised.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from tessera.captions.recogniser import SAMPLE_RATE, SpeechRecogniser
from tessera.captions.words import matched_words

from .machine import MachineInfo
from .report import add_common_arguments, finish, header

RATE = 48000
FRAME = RATE // 50
SENTENCES = (
    "we will meet at the office tomorrow morning to talk about the new project",
    "please open the window because it is very warm in this room today",
    "the quick brown fox jumps over the lazy dog near the river bank",
    "can you send me the report before the end of the week",
)


@dataclass(frozen=True)
class CaptionsBenchConfig:
    """How many times the sentences are said; the defaults are the full run."""

    rounds: int = 4


QUICK = CaptionsBenchConfig(rounds=1)


@dataclass(frozen=True)
class Talker:
    """One speaker's run: audio seconds, the caption thread's CPU, words heard."""

    name: str
    audio_seconds: float
    speech_seconds: float
    cpu_seconds: float
    warm_up_cpu_seconds: float  # of the first 10 s of audio
    words_said: int
    words_heard: int

    @property
    def core_percent(self) -> float:
        """% of one core this speaker takes in real time (after the warm-up)."""
        rest = self.audio_seconds - 10.0
        if rest <= 0:
            return 100 * self.cpu_seconds / self.audio_seconds
        return 100 * (self.cpu_seconds - self.warm_up_cpu_seconds) / rest

    @property
    def warm_up_core_percent(self) -> float:
        return 100 * self.warm_up_cpu_seconds / min(10.0, self.audio_seconds)


@dataclass(frozen=True)
class CaptionsFigures:
    """Both talkers, the cost of starting a recogniser, and its memory."""

    config: CaptionsBenchConfig
    recogniser_start_cpu_seconds: float
    recogniser_memory_mb: float
    talkers: list[Talker]


def speak(sentence: str, folder: Path) -> np.ndarray:
    """``sentence`` by espeak-ng as 48 kHz mono int16 samples."""
    path = folder / "sentence.wav"
    subprocess.run(
        ["espeak-ng", "-v", "en-us+f2", "-s", "120", "-w", str(path), sentence],
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
    return np.concatenate(chunks).astype(np.int16)


def talk(name: str, speeches: list[np.ndarray], pause: float) -> tuple[np.ndarray, float]:
    """The speeches with ``pause`` seconds of silence after each; and the seconds of speech."""
    silence = np.zeros(int(pause * RATE), np.int16)
    parts = [part for speech in speeches for part in (speech, silence)]
    return np.concatenate(parts), sum(len(s) for s in speeches) / RATE


def recognise(name: str, samples: np.ndarray, speech: float, said: str) -> Talker:
    """Run one speaker's audio through what the caption thread does, timing its CPU."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    recogniser = SpeechRecogniser("en-US")
    heard: list[str] = []
    cpu = warm_up = 0.0
    clock = 0.0
    for offset in range(0, len(samples) - FRAME + 1, FRAME):
        frame = av.AudioFrame.from_ndarray(
            samples[offset : offset + FRAME].reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = RATE
        begin = time.thread_time()
        pcm = b"".join(bytes(out.planes[0])[: out.samples * 2] for out in resampler.resample(frame))
        results = recogniser.feed(pcm, clock)
        cpu += time.thread_time() - begin
        clock += FRAME / RATE
        if clock <= 10.0:
            warm_up = cpu
        heard.extend(result.text for result in results if result.final)
    heard.extend(result.text for result in recogniser.flush() if result.final)
    return Talker(
        name=name,
        audio_seconds=len(samples) / RATE,
        speech_seconds=speech,
        cpu_seconds=cpu,
        warm_up_cpu_seconds=warm_up,
        words_said=len(said.split()),
        words_heard=len(matched_words(said, " ".join(heard))),
    )


def run_captions_bench(config: CaptionsBenchConfig) -> CaptionsFigures:
    if shutil.which("espeak-ng") is None:
        raise SystemExit("bench.captions needs espeak-ng (apt-get install espeak-ng)")
    with tempfile.TemporaryDirectory() as folder:
        speeches = [speak(sentence, Path(folder)) for sentence in SENTENCES]
    said = " ".join(SENTENCES * config.rounds)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    begin = time.thread_time()
    kept = [SpeechRecogniser("en-US") for _ in range(2)]
    start_cpu = (time.thread_time() - begin) / len(kept)
    memory = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024 / len(kept)
    del kept
    talkers = []
    for name, pause in (("speaks all the time", 0.4), ("speaks half of the time", 5.0)):
        samples, speech = talk(name, speeches * config.rounds, pause)
        talkers.append(recognise(name, samples, speech, said))
    return CaptionsFigures(config, start_cpu, memory, talkers)


def format_figures(figures: CaptionsFigures) -> list[str]:
    lines = [
        f"a recogniser: {figures.recogniser_start_cpu_seconds:.2f} s of CPU to start, "
        f"{figures.recogniser_memory_mb:.0f} MB",
        "talker                    audio s  speech s  % of a core  first 10 s  words heard",
    ]
    for talker in figures.talkers:
        lines.append(
            f"{talker.name:<25} {talker.audio_seconds:7.1f}  {talker.speech_seconds:8.1f}  "
            f"{talker.core_percent:10.1f}  {talker.warm_up_core_percent:9.1f}  "
            f"{talker.words_heard}/{talker.words_said}"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run it, print it, write JSON."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.captions", description=(__doc__ or "").splitlines()[0]
    )
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    started = time.monotonic()
    machine = MachineInfo.collect()
    for line in header("Tessera live captions benchmark", machine):
        print(line, flush=True)
    figures = run_captions_bench(QUICK if args.quick else CaptionsBenchConfig())
    return finish("captions", args.json, machine, figures, format_figures(figures), started)


if __name__ == "__main__":
    raise SystemExit(main())

"""Latency: `python -m bench.latency [--quick] [--json FILE]`.

How long after a publisher's frame the same content appears in a
subscriber's mixed video, and the same for audio, end to end with real
aiortc peers on loopback (server in its own process, clients in this one,
one clock):

- video: the publisher's 640x360 camera carries its frame number in big
  black and white blocks (with a check code). The subscriber decodes the
  view's 1280x720 video, reads the number back and takes the time since
  that frame left the publisher's track for its encoder;
- audio: the publisher sends silence with a 1 kHz tone burst every 0.5 s; a
  listener (who publishes nothing, so it hears the full mix) decodes the
  mixed audio and times the burst's onset.

For reference the same clients also measure the publisher's forward stream
(no mixing: the server only forwards packets), which carries the clients'
own costs (encode, aiortc's receive buffering, decode); the difference is
what mixing adds.

Targets (end to end, mixed): video median <= 60 ms and p95 <= 90 ms; audio
median <= 60 ms. About 40 seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from tessera.media.aiortcext import install_low_latency_buffer

from .content import VIDEO_CLOCK, MovingPattern
from .machine import MachineInfo, SystemCpu
from .participants import AUDIO_CLOCK, AUDIO_FRAME
from .report import add_common_arguments, finish, header, verdict
from .subscribers import ServerProcess, TappedClient, leave, wait_layout

VIDEO_MEDIAN_TARGET_MS = 60.0
VIDEO_P95_TARGET_MS = 90.0
AUDIO_MEDIAN_TARGET_MS = 60.0

WIDTH, HEIGHT = 640, 360
BITS = 12  # frame number bits; 4 more carry a check code
BLOCK = 40  # pixels per code block in the published frame
CODE_X, CODE_Y = 160, 140  # top left of the 8x2 block grid
BURST_EVERY = 25  # audio frames (0.5 s)
BURST_FRAMES = 2  # 40 ms of tone


def _check(number: int) -> int:
    return (number * 7 + (number >> 4) * 3 + 5) & 0xF


def encode_number(number: int) -> list[int]:
    """The 16 bits drawn for frame `number`: 12 of the number, 4 of its check code."""
    value = (number & ((1 << BITS) - 1)) | (_check(number & ((1 << BITS) - 1)) << BITS)
    return [(value >> bit) & 1 for bit in range(16)]


def decode_number(bits: list[int]) -> int | None:
    """The frame number from 16 read bits, or None when the check code does not match."""
    value = sum(b << i for i, b in enumerate(bits))
    number = value & ((1 << BITS) - 1)
    return number if (value >> BITS) == _check(number) else None


def block_centres(scale: float, left: float = 0.0, top: float = 0.0) -> list[tuple[int, int]]:
    """Where each bit's block centre lands in a picture scaled by `scale` and put at left/top."""
    centres = []
    for bit in range(16):
        row, column = divmod(bit, 8)
        x = CODE_X + column * BLOCK + BLOCK / 2
        y = CODE_Y + row * BLOCK + BLOCK / 2
        centres.append((round(left + x * scale), round(top + y * scale)))
    return centres


def draw_number(luma: np.ndarray, number: int) -> None:
    """Draw frame `number`'s blocks into a 640x360 luma plane."""
    for bit, value in enumerate(encode_number(number)):
        row, column = divmod(bit, 8)
        y, x = CODE_Y + row * BLOCK, CODE_X + column * BLOCK
        luma[y : y + BLOCK, x : x + BLOCK] = 235 if value else 16


def read_number(frame: av.VideoFrame) -> int | None:
    """Read the frame number from a received picture (the publisher's or the whole view)."""
    luma = frame.to_ndarray(format="gray")
    scale = frame.width / WIDTH
    # One input in a fluid view fills the canvas: 640x360 scaled to the view's size.
    bits = []
    half = max(2, round(BLOCK * scale / 4))
    for x, y in block_centres(scale):
        patch = luma[y - half : y + half, x - half : x + half]
        bits.append(1 if float(patch.mean()) > 125 else 0)
    return decode_number(bits)


class ListeningClient(TappedClient):
    """A client that decodes, its receivers releasing frames as soon as they are complete.

    aiortc's own receive buffer holds video one frame (33 ms) and audio four
    frames (80 ms) longer than needed; a browser's adaptive buffer on a clean
    loopback holds next to nothing. The server uses the same buffer.
    """

    tap_kinds = ()

    def _tap(self, track: MediaStreamTrack) -> None:
        if self.pc is not None:
            for transceiver in self.pc.getTransceivers():
                if transceiver.receiver.track is track:
                    install_low_latency_buffer(transceiver.receiver)


class NumberedVideoTrack(MediaStreamTrack):  # type: ignore[misc]
    """A 640x360 camera (moving scene) stamped with its frame number; notes when each left."""

    kind = "video"

    def __init__(self, fps: int = 30) -> None:
        super().__init__()
        self.fps = fps
        pattern = MovingPattern(WIDTH, HEIGHT, seed=11)
        self._scenes = [pattern.frame(i, fps) for i in range(60)]
        self._start: float | None = None
        self.count = 0
        self.sent: dict[int, float] = {}  # number (mod 2**BITS) -> time it left

    async def recv(self) -> av.VideoFrame:
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        due = self._start + self.count / self.fps
        await asyncio.sleep(max(0.0, due - loop.time()))
        yuv = self._scenes[self.count % len(self._scenes)].copy()
        draw_number(yuv[:HEIGHT], self.count)
        frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        frame.pts = self.count * VIDEO_CLOCK // self.fps
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self.sent[self.count % (1 << BITS)] = loop.time()
        self.count += 1
        return frame


class BurstAudioTrack(MediaStreamTrack):  # type: ignore[misc]
    """Silence with a 1 kHz tone burst every 0.5 s; notes when each burst's first sample left."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._start: float | None = None
        self.count = 0
        t = np.arange(AUDIO_FRAME * BURST_FRAMES) / AUDIO_CLOCK
        tone = (0.5 * 32767 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16)
        self._burst = np.repeat(tone, 2).reshape(BURST_FRAMES, 1, -1)
        self._silence = np.zeros((1, AUDIO_FRAME * 2), np.int16)
        self.onsets: list[float] = []  # times the bursts' first samples were captured

    async def recv(self) -> av.AudioFrame:
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        due = self._start + (self.count + 1) * AUDIO_FRAME / AUDIO_CLOCK
        await asyncio.sleep(max(0.0, due - loop.time()))
        phase = self.count % BURST_EVERY
        samples = self._burst[phase] if phase < BURST_FRAMES else self._silence
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="stereo")
        frame.sample_rate = AUDIO_CLOCK
        frame.pts = self.count * AUDIO_FRAME
        frame.time_base = fractions.Fraction(1, AUDIO_CLOCK)
        if phase == 0:
            # Like a microphone: a 20 ms frame leaves when its last sample was captured.
            self.onsets.append(loop.time() - AUDIO_FRAME / AUDIO_CLOCK)
        self.count += 1
        return frame


async def _read_video(
    track: MediaStreamTrack, sent: dict[int, float], delays: list[float], misses: list[int]
) -> None:
    loop = asyncio.get_running_loop()
    last: int | None = None
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        arrived = loop.time()
        if not isinstance(frame, av.VideoFrame):
            continue
        number = read_number(frame)
        if number is None:
            misses[0] += 1
            continue
        if number == last:
            continue  # the view repeated the input's frame: not new content
        last = number
        left = sent.get(number)
        if left is not None and 0 <= arrived - left < 5:
            delays.append(arrived - left)


async def _read_audio(track: MediaStreamTrack, onsets: list[float], delays: list[float]) -> None:
    loop = asyncio.get_running_loop()
    quiet = 0
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        arrived = loop.time()
        if not isinstance(frame, av.AudioFrame):
            continue
        samples = frame.to_ndarray().reshape(-1)
        channels = len(frame.layout.channels)
        level = np.abs(samples.astype(np.int32)).reshape(-1, channels).max(axis=1)
        loud = np.nonzero(level > 3000)[0]
        if len(loud) and quiet >= 10:
            # The onset's sample was received `after` samples before the frame ended.
            after = (len(level) - int(loud[0])) / frame.sample_rate
            onset = arrived - after
            sent = [s for s in onsets if 0 <= onset - s < 2]
            if sent:
                delays.append(onset - max(sent))
        quiet = 0 if len(loud) else quiet + 1


@dataclass(frozen=True)
class Delays:
    """Delay figures in milliseconds over `samples` measurements."""

    samples: int
    median_ms: float
    p95_ms: float
    min_ms: float

    @classmethod
    def of(cls, seconds: list[float]) -> Delays:
        """Figures of delays in seconds; without any, `samples` 0 and NaN figures (JSON null)."""
        if not seconds:
            return cls(0, float("nan"), float("nan"), float("nan"))
        ms = np.asarray(seconds) * 1000
        return cls(
            samples=len(ms),
            median_ms=float(np.median(ms)),
            p95_ms=float(np.percentile(ms, 95)),
            min_ms=float(ms.min()),
        )


@dataclass(frozen=True)
class LatencyBenchConfig:
    """What is measured; the defaults are the full run."""

    seconds: float = 30.0
    warmup: float = 3.0


QUICK = LatencyBenchConfig(seconds=4.0, warmup=1.5)


@dataclass(frozen=True)
class LatencyFigures:
    """Video and audio delays, mixed and forwarded."""

    config: LatencyBenchConfig
    video_mixed: Delays
    video_forward: Delays
    audio_mixed: Delays
    audio_forward: Delays
    unreadable_frames: int  # received frames whose number failed its check
    machine_busy_cores: float
    server_cpu_percent: float

    @property
    def meets_video(self) -> bool:
        """Mixed video within its median and p95 targets."""
        return (
            self.video_mixed.median_ms <= VIDEO_MEDIAN_TARGET_MS
            and self.video_mixed.p95_ms <= VIDEO_P95_TARGET_MS
        )

    @property
    def meets_audio(self) -> bool:
        """Mixed audio within its median target."""
        return self.audio_mixed.median_ms <= AUDIO_MEDIAN_TARGET_MS


async def run_latency_bench(config: LatencyBenchConfig) -> LatencyFigures:
    """Publisher, viewer and listener; measure for `seconds` after a warm-up."""
    video_mixed: list[float] = []
    video_forward: list[float] = []
    audio_mixed: list[float] = []
    audio_forward: list[float] = []
    misses = [0]
    readers: list[asyncio.Task[None]] = []
    clients: list[TappedClient] = []
    with tempfile.TemporaryDirectory(prefix="tessera-bench-") as tmp:
        server = await ServerProcess.start(Path(tmp))
        try:
            publisher = TappedClient(request_timeout=30)
            clients.append(publisher)
            await publisher.join(server.token("speaker", "presenter"))
            video = NumberedVideoTrack()
            audio = BurstAudioTrack()
            publication = await publisher.publish(audio=audio, video=video)
            await publication.wait_ready(30)
            view = f"{publisher.room_id}-common"
            await wait_layout(publisher, view, 1, 30)

            # The listener publishes nothing: it hears the full mix, the speaker included.
            listener = ListeningClient(request_timeout=30)
            clients.append(listener)
            await listener.join(server.token("listener", "viewer"))
            mixed = await listener.subscribe(view)
            forward = await listener.subscribe(publication.id)
            sinks: list[tuple[MediaStreamTrack, MediaStreamTrack, list[float], list[float]]] = []
            for subscription, video_delays, audio_delays in (
                (mixed, video_mixed, audio_mixed),
                (forward, video_forward, audio_forward),
            ):
                await subscription.wait_ready(30)
                # Both tracks first: no reader starts on a missing one.
                if subscription.audio_track is None or subscription.video_track is None:
                    raise RuntimeError("a subscription came without its audio or video track")
                sinks.append(
                    (subscription.video_track, subscription.audio_track, video_delays, audio_delays)
                )
            for video_track, audio_track, video_delays, audio_delays in sinks:
                readers.append(
                    asyncio.ensure_future(
                        _read_video(video_track, video.sent, video_delays, misses)
                    )
                )
                readers.append(
                    asyncio.ensure_future(_read_audio(audio_track, audio.onsets, audio_delays))
                )
            await asyncio.sleep(config.warmup)
            for samples in (video_mixed, video_forward, audio_mixed, audio_forward):
                samples.clear()
            misses[0] = 0
            machine0, cpu0, t0 = SystemCpu.read(), server.cpu_seconds(), time.monotonic()
            await asyncio.sleep(config.seconds)
            elapsed = time.monotonic() - t0
            busy = SystemCpu.read().busy_cores_since(machine0, elapsed)
            server_percent = (server.cpu_seconds() - cpu0) / elapsed * 100
        finally:
            for task in readers:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            await asyncio.gather(*(leave(c) for c in clients))
            await server.stop()
    return LatencyFigures(
        config=config,
        video_mixed=Delays.of(video_mixed),
        video_forward=Delays.of(video_forward),
        audio_mixed=Delays.of(audio_mixed),
        audio_forward=Delays.of(audio_forward),
        unreadable_frames=misses[0],
        machine_busy_cores=busy,
        server_cpu_percent=server_percent,
    )


def format_figures(figures: LatencyFigures) -> list[str]:
    """The table and verdicts."""
    rows = [
        ("video, mixed view (720p)", figures.video_mixed),
        ("video, forward stream (no mixing)", figures.video_forward),
        ("audio, mixed view", figures.audio_mixed),
        ("audio, forward stream (no mixing)", figures.audio_forward),
    ]
    lines = [
        "",
        f"publisher frame -> subscriber's decoded frame, {figures.config.seconds:g} s after "
        f"{figures.config.warmup:g} s warm-up",
        "",
        f"   {'ms':<36}{'samples':>8}{'median':>8}{'p95':>8}{'min':>8}",
    ]
    for name, d in rows:
        lines.append(
            f"   {name:<36}{d.samples:>8}{d.median_ms:>8.1f}{d.p95_ms:>8.1f}{d.min_ms:>8.1f}"
        )
    v = figures.video_mixed.median_ms - figures.video_forward.median_ms
    a = figures.audio_mixed.median_ms - figures.audio_forward.median_ms
    lines += [
        "",
        f"   mixing adds over forwarding (medians): video {v:+.1f} ms, audio {a:+.1f} ms",
        f"   frames whose number failed its check: {figures.unreadable_frames}",
        "   (the clients release received frames as soon as complete, as the server does;"
        " aiortc's default",
        "   receive buffer would add 33 ms to video and 80 ms to audio on the client)",
        f"   server {figures.server_cpu_percent:.0f}% of a core; machine "
        f"{figures.machine_busy_cores:.2f} busy cores (others' work included)",
        "",
        f"video (mixed) median {figures.video_mixed.median_ms:.1f} ms, p95 "
        f"{figures.video_mixed.p95_ms:.1f} ms - target <= {VIDEO_MEDIAN_TARGET_MS:.0f} / "
        f"{VIDEO_P95_TARGET_MS:.0f}: {verdict(figures.meets_video)}",
        f"audio (mixed) median {figures.audio_mixed.median_ms:.1f} ms - target <= "
        f"{AUDIO_MEDIAN_TARGET_MS:.0f}: {verdict(figures.meets_audio)}",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run the latency benchmark, print the table, write JSON."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.latency", description=(__doc__ or "").splitlines()[0]
    )
    add_common_arguments(parser)
    parser.add_argument("--seconds", type=float, help="measured seconds (default 30)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    machine = MachineInfo.collect()
    for line in header("Tessera latency benchmark", machine):
        print(line, flush=True)
    config = QUICK if args.quick else LatencyBenchConfig()
    if args.seconds:
        config = LatencyBenchConfig(seconds=args.seconds, warmup=config.warmup)
    figures = asyncio.run(run_latency_bench(config))
    return finish("latency", args.json, machine, figures, format_figures(figures), started)


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark participants that cost their own process little: pre-encoded media out, taps in.

A room of nine real publishers would spend most of a core of the benchmark
process just encoding their cameras, on the same two cores as the server.
These participants send VP8 and Opus that were encoded once, before the
measurement (aiortc's own encoders, camera-like content), as `av.Packet`s
that aiortc only packetizes; and they count what they receive with an
encoded-frame tap instead of decoding it. The server sees exactly what it
would from real peers: RTP over DTLS-SRTP, one peer connection per
participant, a keyframe whenever it asks for one (the loop restarts on it).
"""

from __future__ import annotations

import asyncio
import fractions
import time
from dataclasses import dataclass
from typing import Any

import av
import numpy as np
from aiortc.mediastreams import MediaStreamTrack

from tessera.media.aiortcext import on_keyframe_request

from .batchreceiver import BatchReceiver
from .content import VIDEO_CLOCK, MovingPattern, encode_like_aiortc
from .subscribers import BenchServer, HeaderCountingClient, TappedClient, leave

AUDIO_CLOCK = 48000
AUDIO_FRAME = 960  # 20 ms


def encode_scenes(
    count: int, width: int = 640, height: int = 360, seconds: float = 2.0, bitrate: int = 600_000
) -> list[list[bytes]]:
    """`count` different scenes of `seconds` of VP8 each, a keyframe first, then P-frames."""
    frames = max(2, round(seconds * 30))
    return [
        encode_like_aiortc(MovingPattern(width, height, seed=500 + i), frames, bitrate)
        for i in range(count)
    ]


def encode_voice(seconds: float = 2.0, seed: int = 1) -> list[bytes]:
    """Opus frames (20 ms, stereo, aiortc's encoder settings) of a speech-like signal.

    Bursts of a few harmonics with a wandering pitch, with pauses: the mixer
    decodes, measures and mixes real sound, and its voice detection sees
    someone talking now and then.
    """
    from aiortc.codecs.opus import OpusEncoder as AiortcOpusEncoder

    rng = np.random.default_rng(seed)
    encoder = AiortcOpusEncoder()
    rate = AUDIO_CLOCK
    frames = max(1, round(seconds * 50))
    t = np.arange(frames * AUDIO_FRAME) / rate
    pitch = 120 + 60 * rng.random() + 20 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voice = sum(np.sin(k * phase) / k for k in (1, 2, 3, 4))
    envelope = (np.sin(2 * np.pi * (0.4 + 0.2 * rng.random()) * t) > -0.2).astype(np.float64)
    signal = (0.25 * 32767 * voice / 2.1 * envelope).astype(np.int16)
    stereo = np.repeat(signal, 2)
    encoded: list[bytes] = []
    for index in range(frames):
        chunk = stereo[index * AUDIO_FRAME * 2 : (index + 1) * AUDIO_FRAME * 2]
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate = rate
        frame.pts = index * AUDIO_FRAME
        frame.time_base = fractions.Fraction(1, rate)
        payloads, _ = encoder.encode(frame)
        encoded.extend(payloads)
    return encoded


class EncodedTrack(MediaStreamTrack):  # type: ignore[misc]
    """Pre-encoded frames as `av.Packet`s in real time, looping; a keyframe request restarts.

    `frames[0]` must be a keyframe (video).
    """

    def __init__(self, kind: str, frames: list[bytes], clock: int, step: int, rate: float) -> None:
        super().__init__()
        self.kind = kind
        self._frames = frames
        self._clock = clock
        self._step = step
        self._period = 1 / rate
        self._start: float | None = None
        self._count = 0
        self._index = 0

    def restart(self) -> None:
        """Send the loop's first frame (the keyframe) next."""
        self._index = 0

    async def recv(self) -> av.Packet[Any]:
        """The next packet, when it is due."""
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        due = self._start + self._count * self._period
        await asyncio.sleep(max(0.0, due - loop.time()))
        packet = av.Packet(self._frames[self._index])
        packet.pts = self._count * self._step
        packet.time_base = fractions.Fraction(1, self._clock)
        self._count += 1
        self._index = (self._index + 1) % len(self._frames)
        return packet


def video_track(frames: list[bytes], fps: int = 30) -> EncodedTrack:
    """A camera sending `frames` (pre-encoded VP8) at `fps`."""
    return EncodedTrack("video", frames, VIDEO_CLOCK, VIDEO_CLOCK // fps, fps)


def audio_track(frames: list[bytes]) -> EncodedTrack:
    """A microphone sending `frames` (pre-encoded 20 ms Opus)."""
    return EncodedTrack("audio", frames, AUDIO_CLOCK, AUDIO_FRAME, 50)


class Participant(TappedClient):
    """A benchmark participant: publishes pre-encoded media, counts what it receives."""

    tap_kinds: tuple[str, ...] = ("video", "audio")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.join_started: float | None = None  # time.monotonic() when it began to join

    @property
    def join_to_first_frame(self) -> float | None:
        """Seconds from the start of its join to the first frame of the view (None: none yet)."""
        if self.join_started is None or self.first_frame_at is None:
            return None
        return self.first_frame_at - self.join_started


class HeaderCountingParticipant(HeaderCountingClient, Participant):
    """A participant that counts the view's whole frames from clear RTP headers (no decryption).

    Its one peer connection carries its publication out and the view in: the only RTP
    it receives is the view's video (RTCP about its publication, keyframe requests
    included, still goes to aiortc). Video-only subscriptions only.
    """

    tap_kinds: tuple[str, ...] = ("video",)


@dataclass(frozen=True)
class ParticipantSpec:
    """What one participant does in a room."""

    user: str
    video: list[bytes] | None = None  # publish this VP8 loop
    audio: list[bytes] | None = None  # publish this Opus loop
    subscribe_video: bool = True  # to the room's mixed view
    subscribe_audio: bool = False
    # Count the view from RTP headers (HeaderCountingParticipant), not aiortc's receive path.
    count_headers: bool = False


async def enter(
    server: BenchServer,
    room: str,
    spec: ParticipantSpec,
    timeout: float = 30.0,
    reader: BatchReceiver | None = None,
) -> Participant:
    """Join `room`, publish, subscribe to the view and wait for media to arrive.

    With `spec.count_headers` and a `reader`, its socket is then read by that thread.
    """
    if spec.count_headers and (spec.subscribe_audio or not spec.subscribe_video):
        raise ValueError("header counting is for video-only subscriptions")
    kind = HeaderCountingParticipant if spec.count_headers else Participant
    client = kind(request_timeout=timeout)
    try:
        client.join_started = time.monotonic()
        await client.join(server.token(spec.user, "presenter", room))
        if spec.video is not None or spec.audio is not None:
            video = video_track(spec.video) if spec.video is not None else None
            audio = audio_track(spec.audio) if spec.audio is not None else None
            publication = await client.publish(audio=audio, video=video)
            if video is not None:
                on_keyframe_request(publication.transceivers["video"].sender, video.restart)
            await publication.wait_ready(timeout)
        if spec.subscribe_video or spec.subscribe_audio:
            view = f"{client.room_id}-common"
            subscription = await client.subscribe(
                view, audio=spec.subscribe_audio, video=spec.subscribe_video
            )
            await subscription.wait_ready(timeout)
            if spec.subscribe_video:
                await asyncio.wait_for(client.first_frame.wait(), timeout)
            if spec.subscribe_audio:
                await asyncio.wait_for(client.first_audio.wait(), timeout)
        if reader is not None and isinstance(client, HeaderCountingParticipant):
            client.read_in_batches(reader)
    except BaseException:
        await leave(client)
        raise
    return client


async def enter_all(
    server: BenchServer,
    room: str,
    specs: list[ParticipantSpec],
    batch: int,
    timeout: float,
    reader: BatchReceiver | None = None,
) -> list[Participant]:
    """Everyone in `specs` enters, `batch` at a time; on any failure all leave and it raises."""
    entered: list[Participant] = []
    for first in range(0, len(specs), batch):
        results = await asyncio.gather(
            *(enter(server, room, spec, timeout, reader) for spec in specs[first : first + batch]),
            return_exceptions=True,
        )
        entered += [r for r in results if isinstance(r, Participant)]
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            await asyncio.gather(*(leave(c) for c in entered))
            raise RuntimeError(f"a participant failed to enter {room}: {errors[0]!r}")
    return entered


@dataclass(frozen=True)
class Received:
    """What a group of participants received in a window (per participant)."""

    video_fps_min: float
    video_fps_mean: float
    audio_fps_min: float
    audio_fps_mean: float


class Counter:
    """Frames received by a group of participants from its construction to `stop()`."""

    def __init__(self, clients: list[Participant]) -> None:
        self.clients = clients
        self._video = [c.frames for c in clients]
        self._audio = [c.audio_frames for c in clients]
        self._started = asyncio.get_running_loop().time()

    def stop(self) -> Received:
        """Per-participant frame rates since construction."""
        elapsed = asyncio.get_running_loop().time() - self._started
        video = [(c.frames - v) / elapsed for c, v in zip(self.clients, self._video, strict=True)]
        audio = [
            (c.audio_frames - a) / elapsed for c, a in zip(self.clients, self._audio, strict=True)
        ]
        return Received(
            video_fps_min=min(video, default=0.0),
            video_fps_mean=sum(video) / len(video) if video else 0.0,
            audio_fps_min=min(audio, default=0.0),
            audio_fps_mean=sum(audio) / len(audio) if audio else 0.0,
        )

"""Captioner: a room's live captions, one recogniser per publication's audio, one worker thread.

Decoded audio frames reach it on the event loop thread (a sink of the publication's
audio `FrameSource`) and are only queued there; resampling to 16 kHz mono and
recognition run on the room's caption thread. When that thread falls behind (a
loaded machine), frames are dropped, counted and logged, and the speaker's utterance
ends there: captions come late never, incomplete sometimes.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Protocol

import av

from tessera.media.threadstart import LaunchedThread
from tessera.webrtc_agent.forwardstream import ForwardStream

from .caption import Caption
from .recogniser import SAMPLE_RATE, Heard, SpeechRecogniser

logger = logging.getLogger(__name__)

# Audio the thread may be behind before frames are dropped (20 ms frames: 3 s).
MAX_BACKLOG = 150
# At most one "falling behind" line per input this often.
DROP_LOG_INTERVAL = 10.0


class CaptionListener(Protocol):
    """Hears the captions of a room (on the event loop thread)."""

    def caption_heard(self, caption: Caption) -> None: ...


@dataclass
class _Speaker:
    """Who speaks on a publication, as its captions name them."""

    stream_id: str
    participant: str
    user: str


class _AudioSink:
    """The caption thread's sink on one publication's decoded audio (event loop side)."""

    def __init__(self, captioner: Captioner, stream_id: str) -> None:
        self._captioner = captioner
        self._stream_id = stream_id

    def on_frame(self, frame: av.VideoFrame | av.AudioFrame) -> None:
        if isinstance(frame, av.AudioFrame):
            self._captioner._submit(self._stream_id, frame)


class _Listening:
    """One input's state on the caption thread."""

    def __init__(self, speaker: _Speaker, language: str) -> None:
        self.speaker = speaker
        self.recogniser = SpeechRecogniser(language)
        self.resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        self.utterance = 0
        self.gap = False  # frames were dropped: the next frame starts a new stream


class Captioner:
    """Live captions of a room: created and closed by the room while its ``captions``
    option is on. Each added publication's audio is recognised; every partial and
    final result goes to the listener as a `Caption`."""

    def __init__(self, room_id: str, language: str, listener: CaptionListener) -> None:
        self.room_id = room_id
        self.language = language
        self._listener = listener
        self._loop = asyncio.get_running_loop()
        self._inputs: dict[str, tuple[ForwardStream, _AudioSink]] = {}
        self._speakers: dict[str, _Speaker] = {}
        # (stream id, frame, arrival, whether frames right before it were dropped).
        self._queue: queue.Queue[tuple[str, av.AudioFrame, float, bool]] = queue.Queue(MAX_BACKLOG)
        self._gaps: set[str] = set()  # inputs whose latest frame was dropped
        # Inputs removed, and when: the thread lets go of one once it has recognised the
        # frames queued before then (a dict, not a queue entry: a full queue must not
        # keep a recogniser and its 90 MB alive).
        self._gone: dict[str, float] = {}
        self._stop = threading.Event()
        self.dropped = 0  # frames dropped because the thread was behind
        self._dropped_by_input: dict[str, int] = {}
        self._last_drop_log: dict[str, float] = {}
        self.captions = 0  # captions delivered
        self.closed = False
        self.reason: str | None = None
        self._thread = LaunchedThread(self._run, f"captions {room_id}")
        self._thread.launch()

    @property
    def log_ids(self) -> dict[str, str]:
        return {"room": self.room_id}

    @property
    def inputs(self) -> list[str]:
        """The ids of the publications being captioned."""
        return list(self._inputs)

    # -- the room's calls (event loop thread) -----------------------------

    def add_input(self, stream: ForwardStream, participant: str, user: str) -> None:
        """Caption ``stream``'s audio (nothing if it has none), naming its speaker."""
        if self.closed or stream.id in self._inputs:
            return
        source = stream.frame_source("audio")
        if source is None:
            return
        sink = _AudioSink(self, stream.id)
        self._speakers[stream.id] = _Speaker(stream.id, participant, user)
        self._inputs[stream.id] = (stream, sink)
        source.add_sink(sink)
        logger.info("captioning a stream", extra={**self.log_ids, "stream": stream.id})

    def remove_input(self, stream_id: str) -> None:
        """Stop captioning a publication; an utterance going on becomes final."""
        entry = self._inputs.pop(stream_id, None)
        if entry is None:
            return
        stream, sink = entry
        source = stream.frame_source("audio")
        if source is not None:
            source.remove_sink(sink)
        self._dropped_by_input.pop(stream_id, None)
        self._last_drop_log.pop(stream_id, None)
        self._gaps.discard(stream_id)
        self._gone[stream_id] = time.monotonic()

    def close(self, reason: str) -> None:
        """Idempotent: every input is let go and the thread ends (without waiting for it)."""
        if self.closed:
            return
        for stream_id in list(self._inputs):
            self.remove_input(stream_id)
        self.closed = True
        self.reason = reason
        self._stop.set()
        logger.info(
            "captions closed: %s (%d captions, %d frames dropped)",
            reason,
            self.captions,
            self.dropped,
            extra={**self.log_ids, "reason": reason},
        )

    # -- frames in (event loop thread) ------------------------------------

    def _submit(self, stream_id: str, frame: av.AudioFrame) -> None:
        gap = stream_id in self._gaps
        try:
            self._queue.put_nowait((stream_id, frame, time.monotonic(), gap))
        except queue.Full:
            self._gaps.add(stream_id)
            self._dropped(stream_id)
            return
        if gap:
            self._gaps.discard(stream_id)

    def _dropped(self, stream_id: str) -> None:
        self.dropped += 1
        count = self._dropped_by_input.get(stream_id, 0) + 1
        self._dropped_by_input[stream_id] = count
        now = time.monotonic()
        if now - self._last_drop_log.get(stream_id, -1e9) >= DROP_LOG_INTERVAL:
            self._last_drop_log[stream_id] = now
            logger.warning(
                "captions fall behind: %d audio frames of this stream dropped so far",
                count,
                extra={**self.log_ids, "stream": stream_id},
            )

    # -- the caption thread -------------------------------------------------

    def _run(self) -> None:
        listening: dict[str, _Listening] = {}
        try:
            while not self._stop.is_set():
                try:
                    stream_id, frame, arrival, gap = self._queue.get(timeout=0.2)
                except queue.Empty:
                    self._let_go(listening, float("inf"))
                    continue
                # Frames arrive in order: one that came after an input was removed means
                # every frame of that input has been recognised.
                self._let_go(listening, arrival)
                speaker = self._speakers.get(stream_id)
                if speaker is None:
                    continue
                state = listening.get(stream_id)
                if state is None:
                    state = listening[stream_id] = _Listening(speaker, self.language)
                elif gap:
                    # Frames were dropped right before this one: what was being said ends.
                    self._deliver(state, state.recogniser.flush())
                self._deliver(state, self._recognise(state, frame, arrival))
        except Exception:
            logger.exception("the caption thread crashed", extra=self.log_ids)

    def _let_go(self, listening: dict[str, _Listening], horizon: float) -> None:
        for stream_id, removed_at in list(self._gone.items()):
            if removed_at < horizon:
                del self._gone[stream_id]
                self._speakers.pop(stream_id, None)
                ended = listening.pop(stream_id, None)
                if ended is not None:
                    # What was being said is final now.
                    self._deliver(ended, ended.recogniser.flush())

    def _recognise(self, state: _Listening, frame: av.AudioFrame, arrival: float) -> list[Heard]:
        pcm = b"".join(
            bytes(out.planes[0])[: out.samples * 2] for out in state.resampler.resample(frame)
        )
        return state.recogniser.feed(pcm, arrival) if pcm else []

    def _deliver(self, state: _Listening, heard: list[Heard]) -> None:
        for result in heard:
            speaker = state.speaker
            caption = Caption(
                id=f"{speaker.stream_id}-{state.utterance}",
                stream_id=speaker.stream_id,
                participant=speaker.participant,
                user=speaker.user,
                language=self.language,
                text=result.text,
                final=result.final,
                start=result.start,
                end=result.end,
            )
            if result.final:
                state.utterance += 1
            try:
                self._loop.call_soon_threadsafe(self._heard, caption)
            except RuntimeError:  # the event loop closed (the process is ending)
                self._stop.set()
                return

    def _heard(self, caption: Caption) -> None:
        if self.closed:
            return
        self.captions += 1
        try:
            self._listener.caption_heard(caption)
        except Exception:
            logger.exception("caption listener failed", extra=self.log_ids)


__all__ = ["CaptionListener", "Captioner"]

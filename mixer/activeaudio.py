"""ActiveAudioSelector: a room's active audio streams (OWT's ``selectActiveAudio``).

OWT ranks every published audio of a room and offers the K most active ones
(K = 3) as K audio-only streams, for large rooms where a client would rather
receive a few voices than one stream per participant or one mix. Each is
listed like a forward stream, with ``info.type`` ``"selecting"``;
``info.owner`` and ``info.activeInput`` name the participant and the stream it
carries, and each change of input is announced as a ``stream`` ``update`` of
field ``activeInput`` with value ``{id, volume}`` (OWT's
``doc/design/active-audio-selecting.md``, ``conference/stream.js``
``SelectedStream``).

Here one thread per room decodes every input (as a view's audio thread does),
ranks them with `AudioRanker` and encodes each active stream that has
subscribers from its current input: one Opus encode per stream, shared by all
its subscribers, whose encoder goes on when the stream's input changes
(the receivers' decoders see one unbroken Opus stream).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Sequence
from functools import partial
from typing import Any, Protocol

import numpy as np

from tessera.media.mediasource import (
    FrameSource,
    Packet,
    PacketSource,
    ParameterError,
    Stream,
    VideoFormat,
)
from tessera.webrtc_agent.forwardstream import ForwardStream

from .audiomix import level_dbov
from .audiorank import AudioRanker, RankChange
from .audiosink import AUDIO_CHANNELS, AUDIO_SAMPLES, AudioSink
from .outputs import OpusEncoder
from .tickthread import TickThread, ticks

logger = logging.getLogger(__name__)

# OWT: "select 3 most active audio streams for the room" (its audio agent's default K).
ACTIVE_AUDIO_STREAMS = 3


class ActiveAudioListener(Protocol):
    """What the selector tells its room (on the event loop thread)."""

    def active_audio_changed(self, stream: ActiveAudioStream) -> None: ...


class ActiveAudioOutput(PacketSource):
    """The Opus packets of one active audio stream, shared by all its subscribers."""

    def __init__(self) -> None:
        super().__init__("audio", "opus", 48000)

    def emit_all(self, packets: Sequence[Packet]) -> None:
        """Event loop thread: hand one tick's packets to the sinks."""
        if self.closed:
            return
        for packet in packets:
            self.emit(packet, True)


class ActiveAudioStream(Stream):
    """One of a room's active audio streams: whoever is in its slot of the ranking.

    Listed as a forward stream of ``info.type`` ``"selecting"`` (OWT's form).
    `active_input`, `owner` and `volume` describe its current input, or are
    None while its slot is free.
    """

    type = "forward"

    def __init__(self, stream_id: str, slot: int) -> None:
        self.id = stream_id
        self.slot = slot
        self.track_id = uuid.uuid4().hex
        self.output = ActiveAudioOutput()
        self.active_input: str | None = None
        self.owner: str | None = None
        self.volume: str | None = None  # "major" (speaking) | "minor", at the last change

    def has_track(self, kind: str) -> bool:
        return kind == "audio"

    def codec(self, kind: str) -> str | None:
        return "opus" if kind == "audio" else None

    def info(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "owner": self.owner or "unknown",
            "type": "selecting",
            "inViews": [],
            "activeInput": self.active_input or "unknown",
        }
        if self.volume is not None:
            info["volume"] = self.volume
        return {
            "id": self.id,
            "type": "forward",
            "data": None,
            "media": {
                "tracks": [
                    {
                        "id": self.track_id,
                        "type": "audio",
                        "format": {"codec": "opus", "sampleRate": 48000, "channelNum": 2},
                        "status": "active",
                    }
                ]
            },
            "info": info,
        }

    def active_input_value(self) -> dict[str, str]:
        """The value of the ``activeInput`` update announcing the current input."""
        return {"id": self.active_input or "unknown", "volume": self.volume or "minor"}

    def packet_source(
        self, kind: str, fmt: VideoFormat | str, subscriber: str | None = None
    ) -> PacketSource:
        if self.output.closed:
            raise ParameterError("Stream does NOT exist")
        if kind != "audio":
            raise ParameterError(f"Stream has no {kind} track")
        if fmt != "opus":
            raise ParameterError(f"Audio codec {fmt} is not acceptable")
        return self.output

    def frame_source(self, kind: str) -> FrameSource | None:
        return None


class _Input:
    """A published audio track the selector ranks."""

    def __init__(self, stream: ForwardStream, owner: str) -> None:
        self.stream = stream
        self.owner = owner
        self.sink = AudioSink()


class ActiveAudioSelector:
    """Ranks every published audio of a room and feeds the most active to its streams.

    Parent of the room's `streams` (`ACTIVE_AUDIO_STREAMS` of them, for the
    room's lifetime or until the option is turned off). Its thread runs while
    the room has audio inputs; it decodes them all (ranking needs every level)
    but encodes only the streams somebody subscribes to.
    """

    def __init__(
        self, room_id: str, listener: ActiveAudioListener, count: int = ACTIVE_AUDIO_STREAMS
    ) -> None:
        self.room_id = room_id
        self.listener = listener
        self._loop = asyncio.get_running_loop()
        self.streams = [ActiveAudioStream(uuid.uuid4().hex, slot) for slot in range(count)]
        self.inputs: dict[str, _Input] = {}
        # Replaced (never mutated) on the loop thread; the selector thread reads it.
        self._snapshot: tuple[tuple[str, AudioSink], ...] = ()
        self._thread: TickThread | None = None
        # The last thread asked to stop: the next one starts ranking once it has finished.
        self._stopped: TickThread | None = None
        # Which thread's ranking is current: a stopped thread's late results are dropped.
        self._generation = 0
        self.ticks = 0
        self.closed = False

    @property
    def log_ids(self) -> dict[str, str]:
        """The ids a log line about this selector carries."""
        return {"room": self.room_id}

    # -- inputs (event loop thread) -----------------------------------------

    def add_input(self, stream: ForwardStream, owner: str) -> None:
        """Rank `stream`'s audio from now on (idempotent; a stream without audio is skipped)."""
        audio = stream.tracks.get("audio")
        if audio is None or stream.id in self.inputs or self.closed:
            return
        entry = _Input(stream, owner)
        entry.sink.active = audio.active
        self.inputs[stream.id] = entry
        self._attach(entry)
        self._publish()

    def remove_input(self, stream_id: str) -> None:
        """Stop ranking a stream (unpublished); a stream carrying it is free at once."""
        entry = self.inputs.pop(stream_id, None)
        if entry is None:
            return
        self._detach(entry)
        self._publish()
        # The thread frees the slot too, but it may stop first (no inputs left).
        for stream in self.streams:
            if stream.active_input == stream_id:
                self._set_input(stream, None, speaking=False)

    def set_input_status(self, stream_id: str, kind: str, active: bool) -> None:
        """The publisher paused or resumed its audio: a paused input is silent."""
        entry = self.inputs.get(stream_id)
        if entry is not None and kind == "audio":
            entry.sink.active = active

    @staticmethod
    def _audio_of(entry: _Input) -> PacketSource | FrameSource | None:
        # Opus arrives encoded and is decoded by the selector thread (see AudioSink).
        track = entry.stream.tracks["audio"]
        return track if track.codec == "opus" else entry.stream.frame_source("audio")

    def _attach(self, entry: _Input) -> None:
        source = self._audio_of(entry)
        if source is not None:
            source.add_sink(entry.sink)

    def _detach(self, entry: _Input) -> None:
        source = self._audio_of(entry)
        if source is not None:
            source.remove_sink(entry.sink)

    def _publish(self) -> None:
        self._snapshot = tuple((sid, entry.sink) for sid, entry in self.inputs.items())
        running = self._thread is not None
        if self.inputs and not running and not self.closed:
            self._generation += 1
            self._thread = TickThread(
                f"active-audio-{self.room_id}",
                partial(self._loop_ticks, generation=self._generation),
                self.log_ids,
                self._stopped,
            )
        elif not self.inputs and running:
            self._stop_thread()

    def _stop_thread(self) -> None:
        # Never waits on the event loop: the next thread waits for this one (see TickThread).
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.stop()
            self._stopped = thread

    # -- ranking results (event loop thread) -------------------------------

    def _apply(self, generation: int, changes: list[RankChange]) -> None:
        if self.closed or generation != self._generation:
            return
        for change in changes:
            # A change computed before an input was removed here names it no more.
            input_id = change.input_id if change.input_id in self.inputs else None
            self._set_input(self.streams[change.slot], input_id, change.speaking)

    def _set_input(self, stream: ActiveAudioStream, input_id: str | None, speaking: bool) -> None:
        if stream.active_input == input_id:
            return
        stream.active_input = input_id
        stream.owner = self.inputs[input_id].owner if input_id is not None else None
        stream.volume = ("major" if speaking else "minor") if input_id is not None else None
        logger.debug(
            "active audio %d: %s",
            stream.slot,
            input_id,
            extra={**self.log_ids, "stream": stream.id},
        )
        self.listener.active_audio_changed(stream)

    # -- the selector thread --------------------------------------------------

    def _loop_ticks(self, stop: threading.Event, generation: int) -> None:
        ranker = AudioRanker(len(self.streams))
        encoders: dict[int, OpusEncoder] = {}  # slot -> the encoder of its stream
        outputs = [stream.output for stream in self.streams]
        previous: tuple[tuple[str, AudioSink], ...] = ()
        for tick, _ in ticks(stop, AUDIO_SAMPLES / 48000, max_lag=5):
            changes: list[RankChange] = []
            inputs = self._snapshot
            if inputs is not previous:
                current = {stream_id for stream_id, _ in inputs}
                for stream_id, _ in previous:
                    if stream_id not in current:
                        changes += ranker.remove(stream_id)
                previous = inputs
            chunks: dict[str, np.ndarray] = {}
            for stream_id, sink in inputs:
                chunk = sink.read()
                if chunk is not None:
                    chunks[stream_id] = chunk
            changes += ranker.update({sid: level_dbov(chunk) for sid, chunk in chunks.items()})
            if changes:
                self._loop.call_soon_threadsafe(self._apply, generation, changes)
            batch: list[tuple[ActiveAudioOutput, list[Packet]]] = []
            pts = tick * AUDIO_SAMPLES
            for slot, input_id in enumerate(ranker.slots):
                output = outputs[slot]
                if not output.sink_count or output.closed:
                    encoders.pop(slot, None)  # nobody listens: no encode
                    continue
                chunk = chunks.get(input_id) if input_id is not None else None
                if chunk is None:
                    continue  # a free slot or a silent tick: nothing sent, time goes on
                encoder = encoders.get(slot)
                if encoder is None:
                    encoder = encoders[slot] = OpusEncoder(AUDIO_CHANNELS)
                packets = encoder.encode(chunk, pts)
                if packets:
                    batch.append((output, packets))
            if batch:
                self._loop.call_soon_threadsafe(_emit_batch, batch)
            self.ticks += 1

    def close(self) -> None:
        """Idempotent: stops the thread, detaches from every input, ends every stream."""
        if self.closed:
            return
        self.closed = True
        self._stop_thread()
        for entry in self.inputs.values():
            self._detach(entry)
        self.inputs.clear()
        self._snapshot = ()
        for stream in self.streams:
            stream.output.close()


def _emit_batch(batch: list[tuple[ActiveAudioOutput, list[Packet]]]) -> None:
    for output, packets in batch:
        try:
            output.emit_all(packets)
        except Exception:
            logger.exception("active audio delivery failed")

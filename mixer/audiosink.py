"""AudioSink: one input's audio, buffered and decoded for a mixing thread in 20 ms chunks."""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

import av
import numpy as np
from av.audio.resampler import AudioResampler

from tessera.media.mediasource import Packet

logger = logging.getLogger(__name__)

AUDIO_SAMPLES = 960  # 20 ms at 48 kHz
AUDIO_CHANNELS = 2
# At most this much audio waits per input; more means the input runs fast or
# the mixer fell behind, and the oldest samples go (bounded latency).
MAX_BUFFERED_SAMPLES = AUDIO_SAMPLES * 10


class AudioSink:
    """Buffers one input's audio; a mixing thread (a view's, the active audio selector's) decodes,
    converts and reads it.

    An Opus input arrives as the publisher's encoded packets (a PacketSink of
    its forward track) and is decoded here, on the thread that reads it: no
    decoder thread per input and no event-loop hop per decoded frame, which
    cost a room of 50 more than the decoding itself. Other codecs arrive
    decoded by aiortc (a FrameSink of the track's decoded frames).
    """

    def __init__(self) -> None:
        self.frames: deque[av.AudioFrame] = deque(maxlen=50)
        self.packets: deque[Packet] = deque(maxlen=50)
        self._decoder: Any = None
        self._resampler: AudioResampler | None = None
        self._buffer = np.zeros(0, np.int16)
        self.active = True

    def on_frame(self, frame: av.VideoFrame | av.AudioFrame) -> None:
        if isinstance(frame, av.AudioFrame):
            self.frames.append(frame)

    def on_packet(self, packet: Packet, keyframe: bool) -> None:
        self.packets.append(packet)

    def _decode(self) -> None:
        """Audio thread: decode the Opus packets that arrived since the last tick."""
        if self._decoder is None:
            decoder = av.CodecContext.create("libopus", "r")
            decoder.format = "s16"  # type: ignore[union-attr]
            decoder.layout = "stereo"  # type: ignore[union-attr]
            decoder.sample_rate = 48000  # type: ignore[union-attr]
            self._decoder = decoder
        while self.packets:
            # A packet of our own (one copy): the forward track's is shared with other threads.
            packet = av.Packet(self.packets.popleft())  # type: ignore[arg-type]  # any buffer
            try:
                decoded = self._decoder.decode(packet)
            except av.FFmpegError as exc:
                logger.debug("opus decode failed: %s", exc)
                continue
            self.frames.extend(decoded)

    def read(self) -> np.ndarray | None:
        """Audio thread: the next 20 ms (interleaved stereo int16), or None if not there yet."""
        if self.packets:
            self._decode()
        while self.frames:
            frame = self.frames.popleft()
            if _is_mix_format(frame) and self._resampler is None:
                # libopus already gives 48 kHz interleaved stereo int16:
                # a resampler would only copy it (a filter graph run per 20 ms frame).
                self._append(frame.to_ndarray().reshape(-1))
                continue
            if self._resampler is None:
                self._resampler = AudioResampler(format="s16", layout="stereo", rate=48000)
            for out in self._resampler.resample(frame):
                self._append(out.to_ndarray().reshape(-1))
        need = AUDIO_SAMPLES * AUDIO_CHANNELS
        limit = MAX_BUFFERED_SAMPLES * AUDIO_CHANNELS
        if len(self._buffer) > limit:
            self._buffer = self._buffer[-limit:]
        if len(self._buffer) < need:
            return None
        chunk, self._buffer = self._buffer[:need], self._buffer[need:]
        return chunk if self.active else None

    def _append(self, samples: np.ndarray) -> None:
        if len(self._buffer):
            self._buffer = np.concatenate([self._buffer, samples])
        else:
            self._buffer = samples


def _is_mix_format(frame: av.AudioFrame) -> bool:
    return (
        frame.format.name == "s16" and frame.layout.name == "stereo" and frame.sample_rate == 48000
    )

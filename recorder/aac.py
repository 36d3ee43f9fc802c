"""AudioToAac: a room's audio (Opus, G.711) decoded and encoded as 48 kHz stereo AAC.

RTMP/FLV, MPEG-TS (HLS), fragmented MP4 (DASH) and RTSP players all take AAC,
none of them Opus: this is the one place where a streaming-out transcodes.
FFmpeg's `aac` encoder takes planar float frames of exactly 1024 samples (an
`AudioResampler` and an `AudioFifo` regroup the 960-sample Opus frames);
opened as a stream of an FLV, HLS or DASH output it makes the
AudioSpecificConfig that FLV's AAC sequence header, MPEG-TS's ADTS headers and
RTSP's SDP come from.
"""

from __future__ import annotations

from typing import Any

import av
import numpy as np

from tessera.media.mediasource import Packet

from .muxer import AUDIO_TIME_BASE

AAC_RATE = 48000
AAC_FRAME = 1024  # samples per AAC frame
AAC_BITRATE = 128_000
# Audio timestamps within this of where the previous audio ended are contiguous.
AUDIO_TOLERANCE = AAC_RATE // 100  # 10 ms
# A gap in the audio up to this long is filled with silence (lost packets, a
# muted publisher); a longer one or an overlap starts the audio again there.
MAX_AUDIO_FILL = 5 * AAC_RATE

# Decoders for the audio a source can have: name, sample rate, layout.
AUDIO_DECODERS = {
    "opus": ("opus", 48000, "stereo"),
    "pcmu": ("pcm_mulaw", 8000, "mono"),
    "pcma": ("pcm_alaw", 8000, "mono"),
}


class AudioToAac:
    """Decodes one audio track and encodes 48 kHz stereo AAC into `stream` (worker thread).

    Timestamps come from the track's clock (48 kHz); the AAC frames stay
    contiguous across small gaps, which are filled with silence so that
    the audio does not drift from the video.
    """

    def __init__(self, codec: str, stream: Any) -> None:
        name, rate, layout = AUDIO_DECODERS[codec]
        decoder: Any = av.CodecContext.create(name, "r")
        decoder.sample_rate = rate
        decoder.layout = layout
        self._decoder = decoder
        self._resampler = av.AudioResampler(format="fltp", layout="stereo", rate=AAC_RATE)
        self._fifo = av.AudioFifo()
        self._stream = stream
        self._next: int | None = None  # pts of the first sample in the fifo
        self._end = 0  # where the audio handed to the encoder ends
        self.filled = 0  # gaps filled with silence
        self.restarts = 0  # jumps that started the audio again
        self.corrupt = 0  # packets the decoder refused

    def push(self, data: bytes, pts: int) -> list[Packet]:
        """AAC packets for one source packet that starts at `pts` (1/48000)."""
        try:
            frames = self._decoder.decode(av.Packet(data))
        except (av.error.FFmpegError, ValueError):
            self.corrupt += 1  # the decoder conceals it with the next packet
            return []
        for frame in frames:
            self._place(pts)
            for chunk in self._resampler.resample(frame):
                chunk.pts = None  # timing is kept here, not by the fifo
                self._fifo.write(chunk)
            pts += frame.samples * AAC_RATE // frame.sample_rate
        packets: list[Packet] = []
        while self._fifo.samples >= AAC_FRAME:
            packets += self._encode(self._fifo.read(AAC_FRAME))
        return packets

    def flush(self) -> list[Packet]:
        """The rest of the audio and what the encoder holds back."""
        packets: list[Packet] = []
        if self._fifo.samples:
            packets += self._encode(self._fifo.read(self._fifo.samples))
        packets += self._stream.encode(None)
        return packets

    @property
    def end(self) -> int:
        return self._end

    def _place(self, pts: int) -> None:
        if self._next is None:
            self._next = pts
            return
        gap = pts - (self._next + self._fifo.samples)
        if abs(gap) <= AUDIO_TOLERANCE:
            return
        if 0 < gap <= MAX_AUDIO_FILL:
            silence = np.zeros((2, gap), np.float32)
            frame = av.AudioFrame.from_ndarray(silence, format="fltp", layout="stereo")
            frame.sample_rate = AAC_RATE
            self._fifo.write(frame)
            self.filled += 1
            return
        # A source switch or a long pause: drop what is left of one frame and
        # start again at `pts` (never before audio already encoded).
        self.restarts += 1
        self._fifo = av.AudioFifo()
        self._next = max(pts, self._end)

    def _encode(self, frame: av.AudioFrame | None) -> list[Packet]:
        if frame is None or self._next is None:
            return []
        frame.pts = self._next
        frame.time_base = AUDIO_TIME_BASE
        frame.sample_rate = AAC_RATE
        self._next += frame.samples
        self._end = self._next
        return list(self._stream.encode(frame))

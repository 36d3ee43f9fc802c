"""Encoded outputs of a mixed stream: one per distinct format, shared by all its receivers."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

import av
import numpy as np
from av.video.reformatter import Interpolation, VideoReformatter

from tessera.media.mediasource import KeyframeRequester, PacketSource
from tessera.media.videoencoder import EncoderSettings, Packet, VideoEncoder

logger = logging.getLogger(__name__)

AUDIO_TIME_BASE = Fraction(1, 48000)


class MixedVideoOutput(PacketSource):
    """A view's video in one format (codec, size, frame rate, bitrate, keyframe interval).

    The view thread hands it each composed canvas; it scales (when its size
    differs from the view's) and encodes on that thread, then delivers the
    packets to its sinks on the event loop. Keyframe requests from any
    receiver reach this one encoder, at most one per `keyframe_min_interval`.

    The encoder belongs to the view thread: only `encode` creates and drops it.
    `close()` (on the loop thread, when the last receiver leaves) only marks the
    output closed, so an encode already under way finishes with its encoder and
    the next call drops it; `_encode_lock` keeps a stopping view thread and its
    successor from ever using the encoder at once.
    """

    def __init__(
        self,
        settings: EncoderSettings,
        loop: asyncio.AbstractEventLoop,
        keyframe_min_interval: float,
        on_active: Callable[[MixedVideoOutput, bool], None],
    ) -> None:
        super().__init__("video", settings.codec, 90000)
        self.settings = settings
        self._loop = loop
        self._on_active = on_active
        self._encoder: VideoEncoder | None = None
        self._scaler = VideoReformatter()
        self._force_keyframe = threading.Event()
        self._keyframes = KeyframeRequester(self._force_keyframe.set, keyframe_min_interval)
        self._encode_lock = threading.Lock()
        self._next_pts = 0
        self.encode_seconds = 0.0  # thread CPU time spent scaling and encoding
        self.frames = 0

    @property
    def encoder(self) -> VideoEncoder | None:
        return self._encoder

    def _on_first_sink(self) -> None:
        self._force_keyframe.set()
        self._on_active(self, True)

    def _on_last_sink(self) -> None:
        self._on_active(self, False)

    def request_keyframe(self) -> None:
        self._keyframes.request()

    def request_first_keyframe(self) -> None:
        self._keyframes.request_first()

    def encode(self, canvas: av.VideoFrame, pts: int) -> None:
        """Called on the view thread for every composed frame."""
        with self._encode_lock:
            if self.closed:
                # Dropped here, on the thread that uses it (see the class docstring).
                self._encoder = None
                return
            if pts < self._next_pts:
                return  # decimate to this output's frame rate
            self._next_pts = max(self._next_pts + 90000 // self.settings.framerate, pts)
            started = time.thread_time()
            s = self.settings
            encoder = self._encoder
            if encoder is None:
                encoder = self._encoder = VideoEncoder(s)
                self._force_keyframe.set()
            frame = canvas
            if (canvas.width, canvas.height) != (s.width, s.height):
                frame = self._scaler.reformat(
                    canvas,
                    width=s.width,
                    height=s.height,
                    interpolation=Interpolation.BILINEAR,
                    threads=1,
                )
            keyframe = self._force_keyframe.is_set()
            self._force_keyframe.clear()
            packets = encoder.encode(frame, pts, keyframe)
            self.encode_seconds += time.thread_time() - started
            self.frames += 1
        if packets:
            self._loop.call_soon_threadsafe(self._deliver, packets)

    def _deliver(self, packets: list[Packet]) -> None:
        for packet in packets:
            self.emit(packet, bool(packet.is_keyframe))

    def close(self) -> None:
        """Loop thread: no more frames are encoded; the view thread drops the encoder."""
        self._keyframes.close()
        super().close()


# The loss (%) an encoder with in-band FEC is set up for: libopus sizes its LBRR copy by
# it, and with FEC on at any loss it codes speech in hybrid mode (SILK carries the LBRR).
FEC_EXPECTED_LOSS = 10


class OpusEncoder:
    """A 48 kHz Opus encoder for 20 ms frames of interleaved int16 (one thread at a time).

    `fec`: in-band FEC on (each packet carries a coarse copy of the previous frame
    for a receiver that lost it), for subscribers on a lossy link.
    """

    def __init__(self, channels: int = 2, fec: bool = False) -> None:
        self.channels = channels
        self.fec = fec
        layout = "stereo" if channels == 2 else "mono"
        ctx = av.CodecContext.create("libopus", "w")
        ctx.sample_rate = 48000
        ctx.layout = layout
        ctx.format = "s16"
        ctx.time_base = AUDIO_TIME_BASE
        ctx.bit_rate = 64000 if channels == 2 else 32000
        options = {"application": "voip", "frame_duration": "20"}
        if fec:
            options |= {"fec": "1", "packet_loss": str(FEC_EXPECTED_LOSS)}
        ctx.options = options
        ctx.open()
        self._context: Any = ctx
        self._layout = layout

    def encode(self, samples: np.ndarray, pts: int) -> list[Packet]:
        frame = av.AudioFrame.from_ndarray(
            samples.reshape(1, -1), format="s16", layout=self._layout
        )
        frame.sample_rate = 48000
        frame.pts = pts
        frame.time_base = AUDIO_TIME_BASE
        packets = list(self._context.encode(frame))
        for packet in packets:
            packet.time_base = AUDIO_TIME_BASE
        return packets


def primed_encoder(fec: bool, history: Sequence[np.ndarray], pts: int) -> OpusEncoder:
    """A new stereo encoder that has already coded `history` (the mixes of the ticks
    before `pts`, oldest first): its first packet continues them, without a jump."""
    encoder = OpusEncoder(2, fec)
    for age, earlier in enumerate(history):
        encoder.encode(earlier, pts - (len(history) - age) * (earlier.size // 2))
    return encoder


class SharedMixEncoder:
    """A view's one encode of its full mix in one variant (plain, or with in-band FEC).

    Audio thread only. The encoder is made on the first tick an output needs it,
    primed with the full mixes of the ticks before (as `MixedAudioOutput.encode_minus`
    primes a participant's own: a subscriber switched to it hears no jump), and
    dropped by `idle()` on a tick nobody needed it: a variant nobody receives costs
    nothing. Packets of every variant carry the same timestamps (tick x 960).
    """

    def __init__(self, fec: bool) -> None:
        self.fec = fec
        self.encoder: OpusEncoder | None = None
        self.encode_seconds = 0.0  # thread CPU time
        self.ticks = 0  # ticks encoded
        self.starts = 0  # encoders made

    def encode(
        self, samples: np.ndarray, pts: int, history: Sequence[np.ndarray] = ()
    ) -> list[Packet]:
        started = time.thread_time()
        encoder = self.encoder
        if encoder is None:
            encoder = self.encoder = primed_encoder(self.fec, history, pts)
            self.starts += 1
        packets = encoder.encode(samples, pts)
        self.ticks += 1
        self.encode_seconds += time.thread_time() - started
        return packets

    def idle(self) -> None:
        """Nobody needed this variant this tick: drop the encoder."""
        self.encoder = None


class MixedAudioOutput(PacketSource):
    """A view's mixed audio for one participant (or, with key None, for recorders).

    With `fec`, the same audio encoded with in-band FEC on (see OpusEncoder): the
    view's shared FEC encode of the full mix, or a FEC encoder of its own.

    A participant heard in the mix (one of its talkers) gets its own mix-minus
    from its own encoder; everyone else's output relays the one shared encode
    of the full mix, which does not contain them, so listeners and quiet
    participants cost no extra encode. A participant who becomes a talker
    switches to its mix-minus in the tick its voice enters the mix and never
    hears itself; its own encoder is released when it stops being one.
    """

    def __init__(
        self,
        key: str | None,
        loop: asyncio.AbstractEventLoop,
        on_active: Callable[[MixedAudioOutput, bool], None],
        fec: bool = False,
    ) -> None:
        super().__init__("audio", "opus", 48000)
        self.key = key
        self.fec = fec
        self._loop = loop
        self._on_active = on_active
        self.own_encoder: OpusEncoder | None = None
        self.encode_seconds = 0.0

    def _on_first_sink(self) -> None:
        self._on_active(self, True)

    def _on_last_sink(self) -> None:
        self._on_active(self, False)

    def encode_minus(
        self, samples: np.ndarray, pts: int, history: Sequence[np.ndarray] = ()
    ) -> list[Packet]:
        """Audio thread: encode this participant's mix-minus with its own encoder.

        A new encoder first encodes `history` (the full mixes of the ticks just
        before, oldest first, which this participant received from the shared
        encoder) and drops those packets: its look-ahead and predictors then
        hold what the shared encoder's did, and the receiver's decoder hears no
        jump. Three ticks (60 ms) make the switch seamless; a fresh encoder
        starts from silence, a glitch of over half full scale on a loud tone.
        Returns the packets; the caller hands them over with `deliver_all`.
        """
        started = time.thread_time()
        # A local: close() on the loop thread may drop the attribute meanwhile.
        encoder = self.own_encoder
        if encoder is None:
            encoder = self.own_encoder = primed_encoder(self.fec, history, pts)
        packets = encoder.encode(samples, pts)
        self.encode_seconds += time.thread_time() - started
        return packets

    def release_own_encoder(self) -> None:
        """Audio thread: this participant hears the shared full mix again."""
        self.own_encoder = None

    def emit_all(self, packets: list[Packet]) -> None:
        """Event loop thread: hand packets to the sinks."""
        if self.closed:
            return
        for packet in packets:
            self.emit(packet, True)

    @staticmethod
    def deliver_all(
        loop: asyncio.AbstractEventLoop, batch: list[tuple[MixedAudioOutput, list[Packet]]]
    ) -> None:
        """Audio thread: one hop to the event loop for every output's packets of a tick.

        One `call_soon_threadsafe` per output woke the loop (a write to its
        self-pipe, a callback) 2,500 times a second for 50 participants.
        """
        if batch:
            loop.call_soon_threadsafe(_emit_batch, batch)

    def close(self) -> None:
        super().close()
        self.own_encoder = None


def _emit_batch(batch: list[tuple[MixedAudioOutput, list[Packet]]]) -> None:
    for output, packets in batch:
        try:
            output.emit_all(packets)
        except Exception:
            # The key is the listening participant (None: the recorders' output).
            logger.exception("audio output delivery failed", extra={"participant": output.key})

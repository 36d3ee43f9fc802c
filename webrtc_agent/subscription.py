"""Subscription: tracks of one or more streams sent to a participant."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from tessera.media.mediasource import PacketSource, Stream, VideoFormat
from tessera.media.packettrack import PacketTrack
from tessera.media.rtpfanout import SharedRtpTrack

from .adaptive import AUDIO_RESERVE, AdaptiveVideo, LadderStream
from .adaptiveaudio import AdaptiveAudio, FecStream
from .session import SessionTransport

logger = logging.getLogger(__name__)


# What feeds a subscriber's sender: the shared fan-out (always, in service), or aiortc's own
# packetiser per sender (kept for the fan-out benchmark's comparison).
SenderTrack = SharedRtpTrack | PacketTrack


@dataclass
class SubscribedTrack:
    """One subscribed track: which stream it comes from and in which format."""

    kind: str
    mid: str
    stream: Stream
    format: VideoFormat | str  # VideoFormat for video; the audio codec name for audio
    packet_track: SenderTrack | None = None
    paused: bool = False

    @property
    def source(self) -> PacketSource | None:
        return self.packet_track.source if self.packet_track else None


class Subscription:
    """A subscribe session on a Transport: shared packet sources → the participant's senders."""

    kind = "subscription"

    def __init__(
        self,
        transport: SessionTransport,
        subscription_id: str,
        tracks: list[SubscribedTrack],
        subscriber: str | None = None,
    ):
        self.id = subscription_id
        self.subscriber = subscriber
        self.transport = transport
        self.tracks = {t.kind: t for t in tracks}
        self.ready = False
        self.closed = False
        # The video's rung on a view's ladder, while it adapts (see adapt()).
        self.adaptive: AdaptiveVideo | None = None
        self._video_sender: Any = None
        # The audio's in-band FEC switch, on a view's mix (see adapt()).
        self.adaptive_audio: AdaptiveAudio | None = None
        self._audio_sender: Any = None

    @property
    def mids(self) -> dict[str, str]:
        """mid -> kind of the tracks whose mid is known."""
        return {t.mid: t.kind for t in self.tracks.values() if t.mid}

    def kinds_without_mid(self) -> list[str]:
        return [t.kind for t in self.tracks.values() if not t.mid]

    def assign_mid(self, kind: str, mid: str) -> None:
        """An older client did not name its mids: the offer's m-line of `kind` is it."""
        self.tracks[kind].mid = mid

    def stream_ids(self) -> set[str]:
        return {t.stream.id for t in self.tracks.values()}

    def bind(self, kind: str, codec: str, shared: bool = True) -> SenderTrack:
        """Create the sender's track once the transport negotiated `codec` for `kind`.

        `shared`: the shared fan-out sends it (else aiortc's sender packetises it itself).
        """
        track = self.tracks[kind]
        fmt = track.format
        fmt = fmt.with_codec(codec) if isinstance(fmt, VideoFormat) else codec
        track.format = fmt
        source = track.stream.packet_source(kind, fmt, self.subscriber)
        track.packet_track = SharedRtpTrack(kind, source) if shared else PacketTrack(kind, source)
        track.packet_track.set_paused(track.paused)
        return track.packet_track

    def switch(self, kind: str, stream: Stream, fmt: VideoFormat | str) -> None:
        """subscription-control update: take `kind` from another stream or format.

        Raises ParameterError (nothing changes) if the stream cannot provide it.
        """
        track = self.tracks[kind]
        if track.packet_track is not None:
            if isinstance(fmt, VideoFormat) and isinstance(track.format, VideoFormat):
                # The sender's codec was negotiated: keep it, change the rest.
                fmt = fmt.with_codec(track.format.codec)
            elif isinstance(track.format, str):
                fmt = track.format
            source = stream.packet_source(kind, fmt, self.subscriber)
            if kind == "video":
                self._stop_adapting()
            else:
                self._stop_adapting_audio()
            track.packet_track.attach(source)
        track.stream = stream
        track.format = fmt
        if kind == "video" and self._video_sender is not None:
            self.adapt(kind, self._video_sender)
        if kind == "audio" and self._audio_sender is not None:
            self.adapt(kind, self._audio_sender)

    def set_paused(self, kind: str, paused: bool) -> None:
        track = self.tracks.get(kind)
        if track is None:
            return
        track.paused = paused
        if track.packet_track is not None:
            track.packet_track.set_paused(paused)

    def detach_stream(self, stream_id: str) -> bool:
        """The stream went away: stop the tracks that came from it. True if none are left."""
        for track in self.tracks.values():
            if track.stream.id == stream_id and track.packet_track is not None:
                if track.kind == "video":
                    self._stop_adapting()
                else:
                    self._stop_adapting_audio()
                track.packet_track.stop()
        return all(t.stream.id == stream_id for t in self.tracks.values())

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "type": "subscription", "ready": self.ready}

    def close(self) -> None:
        """Idempotent: stops the sender tracks and detaches from the sources."""
        if self.closed:
            return
        self.closed = True
        self._stop_adapting()
        self._stop_adapting_audio()
        for track in self.tracks.values():
            if track.packet_track is not None:
                track.packet_track.stop()
        self.transport.session_closed(self)

    def adapt(self, kind: str, sender: Any) -> None:
        """Move the video along its view's ladder by the subscriber's feedback, when it can:
        a shared-fan-out video track of a view's own format whose ladder has rungs.
        An audio track of a view gets in-band FEC while its link loses packets."""
        if kind == "audio":
            self._adapt_audio(sender)
            return
        if kind != "video":
            return
        self._video_sender = sender
        track = self.tracks.get(kind)
        if track is None or self.adaptive is not None:
            return
        packet_track, fmt, stream = track.packet_track, track.format, track.stream
        if not isinstance(packet_track, SharedRtpTrack) or not isinstance(fmt, VideoFormat):
            return
        if not isinstance(stream, LadderStream) or len(stream.ladder(fmt)) < 2:
            return
        reserve = AUDIO_RESERVE if "audio" in self.tracks else 0
        ids = {"subscription": self.id, "stream": stream.id}
        self.adaptive = AdaptiveVideo(packet_track, sender, stream, fmt, reserve, ids)

    def _stop_adapting(self) -> None:
        if self.adaptive is not None:
            self.adaptive.close()
            self.adaptive = None

    def _adapt_audio(self, sender: Any) -> None:
        """Switch a shared-fan-out audio track of a view between its plain and FEC Opus."""
        self._audio_sender = sender
        track = self.tracks.get("audio")
        if track is None or self.adaptive_audio is not None:
            return
        packet_track, stream = track.packet_track, track.stream
        if not isinstance(packet_track, SharedRtpTrack) or not isinstance(stream, FecStream):
            return
        if track.format != "opus":
            return
        ids = {"subscription": self.id, "stream": stream.id}
        self.adaptive_audio = AdaptiveAudio(packet_track, sender, stream, self.subscriber, ids)

    def _stop_adapting_audio(self) -> None:
        if self.adaptive_audio is not None:
            self.adaptive_audio.close()
            self.adaptive_audio = None

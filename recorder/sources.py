"""Which shared packet sources a recording or streaming-out takes its tracks from."""

from __future__ import annotations

from typing import Any, Protocol

from tessera.media.mediasource import Packet, PacketSource, ParameterError, Stream
from tessera.media.streaminfo import resolve_video, resolve_video_request


def _stream(streams: dict[str, Stream], stream_id: str, kind: str) -> Stream:
    stream = streams.get(stream_id)
    if stream is None:
        raise ParameterError(f"Stream {stream_id} does NOT exist")
    if not stream.has_track(kind):
        raise ParameterError(f"Stream {stream_id} has no {kind}")
    return stream


def audio_source(streams: dict[str, Stream], stream_id: str | None) -> PacketSource | None:
    """The stream's audio as it is encoded for subscribers (None: no audio wanted)."""
    if stream_id is None:
        return None
    stream = _stream(streams, stream_id, "audio")
    return stream.packet_source("audio", stream.codec("audio") or "opus", None)


def video_source(
    streams: dict[str, Stream],
    stream_id: str | None,
    parameters: dict[str, Any] | None,
    video_format: dict[str, Any] | None = None,
    *,
    codec: str | None = None,
) -> PacketSource | None:
    """The stream's video in the requested format, shared with subscribers of that format.

    `parameters` and `video_format` are checked like a subscription's; `codec`
    forces a codec the output must have (RTMP carries only H.264).
    """
    if stream_id is None:
        return None
    stream = _stream(streams, stream_id, "video")
    track = next(t for t in stream.info()["media"]["tracks"] if t["type"] == "video")
    if codec is not None:
        fmt = resolve_video_request(track, parameters).with_codec(codec)
    else:
        fmt = resolve_video(track, parameters, video_format)
    return stream.packet_source("video", fmt, None)


class PacketWriterOwner(Protocol):
    """What a TrackSink hands its packets to (a Recording, a StreamingOut)."""

    def _write(self, kind: str, packet: Packet, keyframe: bool) -> None: ...


class TrackSink:
    """One track of a recording or streaming-out: a sink on a shared packet source.

    The owner's writer copies what it keeps; the shared packet is never touched.
    """

    def __init__(self, owner: PacketWriterOwner, kind: str) -> None:
        self.owner = owner
        self.kind = kind
        self.source: PacketSource | None = None

    def on_packet(self, packet: Packet, keyframe: bool) -> None:
        self.owner._write(self.kind, packet, keyframe)

    def attach(self, source: PacketSource) -> None:
        """Take the track from `source` (leaving the previous one); ask it for a keyframe."""
        if self.source is not None:
            self.source.remove_sink(self)
        self.source = source
        source.add_sink(self)
        source.request_keyframe()

    def detach(self) -> None:
        if self.source is not None:
            self.source.remove_sink(self)
            self.source = None

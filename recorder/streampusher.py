"""StreamPusher: the worker that muxes a streaming-out and sends it (RTMP, RTSP, HLS, DASH).

Video arrives as H.264 and goes out as it is; audio arrives as Opus (or
G.711) and goes out as AAC (`AudioToAac`). The worker thread (see
`PacketWriter`) connects to an RTMP or RTSP server before any media arrives,
starts the output on the first video keyframe and writes each packet:

- RTMP: FFmpeg's FLV muxer writes into `FlvTagSender`, which sends each tag
  as an RTMP message (`rtmp.py`). A keyframe with a new SPS/PPS carries
  `new_extradata` side data, so the FLV muxer writes a new sequence header
  (a publisher's resolution drops, a PATCH changes the size).
  `flvflags=no_duration_filesize` stops FLV from seeking back at the end.
- RTSP: packets are cut into RTP here (`rtp.py`) and sent on the RTSP
  connection (`rtsp.py`); the SDP is made from the first keyframe's SPS/PPS.
- HLS and DASH to a url: FFmpeg's `hls`/`dash` muxer writes its files through
  PyAV's `io_open`, and `HttpPusher` uploads them on a thread of its own.
- HLS without a url: files under the portal's HLS directory.

A refused connection, an unknown host, a server that refuses the stream,
stalls, answers errors or goes away, or an unwritable HLS directory is
reported once through `on_error(reason)`.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any, cast

import av
from av.packet import PacketSideData

from .aac import AAC_BITRATE, AAC_RATE, AUDIO_DECODERS, AudioToAac
from .hlsdash import dash_options, local_hls_options, pushed_hls_options
from .httppush import HttpPusher, RetryPolicy
from .muxer import (
    AUDIO_TIME_BASE,
    MAX_QUEUE_SECONDS,
    VIDEO_TIME_BASE,
    MuxerError,
    PacketWriter,
    QueuedPacket,
    check_directory,
    describe_error,
    h264_extradata,
    h264_parameter_sets,
    probe_video_size,
)
from .pushconnection import describe_network_error
from .rtmp import FlvTagSender, RtmpError, RtmpPublisher, RtmpTarget
from .rtp import (
    AUDIO_PAYLOAD_TYPE,
    VIDEO_PAYLOAD_TYPE,
    RtpPacketizer,
    aac_config,
    aac_payload,
    h264_payloads,
    session_description,
)
from .rtsp import RtspError, RtspPublisher, RtspTarget
from .streamingtarget import HttpTarget, Segmenting

logger = logging.getLogger(__name__)

# AV_PKT_DATA_NEW_EXTRADATA: FLV writes a new sequence header for a packet carrying it.
_NEW_EXTRADATA = 1

# Where a streaming-out goes: a server to push to, a url for HTTP, or a local playlist.
Destination = RtmpTarget | RtspTarget | HttpTarget | Path


class _RtspOutput:
    """What the worker muxes into for RTSP: RTP packets on the RTSP connection."""

    def __init__(self, publisher: RtspPublisher, video: bool) -> None:
        self.publisher = publisher
        ssrc = random.getrandbits(32)
        self.video = RtpPacketizer(VIDEO_PAYLOAD_TYPE, ssrc) if video else None
        self.audio = RtpPacketizer(AUDIO_PAYLOAD_TYPE, ssrc ^ 0x5A5A5A5A)
        self.audio_channel = 2 if video else 0

    def send_video(self, access_unit: bytes, pts: int) -> None:
        assert self.video is not None
        payloads = h264_payloads(access_unit)
        for index, payload in enumerate(payloads):
            marker = index == len(payloads) - 1
            self.publisher.send(0, self.video.packet(payload, pts, marker))

    def mux(self, packet: Any) -> None:
        """An AAC packet (from the audio encoder) as one RTP packet."""
        payload = aac_payload(bytes(packet))
        self.publisher.send(self.audio_channel, self.audio.packet(payload, int(packet.pts), True))

    def close(self) -> None:
        self.publisher.close()


class StreamPusher(PacketWriter):
    """Pushes H.264 and AAC (from Opus) to an RTMP/RTSP server or HTTP url, or writes HLS."""

    def __init__(
        self,
        destination: Destination,
        *,
        video: bool,
        audio_codec: str | None,
        on_error: Callable[[str], None],
        segmenting: Segmenting | None = None,
        segment_pattern: str | None = None,
        retry: RetryPolicy | None = None,
        max_queue_seconds: float = MAX_QUEUE_SECONDS,
    ) -> None:
        if audio_codec is not None and audio_codec.lower() not in AUDIO_DECODERS:
            raise MuxerError(f"cannot stream {audio_codec} audio (AAC is made from Opus or G.711)")
        if isinstance(destination, HttpTarget | Path) and segmenting is None:
            raise ValueError("HLS and DASH need their segmenting")
        self.destination = destination
        self.segmenting = segmenting
        self.segment_pattern = segment_pattern
        if isinstance(destination, RtmpTarget):
            self.protocol = "rtmp"
        elif isinstance(destination, RtspTarget):
            self.protocol = "rtsp"
        elif isinstance(destination, HttpTarget):
            self.protocol = destination.protocol
        else:
            self.protocol = "hls"
        self.target = str(destination) if isinstance(destination, Path) else destination.url
        super().__init__(
            f"streaming-out {self.target}",
            video_codec="h264" if video else None,
            audio_codec=audio_codec,
            on_error=on_error,
            max_queue_seconds=max_queue_seconds,
            thread_name=f"push {self.protocol}",
        )
        self._rtmp: RtmpPublisher | None = None
        self._rtsp: RtspPublisher | None = None
        self._http: HttpPusher | None = None
        if isinstance(destination, HttpTarget):
            assert segmenting is not None and segmenting.method is not None
            self._http = HttpPusher(
                destination, segmenting.method, self._remote_failed, retry=retry
            )
        self._audio: AudioToAac | None = None
        self.connected = False  # RTMP/RTSP: publishing; HLS/DASH: the output is open
        self.aborted = False  # close() gave up on a stalled server
        self._start_worker()

    @property
    def audio(self) -> AudioToAac | None:
        return self._audio

    @property
    def http(self) -> HttpPusher | None:
        return self._http

    def close(self, timeout: float | None = None) -> bool:
        """Finish the stream; past `timeout`, cut the connection of a stalled server."""
        finished = super().close(timeout)
        if not finished:
            self.aborted = True
            for publisher in (self._rtmp, self._rtsp, self._http):
                if publisher is not None:
                    publisher.abort()
            self._thread.join(1.0)
            finished = not self._thread.is_alive()
        if self._http is not None:
            finished = self._http.close(timeout) and finished
        return finished

    def _remote_failed(self, reason: str) -> None:
        # The HTTP sender failed on its own thread: the worker stops at its next batch.
        if self._failed:
            return
        self._failed = True
        self.error = reason
        try:
            self._on_error(reason)
        except Exception:
            logger.exception("%s: error listener failed", self.label)

    # -- worker thread -------------------------------------------------------

    def _prepare(self) -> None:
        destination = self.destination
        if isinstance(destination, Path):
            check_directory(destination.parent)
        elif isinstance(destination, RtmpTarget):
            # Connect while the first keyframe is on its way: a refusal is known at once.
            self._rtmp = RtmpPublisher(destination)
            self._rtmp.connect()
            self.connected = True
            logger.info("%s: publishing", self.label)
        elif isinstance(destination, RtspTarget):
            self._rtsp = RtspPublisher(destination)
            self._rtsp.connect()

    def _open(self, first: QueuedPacket) -> None:
        destination = self.destination
        if isinstance(destination, RtspTarget):
            self._open_rtsp()
            return
        output: Any
        if isinstance(destination, RtmpTarget):
            assert self._rtmp is not None
            options = {"flvflags": "no_duration_filesize", "flush_packets": "1"}
            sender = FlvTagSender(self._rtmp)
            output = av.open(sender, "w", format="flv", container_options=options)
        elif isinstance(destination, HttpTarget):
            assert self._http is not None and self.segmenting is not None
            if destination.protocol == "hls":
                options = pushed_hls_options(destination, self.segmenting)
            else:
                options = dash_options(destination, self.segmenting)
            output = av.open(
                destination.url,
                "w",
                format=destination.protocol,
                container_options=options,
                io_open=self._http.open,
            )
        else:
            assert self.segmenting is not None and self.segment_pattern is not None
            options = local_hls_options(self.segment_pattern, self.segmenting)
            output = av.open(str(destination), "w", format="hls", container_options=options)
        self._output = output
        if self.video_codec is not None:
            self._add_video_stream(output)
        if self.audio_codec is not None:
            stream = output.add_stream("aac", rate=AAC_RATE)
            ctx = stream.codec_context
            ctx.layout = "stereo"
            ctx.bit_rate = AAC_BITRATE
            ctx.time_base = AUDIO_TIME_BASE
            self._streams["audio"] = stream
            self._audio = AudioToAac(self.audio_codec, stream)
        output.start_encoding()  # FLV: the header and sequence headers; HLS/DASH: a segment
        self.connected = True

    def _open_rtsp(self) -> None:
        assert self._rtsp is not None
        video = self.video_codec is not None
        output = _RtspOutput(self._rtsp, video)
        self._output = output
        if video:
            self._streams["video"] = None
        if self.audio_codec is not None:
            encoder: Any = av.CodecContext.create("aac", "w")
            encoder.sample_rate = AAC_RATE
            encoder.layout = "stereo"
            encoder.format = "fltp"
            encoder.bit_rate = AAC_BITRATE
            encoder.time_base = AUDIO_TIME_BASE
            self._streams["audio"] = None
            self._audio = AudioToAac(self.audio_codec, encoder)
        sdp = session_description(
            self._rtsp.target.host,
            self._sps if video else None,
            self._pps if video else None,
            self.audio_codec is not None,
            aac_config(AAC_RATE, 2),
        )
        self._rtsp.record(sdp, len(self._streams))
        self.connected = True
        logger.info("%s: recording", self.label)

    def _clock_base(self, kind: str) -> Fraction:
        # The audio is re-encoded: its clock counts samples. RTP video counts 90 kHz.
        if kind == "audio":
            return AUDIO_TIME_BASE
        if isinstance(self.destination, RtspTarget):
            return VIDEO_TIME_BASE
        return super()._clock_base(kind)

    def _emit(self, item: QueuedPacket, pts: int, duration: int) -> int:
        if item.kind == "audio":
            assert self._audio is not None
            for packet in self._audio.push(item.data, pts):
                self._output.mux(packet)
            return self._audio.end
        if isinstance(self._output, _RtspOutput):
            if item.keyframe:
                self._new_parameter_sets(item)
            self._output.send_video(item.data, pts)
            return pts + duration
        packet = self._packet(item, pts, duration)
        if item.keyframe and self._rtmp is not None:
            extradata = self._new_parameter_sets(item)
            if extradata is not None:
                side = cast(Any, PacketSideData)(_NEW_EXTRADATA, len(extradata))
                side.update(extradata)
                packet.set_sidedata(side)
        self._output.mux(packet)
        return pts + duration

    def _new_parameter_sets(self, item: QueuedPacket) -> bytes | None:
        """Extradata when a keyframe brings a new SPS/PPS (the source's size changed)."""
        sps, pps = h264_parameter_sets(item.data)
        if sps is None or pps is None or (sps, pps) == (self._sps, self._pps):
            return None
        self._sps, self._pps = sps, pps
        self._video_size = probe_video_size("h264", item.data) or self._video_size
        logger.info("%s: new H.264 parameters, picture size %s", self.label, self._video_size)
        return h264_extradata(sps, pps)

    def _flush(self, output: Any) -> None:
        if self._audio is not None:
            for packet in self._audio.flush():
                output.mux(packet)

    def _finish(self) -> None:
        super()._finish()  # the FLV trailer still goes out through the publisher
        for publisher in (self._rtmp, self._rtsp):
            if publisher is not None:
                publisher.close()

    def _fail(self, exc: BaseException) -> None:
        publishers = [p for p in (self._rtmp, self._rtsp) if p is not None]
        for publisher in publishers:
            publisher.abort()  # the trailer must not wait for a broken server
        super()._fail(exc)
        for publisher in publishers:
            publisher.close()
        if self._http is not None:
            self._http.abort()

    def _describe(self, exc: BaseException) -> str:
        destination = self.destination
        if isinstance(destination, Path):
            return describe_error(exc, destination, "HLS playlist")
        if isinstance(exc, RtmpError | RtspError):
            problem = str(exc)  # the server's own refusal
        else:
            problem = describe_network_error(exc, destination.host)
        return f"cannot push to {self.target}: {problem}"

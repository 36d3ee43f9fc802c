"""StreamingOut: a room's stream pushed to an RTMP server (FLV) or written as HLS.

Like a recording, a streaming-out is a sink of a stream's shared
`PacketSource`s. Its video is always bound as H.264 (what FLV and MPEG-TS
carry): a mixed view then shares the x264 encode that its H.264 subscribers
already get, and a VP8 forward stream gets its shared transcoder; nothing is
re-encoded here. Audio comes as Opus, which RTMP/FLV cannot carry, so it is
decoded and encoded as AAC on the worker thread: the one place where a
streaming-out transcodes.

What PyAV 18 / FFmpeg 8 do here, checked rather than assumed:

- PyAV's `OutputContainer.start_encoding()` calls `avio_open()` and
  `avformat_write_header()`, and `close()` calls `av_write_trailer()`, while
  holding the interpreter lock (only `av_interleaved_write_frame()` releases
  it). With an `rtmp://` url, FFmpeg connects and shakes hands inside
  `avio_open()`, with no timeout that PyAV lets one set and no interrupt
  callback for outputs: a server that accepts the connection but never
  answers froze the whole process, event loop included (measured). So the
  network side is done here in Python (`RtmpPublisher`: plain sockets with
  timeouts, which release the lock), and FFmpeg's FLV muxer writes into it
  through PyAV's file-object I/O (`FlvTagSender`), which re-enters Python
  for every write.
- The FLV muxer writes the AVC sequence header from Annex-B SPS/PPS
  extradata and converts the Annex-B packets itself; a packet carrying
  `new_extradata` side data makes it write a new sequence header (used when
  the source's SPS changes, e.g. a publisher's resolution drops).
  `flvflags=no_duration_filesize` stops it from seeking back at the end,
  which a stream cannot do; `flush_packets=1` hands every tag over at once.
- FFmpeg's `aac` encoder takes planar float frames of exactly 1024 samples
  (an `AudioResampler` and an `AudioFifo` regroup the 960-sample Opus frames);
  opened as a stream of an FLV or HLS output it makes the AudioSpecificConfig
  that FLV's AAC sequence header and MPEG-TS's ADTS headers come from.
- The `hls` muxer writes MPEG-TS segments (named by `hls_segment_filename`)
  and rewrites the playlist after each one; it cuts a segment at the first
  video keyframe after `hls_time`, so segments are only as short as the
  source's keyframe interval allows: a streaming-out asks its video source
  for a keyframe every `keyframe_interval` seconds (a PLI for a forward
  stream, a forced keyframe of the mixed view's shared encoder). `temp_file`
  writes segments and playlists under a temporary name and renames them
  when complete, so a web server never serves half a file;
  `delete_segments` keeps the directory bounded; closing writes
  `#EXT-X-ENDLIST`. HLS writes local files only (under the lock, but short).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import ssl
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import av
import numpy as np
from av.packet import PacketSideData

from tessera.media.mediasource import Packet, PacketSource, ParameterError, Stream

from .muxer import (
    AUDIO_TIME_BASE,
    MAX_QUEUE_SECONDS,
    MuxerError,
    PacketWriter,
    QueuedPacket,
    check_directory,
    describe_error,
    h264_extradata,
    h264_parameter_sets,
    probe_video_size,
)
from .recording import MediaChoice
from .sources import TrackSink, audio_source, video_source

logger = logging.getLogger(__name__)

PROTOCOLS = ("rtmp", "hls")
RTMP_SCHEMES = ("rtmp", "rtmps")
RTMP_PORT = 1935
RTMPS_PORT = 443

# OWT's defaults for an HLS streaming-out (parameters.hlsTime / hlsListSize).
HLS_TIME = 2
HLS_LIST_SIZE = 5
HLS_FLAGS = "delete_segments+independent_segments+temp_file"
# Streaming services want a keyframe at least every 2 s (players join on one).
RTMP_KEYFRAME_INTERVAL = 2.0
# Connecting, the handshake and each answer while setting up may take this long.
CONNECT_TIMEOUT = 10.0
# A server that takes no data for this long is taken for gone.
SEND_TIMEOUT = 10.0
# stop() waits this long for the server to take the rest of the stream.
STOP_TIMEOUT = 5.0

AAC_RATE = 48000
AAC_FRAME = 1024  # samples per AAC frame
AAC_BITRATE = 128_000
# Audio timestamps within this of where the previous audio ended are contiguous.
AUDIO_TOLERANCE = AAC_RATE // 100  # 10 ms
# A gap in the audio up to this long is filled with silence (lost packets, a
# muted publisher); a longer one or an overlap starts the audio again there.
MAX_AUDIO_FILL = 5 * AAC_RATE

# Decoders for the audio a source can have: name, sample rate, layout.
_AUDIO_DECODERS = {
    "opus": ("opus", 48000, "stereo"),
    "pcmu": ("pcm_mulaw", 8000, "mono"),
    "pcma": ("pcm_alaw", 8000, "mono"),
}
# AV_PKT_DATA_NEW_EXTRADATA: FLV writes a new sequence header for a packet carrying it.
_NEW_EXTRADATA = 1

RTMP_CHUNK_SIZE = 4096  # what we send in; servers start at 128
_HANDSHAKE_SIZE = 1536
_FLV_HEADER_SIZE = 13  # the file header and the first previous-tag-size
_MSG_SET_CHUNK_SIZE = 1
_MSG_ABORT = 2
_MSG_ACKNOWLEDGEMENT = 3
_MSG_USER_CONTROL = 4
_MSG_WINDOW_ACK_SIZE = 5
_MSG_AUDIO = 8
_MSG_VIDEO = 9
_MSG_COMMAND_AMF3 = 17
_MSG_DATA = 18
_MSG_COMMAND = 20
_MEDIA_CHUNK_STREAMS = {_MSG_AUDIO: 4, _MSG_VIDEO: 6, _MSG_DATA: 5}


@dataclass(frozen=True)
class RtmpTarget:
    """Where an RTMP url publishes: FFmpeg's split of the path into application and stream."""

    url: str
    tls: bool
    host: str
    port: int
    app: str
    stream: str

    @property
    def tc_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'rtmps' if self.tls else 'rtmp'}://{host}:{self.port}/{self.app}"


def check_rtmp_url(url: Any) -> RtmpTarget:
    """Where to push, or ParameterError saying why `url` is not an RTMP url to publish to."""
    if not isinstance(url, str) or not url.strip():
        raise ParameterError("RTMP streaming needs a url: rtmp://host[:port]/app/stream")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise ParameterError("The RTMP url must not contain spaces or control characters")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in RTMP_SCHEMES:
        shown = f"{scheme}://" if scheme else "no scheme"
        raise ParameterError(
            f"Unsupported url {url!r} ({shown}): RTMP streaming takes rtmp:// or rtmps:// only"
        )
    try:
        port = parts.port
    except ValueError as exc:
        raise ParameterError(f"Invalid port in the RTMP url {url!r}") from exc
    if not parts.hostname:
        raise ParameterError(f"The RTMP url {url!r} names no host")
    if port == 0:
        raise ParameterError(f"Invalid port in the RTMP url {url!r}")
    if parts.username is not None or parts.password is not None:
        raise ParameterError("Credentials in the RTMP url are not supported: use the stream key")
    # As FFmpeg splits it: /app/stream, /app/instance/stream[/more].
    path = parts.path.lstrip("/")
    first, _, rest = path.partition("/")
    if not first or not rest:
        raise ParameterError(
            f"The RTMP url {url!r} must name an application and a stream: "
            "rtmp://host[:port]/app/stream"
        )
    second, _, more = rest.partition("/")
    app, stream = (f"{first}/{second}", more) if more else (first, rest)
    if parts.query:
        stream += "?" + parts.query
    tls = scheme == "rtmps"
    return RtmpTarget(
        url, tls, parts.hostname, port or (RTMPS_PORT if tls else RTMP_PORT), app, stream
    )


# -- RTMP -----------------------------------------------------------------------------


class RtmpError(Exception):
    """The RTMP server refused the stream or broke the protocol (a message for the user)."""


def amf0_encode(*values: Any) -> bytes:
    """AMF0 values (numbers, booleans, strings, None, dicts as objects)."""
    out = bytearray()
    for value in values:
        if value is None:
            out.append(0x05)
        elif isinstance(value, bool):
            out += bytes((0x01, 1 if value else 0))
        elif isinstance(value, int | float):
            out.append(0x00)
            out += struct.pack(">d", float(value))
        elif isinstance(value, str):
            data = value.encode()
            if len(data) > 0xFFFF:
                out.append(0x0C)
                out += struct.pack(">I", len(data))
            else:
                out.append(0x02)
                out += struct.pack(">H", len(data))
            out += data
        elif isinstance(value, dict):
            out.append(0x03)
            for key, item in value.items():
                name = str(key).encode()
                out += struct.pack(">H", len(name)) + name + amf0_encode(item)
            out += b"\x00\x00\x09"
        else:
            raise TypeError(f"cannot encode {type(value).__name__} as AMF0")
    return bytes(out)


def amf0_decode(data: bytes) -> list[Any]:
    """The AMF0 values of a command message (raises RtmpError when malformed)."""
    values: list[Any] = []
    pos = 0
    try:
        while pos < len(data):
            value, pos = _amf0_value(data, pos)
            values.append(value)
    except (IndexError, struct.error, UnicodeDecodeError) as exc:
        raise RtmpError("the server sent a malformed command") from exc
    return values


def _amf0_value(data: bytes, pos: int) -> tuple[Any, int]:
    marker = data[pos]
    pos += 1
    if marker == 0x00:
        return struct.unpack_from(">d", data, pos)[0], pos + 8
    if marker == 0x01:
        return bool(data[pos]), pos + 1
    if marker in (0x02, 0x0C):
        size_format, width = (">H", 2) if marker == 0x02 else (">I", 4)
        size = struct.unpack_from(size_format, data, pos)[0]
        pos += width
        return data[pos : pos + size].decode(), pos + size
    if marker in (0x03, 0x08):
        if marker == 0x08:
            pos += 4  # an ECMA array's count, a hint only
        obj: dict[str, Any] = {}
        while True:
            size = struct.unpack_from(">H", data, pos)[0]
            pos += 2
            if size == 0 and data[pos] == 0x09:
                return obj, pos + 1
            key = data[pos : pos + size].decode()
            obj[key], pos = _amf0_value(data, pos + size)
    if marker in (0x05, 0x06):
        return None, pos
    if marker == 0x0A:
        count = struct.unpack_from(">I", data, pos)[0]
        pos += 4
        items = []
        for _ in range(count):
            item, pos = _amf0_value(data, pos)
            items.append(item)
        return items, pos
    if marker == 0x0B:
        return struct.unpack_from(">d", data, pos)[0], pos + 10  # a date: ms, time zone
    raise RtmpError(f"the server sent an unsupported AMF0 value (type {marker})")


@dataclass
class _ChunkStream:
    """The state of one incoming chunk stream."""

    length: int = 0
    type: int = 0
    extended: bool = False
    data: bytearray = field(default_factory=bytearray)


class RtmpPublisher:
    """A small RTMP client that publishes one stream, blocking, on its owner's thread.

    It does the simple handshake, `connect`, `releaseStream`, `FCPublish`,
    `createStream` and `publish` (what FFmpeg and OBS send), then takes FLV
    tags as audio, video and `@setDataFrame` messages. Between messages it
    reads what the server sent without blocking: pings are answered, bytes
    acknowledged, an error status ends the push. Every socket call has a
    timeout and releases the interpreter lock, and `abort()` (from any
    thread) ends a send that a stalled server holds up.
    """

    def __init__(
        self,
        target: RtmpTarget,
        *,
        timeout: float | None = None,
        send_timeout: float | None = None,
    ) -> None:
        self.target = target
        self.timeout = CONNECT_TIMEOUT if timeout is None else timeout
        self.send_timeout = SEND_TIMEOUT if send_timeout is None else send_timeout
        self.stream_id = 0
        self.published = False
        self.bytes_sent = 0
        self._sock: socket.socket | None = None
        self._transaction = 0
        self._in: dict[int, _ChunkStream] = {}
        self._in_chunk_size = 128
        self._inbuf = bytearray()
        self._received = 0
        self._acknowledged = 0
        self._window = 0
        self._commands: deque[tuple[str, float, list[Any]]] = deque()
        self._aborted = False

    # -- setting up -----------------------------------------------------

    def connect(self) -> None:
        """Connect, shake hands and publish; raises OSError or RtmpError."""
        t = self.target
        sock = socket.create_connection((t.host, t.port), timeout=self.timeout)
        if t.tls:
            try:
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=t.host)
            except BaseException:
                sock.close()
                raise
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        if self._aborted:
            raise RtmpError("stopped while connecting")
        self._handshake()
        self._send_message(2, _MSG_SET_CHUNK_SIZE, 0, 0, struct.pack(">I", RTMP_CHUNK_SIZE))
        connected = self._call(
            "connect",
            {
                "app": t.app,
                "type": "nonprivate",
                "flashVer": "FMLE/3.0 (compatible; Tessera)",
                "tcUrl": t.tc_url,
            },
        )
        self._await_result(connected, "connect")
        self._call("releaseStream", None, t.stream)
        self._call("FCPublish", None, t.stream)
        created = self._await_result(self._call("createStream", None), "createStream")
        stream_id = created[1] if len(created) > 1 else None
        if not isinstance(stream_id, float | int) or isinstance(stream_id, bool):
            raise RtmpError("the server created no stream")
        self.stream_id = int(stream_id)
        self._call("publish", None, t.stream, "live", stream_id=self.stream_id, csid=8)
        self._await_publishing()
        self.published = True

    def _handshake(self) -> None:
        c1 = struct.pack(">II", 0, 0) + os.urandom(_HANDSHAKE_SIZE - 8)
        self._sendall(b"\x03" + c1, self.timeout)
        answer = self._read_exactly(1 + 2 * _HANDSHAKE_SIZE)
        if answer[0] != 3:
            raise RtmpError("not an RTMP server (handshake refused)")
        s1 = answer[1 : 1 + _HANDSHAKE_SIZE]
        self._sendall(s1, self.timeout)  # C2 echoes S1

    def _read_exactly(self, size: int) -> bytes:
        assert self._sock is not None
        deadline = time.monotonic() + self.timeout
        data = bytearray()
        while len(data) < size:
            self._sock.settimeout(max(0.001, deadline - time.monotonic()))
            chunk = self._sock.recv(size - len(data))
            if not chunk:
                raise RtmpError("the server closed the connection")
            data += chunk
        return bytes(data)

    def _call(self, name: str, *args: Any, stream_id: int = 0, csid: int = 3) -> int:
        self._transaction += 1
        payload = amf0_encode(name, self._transaction, *args)
        self._send_message(csid, _MSG_COMMAND, stream_id, 0, payload)
        return self._transaction

    def _next_command(self, what: str, deadline: float) -> tuple[str, float, list[Any]]:
        while not self._commands:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(errno.ETIMEDOUT, f"no answer to {what}")
            self._receive(remaining)
        return self._commands.popleft()

    def _await_result(self, transaction: int, what: str) -> list[Any]:
        deadline = time.monotonic() + self.timeout
        while True:
            name, number, args = self._next_command(what, deadline)
            if name in ("_result", "_error") and number == transaction:
                if name == "_error":
                    raise RtmpError(f"{what} refused: {_status_text(args)}")
                return args
            _check_status(name, args)

    def _await_publishing(self) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            name, _, args = self._next_command("publish", deadline)
            if name == "_error":
                raise RtmpError(f"publish refused: {_status_text(args)}")
            _check_status(name, args)
            if name == "onStatus" and _info(args).get("code") == "NetStream.Publish.Start":
                return

    # -- streaming ------------------------------------------------------

    def send(self, message_type: int, timestamp: int, payload: bytes) -> None:
        """One FLV tag's data as an audio (8), video (9) or data (18) message."""
        self._poll()
        if message_type == _MSG_DATA:
            payload = amf0_encode("@setDataFrame") + payload
        csid = _MEDIA_CHUNK_STREAMS.get(message_type, 5)
        self._send_message(csid, message_type, self.stream_id, timestamp, payload)

    def close(self) -> None:
        """Unpublish and close (never raises)."""
        sock = self._sock
        if sock is None:
            return
        try:
            if self.published and not self._aborted:
                self._call("FCUnpublish", None, self.target.stream)
                self._call("deleteStream", None, self.stream_id)
        except (OSError, RtmpError):
            pass  # the server is gone already
        finally:
            self._sock = None
            sock.close()

    def abort(self) -> None:
        """From any thread: make a blocked send or read fail now."""
        self._aborted = True
        sock = self._sock
        if sock is not None:
            try:
                # The plain socket's shutdown, also under TLS: it wakes the blocked call.
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass

    def _poll(self) -> None:
        """Take what the server sent without waiting (pings, acknowledgements, errors)."""
        sock = self._sock
        if sock is None:
            raise RtmpError("not connected")
        sock.settimeout(0.0)
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    raise RtmpError("the server closed the connection")
                self._feed(data)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass
        while self._commands:
            name, _, args = self._commands.popleft()
            _check_status(name, args)

    def _receive(self, timeout: float) -> None:
        sock = self._sock
        assert sock is not None
        sock.settimeout(max(0.001, timeout))
        data = sock.recv(65536)
        if not data:
            raise RtmpError("the server closed the connection")
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        self._received += len(data)
        if self._window and self._received - self._acknowledged >= self._window:
            self._acknowledged = self._received
            ack = struct.pack(">I", self._received & 0xFFFFFFFF)
            self._send_message(2, _MSG_ACKNOWLEDGEMENT, 0, 0, ack)
        self._inbuf += data
        pos = 0
        while (end := self._parse_chunk(pos)) is not None:
            pos = end
        del self._inbuf[:pos]

    def _parse_chunk(self, pos: int) -> int | None:
        """Take one chunk at `pos` of the input if it is all there; returns where it ends."""
        buf = self._inbuf
        n = len(buf)
        if pos >= n:
            return None
        fmt, csid = buf[pos] >> 6, buf[pos] & 0x3F
        p = pos + 1
        if csid < 2:
            width = csid + 1
            if p + width > n:
                return None
            csid = 64 + int.from_bytes(buf[p : p + width], "little")
            p += width
        size = (11, 7, 3, 0)[fmt]
        if p + size > n:
            return None
        stream = self._in.setdefault(csid, _ChunkStream())
        extended = stream.extended
        if fmt < 3:
            extended = int.from_bytes(buf[p : p + 3], "big") == 0xFFFFFF
        if fmt < 2:
            stream.length = int.from_bytes(buf[p + 3 : p + 6], "big")
            stream.type = buf[p + 6]
        p += size
        if extended:
            p += 4  # timestamps of incoming messages are not needed
            if p > n:
                return None
        stream.extended = extended
        take = min(self._in_chunk_size, stream.length - len(stream.data))
        if p + take > n:
            return None
        stream.data += buf[p : p + take]
        if len(stream.data) >= stream.length:
            payload = bytes(stream.data)
            stream.data = bytearray()
            self._on_message(stream.type, payload)
        return p + take

    def _on_message(self, message_type: int, payload: bytes) -> None:
        if message_type == _MSG_SET_CHUNK_SIZE and len(payload) >= 4:
            self._in_chunk_size = max(1, int.from_bytes(payload[:4], "big") & 0x7FFFFFFF)
        elif message_type == _MSG_ABORT and len(payload) >= 4:
            aborted = self._in.get(int.from_bytes(payload[:4], "big"))
            if aborted is not None:
                aborted.data = bytearray()
        elif message_type == _MSG_WINDOW_ACK_SIZE and len(payload) >= 4:
            self._window = int.from_bytes(payload[:4], "big")
        elif message_type == _MSG_USER_CONTROL and payload[:2] == b"\x00\x06":
            pong = b"\x00\x07" + payload[2:6]  # a ping request: answer it
            self._send_message(2, _MSG_USER_CONTROL, 0, 0, pong)
        elif message_type in (_MSG_COMMAND, _MSG_COMMAND_AMF3):
            values = amf0_decode(payload[1:] if message_type == _MSG_COMMAND_AMF3 else payload)
            if values and isinstance(values[0], str):
                number = values[1] if len(values) > 1 and isinstance(values[1], float) else 0.0
                self._commands.append((values[0], number, values[2:]))

    def _send_message(
        self, csid: int, message_type: int, stream_id: int, timestamp: int, payload: bytes
    ) -> None:
        timestamp &= 0xFFFFFFFF
        extended = timestamp >= 0xFFFFFF
        ext = struct.pack(">I", timestamp) if extended else b""
        out = bytearray((csid,))  # format 0: a full header, absolute timestamp
        out += min(timestamp, 0xFFFFFF).to_bytes(3, "big")
        out += len(payload).to_bytes(3, "big")
        out.append(message_type)
        out += struct.pack("<I", stream_id)
        out += ext
        out += payload[:RTMP_CHUNK_SIZE]
        for offset in range(RTMP_CHUNK_SIZE, len(payload), RTMP_CHUNK_SIZE):
            out.append(0xC0 | csid)  # format 3: a continuation
            out += ext
            out += payload[offset : offset + RTMP_CHUNK_SIZE]
        self._sendall(bytes(out), self.send_timeout)

    def _sendall(self, data: bytes, timeout: float) -> None:
        sock = self._sock
        if sock is None or self._aborted:
            raise RtmpError("the connection was closed")
        sock.settimeout(timeout)
        sock.sendall(data)
        self.bytes_sent += len(data)


def _info(args: list[Any]) -> dict[str, Any]:
    """The information object of a command (the last object: after any properties)."""
    return next((a for a in reversed(args) if isinstance(a, dict)), {})


def _status_text(args: list[Any]) -> str:
    info = _info(args)
    code, description = info.get("code"), info.get("description")
    if code and description:
        return f"{code} ({description})"
    return str(code or description or "no reason given")


def _check_status(name: str, args: list[Any]) -> None:
    """An error status from the server ends the push."""
    info = _info(args)
    if name == "onStatus" and info.get("level") == "error":
        raise RtmpError(f"the server ended the stream: {_status_text(args)}")


class FlvTagSender:
    """A write-only file for FFmpeg's FLV muxer: each complete tag goes out as an RTMP message."""

    def __init__(self, rtmp: RtmpPublisher) -> None:
        self._rtmp = rtmp
        self._buffer = bytearray()
        self._header_seen = False
        self.tags = 0

    def write(self, data: bytes) -> int:
        buf = self._buffer
        buf += data
        pos = 0
        if not self._header_seen:
            if len(buf) < _FLV_HEADER_SIZE:
                return len(data)
            if buf[:3] != b"FLV":
                raise RtmpError("FFmpeg wrote no FLV header")
            pos = _FLV_HEADER_SIZE
            self._header_seen = True
        while len(buf) - pos >= 11:
            size = int.from_bytes(buf[pos + 1 : pos + 4], "big")
            end = pos + 11 + size + 4  # tag header, data, previous tag size
            if len(buf) < end:
                break
            tag_type = buf[pos] & 0x1F
            timestamp = int.from_bytes(buf[pos + 4 : pos + 7], "big") | (buf[pos + 7] << 24)
            self._rtmp.send(tag_type, timestamp, bytes(buf[pos + 11 : pos + 11 + size]))
            self.tags += 1
            pos = end
        del buf[:pos]
        return len(data)


# -- the worker ----------------------------------------------------------------------


class AudioToAac:
    """Decodes one audio track and encodes 48 kHz stereo AAC into `stream` (worker thread).

    Timestamps come from the track's clock (48 kHz); the AAC frames stay
    contiguous across small gaps, which are filled with silence so that
    the audio does not drift from the video.
    """

    def __init__(self, codec: str, stream: Any) -> None:
        name, rate, layout = _AUDIO_DECODERS[codec]
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


class StreamPusher(PacketWriter):
    """Pushes H.264 and AAC (from Opus) as FLV to an RTMP server, or writes them as HLS.

    The worker thread (see `PacketWriter`) connects to the RTMP server before
    any media arrives, starts the FLV stream on the first video keyframe,
    muxes the video as it is and transcodes the audio. A refused connection,
    an unknown host, a server that refuses the stream, stalls or goes away,
    or an unwritable HLS directory is reported once through `on_error(reason)`.
    """

    def __init__(
        self,
        *,
        rtmp: RtmpTarget | None = None,
        playlist: Path | None = None,
        video: bool,
        audio_codec: str | None,
        on_error: Callable[[str], None],
        hls_time: float = HLS_TIME,
        hls_list_size: int = HLS_LIST_SIZE,
        segment_pattern: str | None = None,
        max_queue_seconds: float = MAX_QUEUE_SECONDS,
    ) -> None:
        if (rtmp is None) == (playlist is None):
            raise ValueError("push to an RTMP target or write an HLS playlist")
        if audio_codec is not None and audio_codec.lower() not in _AUDIO_DECODERS:
            raise MuxerError(f"cannot stream {audio_codec} audio (AAC is made from Opus or G.711)")
        self.rtmp = rtmp
        self.playlist = playlist
        self.protocol = "rtmp" if rtmp is not None else "hls"
        self.target = rtmp.url if rtmp is not None else str(playlist)
        self.hls_time = hls_time
        self.hls_list_size = hls_list_size
        self.segment_pattern = segment_pattern
        super().__init__(
            f"streaming-out {self.target}",
            video_codec="h264" if video else None,
            audio_codec=audio_codec,
            on_error=on_error,
            max_queue_seconds=max_queue_seconds,
            thread_name=f"push {self.protocol}",
        )
        self._publisher: RtmpPublisher | None = None
        self._audio: AudioToAac | None = None
        self.connected = False  # RTMP: publishing; HLS: the first segment is open
        self._start_worker()

    @property
    def audio(self) -> AudioToAac | None:
        return self._audio

    @property
    def publisher(self) -> RtmpPublisher | None:
        return self._publisher

    def close(self, timeout: float | None = None) -> bool:
        """Finish the stream; past `timeout`, cut the connection of a stalled server."""
        if super().close(timeout):
            return True
        publisher = self._publisher
        if publisher is not None:
            publisher.abort()
        self._thread.join(1.0)
        return not self._thread.is_alive()

    # -- worker thread -------------------------------------------------------

    def _prepare(self) -> None:
        if self.playlist is not None:
            check_directory(self.playlist.parent)
            return
        assert self.rtmp is not None
        # Connect while the first keyframe is on its way: a refusal is known at once.
        self._publisher = RtmpPublisher(self.rtmp)
        self._publisher.connect()
        self.connected = True
        logger.info("%s: publishing", self.label)

    def _open(self, first: QueuedPacket) -> None:
        if self._publisher is not None:
            options = {"flvflags": "no_duration_filesize", "flush_packets": "1"}
            sender = FlvTagSender(self._publisher)
            output: Any = av.open(sender, "w", format="flv", container_options=options)
        else:
            options = {
                "hls_time": str(self.hls_time),
                "hls_list_size": str(self.hls_list_size),
                "hls_flags": HLS_FLAGS,
                "hls_segment_type": "mpegts",
            }
            if self.segment_pattern is not None:
                options["hls_segment_filename"] = self.segment_pattern
            output = av.open(self.target, "w", format="hls", container_options=options)
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
        output.start_encoding()  # FLV: the header and sequence headers; HLS: a segment
        self.connected = True

    def _clock_base(self, kind: str) -> Fraction:
        # The audio is re-encoded: its clock counts samples.
        return AUDIO_TIME_BASE if kind == "audio" else super()._clock_base(kind)

    def _emit(self, item: QueuedPacket, pts: int, duration: int) -> int:
        if item.kind == "audio":
            assert self._audio is not None
            for packet in self._audio.push(item.data, pts):
                self._output.mux(packet)
            return self._audio.end
        packet = self._packet(item, pts, duration)
        if item.keyframe and self._publisher is not None:
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
        publisher = self._publisher
        if publisher is not None:
            publisher.close()

    def _fail(self, exc: BaseException) -> None:
        publisher = self._publisher
        if publisher is not None:
            publisher.abort()  # the FLV trailer must not wait for a broken server
        super()._fail(exc)
        if publisher is not None:
            publisher.close()

    def _describe(self, exc: BaseException) -> str:
        if self.playlist is not None:
            return describe_error(exc, self.playlist, "HLS playlist")
        code = getattr(exc, "errno", None)
        if isinstance(exc, RtmpError):
            what = str(exc)
        elif isinstance(exc, socket.gaierror):
            what = f"host {self.rtmp.host if self.rtmp else ''} not found"
        elif code == errno.ECONNREFUSED:
            what = "connection refused"
        elif isinstance(exc, TimeoutError):
            what = f"the server did not answer in time ({exc.strerror or exc})"
        elif code in (errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED):
            what = "the server closed the connection"
        elif code in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            what = "host unreachable"
        elif isinstance(exc, ssl.SSLError):
            what = f"TLS failed ({exc.reason or exc})"
        elif isinstance(exc, OSError) and exc.strerror:
            what = exc.strerror
        else:
            what = f"{type(exc).__name__}: {exc}"
        return f"cannot push to {self.target}: {what}"


# -- the room's object ------------------------------------------------------------------


class _TrackSink(TrackSink):
    """A TrackSink that keeps keyframes coming (HLS segments and joining players need them)."""

    owner: StreamingOut

    def __init__(self, owner: StreamingOut, kind: str) -> None:
        super().__init__(owner, kind)
        self._awaiting_keyframe = False
        self._last_keyframe = 0.0
        self._last_request = 0.0

    def on_packet(self, packet: Packet, keyframe: bool) -> None:
        if self.kind == "video":
            now = time.monotonic()
            if keyframe:
                self._awaiting_keyframe = False
                self._last_keyframe = now
            else:
                # Ask for a keyframe every interval (HLS cuts segments on them,
                # players join on them), and again if a new source sent none.
                due = 1.0 if self._awaiting_keyframe else self.owner.keyframe_interval
                if (
                    self.source is not None
                    and now - self._last_keyframe >= due
                    and now - self._last_request >= due
                ):
                    self._last_request = now
                    self.source.request_keyframe()
                if self._awaiting_keyframe:
                    return  # a new source's pictures refer to ones never sent
        self.owner._write(self.kind, packet, keyframe)

    def attach(self, source: PacketSource) -> None:
        self._awaiting_keyframe = True
        self._last_keyframe = self._last_request = time.monotonic()
        super().attach(source)


class StreamingOut:
    """A room's stream pushed to an RTMP server or written as HLS: a sink of shared packet sources.

    It binds to shared PacketSources like a subscription: the video as H.264
    (shared with every other H.264 receiver of the same format), the audio
    as Opus, which the worker transcodes to AAC. For HLS, segments and the
    playlist `<id>.m3u8` are written into `hls_directory`; `url`, if given,
    is where the portal serves that playlist (else its path is reported).
    """

    def __init__(
        self,
        streaming_id: str,
        room_id: str,
        protocol: str,
        url: str | None,
        media: MediaChoice,
        *,
        hls_directory: Path | None = None,
        on_finished: Callable[[StreamingOut], None] | None = None,
        hls_time: float = HLS_TIME,
        hls_list_size: int = HLS_LIST_SIZE,
        keyframe_interval: float | None = None,
        max_queue_seconds: float = MAX_QUEUE_SECONDS,
    ) -> None:
        self.id = streaming_id
        self.room_id = room_id
        self.protocol = protocol.lower() if isinstance(protocol, str) else str(protocol)
        self.url = url
        self.media = media
        self.hls_directory = Path(hls_directory) if hls_directory is not None else None
        self.playlist = (
            self.hls_directory / f"{streaming_id}.m3u8" if self.hls_directory is not None else None
        )
        self.hls_time = hls_time
        self.hls_list_size = hls_list_size
        # How often the video source is asked for a keyframe (HLS cuts segments on them).
        self.keyframe_interval = keyframe_interval or (
            float(hls_time) if self.protocol == "hls" else RTMP_KEYFRAME_INTERVAL
        )
        self.reason: str | None = None
        self.started_at = time.time()
        self.stopped_at: float | None = None
        self._state = "connecting"
        self._sinks = {"audio": _TrackSink(self, "audio"), "video": _TrackSink(self, "video")}
        self._pusher: StreamPusher | None = None
        self._max_queue_seconds = max_queue_seconds
        self._loop = asyncio.get_running_loop()
        self._on_finished = on_finished

    @property
    def state(self) -> str:
        """connecting | streaming | stopped | failed."""
        if self._state == "connecting" and self._pusher is not None and self._pusher.started:
            return "streaming"
        return self._state

    @property
    def pusher(self) -> StreamPusher | None:
        return self._pusher

    # -- lifecycle ------------------------------------------------------

    def start(self, streams: dict[str, Stream]) -> None:
        """Bind to the sources and start pushing; raises ParameterError or MuxerError."""
        if self._pusher is not None or self.stopped_at is not None:
            raise ParameterError("Streaming-out has been started already")
        rtmp = self._check_target()
        audio = self._audio_source(streams, self.media.audio_from)
        video = self._video_source(streams, self.media.video_from, self.media.video_parameters)
        if audio is None and video is None:
            raise ParameterError("A streaming-out needs an audio or a video source")
        if audio is not None and audio.codec not in _AUDIO_DECODERS:
            raise MuxerError(f"Cannot stream {audio.codec} audio: AAC is made from Opus or G.711")
        segment_pattern = None
        if rtmp is None and self.hls_directory is not None:
            segment_pattern = str(self.hls_directory / f"{self.id}-%05d.ts")
            try:
                self.hls_directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise MuxerError(
                    f"Cannot create {self.hls_directory}: {exc.strerror or exc}"
                ) from exc
        self._pusher = StreamPusher(
            rtmp=rtmp,
            playlist=self.playlist if rtmp is None else None,
            video=video is not None,
            audio_codec=audio.codec if audio is not None else None,
            on_error=self._pusher_failed,
            hls_time=self.hls_time,
            hls_list_size=self.hls_list_size,
            segment_pattern=segment_pattern,
            max_queue_seconds=self._max_queue_seconds,
        )
        if audio is not None:
            self._sinks["audio"].attach(audio)
        if video is not None:
            self._sinks["video"].attach(video)
        logger.info(
            "streaming-out started (%s to %s)",
            self.protocol,
            self._pusher.target,
            extra=self.log_ids,
        )

    def _check_target(self) -> RtmpTarget | None:
        """The RTMP target, or None for HLS (whose parameters are checked)."""
        if self.protocol not in PROTOCOLS:
            raise ParameterError(
                f"Unsupported streaming protocol {self.protocol!r}: use rtmp or hls"
            )
        if self.protocol == "rtmp":
            return check_rtmp_url(self.url)
        if not isinstance(self.hls_time, int | float) or not 0 < self.hls_time <= 60:
            raise ParameterError("hlsTime must be a number of seconds, more than 0 and at most 60")
        if not isinstance(self.hls_list_size, int) or self.hls_list_size < 0:
            raise ParameterError("hlsListSize must be a whole number (0: keep every segment)")
        if self.playlist is None:
            raise MuxerError("HLS streaming-outs are not enabled (no HLS directory configured)")
        return None

    def _audio_source(
        self, streams: dict[str, Stream], stream_id: str | None
    ) -> PacketSource | None:
        return audio_source(streams, stream_id)

    def _video_source(
        self, streams: dict[str, Stream], stream_id: str | None, parameters: dict[str, Any] | None
    ) -> PacketSource | None:
        wanted = self.media.video_format
        if wanted is not None and (
            not isinstance(wanted, dict) or str(wanted.get("codec", "")).lower() != "h264"
        ):
            raise ParameterError("Format is not acceptable: streaming-outs carry H.264 video")
        # Size, frame rate, bitrate and keyframe interval as a subscription asks
        # for them; the codec is always H.264 (shared encode or transcoder).
        return video_source(streams, stream_id, parameters, codec="h264")

    def update(
        self, streams: dict[str, Stream], audio_from: str | None, video_from: str | None
    ) -> None:
        """PATCH: take a track from another stream (timestamps continue)."""
        if self.state not in ("connecting", "streaming"):
            raise ParameterError("Streaming-out is not running")
        if audio_from and self.media.audio_from is None:
            raise ParameterError("This streaming-out has no audio track")
        if video_from and self.media.video_from is None:
            raise ParameterError("This streaming-out has no video track")
        # Both are checked before either is switched.
        audio = self._audio_source(streams, audio_from) if audio_from else None
        video = (
            self._video_source(streams, video_from, self.media.video_parameters)
            if video_from
            else None
        )
        if audio is not None and audio.codec not in _AUDIO_DECODERS:
            raise MuxerError(f"Cannot stream {audio.codec} audio")
        if audio is not None:
            self._sinks["audio"].attach(audio)
            self.media.audio_from = audio_from
        if video is not None:
            self._sinks["video"].attach(video)
            self.media.video_from = video_from

    def source_gone(self, stream_id: str) -> bool:
        """A source stream ended: drop its track; True when nothing is left to push."""
        if self.media.audio_from == stream_id:
            self._sinks["audio"].detach()
        if self.media.video_from == stream_id:
            self._sinks["video"].detach()
        return all(s.source is None for s in self._sinks.values())

    async def stop(self) -> None:
        """Stop and finish the output (HLS: the playlist gets #EXT-X-ENDLIST); idempotent."""
        if self.stopped_at is not None:
            return
        self.stopped_at = time.time()
        for sink in self._sinks.values():
            sink.detach()
        pusher = self._pusher
        if pusher is not None:
            finished = await self._loop.run_in_executor(None, pusher.close, STOP_TIMEOUT)
            if not finished:
                logger.warning(
                    "%s did not take the end of the stream", pusher.target, extra=self.log_ids
                )
        if self._state != "failed":
            self._state = "stopped"
        logger.info("streaming-out %s (%.1f s)", self._state, self.duration, extra=self.log_ids)
        if self._on_finished is not None:
            try:
                self._on_finished(self)
            except Exception:
                logger.exception("streaming-out finish listener failed", extra=self.log_ids)

    # -- media ----------------------------------------------------------

    def _write(self, kind: str, packet: Packet, keyframe: bool) -> None:
        pusher = self._pusher
        if pusher is not None and self._state == "connecting":
            pusher.write(kind, packet, keyframe)

    def _pusher_failed(self, reason: str) -> None:
        # Called on the pusher's thread: the room learns on its own loop.
        self._loop.call_soon_threadsafe(self._fail, reason)

    def _fail(self, reason: str) -> None:
        if self._state != "connecting" or self.stopped_at is not None:
            return
        logger.error("streaming-out failed: %s", reason, extra=self.log_ids)
        self._state = "failed"
        self.reason = reason
        for sink in self._sinks.values():
            sink.detach()

    # -- description ----------------------------------------------------

    @property
    def duration(self) -> float:
        return self._pusher.duration if self._pusher is not None else 0.0

    @property
    def log_ids(self) -> dict[str, str]:
        """The ids a log line about this streaming-out carries."""
        return {"room": self.room_id, "streaming_out": self.id}

    def describe(self) -> dict[str, Any]:
        """OWT's streaming-out object: {id, protocol, url, media} plus state and times."""
        media = self.media.to_json()
        if isinstance(media.get("audio"), dict):
            media["audio"]["format"] = {"codec": "aac", "sampleRate": AAC_RATE, "channelNum": 2}
        if isinstance(media.get("video"), dict):
            media["video"]["format"] = {"codec": "h264"}
        url = self.url
        if self.protocol == "hls" and url is None and self.playlist is not None:
            url = str(self.playlist)
        info: dict[str, Any] = {
            "id": self.id,
            "protocol": self.protocol,
            "url": url,
            "media": media,
            "state": self.state,
            "startTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started_at)),
        }
        if self.protocol == "hls":
            info["parameters"] = {"hlsTime": self.hls_time, "hlsListSize": self.hls_list_size}
        if self.reason:
            info["reason"] = self.reason
        return info

"""RTMP out: the url's split, a small blocking RTMP client, and FLV tags sent as RTMP messages.

PyAV's `OutputContainer.start_encoding()` calls `avio_open()` and
`avformat_write_header()` while holding the interpreter lock (only
`av_interleaved_write_frame()` releases it). With an `rtmp://` url, FFmpeg
connects and shakes hands inside `avio_open()`, with no timeout that PyAV lets
one set and no interrupt callback for outputs: a server that accepts the
connection but never answers froze the whole process, event loop included
(measured). So the network side is done here in Python (`RtmpPublisher`:
plain sockets with timeouts, which release the lock: `PushConnection`), and FFmpeg's FLV muxer
writes into it through PyAV's file-object I/O (`FlvTagSender`), which
re-enters Python for every write.
"""

from __future__ import annotations

import errno
import os
import socket
import ssl
import struct
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from tessera.media.mediasource import ParameterError

from .amf import AmfError, amf0_decode, amf0_encode
from .pushconnection import PushConnection

RTMP_SCHEMES = ("rtmp", "rtmps")
RTMP_PORT = 1935
RTMPS_PORT = 443
# Connecting, the handshake and each answer while setting up may take this long.
CONNECT_TIMEOUT = 10.0
# A server that takes no data for this long is taken for gone.
SEND_TIMEOUT = 10.0

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


class RtmpError(Exception):
    """The RTMP server refused the stream or broke the protocol (a message for the user)."""


@dataclass
class _ChunkStream:
    """The state of one incoming chunk stream."""

    length: int = 0
    type: int = 0
    extended: bool = False
    data: bytearray = field(default_factory=bytearray)


class RtmpPublisher(PushConnection):
    """A small RTMP client that publishes one stream, blocking, on its owner's thread.

    It does the simple handshake, `connect`, `releaseStream`, `FCPublish`,
    `createStream` and `publish` (what FFmpeg and OBS send), then takes FLV
    tags as audio, video and `@setDataFrame` messages. Between messages it
    reads what the server sent without blocking: pings are answered, bytes
    acknowledged, an error status ends the push. Every socket call has a
    timeout and releases the interpreter lock, and `abort()` (from any
    thread) ends a send that a stalled server holds up.
    """

    error = RtmpError

    def __init__(
        self,
        target: RtmpTarget,
        *,
        timeout: float | None = None,
        send_timeout: float | None = None,
    ) -> None:
        super().__init__(
            CONNECT_TIMEOUT if timeout is None else timeout,
            SEND_TIMEOUT if send_timeout is None else send_timeout,
        )
        self.target = target
        self.stream_id = 0
        self.published = False
        self._transaction = 0
        self._in: dict[int, _ChunkStream] = {}
        self._in_chunk_size = 128
        self._inbuf = bytearray()
        self._received = 0
        self._acknowledged = 0
        self._window = 0
        self._commands: deque[tuple[str, float, list[Any]]] = deque()

    # -- setting up -----------------------------------------------------

    def connect(self) -> None:
        """Connect, shake hands and publish; raises OSError or RtmpError."""
        t = self.target
        self._connect(t.host, t.port, self._wrap_tls if t.tls else None)
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

    def _wrap_tls(self, sock: socket.socket) -> socket.socket:
        return ssl.create_default_context().wrap_socket(sock, server_hostname=self.target.host)

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
            self._feed(self._receive(remaining))
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

    def _goodbye(self) -> None:
        if self.published:
            self._call("FCUnpublish", None, self.target.stream)
            self._call("deleteStream", None, self.stream_id)

    def _poll(self) -> None:
        """Take what the server sent without waiting (pings, acknowledgements, errors)."""
        self._read_waiting(self._feed)
        while self._commands:
            name, _, args = self._commands.popleft()
            _check_status(name, args)

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
            try:
                values = amf0_decode(payload[1:] if message_type == _MSG_COMMAND_AMF3 else payload)
            except AmfError as exc:
                raise RtmpError(f"the server sent a malformed command ({exc})") from exc
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

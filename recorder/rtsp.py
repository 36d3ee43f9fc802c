"""RTSP out: a small blocking RTSP client that pushes (ANNOUNCE, SETUP, RECORD) over TCP.

What FFmpeg's `rtsp` muxer does with `rtsp_transport=tcp`: OPTIONS,
ANNOUNCE with the SDP of the tracks, SETUP of each track's control url with
`RTP/AVP/TCP;unicast;interleaved=2n-2n+1;mode=record`, RECORD, then RTP
packets framed on the same connection (`$`, channel, length), and TEARDOWN
at the end. FFmpeg's muxer is not used itself: it connects inside
`avformat_write_header()`, which PyAV calls holding the interpreter lock, so a
server that never answers would freeze the process (see `rtmp.py`). Here
every socket call has a timeout and releases the lock, and `abort()` ends a
send that a stalled server holds up (`PushConnection`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from tessera.media.mediasource import ParameterError

from .pushconnection import PushConnection
from .rtp import interleaved

RTSP_PORT = 554
CONNECT_TIMEOUT = 10.0
SEND_TIMEOUT = 10.0
_MAX_HEADER = 64 << 10


class RtspError(Exception):
    """The RTSP server refused the stream or broke the protocol (a message for the user)."""


@dataclass(frozen=True)
class RtspTarget:
    """Where an rtsp:// url pushes to."""

    url: str
    host: str
    port: int


def check_rtsp_url(url: Any) -> RtspTarget:
    """Where to push, or ParameterError saying why `url` is not an RTSP url to push to."""
    if not isinstance(url, str) or not url.strip():
        raise ParameterError("url: RTSP streaming needs a url: rtsp://host[:port]/path")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise ParameterError("url: must not contain spaces or control characters")
    parts = urlsplit(url)
    if parts.scheme.lower() != "rtsp":
        raise ParameterError(f"url: {url!r} is not an rtsp:// url")
    try:
        port = parts.port
    except ValueError as exc:
        raise ParameterError(f"url: invalid port in {url!r}") from exc
    if not parts.hostname or port == 0:
        raise ParameterError(f"url: {url!r} names no host")
    if parts.username is not None or parts.password is not None:
        raise ParameterError("url: credentials in the RTSP url are not supported")
    if not parts.path.strip("/"):
        raise ParameterError(f"url: {url!r} names no path to publish at: rtsp://host/path")
    return RtspTarget(url, parts.hostname, port or RTSP_PORT)


@dataclass
class RtspResponse:
    """A server's answer: status, reason, headers (lower-case names) and body."""

    status: int
    reason: str
    headers: dict[str, str]
    body: bytes


def parse_response(head: bytes) -> tuple[int, str, dict[str, str]]:
    """Status line and headers of an RTSP response (raises RtspError if it is not one)."""
    lines = head.decode("latin-1").split("\r\n")
    first = lines[0].split(" ", 2)
    if len(first) < 2 or not first[0].startswith("RTSP/") or not first[1].isdigit():
        raise RtspError(f"not an RTSP server (it answered {lines[0][:60]!r})")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return int(first[1]), first[2] if len(first) > 2 else "", headers


class RtspPublisher(PushConnection):
    """Pushes RTP over one RTSP/TCP connection, blocking, on its owner's thread."""

    error = RtspError

    def __init__(
        self,
        target: RtspTarget,
        *,
        timeout: float | None = None,
        send_timeout: float | None = None,
    ) -> None:
        super().__init__(
            CONNECT_TIMEOUT if timeout is None else timeout,
            SEND_TIMEOUT if send_timeout is None else send_timeout,
        )
        self.target = target
        self.recording = False
        self._cseq = 0
        self._session: str | None = None
        self._inbuf = bytearray()

    def connect(self) -> None:
        """Connect and ask OPTIONS (a refusal is known before any media)."""
        self._connect(self.target.host, self.target.port)
        self._request("OPTIONS", self.target.url)

    def record(self, sdp: str, tracks: int) -> None:
        """ANNOUNCE the tracks, SETUP each on interleaved channels 2n/2n+1, RECORD."""
        self._request(
            "ANNOUNCE", self.target.url, sdp.encode(), {"Content-Type": "application/sdp"}
        )
        base = self.target.url.rstrip("/")
        for track in range(tracks):
            transport = f"RTP/AVP/TCP;unicast;interleaved={2 * track}-{2 * track + 1};mode=record"
            answer = self._request(
                "SETUP", f"{base}/streamid={track}", headers={"Transport": transport}
            )
            session = answer.headers.get("session")
            if session:
                self._session = session.split(";", 1)[0].strip()
        self._request("RECORD", self.target.url, headers={"Range": "npt=0.000-"})
        self.recording = True

    def send(self, channel: int, packet: bytes) -> None:
        """One RTP packet on `channel` (what the server sends meanwhile is read and dropped)."""
        self._drain()
        self._sendall(interleaved(channel, packet), self.send_timeout)

    def _goodbye(self) -> None:
        if self.recording:
            self._send_request("TEARDOWN", self.target.url, b"", {})

    # -- requests -------------------------------------------------------------------

    def _request(
        self,
        method: str,
        url: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> RtspResponse:
        self._send_request(method, url, body, headers or {})
        answer = self._read_response(method)
        if answer.status == 401:
            raise RtspError(f"{method} refused: the server wants credentials (not supported)")
        if answer.status != 200:
            raise RtspError(f"{method} refused: {answer.status} {answer.reason}".rstrip())
        return answer

    def _send_request(self, method: str, url: str, body: bytes, headers: dict[str, str]) -> None:
        self._cseq += 1
        lines = [f"{method} {url} RTSP/1.0", f"CSeq: {self._cseq}", "User-Agent: Tessera"]
        if self._session is not None:
            lines.append(f"Session: {self._session}")
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if body:
            lines.append(f"Content-Length: {len(body)}")
        self._sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body, self.timeout)

    def _read_response(self, method: str) -> RtspResponse:
        deadline = time.monotonic() + self.timeout
        while True:
            self._skip_interleaved()
            end = self._inbuf.find(b"\r\n\r\n")
            if end >= 0:
                status, reason, headers = parse_response(bytes(self._inbuf[:end]))
                length = int(headers.get("content-length", "0") or 0)
                if len(self._inbuf) >= end + 4 + length:
                    body = bytes(self._inbuf[end + 4 : end + 4 + length])
                    del self._inbuf[: end + 4 + length]
                    return RtspResponse(status, reason, headers, body)
            elif len(self._inbuf) > _MAX_HEADER:
                raise RtspError("the server sent an over-long answer")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no answer to {method}")
            self._inbuf += self._receive(remaining)

    def _skip_interleaved(self) -> None:
        # RTCP from the server comes framed like the RTP sent to it.
        while len(self._inbuf) >= 4 and self._inbuf[0] == 0x24:
            size = 4 + int.from_bytes(self._inbuf[2:4], "big")
            if len(self._inbuf) < size:
                return
            del self._inbuf[:size]

    def _drain(self) -> None:
        self._read_waiting(self._inbuf.extend)
        self._skip_interleaved()
        if len(self._inbuf) > _MAX_HEADER:
            self._inbuf.clear()  # answers nobody waits for

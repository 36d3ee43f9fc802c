"""The network side of pushing a stream out: one blocking connection with timeouts.

PyAV's FFmpeg outputs connect holding the interpreter lock (see `rtmp.py`), so
the protocols that push (`RtmpPublisher`, `RtspPublisher`) speak over plain
Python sockets instead: every call has a timeout and releases the lock, and
`abort()` from any thread ends a call that a stalled server holds up. Also here:
a network failure in a user's words, for every protocol that pushes
(`httppush.py` included).
"""

from __future__ import annotations

import errno
import http.client
import socket
import ssl
from collections.abc import Callable
from typing import ClassVar


def shut_down(sock: socket.socket | None) -> None:
    """From any thread: make a call blocked on `sock` fail now (never raises)."""
    if sock is None:
        return
    try:
        # The plain socket's shutdown, also under TLS: it wakes the blocked call.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


class PushConnection:
    """One TCP (or TLS) connection to the server a stream is pushed to, used on one thread.

    A subclass speaks its protocol over it, raising its own `error` (a message
    for the user), and says goodbye to the server in `_goodbye()`.
    """

    error: ClassVar[type[Exception]] = ConnectionError

    def __init__(self, timeout: float, send_timeout: float) -> None:
        self.timeout = timeout  # connecting, and each answer while setting up
        self.send_timeout = send_timeout  # a server taking no data this long is gone
        self.bytes_sent = 0
        self._sock: socket.socket | None = None
        self._aborted = False

    def _connect(
        self, host: str, port: int, wrap: Callable[[socket.socket], socket.socket] | None = None
    ) -> None:
        """Connect to `host`:`port` (`wrap`: TLS on top); raises OSError or `error`."""
        sock = socket.create_connection((host, port), timeout=self.timeout)
        if wrap is not None:
            try:
                sock = wrap(sock)
            except BaseException:
                sock.close()
                raise
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        if self._aborted:
            raise self.error("stopped while connecting")

    def close(self) -> None:
        """Say goodbye to the server unless aborted, and close (never raises)."""
        sock = self._sock
        if sock is None:
            return
        try:
            if not self._aborted:
                self._goodbye()
        except (OSError, self.error):
            pass  # the server is gone already
        finally:
            self._sock = None
            sock.close()

    def _goodbye(self) -> None:
        """What the protocol sends before the connection closes (nothing here)."""

    def abort(self) -> None:
        """From any thread: make a blocked send or read fail now."""
        self._aborted = True
        shut_down(self._sock)

    def _read_waiting(self, feed: Callable[[bytes], None]) -> None:
        """Hand what the server has sent so far to `feed`, without waiting."""
        sock = self._sock
        if sock is None:
            raise self.error("not connected")
        sock.settimeout(0.0)
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    raise self.error("the server closed the connection")
                feed(data)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass

    def _receive(self, timeout: float) -> bytes:
        """What the server sends next, waiting up to `timeout` seconds."""
        sock = self._sock
        assert sock is not None
        sock.settimeout(max(0.001, timeout))
        data = sock.recv(65536)
        if not data:
            raise self.error("the server closed the connection")
        return data

    def _sendall(self, data: bytes, timeout: float) -> None:
        sock = self._sock
        if sock is None or self._aborted:
            raise self.error("the connection was closed")
        sock.settimeout(timeout)
        sock.sendall(data)
        self.bytes_sent += len(data)


def describe_network_error(exc: BaseException, host: str) -> str:
    """Why a connection to `host` failed or got no answer, in a user's words."""
    code = getattr(exc, "errno", None)
    if isinstance(exc, socket.gaierror):
        return f"host {host} not found"
    if code == errno.ECONNREFUSED:
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return f"the server did not answer in time ({exc.strerror or exc})"
    if code in (errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED) or isinstance(
        exc, http.client.RemoteDisconnected
    ):
        return "the server closed the connection"
    if code in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return "host unreachable"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed ({exc.reason or exc})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {exc}"

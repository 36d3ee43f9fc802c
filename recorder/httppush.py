"""HttpPusher: the files of an HLS or DASH output sent to the user's HTTP server, in order.

FFmpeg's `hls` and `dash` muxers open every file they write (segments, the
playlist or manifest) through PyAV's `io_open` callback, and open a file with
`{"method": "DELETE"}` when they drop an old segment (`delete_segments`,
DASH's window and `remove_at_exit`). Each file is kept in memory until the
muxer closes it (`PushFile`) and then queued here; one thread of its own sends
the queue in order over one kept-alive connection, so a segment is on the
server before the playlist that lists it, and a slow server never holds up
muxing. FFmpeg's own HTTP client is not used: it connects holding the
interpreter lock (see `rtmp.py`) and neither retries nor says why it failed.

A request that cannot connect, times out or is answered 5xx, 408 or 429 is
tried again after a growing pause (`RetryPolicy`); any other answer, or the
last try, ends the push with a reason naming the file and the answer.
A DELETE answered 404 is done (the file is gone either way).
"""

from __future__ import annotations

import http.client
import io
import logging
import ssl
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from tessera.media.threadstart import LaunchedThread

from .pushconnection import describe_network_error, shut_down
from .streamingtarget import HttpTarget

logger = logging.getLogger(__name__)

# Requests may take this long to connect and to be answered.
REQUEST_TIMEOUT = 10.0
# More than this waiting to be sent: the server is slower than the stream.
MAX_PENDING_BYTES = 64 << 20

CONTENT_TYPES = {
    "m3u8": "application/vnd.apple.mpegurl",
    "ts": "video/mp2t",
    "mpd": "application/dash+xml",
    "m4s": "video/iso.segment",
}
_RETRIED_STATUSES = frozenset({408, 429})


@dataclass(frozen=True)
class RetryPolicy:
    """How often a request is tried and how long to wait between tries (doubling)."""

    attempts: int = 4
    first_delay: float = 0.5
    max_delay: float = 4.0

    def delays(self) -> list[float]:
        """The pauses before the 2nd, 3rd, ... try."""
        out: list[float] = []
        delay = self.first_delay
        for _ in range(max(0, self.attempts - 1)):
            out.append(min(delay, self.max_delay))
            delay *= 2
        return out


class PushError(Exception):
    """The server refused a file or could not be reached (a message for the user)."""


class Upload(NamedTuple):
    """One request: PUT/POST a file's bytes, or DELETE it."""

    method: str
    name: str
    body: bytes


def retryable(status: int) -> bool:
    """Whether an HTTP answer may be a passing fault worth another try."""
    return status >= 500 or status in _RETRIED_STATUSES


def content_type(name: str) -> str:
    return CONTENT_TYPES.get(name.rsplit(".", 1)[-1].lower(), "application/octet-stream")


class PushFile(io.RawIOBase):
    """A file the muxer writes: its bytes are kept and handed over when it is closed."""

    def __init__(self, pusher: HttpPusher, name: str, method: str) -> None:
        super().__init__()
        self._pusher = pusher
        self._name = name
        self._method = method
        self._data = bytearray()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self._data += data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._pusher.queue(Upload(self._method, self._name, bytes(self._data)))
            self._data = bytearray()
        super().close()


class HttpPusher:
    """Sends the queued files of one HLS/DASH output to `target`'s folder, in order.

    `queue()` never blocks; the sender thread reports the first failure once
    through `on_error(reason)` and drops whatever is queued after it.
    """

    def __init__(
        self,
        target: HttpTarget,
        method: str,
        on_error: Callable[[str], None],
        *,
        retry: RetryPolicy | None = None,
        timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        self.target = target
        self.method = method
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self._on_error = on_error
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._queue: deque[Upload] = deque()
        self._pending_bytes = 0
        self._closing = False
        self._aborted = threading.Event()
        self._connection: http.client.HTTPConnection | None = None
        self.error: str | None = None
        self.sent: list[tuple[str, str, int]] = []  # (method, name, status), for logs and tests
        self.retries = 0
        self.delete_failures = 0
        self._thread = LaunchedThread(self._run, "push http")
        self._thread.launch()  # never waits on the event loop thread

    # -- the muxer's side --------------------------------------------------------------

    def open(self, url: str, flags: int, options: dict[str, str]) -> PushFile:
        """PyAV's `io_open`: a file of the output, named by the muxer from the target url."""
        name = url.rsplit("/", 1)[-1]
        if not url.startswith(self.target.url.rsplit("/", 1)[0] + "/") or not name:
            raise PushError(f"the muxer opened {url!r}, outside {self.target.url}")
        method = "DELETE" if options.get("method") == "DELETE" else self.method
        return PushFile(self, name, method)

    def queue(self, upload: Upload) -> None:
        with self._lock:
            if self.error is not None or self._closing:
                return
            if self._pending_bytes + len(upload.body) > MAX_PENDING_BYTES:
                reason = self._reason(
                    upload, "the server takes the files slower than the stream makes them"
                )
                self._queue.clear()
                self._pending_bytes = 0
                self._set_error(reason)
            else:
                self._queue.append(upload)
                self._pending_bytes += len(upload.body)
            self._wakeup.notify()

    @property
    def failed(self) -> bool:
        return self.error is not None

    def close(self, timeout: float | None = None) -> bool:
        """Send what is queued, then end; past `timeout`, give up on a stalled server."""
        with self._lock:
            self._closing = True
            self._wakeup.notify()
        self._thread.join(timeout)
        if not self._thread.is_alive():
            return True
        self.abort()
        self._thread.join(1.0)
        return not self._thread.is_alive()

    def abort(self) -> None:
        """From any thread: drop what is queued and end a request under way."""
        self._aborted.set()
        with self._lock:
            self._queue.clear()
            self._pending_bytes = 0
            self._wakeup.notify()
        connection = self._connection
        shut_down(connection.sock if connection is not None else None)

    # -- the sender thread -------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                with self._lock:
                    while not self._queue and not self._closing:
                        self._wakeup.wait()
                    if not self._queue or self.error is not None or self._aborted.is_set():
                        return
                    upload = self._queue.popleft()
                    self._pending_bytes -= len(upload.body)
                try:
                    self._send(upload)
                except PushError as exc:
                    if upload.method == "DELETE":
                        # An old segment left on the server: the stream goes on.
                        self.delete_failures += 1
                        logger.warning("%s", exc)
                        continue
                    with self._lock:
                        self._queue.clear()
                        self._pending_bytes = 0
                        self._set_error(str(exc))
                    return
        finally:
            self._disconnect()

    def _set_error(self, reason: str) -> None:
        if self.error is not None:
            return
        self.error = reason
        logger.warning("%s", reason)
        try:
            self._on_error(reason)
        except Exception:
            logger.exception("HTTP push error listener failed")

    def _send(self, upload: Upload) -> None:
        delays = self.retry.delays()
        attempt = 0
        while True:
            attempt += 1
            try:
                status, text = self._request(upload)
            except (OSError, http.client.HTTPException) as exc:
                self._disconnect()
                problem = f"failed: {describe_network_error(exc, self.target.host)}"
                if self._aborted.is_set() or attempt > len(delays):
                    raise PushError(self._reason(upload, problem, attempt)) from exc
            else:
                if 200 <= status < 300 or (upload.method == "DELETE" and status == 404):
                    self.sent.append((upload.method, upload.name, status))
                    return
                problem = f"answered {status} {text}".rstrip()
                if not retryable(status) or attempt > len(delays):
                    raise PushError(self._reason(upload, problem, attempt))
            self.retries += 1
            logger.info("%s; trying again", self._reason(upload, problem, attempt))
            if self._aborted.wait(delays[attempt - 1]):
                raise PushError(self._reason(upload, "stopped while retrying", attempt))

    def _reason(self, upload: Upload, problem: str, attempts: int = 1) -> str:
        tries = f" (after {attempts} tries)" if attempts > 1 else ""
        return f"cannot push to {self.target.url}: {upload.method} {upload.name} {problem}{tries}"

    def _request(self, upload: Upload) -> tuple[int, str]:
        connection = self._connection
        if connection is None:
            t = self.target
            if t.tls:
                connection = http.client.HTTPSConnection(
                    t.host, t.port, timeout=self.timeout, context=ssl.create_default_context()
                )
            else:
                connection = http.client.HTTPConnection(t.host, t.port, timeout=self.timeout)
            self._connection = connection
        headers = {"User-Agent": "Tessera"}
        body: bytes | None = None
        if upload.method != "DELETE":
            headers["Content-Type"] = content_type(upload.name)
            body = upload.body
        path = self.target.url_of(upload.name).split("/", 3)[3]
        connection.request(upload.method, "/" + path, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        if response.will_close:
            self._disconnect()
        return response.status, response.reason

    def _disconnect(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

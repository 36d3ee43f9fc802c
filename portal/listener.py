"""Listener: the server's HTTP listening socket, with connection hygiene.

aiohttp closes a connection that has no request in progress ``keepalive_timeout``
after it opened or after its last response (``server.idle_timeout``); it has no
deadline for a request head that trickles in, no cap on connections, and asyncio
logs every failed ``accept()``. This adds:

- ``server.header_timeout``: a new connection that has not sent a complete request
  head in time is closed (slowloris, silent sockets);
- ``server.body_timeout``: a request whose body has not arrived in full that long after
  its head is cut (its handler cancelled, its connection closed): a body trickled a byte
  at a time holds a handler and its buffers no longer than that;
- a cap per client address and one for the server below the open-file limit
  (``RLIMIT_NOFILE``); at the global cap the oldest connection still waiting for its
  first request head gives way (see ConnectionLimits); a refused client gets a 503;
- connections accepted one at a time, each admitted before the next (AcceptLoop), and
  ``accept()`` out of file descriptors backing off until a connection closes;
- refusals, displacements, header timeouts and failed accepts summed up in one warning
  per ``LOG_INTERVAL`` (asyncio's own server logs each failed accept, thousands a second).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import resource
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from .config import Config
from .connectionlimits import ConnectionLimits, global_cap

logger = logging.getLogger(__name__)

# Seconds between two warnings about refused connections or a failed accept().
LOG_INTERVAL = 10.0
# Seconds accept() waits after running out of file descriptors (unless a connection closes).
ACCEPT_RETRY = 1.0
_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n\r\n%s"
)


def open_file_limit() -> int:
    """The process's soft ``RLIMIT_NOFILE``."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


class TallyLog:
    """Counts events by kind and logs them as one warning at most every ``interval`` seconds."""

    def __init__(self, message: str, interval: float = LOG_INTERVAL) -> None:
        self.message = message
        self.interval = interval
        self.counts: Counter[str] = Counter()
        self._last = -interval
        self._flush: asyncio.TimerHandle | None = None

    def add(self, kind: str) -> None:
        self.counts[kind] += 1
        if self._flush is None:
            wait = max(0.0, self._last + self.interval - time.monotonic())
            self._flush = asyncio.get_running_loop().call_later(wait, self.flush)

    def flush(self) -> None:
        self._flush = None
        if not self.counts:
            return
        self._last = time.monotonic()
        summary = ", ".join(f"{kind}: {n}" for kind, n in sorted(self.counts.items()))
        logger.warning("%s (%s)", self.message, summary, extra=dict(self.counts))
        self.counts.clear()

    def close(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None


class ConnectionGuard:
    """The connection limits and header deadline of one listener (see the module)."""

    def __init__(self, config: Config, open_files: int | None = None) -> None:
        server = config.server
        limit = open_file_limit() if open_files is None else open_files
        self.limits: ConnectionLimits[GuardedRequestHandler] = ConnectionLimits(
            global_cap(limit, server.max_connections), server.connections_per_address
        )
        self.header_timeout = server.header_timeout
        self.body_timeout = server.body_timeout
        self.tally = TallyLog("HTTP connections closed by the listener's limits")
        self.freed: asyncio.Event | None = None  # the accept loop's: set when one closes

    def closed(self, handler: GuardedRequestHandler) -> None:
        self.limits.closed(handler)
        if self.freed is not None:
            self.freed.set()

    def admit(self, handler: GuardedRequestHandler, address: str) -> str | None:
        """None if ``handler`` may go on, else why it is refused."""
        admission = self.limits.admit(handler, address)
        if not admission.admitted:
            self.tally.add("refused")
            return admission.reason
        if admission.displaced is not None:
            self.tally.add("displaced (no request head yet, at the global cap)")
            admission.displaced.force_close()
        return None

    def header_timed_out(self) -> None:
        self.tally.add(f"no request head within {self.header_timeout:g} s")

    def body_timed_out(self) -> None:
        self.tally.add(f"request body not complete within {self.body_timeout:g} s")

    def handler(self, server: web.Server) -> GuardedRequestHandler:
        """The protocol of one new connection (a factory for ``loop.create_server``)."""
        # aiohttp's own factory passes the runner's settings the same way (Server.__call__).
        return GuardedRequestHandler(self, server, loop=server._loop, **server._kwargs)


class GuardedRequestHandler(RequestHandler):
    """aiohttp's connection protocol, admitted by a ConnectionGuard and given a deadline
    for its first request head."""

    def __init__(self, guard: ConnectionGuard, server: web.Server, **kwargs: Any) -> None:
        super().__init__(server, **kwargs)
        self._guard = guard
        self._counted = False
        self._head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) else str(peer)
        reason = self._guard.admit(self, address)
        if reason is not None:
            body = f"Too many connections: {reason}\n".encode()
            assert isinstance(transport, asyncio.Transport)
            transport.write(_REFUSAL % (len(body), body))
            transport.close()
            return
        self._counted = True
        super().connection_made(transport)
        self._head_deadline = asyncio.get_running_loop().call_later(
            self._guard.header_timeout, self._no_head
        )

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._head_deadline is not None and self._request_count > 0:
            self._head_deadline.cancel()
            self._head_deadline = None
            self._guard.limits.started(self)

    def _no_head(self) -> None:
        self._head_deadline = None
        self._guard.header_timed_out()
        self.force_close()

    async def _handle_request(
        self,
        request: BaseRequest,
        start_time: float | None,
        request_handler: Callable[[BaseRequest], Awaitable[StreamResponse]],
    ) -> tuple[StreamResponse, bool]:
        # A body still on its way gets server.body_timeout to arrive in full.
        deadline: asyncio.TimerHandle | None = None
        if request.body_exists and not request.content.is_eof():
            deadline = asyncio.get_running_loop().call_later(
                self._guard.body_timeout, self._body_late, request
            )
            request.content.on_eof(deadline.cancel)
        try:
            return await super()._handle_request(request, start_time, request_handler)
        finally:
            if deadline is not None:
                deadline.cancel()

    def _body_late(self, request: BaseRequest) -> None:
        if request.content.is_eof():
            return
        self._guard.body_timed_out()
        # Cancelled, the handler ends without an error to log; the client gets no answer
        # (one that sends a body this slowly is not waiting for one).
        if self._task_handler is not None:
            self._task_handler.cancel()
        self.force_close()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None
        if self._counted:
            self._counted = False
            self._guard.closed(self)
        super().connection_lost(exc)


class AcceptLoop(asyncio.AbstractServer):
    """Listening sockets whose connections are accepted one at a time by a task, so
    that each is admitted (or refused) before the next is accepted: asyncio's own
    server accepts up to its backlog per turn before any protocol sees a connection,
    which runs past the open-file limit under a flood. ``accept()`` out of file
    descriptors backs off (until a connection closes, or a second) and is tallied."""

    def __init__(
        self, listening: list[socket.socket], factory: Callable[[], RequestHandler], ssl: Any
    ) -> None:
        self._sockets = listening
        self._factory = factory
        self._ssl = ssl
        self._tasks = [asyncio.ensure_future(self._serve(sock)) for sock in listening]
        self.freed = asyncio.Event()  # set when a connection closes: worth accepting again
        self.tally = TallyLog("accept() failed: out of file descriptors or memory; backing off")

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return tuple(self._sockets)

    async def _serve(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(sock)
            except OSError as exc:
                if exc.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    continue  # the client went before it was accepted (ECONNABORTED, ...)
                self.tally.add(errno.errorcode.get(exc.errno or 0, str(exc.errno)))
                self.freed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.freed.wait(), ACCEPT_RETRY)
                continue
            try:
                await loop.connect_accepted_socket(self._factory, conn, ssl=self._ssl)
            except OSError:
                conn.close()  # it reset before its transport was made

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for sock in self._sockets:
            sock.close()
        self._sockets = []
        self.tally.close()

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    def is_serving(self) -> bool:
        return bool(self._sockets)

    async def start_serving(self) -> None:
        return None  # serving from the start

    async def serve_forever(self) -> None:
        await asyncio.gather(*self._tasks)

    async def wait_closed(self) -> None:
        await asyncio.gather(*self._tasks, return_exceptions=True)


def probe_listen(host: str, port: int) -> None:
    """Bind ``host``:``port`` as :func:`listen` will, and let go: OSError if it cannot."""
    for sock in _listening_sockets(host, port, 1):
        sock.close()


def _listening_sockets(host: str, port: int, backlog: int) -> list[socket.socket]:
    """A listening socket per address of ``host`` (as asyncio's create_server binds them)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    seen: set[Any] = set()
    listening: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in infos:
            if (family, address) in seen:
                continue
            seen.add((family, address))
            sock = socket.socket(family, kind, proto)
            listening.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(backlog)
            sock.setblocking(False)
    except OSError:
        for sock in listening:
            sock.close()
        raise
    return listening


class GuardedSite(web.BaseSite):
    """An aiohttp site on ``host``:``port`` whose connections go through a ConnectionGuard."""

    def __init__(self, runner: web.AppRunner, guard: ConnectionGuard, host: str, port: int) -> None:
        super().__init__(runner)
        self.guard = guard
        self._host = host
        self._port = port
        self.accepting: AcceptLoop | None = None

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def port(self) -> int:
        """The bound port (``port`` 0 picks one)."""
        if self.accepting is None or not self.accepting.sockets:
            return self._port
        return int(self.accepting.sockets[0].getsockname()[1])

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        listening = _listening_sockets(self._host, self._port, self._backlog)
        self.accepting = AcceptLoop(
            listening, lambda: self.guard.handler(server), self._ssl_context
        )
        self.guard.freed = self.accepting.freed
        self._server = self.accepting

    async def stop(self) -> None:
        self.guard.tally.close()
        await super().stop()


async def listen(
    app: web.Application, config: Config, host: str, port: int, shutdown_timeout: float
) -> tuple[web.AppRunner, GuardedSite]:
    """Set up ``app`` and listen on ``host``:``port`` with connection hygiene."""
    guard = ConnectionGuard(config)  # first: a cap the fd limit cannot honour stops the start
    runner = web.AppRunner(
        app,
        handle_signals=False,
        shutdown_timeout=shutdown_timeout,
        keepalive_timeout=config.server.idle_timeout,
    )
    await runner.setup()
    site = GuardedSite(runner, guard, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, site

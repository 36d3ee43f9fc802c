"""A user-space TCP proxy on loopback: the one address portals sit behind in production
(a load balancer, or DNS naming several portals), for tests that kill a portal.

Each new connection goes to the first backend that accepts it, in the order given: while
the first portal lives every client reaches it; once it is gone (its port refuses),
clients reconnecting land on the next. A connection whose backend dies is closed on the
client's side too, as a load balancer does, so the client notices and reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib


class TcpProxy:
    """Listens on 127.0.0.1 and splices each connection to a live backend."""

    def __init__(self, backends: list[tuple[str, int]]) -> None:
        self.backends = backends
        self.port = 0
        self.routed: list[tuple[str, int]] = []  # the backend of each connection, in order
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._pipes):
            task.cancel()
        for task in list(self._pipes):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for host, port in self.backends:
            try:
                up_reader, up_writer = await asyncio.open_connection(host, port)
            except OSError:
                continue  # this backend is down: the next one
            self.routed.append((host, port))
            pipes = [
                asyncio.ensure_future(self._pipe(reader, up_writer)),
                asyncio.ensure_future(self._pipe(up_reader, writer)),
            ]
            self._pipes.update(pipes)
            try:
                # When either side ends, both do (a dead backend closes its clients).
                await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in pipes:
                    task.cancel()
                    self._pipes.discard(task)
                for end in (writer, up_writer):
                    end.close()
            return
        writer.close()  # no backend alive: refuse

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()

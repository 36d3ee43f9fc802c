"""BatchReceiver: one thread reads many subscribers' UDP sockets with `recvmmsg` and counts RTP.

Three hundred subscribers of a 720p view receive ~90,000 datagrams a second;
aioice's per-datagram path (a protocol callback, an asyncio queue, a task) in
one Python process cannot take that on the core the server leaves it, so the
benchmark would measure its own clients. Once a subscriber's connection is up,
its socket leaves the event loop: this thread reads it 64 datagrams per system
call into one buffer and counts frames (sequence numbers and marker bits) and
payload bytes from the clear RTP headers. Everything else (STUN consent checks,
RTCP, DTLS) goes back to aioice on the event loop as if it had read it. Linux
only (`recvmmsg`, epoll).
"""

from __future__ import annotations

import asyncio
import logging
import select
import socket
import threading
from collections.abc import Callable
from typing import Any

from tessera.media.udpbatch import mmsg_libc

logger = logging.getLogger(__name__)

BATCH = 64
SLOT = 2048
NAME = 128  # sizeof(struct sockaddr_storage)
MSG_DONTWAIT = 0x40


class CountedSocket:
    """One subscriber's socket: where its counts go and where its other datagrams go."""

    def __init__(
        self,
        on_rtp: Callable[[int, int, bool, int], None],
        protocol: asyncio.DatagramProtocol,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.on_rtp = on_rtp  # (SSRC, sequence, marker, payload bytes) on the reader thread
        self.protocol = protocol
        self.loop = loop


class BatchReceiver:
    """The reader thread and its epoll set (one per benchmark process)."""

    def __init__(self) -> None:
        ffi, self._libc = mmsg_libc()  # the server's sendmmsg declarations, recvmmsg among them
        self._ffi = ffi
        self._buffer = ffi.new("char[]", BATCH * SLOT)
        self._view = ffi.buffer(self._buffer)
        self._names = ffi.new("char[]", BATCH * NAME)
        self._iov = ffi.new("struct iovec[]", BATCH)
        self._msgs = ffi.new("struct mmsghdr[]", BATCH)
        for i in range(BATCH):
            self._iov[i].iov_base = self._buffer + i * SLOT
            self._iov[i].iov_len = SLOT
            header = self._msgs[i].msg_hdr
            header.msg_name = self._names + i * NAME
            header.msg_iov = self._iov + i
            header.msg_iovlen = 1
        self._epoll = select.epoll()
        self._sockets: dict[int, CountedSocket] = {}
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="bench receiver", daemon=True)
        self._thread.start()

    def add(
        self, transport: Any, protocol: asyncio.DatagramProtocol, counted: CountedSocket
    ) -> None:
        """Take over reading `transport`'s socket (event loop thread)."""
        sock = transport.get_extra_info("socket")
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            raise ValueError(f"the batch receiver reads IP sockets, not family {sock.family}")
        fd = sock.fileno()
        transport.pause_reading()
        with self._lock:
            self._sockets[fd] = counted
        self._epoll.register(fd, select.EPOLLIN)

    def remove(self, transport: Any) -> None:
        """Give the socket back before it closes (its number may be reused)."""
        sock = transport.get_extra_info("socket")
        if sock is None:
            return
        fd = sock.fileno()
        with self._lock:
            if self._sockets.pop(fd, None) is None:
                return
        try:
            self._epoll.unregister(fd)
        except (OSError, ValueError):
            pass

    def _run(self) -> None:
        while True:
            try:
                events = self._epoll.poll(0.5)
            except OSError:
                return
            for fd, _ in events:
                with self._lock:
                    counted = self._sockets.get(fd)
                if counted is not None:
                    try:
                        self._drain(fd, counted)
                    except Exception:
                        logger.exception("bench receiver failed on one socket")

    def _drain(self, fd: int, counted: CountedSocket) -> None:
        msgs, view, on_rtp = self._msgs, self._view, counted.on_rtp
        while True:
            for i in range(BATCH):
                msgs[i].msg_hdr.msg_namelen = NAME
            count = self._libc.recvmmsg(fd, msgs, BATCH, MSG_DONTWAIT, self._ffi.NULL)
            if count <= 0:
                return
            for i in range(count):
                length = msgs[i].msg_len
                offset = i * SLOT
                first, second = view[offset], view[offset + 1]
                b0, b1 = first[0], second[0]
                if 127 < b0 < 192 and length >= 12 and not 191 < b1 < 224:
                    header = 12 + 4 * (b0 & 0x0F)
                    if b0 & 0x10 and length >= header + 4:
                        header += 4 + 4 * int.from_bytes(
                            view[offset + header + 2 : offset + header + 4], "big"
                        )
                    on_rtp(
                        int.from_bytes(view[offset + 8 : offset + 12], "big"),
                        int.from_bytes(view[offset + 2 : offset + 4], "big"),
                        bool(b1 & 0x80),
                        max(0, length - header),
                    )
                    continue
                data = bytes(view[offset : offset + length])
                name = self._name(i)
                counted.loop.call_soon_threadsafe(counted.protocol.datagram_received, data, name)
            if count < BATCH:
                return

    def _name(self, i: int) -> tuple[Any, ...]:
        # struct sockaddr_in / sockaddr_in6 (Linux layout), as asyncio gives aioice the address.
        raw = bytes(self._ffi.buffer(self._names + i * NAME, 28))
        port = int.from_bytes(raw[2:4], "big")
        if int.from_bytes(raw[0:2], "little") == socket.AF_INET6:
            host = socket.inet_ntop(socket.AF_INET6, raw[8:24])
            return host, port, int.from_bytes(raw[4:8], "big"), int.from_bytes(raw[24:28], "little")
        return socket.inet_ntop(socket.AF_INET, raw[4:8]), port

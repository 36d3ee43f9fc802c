"""UdpBatchSender: many datagrams to one address in one system call (`sendmmsg`).

Python's socket module has no `sendmmsg`; it is called from libc through
cffi's ABI mode (no compiler needed; cffi releases the interpreter lock for
the call). The datagrams are copied into slots of one preallocated buffer,
so a batch costs one copy per datagram and no Python object per datagram.
Where libc has no `sendmmsg` (not Linux), each datagram is one `sendto`.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence
from typing import Any

logger = logging.getLogger(__name__)

# Datagrams one call takes; a 720p frame is a few to a few tens of packets.
MAX_BATCH = 64
SLOT_SIZE = 1500

_CDEF = """
struct iovec { void *iov_base; size_t iov_len; };
struct msghdr {
    void *msg_name; unsigned int msg_namelen;
    struct iovec *msg_iov; size_t msg_iovlen;
    void *msg_control; size_t msg_controllen; int msg_flags;
};
struct mmsghdr { struct msghdr msg_hdr; unsigned int msg_len; };
int sendmmsg(int sockfd, struct mmsghdr *msgvec, unsigned int vlen, int flags);
int recvmmsg(int sockfd, struct mmsghdr *msgvec, unsigned int vlen, int flags, void *timeout);
"""

_ffi: Any = None
_libc: Any = None


def _load() -> bool:
    global _ffi, _libc
    if _libc is not None:
        return True
    try:
        from cffi import FFI  # type: ignore[import-untyped]

        ffi = FFI()
        ffi.cdef(_CDEF)
        libc = ffi.dlopen(None)
        libc.sendmmsg  # noqa: B018  (raises AttributeError where libc lacks it)
    except (ImportError, OSError, AttributeError) as exc:
        logger.info("sendmmsg unavailable (%s): one sendto per datagram", exc)
        return False
    _ffi, _libc = ffi, libc
    return True


def sendmmsg_available() -> bool:
    """Whether batches go out with one `sendmmsg` call (else one `sendto` each)."""
    return _load()


def mmsg_libc() -> tuple[Any, Any]:
    """cffi and libc with `struct mmsghdr`, `sendmmsg` and `recvmmsg` declared (Linux);
    OSError where libc has none of them."""
    if not _load():
        raise OSError("libc has no sendmmsg/recvmmsg here")
    return _ffi, _libc


def sockaddr(family: int, host: str, port: int) -> bytes:
    """A `struct sockaddr_in` / `sockaddr_in6` (Linux layout) for `host`:`port`."""
    if not 0 < port < 65536:
        raise ValueError(f"port {port} out of range")
    if family == socket.AF_INET:
        return (
            socket.AF_INET.to_bytes(2, "little")
            + port.to_bytes(2, "big")
            + socket.inet_pton(socket.AF_INET, host)
            + bytes(8)
        )
    if family == socket.AF_INET6:
        address, _, zone = host.partition("%")
        scope = socket.if_nametoindex(zone) if zone and not zone.isdigit() else int(zone or 0)
        return (
            socket.AF_INET6.to_bytes(2, "little")
            + port.to_bytes(2, "big")
            + bytes(4)
            + socket.inet_pton(socket.AF_INET6, address)
            + scope.to_bytes(4, "little")
        )
    raise ValueError(f"address family {family} is not IPv4 or IPv6")


class UdpBatchSender:
    """Sends batches of datagrams on one UDP socket to one address; one worker thread uses it.

    The socket is the caller's (non-blocking): a full send buffer drops the
    rest of the batch rather than wait, as a router would. `dropped` counts them.
    """

    def __init__(self, sock: socket.socket, address: tuple[Any, ...]) -> None:
        self.sock = sock
        self.address = address
        self.dropped = 0
        self.errors = 0
        self._fd = sock.fileno()
        self._batched = _load() and sock.family in (socket.AF_INET, socket.AF_INET6)
        if self._batched:
            ffi = _ffi
            name = sockaddr(sock.family, str(address[0]), int(address[1]))
            self._name = ffi.new("char[]", name)
            self._buffer = ffi.new("char[]", MAX_BATCH * SLOT_SIZE)
            self._iov = ffi.new("struct iovec[]", MAX_BATCH)
            self._msgs = ffi.new("struct mmsghdr[]", MAX_BATCH)
            self._slots = [self._buffer + i * SLOT_SIZE for i in range(MAX_BATCH)]
            for i in range(MAX_BATCH):
                self._iov[i].iov_base = self._slots[i]
                header = self._msgs[i].msg_hdr
                header.msg_name = self._name
                header.msg_namelen = len(name)
                header.msg_iov = self._iov + i
                header.msg_iovlen = 1

    def send(self, datagrams: Sequence[bytes]) -> int:
        """Send them in order; returns how many left (the rest are counted as dropped)."""
        if not self._batched:
            return self._send_each(datagrams)
        sent = 0
        total = len(datagrams)
        while sent < total:
            count = min(MAX_BATCH, total - sent)
            memmove, iov, slots = _ffi.memmove, self._iov, self._slots
            for i in range(count):
                data = datagrams[sent + i]
                size = len(data)
                if size > SLOT_SIZE:
                    raise ValueError(f"datagram of {size} bytes exceeds {SLOT_SIZE}")
                memmove(slots[i], data, size)
                iov[i].iov_len = size
            done = _libc.sendmmsg(self._fd, self._msgs, count, 0)
            if done <= 0:
                # EAGAIN (buffer full) or an error: this batch and the rest are dropped.
                self.errors += done < 0
                break
            sent += done
            if done < count:
                break
        self.dropped += total - sent
        return sent

    def _send_each(self, datagrams: Sequence[bytes]) -> int:
        sent = 0
        for data in datagrams:
            try:
                self.sock.sendto(data, self.address)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.errors += 1
                break
            sent += 1
        self.dropped += len(datagrams) - sent
        return sent

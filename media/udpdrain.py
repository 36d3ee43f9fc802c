"""drain_datagrams: an event-loop UDP transport reads every waiting datagram at each wake-up.

asyncio's selector datagram transport reads one datagram each time the loop finds its
socket readable. With dozens of peer connections on one loop, a publisher's socket is
then read once per loop iteration; when iterations grow long (three 3x3 rooms in one
process on two busy cores), its datagrams pile up in the kernel until the receive buffer
overflows and the kernel drops them: `bench.density` saw thousands of `RcvbufErrors` a
window on the server's own sockets, the views' inputs decoded at 9-18 fps while the
views still composited 30. Reading up to MAX_READS datagrams per wake-up (until the
socket would block) lets one iteration take what arrived since the last one; aiortc's
DTLS task then handles them in one pass over its queue.

This reaches into asyncio's `_SelectorDatagramTransport` (CPython 3.11: `_read_ready`,
`_sock`, `_protocol`, `_conn_lost`, `max_size`, `_fatal_error`); a transport without
them is left as it is (False).
"""

from __future__ import annotations

import asyncio
from typing import Any

#: At most this many datagrams per wake-up, so one busy socket cannot hold the loop.
MAX_READS = 32
_NAMES = ("_read_ready", "_sock", "_protocol", "_conn_lost", "max_size", "_fatal_error")


def drain_datagrams(transport: asyncio.DatagramTransport) -> bool:
    """Make `transport` read up to MAX_READS datagrams per wake-up; idempotent.

    False when it is not a selector datagram transport this knows, or is closing.
    """
    raw: Any = transport
    if getattr(raw, "_tessera_drained", False):
        return True
    if transport.is_closing() or not all(hasattr(raw, name) for name in _NAMES):
        return False
    sock = raw._sock

    def read_ready() -> None:
        # asyncio's own _read_ready, repeated while datagrams wait.
        for _ in range(MAX_READS):
            if raw._conn_lost:
                return
            try:
                data, address = sock.recvfrom(raw.max_size)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                raw._protocol.error_received(exc)
                return
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                raw._fatal_error(exc, "Fatal read error on datagram transport")
                return
            raw._protocol.datagram_received(data, address)

    raw._read_ready = read_ready
    raw._tessera_drained = True
    # The loop holds the bound method it was given; re-register to hand it the new one.
    if raw.is_reading():
        raw.pause_reading()
        raw.resume_reading()
    return True

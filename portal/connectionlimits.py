"""ConnectionLimits: which incoming HTTP connection is admitted, refused or displaces another.

Pure bookkeeping (no sockets, no event loop), so that the listener's policy is
tested on its own: a cap per client address, a cap for the whole server kept
below the process's open-file limit, and, at the global cap, the oldest
connection still waiting for its first request head gives way to the new one
(a slowloris or silent socket, never a connection that is being served).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

Key = TypeVar("Key", bound=Hashable)

# Open files kept for everything but HTTP connections (media sockets, recordings,
# the database, pipes of threads and FFmpeg), at the least; a quarter of a larger limit.
MIN_RESERVED_FILES = 64


class ConnectionLimitError(ValueError):
    """A connection cap that the process's open-file limit cannot honour."""


def global_cap(open_file_limit: int, configured: int) -> int:
    """The most HTTP connections open at once: ``configured``, or (0) the open-file
    limit less a reserve; a ``configured`` cap above that is refused, named."""
    reserve = max(MIN_RESERVED_FILES, open_file_limit // 4)
    most = open_file_limit - reserve
    if most < 1:
        raise ConnectionLimitError(
            f"the open-file limit ({open_file_limit}) leaves no room for connections: "
            f"raise it (ulimit -n) above {reserve}"
        )
    if configured == 0:
        return most
    if configured > most:
        raise ConnectionLimitError(
            f"server.max_connections = {configured} is above what the open-file limit "
            f"({open_file_limit}) allows, {most} (a reserve of {reserve} is kept for media "
            "and files): lower it, or raise the limit (ulimit -n)"
        )
    return configured


@dataclass(frozen=True)
class Admission(Generic[Key]):
    """What to do with a new connection: admit it (after closing ``displaced``, if any),
    or refuse it for ``reason``."""

    admitted: bool
    displaced: Key | None = None
    reason: str = ""


class ConnectionLimits(Generic[Key]):
    """The open connections by address, and which of them still wait for a request head.

    ``per_address`` 0 means no cap per address (behind a reverse proxy every client has
    the proxy's address).
    """

    def __init__(self, total: int, per_address: int) -> None:
        if total < 1 or per_address < 0:
            raise ValueError("total must be positive and per_address not negative")
        self.total = total
        self.per_address = per_address
        self._address: dict[Key, str] = {}
        self._by_address: dict[str, int] = {}
        # Oldest first: the connection that has waited longest gives way first.
        self._waiting: OrderedDict[Key, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._address)

    def count(self, address: str) -> int:
        """Open connections from ``address``."""
        return self._by_address.get(address, 0)

    @property
    def waiting(self) -> int:
        """Open connections that have not sent a complete request head yet."""
        return len(self._waiting)

    def admit(self, key: Key, address: str) -> Admission[Key]:
        """Decide on the new connection ``key`` from ``address``; an admitted one is counted
        (as waiting for its request head) and the displaced one, if any, is forgotten."""
        if key in self._address:
            raise ValueError("connection already counted")
        if self.per_address and self.count(address) >= self.per_address:
            return Admission(
                False, reason=f"more than {self.per_address} connections from {address}"
            )
        displaced: Key | None = None
        if len(self._address) >= self.total:
            if not self._waiting:
                return Admission(False, reason=f"more than {self.total} connections open")
            displaced = next(iter(self._waiting))
            self.closed(displaced)
        self._address[key] = address
        self._by_address[address] = self.count(address) + 1
        self._waiting[key] = None
        return Admission(True, displaced=displaced)

    def started(self, key: Key) -> None:
        """``key`` sent a complete request head: it is being served, never displaced."""
        self._waiting.pop(key, None)

    def closed(self, key: Key) -> None:
        """``key`` closed (idempotent)."""
        address = self._address.pop(key, None)
        if address is None:
            return
        self._waiting.pop(key, None)
        left = self._by_address[address] - 1
        if left:
            self._by_address[address] = left
        else:
            del self._by_address[address]

"""The free space recordings leave on their disk, so that a database beside them (the
embedded default keeps both in the data directory) can still be written when they have
filled everything else: a recording does not start with less free, and stops ("disk
full") when it would go below it."""

from __future__ import annotations

import errno
import os
from pathlib import Path

MIB = 1 << 20


class DiskReserveReached(OSError):
    """A recording's disk has no more free space than the reserve (errno ENOSPC)."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.ENOSPC, message)


def free_bytes(directory: Path) -> int:
    """Bytes an unprivileged writer may still use on the file system of ``directory`` (or
    of its nearest existing parent: a room's folder is made when it first records)."""
    place = directory
    while not place.exists() and place.parent != place:
        place = place.parent
    stat = os.statvfs(place)
    return stat.f_bavail * stat.f_frsize


def shortfall(free: int, reserve: int) -> str | None:
    """Why ``free`` bytes on the recordings' disk are too few to record, or None."""
    if reserve <= 0 or free > reserve:
        return None
    return (
        f"disk full: {free / MIB:.1f} MiB free on the recordings' disk, not more than the "
        f"{reserve / MIB:.0f} MiB kept free for the database ([recording] disk_reserve_mb)"
    )


def check_reserve(directory: Path, reserve: int) -> None:
    """Raise :class:`DiskReserveReached` if ``directory``'s disk is down to the reserve."""
    if reserve <= 0:
        return
    reason = shortfall(free_bytes(directory), reserve)
    if reason is not None:
        raise DiskReserveReached(reason)

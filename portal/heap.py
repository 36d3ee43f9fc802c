"""Give the C heap's free memory back to the system once a room has closed.

A room's media (decoded frames, codec buffers, packets) is allocated by
many threads, and glibc keeps each thread's arena and any free memory at
the top of it for reuse: without a trim a server never shrinks after a
busy hour. `malloc_trim(0)` returns free pages of every arena. Elsewhere
than glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)


def _find_malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        function = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_size_t]
    function.restype = ctypes.c_int
    return function  # type: ignore[no-any-return]


_MALLOC_TRIM = _find_malloc_trim()


def trim_heap() -> bool:
    """Return free heap memory to the system; False where that is not possible.

    Takes milliseconds on a large heap (ctypes releases the interpreter lock
    meanwhile): run it off the event loop thread.
    """
    if _MALLOC_TRIM is None:
        return False
    return bool(_MALLOC_TRIM(0))

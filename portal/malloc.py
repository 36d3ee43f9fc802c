"""glibc malloc tuning: few arenas, so that memory freed by short-lived threads is reused.

Every media thread (a view's compositor, a transcoder, aiortc's decoders and
encoders) allocates from a glibc malloc arena; glibc makes up to eight per
core and rarely gives their free memory back. A server whose rooms start and
stop threads all day then grows without leaking: `bench.soak` measured RSS
+33% from cycle 50 to 500 with glibc's default, +3.5% with two arenas.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

logger = logging.getLogger(__name__)

# mallopt parameter number of M_ARENA_MAX in glibc's malloc.h.
M_ARENA_MAX = -8


def limit_malloc_arenas(count: int) -> bool:
    """At most `count` malloc arenas from now on (0: leave glibc's default); True if set."""
    if count <= 0:
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
    except (OSError, AttributeError):
        return False  # not glibc (macOS has no mallopt): nothing to tune
    ok = bool(mallopt(M_ARENA_MAX, count))
    if not ok:
        logger.warning("could not limit malloc arenas to %d", count)
    return ok

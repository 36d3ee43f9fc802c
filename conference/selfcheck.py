"""The start-up checks of the media the room service runs on (codecs, DTLS-SRTP, aiortc).

Run by the process that hosts rooms before it serves anyone: a failure names what does
not work, so an install without a codec, or an aiortc whose private names moved, is
found at start-up rather than at the first call.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable

from tessera.media.aiortcext import (
    PrivateNameMissing,
    check_dtls_srtp,
    check_msid_stream,
    check_private_names,
)
from tessera.mixer.avatar import forget_avatars
from tessera.mixer.selfcheck import check_media

__all__ = [
    "MediaCheckFailed",
    "PrivateNameMissing",
    "check_private_names",
    "media_self_check",
    "release_caches",
]

logger = logging.getLogger(__name__)

# The media self-check passed in this process (its libraries stay as they are).
_media_checked = False


class MediaCheckFailed(RuntimeError):
    """The media self-check found a codec or DTLS-SRTP not working: the server does not start."""


def media_self_check(trim: Callable[[], object] | None = None) -> None:
    """Composite, encode and decode with every codec, and make a DTLS-SRTP handshake.

    Once per process, on the main thread before anything serves; blocks for
    about 0.1 s. Raises MediaCheckFailed naming what does not work. ``trim``, if
    given, is called after it (to give the memory it used back to the system).
    """
    global _media_checked
    if _media_checked:
        return
    started = time.perf_counter()
    failures = list(check_media().failures)
    try:
        check_dtls_srtp()
    except Exception as exc:  # any failure is the finding
        failures.append(f"DTLS-SRTP: {type(exc).__name__}: {exc}")
    try:
        check_msid_stream()
    except Exception as exc:
        failures.append(f"msid stream ids: {type(exc).__name__}: {exc}")
    if failures:
        for failure in failures:
            logger.error("media self-check failed: %s", failure, extra={"check": failure})
        raise MediaCheckFailed("media self-check failed: " + "; ".join(failures))
    _media_checked = True
    gc.collect()
    if trim is not None:
        trim()
    seconds = time.perf_counter() - started
    logger.info(
        "media self-check passed in %.0f ms", seconds * 1000, extra={"seconds": round(seconds, 3)}
    )


def release_caches() -> None:
    """Drop what the media layers cache for rooms that may come back (avatars), so that
    the memory of a room that ended can be given back."""
    forget_avatars()

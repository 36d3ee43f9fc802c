"""TickThread and ticks(): the worker threads of the mixer, ticking on their own clock.

A view's video and audio threads and the active audio selector's thread each
run a loop of ticks (a frame, 20 ms of audio) that a stop event ends. Neither
starting nor stopping one waits on the event loop thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator

from tessera.media.threadstart import LaunchedThread

logger = logging.getLogger(__name__)


class TickThread:
    """A named daemon thread running `target(stop_event)` until stopped.

    A thread starts its loop once the one before it (``after``, stopped) has
    finished its last tick, so two never work on the same outputs at once.
    """

    def __init__(
        self,
        name: str,
        target: Callable[[threading.Event], None],
        log_ids: dict[str, str],
        after: TickThread | None,
    ) -> None:
        self._log_ids = log_ids
        self._stop = threading.Event()
        self._thread = LaunchedThread(self._run, name, (target, after))
        self._thread.launch()

    def _run(self, target: Callable[[threading.Event], None], after: TickThread | None) -> None:
        if after is not None:
            after.join()
        if self._stop.is_set():
            return
        try:
            target(self._stop)
        except Exception:
            logger.exception("%s crashed", self._thread.name, extra=self._log_ids)

    def stop(self) -> None:
        """Ask it to end after its current tick; returns at once."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)


def ticks(stop: threading.Event, period: float, max_lag: int) -> Iterator[tuple[int, int]]:
    """(tick, missed) every `period` seconds from now, until `stop` is set.

    Each tick waits for its due time. A loop that has fallen behind by more than
    `max_lag` periods skips the ticks it missed (`missed` says how many) rather
    than rushing through them.
    """
    start = time.monotonic()
    tick = 0
    while not stop.is_set():
        due = start + tick * period
        now = time.monotonic()
        missed = 0
        if due > now:
            if stop.wait(due - now):
                return
        elif now - due > max_lag * period:
            missed = int((now - due) / period)
            tick += missed
        yield tick, missed
        tick += 1

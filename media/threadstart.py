"""Threads the event loop starts without waiting for them.

``Thread.start()`` returns only once the new thread runs; on a busy machine that is a
wait for a core and for the interpreter lock, on the event loop thread, for tens of
milliseconds. A :class:`LaunchedThread` is started by one starter thread instead:
``launch()`` returns at once, and ``join()`` waits for the launch first.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

_queue: queue.SimpleQueue[LaunchedThread] = queue.SimpleQueue()
_starter: threading.Thread | None = None
_starter_lock = threading.Lock()


class LaunchedThread(threading.Thread):
    """A daemon thread that ``launch()`` starts without waiting (see the module docstring)."""

    def __init__(self, target: Any, name: str, args: tuple[Any, ...] = ()) -> None:
        super().__init__(target=target, name=name, args=args, daemon=True)
        self.launched = threading.Event()
        self.finished = threading.Event()

    def run(self) -> None:
        try:
            super().run()
        finally:
            self.finished.set()

    def launch(self) -> None:
        """Have the starter thread start it; returns at once."""
        _ensure_starter()
        _queue.put(self)

    def join(self, timeout: float | None = None) -> None:
        """Wait (up to ``timeout`` seconds in all) for it to be started, then to end."""
        if not self.launched.wait(timeout):
            return
        self.finished.wait(timeout)
        if self.finished.is_set():
            super().join(timeout)


def _ensure_starter() -> None:
    global _starter
    with _starter_lock:
        if _starter is None:
            # Once per process (the first launch waits for it, like any start).
            _starter = threading.Thread(target=_start_forever, name="thread starter", daemon=True)
            _starter.start()


def _start_forever() -> None:
    while True:
        thread = _queue.get()
        try:
            thread.start()
        finally:
            thread.launched.set()

"""Fire-and-forget tasks that are neither garbage-collected early nor fail silently."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

logger = logging.getLogger(__name__)

# The event loop keeps only weak references to tasks.
_running: set[asyncio.Task[Any]] = set()


def spawn(coro: Coroutine[Any, Any, Any], what: str) -> asyncio.Task[Any]:
    """Run `coro` in the background; log (not raise) its failure."""
    task = asyncio.ensure_future(coro)
    _running.add(task)

    def done(task: asyncio.Task[Any]) -> None:
        _running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("%s failed: %r", what, task.exception())

    task.add_done_callback(done)
    return task


class SerialWork:
    """Coroutines run one after another, in the order they were queued, off the caller's
    path: store writes that must land in order (a recording's start before its end)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._queue: asyncio.Queue[Callable[[], Awaitable[Any]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def put(self, work: Callable[[], Awaitable[Any]]) -> None:
        """Queue ``work`` (a coroutine function); it runs after everything queued before."""
        self._queue.put_nowait(work)
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while not self._queue.empty():
            work = self._queue.get_nowait()
            try:
                await work()
            except Exception as exc:
                logger.warning("%s failed: %r", self.what, exc)
            finally:
                self._queue.task_done()

    async def flush(self) -> None:
        """Wait until everything queued so far has run."""
        await self._queue.join()

"""Fire-and-forget tasks that are neither garbage-collected early nor fail silently."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
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

"""EventQueue: a per-event history of server pushes that callers consume by waiting."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import RequestTimeout

logger = logging.getLogger(__name__)

Predicate = Callable[[Any], bool]

#: How many unconsumed pushes of one event name are kept before the oldest is dropped.
DEFAULT_MAX_HISTORY = 1000


@dataclass(eq=False)
class _Waiter:
    predicate: Predicate | None
    future: asyncio.Future[Any] = field(repr=False)

    def matches(self, data: Any) -> bool:
        return _matches(self.predicate, data)


class EventQueue:
    """Server pushes by event name, each delivered to exactly one waiter.

    :meth:`put` hands a push to the oldest waiter whose predicate accepts it; if
    none does, the push is kept. :meth:`get` first takes the oldest kept push that
    matches and only then waits. So a push that arrives before a test starts to
    wait for it is not lost, and each push is consumed once.

    A predicate that raises (for example ``KeyError`` on a push of another shape)
    counts as "does not match".
    """

    def __init__(self, max_history: int = DEFAULT_MAX_HISTORY) -> None:
        self._max_history = max_history
        self._history: dict[str, deque[Any]] = {}
        self._waiters: dict[str, list[_Waiter]] = {}

    def put(self, event: str, data: Any) -> None:
        """Deliver a push to a matching waiter, or keep it for a later :meth:`get`."""
        waiters = self._waiters.get(event, [])
        for waiter in list(waiters):
            if waiter.future.done():
                waiters.remove(waiter)
                continue
            if waiter.matches(data):
                waiters.remove(waiter)
                waiter.future.set_result(data)
                return
        history = self._history.get(event)
        if history is None:
            history = deque(maxlen=self._max_history)
            self._history[event] = history
        history.append(data)

    def take(self, event: str, predicate: Predicate | None = None) -> tuple[bool, Any]:
        """Consume the oldest kept push that matches, without waiting: ``(found, data)``."""
        history = self._history.get(event)
        if history:
            for index, data in enumerate(history):
                if _matches(predicate, data):
                    del history[index]
                    return True, data
        return False, None

    async def get(
        self, event: str, predicate: Predicate | None = None, timeout: float | None = 10.0
    ) -> Any:
        """The next matching push of ``event``, kept or future.

        Raises :class:`~tessera_client.errors.RequestTimeout` (a ``TimeoutError``)
        when none comes within ``timeout`` seconds (``None`` waits forever).
        """
        found, data = self.take(event, predicate)
        if found:
            return data
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        waiter = _Waiter(predicate, future)
        self._waiters.setdefault(event, []).append(waiter)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise RequestTimeout(
                f"Waiting for a '{event}' event timed out after {timeout} s"
            ) from None
        finally:
            waiters = self._waiters.get(event)
            if waiters is not None and waiter in waiters:
                waiters.remove(waiter)

    def pending(self, event: str) -> list[Any]:
        """The kept (not yet consumed) pushes of ``event``, oldest first."""
        return list(self._history.get(event, ()))

    def clear(self, event: str | None = None) -> None:
        """Forget kept pushes: of one event, or of all events."""
        if event is None:
            self._history.clear()
        else:
            self._history.pop(event, None)


def _matches(predicate: Predicate | None, data: Any) -> bool:
    if predicate is None:
        return True
    try:
        return bool(predicate(data))
    except Exception:
        return False

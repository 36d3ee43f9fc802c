"""The one way tests wait: on a condition, never on time.

A test that sleeps and then asserts fails on a busy machine and wastes time on
an idle one. Every wait in the suite goes through :func:`eventually`: it polls
a condition until it holds and fails, naming what was awaited, only after a
generous timeout (the suite must pass while another process keeps a core busy).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")

# Long enough for a loaded 2-core machine; a condition that holds returns at once.
DEFAULT_TIMEOUT = 20.0


@overload
async def eventually(
    condition: Callable[[], Awaitable[T]],
    timeout: float = DEFAULT_TIMEOUT,
    what: str = "",
    interval: float = 0.02,
) -> T: ...


@overload
async def eventually(
    condition: Callable[[], T],
    timeout: float = DEFAULT_TIMEOUT,
    what: str = "",
    interval: float = 0.02,
) -> T: ...


async def eventually(
    condition: Callable[[], Any],
    timeout: float = DEFAULT_TIMEOUT,
    what: str = "",
    interval: float = 0.02,
) -> Any:
    """Poll ``condition()`` until it returns a truthy value, and return that value.

    ``condition`` may be a plain function or return an awaitable (an ``async def``);
    an AssertionError it raises counts as "not yet" (so it can hold plain asserts),
    and the last one is reported if the time runs out.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last_error: AssertionError | None = None
    while True:
        try:
            value = condition()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return value
            last_error = None
        except AssertionError as exc:
            last_error = exc
        if loop.time() >= deadline:
            name = what or getattr(condition, "__name__", "condition")
            message = f"{name}: not within {timeout:g} s"
            if last_error is not None:
                raise AssertionError(f"{message} ({last_error})") from last_error
            raise AssertionError(message)
        await asyncio.sleep(interval)


async def within(step: Awaitable[T], timeout: float, what: str) -> T:
    """Await one step (a close, a process's exit) for at most ``timeout`` seconds: a step
    that hangs fails naming itself, instead of the whole test's timeout naming nothing."""
    try:
        return await asyncio.wait_for(step, timeout)
    except TimeoutError:
        raise AssertionError(f"{what}: not done within {timeout:g} s") from None

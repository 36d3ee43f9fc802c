"""The shared wait helper: returns the condition's value, names what timed out."""

from __future__ import annotations

import pytest

from tests.eventually import eventually


async def test_returns_the_first_truthy_value() -> None:
    calls = iter([0, None, 7])
    assert await eventually(lambda: next(calls), timeout=5) == 7


async def test_awaits_an_async_condition_and_retries_failed_asserts() -> None:
    seen: list[int] = []

    async def condition() -> bool:
        seen.append(1)
        assert len(seen) >= 3, "not yet"
        return True

    assert await eventually(condition, timeout=5) is True
    assert len(seen) == 3


async def test_timeout_names_the_condition_and_the_last_assert() -> None:
    def never() -> bool:
        raise AssertionError("still 2 participants")

    with pytest.raises(AssertionError, match=r"room empty: not within 0.1 s \(still 2"):
        await eventually(never, timeout=0.1, what="room empty")

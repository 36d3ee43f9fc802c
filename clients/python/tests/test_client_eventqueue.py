"""Event waiting: pushes received before a wait count, each push is consumed once."""

from __future__ import annotations

import asyncio

import pytest

from tessera_client.errors import ClientError, RequestTimeout
from tessera_client.eventqueue import EventQueue


async def test_event_received_before_waiting_is_returned() -> None:
    queue = EventQueue()
    queue.put("text", {"message": "early"})
    assert await queue.get("text", timeout=0.1) == {"message": "early"}


async def test_each_push_is_consumed_once() -> None:
    queue = EventQueue()
    queue.put("text", {"message": "one"})
    assert await queue.get("text", timeout=0.1) == {"message": "one"}
    with pytest.raises(RequestTimeout):
        await queue.get("text", timeout=0.05)


async def test_predicate_skips_without_consuming() -> None:
    queue = EventQueue()
    queue.put("stream", {"id": "a", "status": "add"})
    queue.put("stream", {"id": "b", "status": "add"})
    assert (await queue.get("stream", lambda e: e["id"] == "b", timeout=0.1))["id"] == "b"
    assert queue.pending("stream") == [{"id": "a", "status": "add"}]
    assert (await queue.get("stream", timeout=0.1))["id"] == "a"


async def test_waiter_gets_a_later_push() -> None:
    queue = EventQueue()
    waiter = asyncio.ensure_future(queue.get("participant", timeout=1.0))
    await asyncio.sleep(0)
    queue.put("participant", {"action": "join", "data": {"id": "p2"}})
    assert (await waiter)["data"]["id"] == "p2"
    assert queue.pending("participant") == []


async def test_non_matching_push_is_kept_for_later() -> None:
    queue = EventQueue()
    waiter = asyncio.ensure_future(queue.get("stream", lambda e: e["status"] == "remove", 1.0))
    await asyncio.sleep(0)
    queue.put("stream", {"id": "a", "status": "add"})
    queue.put("stream", {"id": "a", "status": "remove"})
    assert (await waiter)["status"] == "remove"
    assert queue.pending("stream") == [{"id": "a", "status": "add"}]


async def test_one_push_goes_to_one_waiter_oldest_first() -> None:
    queue = EventQueue()
    first = asyncio.ensure_future(queue.get("text", timeout=1.0))
    second = asyncio.ensure_future(queue.get("text", timeout=1.0))
    await asyncio.sleep(0)
    queue.put("text", 1)
    assert await asyncio.wait_for(first, 5) == 1
    # The second waiter got nothing of it: it takes the next push.
    queue.put("text", 2)
    assert await second == 2


async def test_predicate_that_raises_does_not_match() -> None:
    queue = EventQueue()
    queue.put("stream", {"id": "a", "status": "remove"})  # no "data"
    queue.put("stream", {"id": "a", "status": "add", "data": {"id": "a"}})
    found = await queue.get("stream", lambda e: e["data"]["id"] == "a", timeout=0.1)
    assert found["status"] == "add"


async def test_timeout_is_a_client_error_and_a_timeout_error() -> None:
    queue = EventQueue()
    with pytest.raises(TimeoutError):
        await queue.get("drop", timeout=0.01)
    with pytest.raises(ClientError, match="timed out"):
        await queue.get("drop", timeout=0.01)


async def test_timed_out_waiter_does_not_swallow_later_push() -> None:
    queue = EventQueue()
    with pytest.raises(RequestTimeout):
        await queue.get("text", timeout=0.01)
    queue.put("text", "late")
    assert queue.pending("text") == ["late"]


async def test_none_payload_and_history_bound() -> None:
    queue = EventQueue(max_history=3)
    queue.put("drop", None)
    assert await queue.get("drop", timeout=0.1) is None
    for i in range(5):
        queue.put("text", i)
    assert queue.pending("text") == [2, 3, 4]
    queue.clear("text")
    assert queue.pending("text") == []
    queue.put("text", 9)
    queue.clear()
    assert queue.pending("text") == []


def test_take_without_loop() -> None:
    queue = EventQueue()
    assert queue.take("text") == (False, None)
    queue.put("text", "x")
    assert queue.take("text") == (True, "x")

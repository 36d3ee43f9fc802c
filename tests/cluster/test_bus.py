"""The bus between processes, on a real redis-server: requests, replies, failures."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tessera.cluster.bus import (
    Bus,
    BusUnavailable,
    NodeUnreachable,
    RemoteError,
    RequestTimeout,
)
from tests.eventually import eventually
from tests.redisserver import RedisServer


async def started(server: RedisServer, node: str, **kw: Any) -> Bus:
    bus = Bus(server.url, node, **kw)
    await bus.start()
    return bus


async def test_request_reply_and_remote_errors(redis_server: RedisServer) -> None:
    agent, portal = await started(redis_server, "agent-1"), await started(redis_server, "portal-1")
    try:

        async def answer(method: str, body: Any, sender: str) -> Any:
            if method == "refuse":
                raise RemoteError("conference", "Stream does NOT exist", {"code": 1004})
            if method == "crash":
                raise ValueError("a bug")
            return {"method": method, "body": body, "sender": sender}

        agent.on_request(answer)
        assert await portal.request("agent-1", "echo", {"x": [1, "two"]}) == {
            "method": "echo",
            "body": {"x": [1, "two"]},
            "sender": "portal-1",
        }
        with pytest.raises(RemoteError) as refused:
            await portal.request("agent-1", "refuse")
        assert (refused.value.kind, refused.value.message) == (
            "conference",
            "Stream does NOT exist",
        )
        assert refused.value.data == {"code": 1004}
        with pytest.raises(RemoteError, match="Internal error"):
            await portal.request("agent-1", "crash")
        # Many at once: each reply finds its own caller.
        replies = await asyncio.gather(*(portal.request("agent-1", "n", i) for i in range(200)))
        assert [r["body"] for r in replies] == list(range(200))
    finally:
        await agent.close()
        await portal.close()


async def test_a_node_nobody_listens_for_fails_at_once_and_a_silent_one_times_out(
    redis_server: RedisServer,
) -> None:
    portal, agent = await started(redis_server, "portal-1"), await started(redis_server, "agent-1")
    try:
        with pytest.raises(NodeUnreachable, match="agent-9 is not running"):
            await portal.request("agent-9", "echo", timeout=60)

        async def never(method: str, body: Any, sender: str) -> Any:
            await asyncio.Event().wait()

        agent.on_request(never)
        with pytest.raises(RequestTimeout, match=r"did not answer echo in 0\.2 s"):
            await portal.request("agent-1", "echo", timeout=0.2)
        await agent.close()
        with pytest.raises(NodeUnreachable):
            await portal.request("agent-1", "echo", timeout=60)
    finally:
        await portal.close()


async def test_one_way_messages_arrive_in_order(redis_server: RedisServer) -> None:
    portal, agent = await started(redis_server, "portal-1"), await started(redis_server, "agent-1")
    received: list[tuple[str, Any, str]] = []
    portal.on_message(lambda kind, body, sender: received.append((kind, body, sender)))
    try:
        sends = [agent.send("portal-1", "event", i) for i in range(500)]
        assert all(await asyncio.gather(*sends))
        for i in range(500, 1000):  # posted without waiting, still in order after the sends
            agent.post("portal-1", "event", i)
        await eventually(lambda: len(received) == 1000, what="1000 messages")
        assert [body for _, body, _ in received] == list(range(1000))
        assert {(kind, sender) for kind, _, sender in received} == {("event", "agent-1")}
        assert await agent.send("portal-9", "event", 1) is False
    finally:
        await portal.close()
        await agent.close()


async def test_redis_restart_refuses_requests_clearly_then_recovers(
    redis_server: RedisServer,
) -> None:
    portal, agent = await started(redis_server, "portal-1"), await started(redis_server, "agent-1")

    async def answer(method: str, body: Any, sender: str) -> Any:
        return body

    agent.on_request(answer)
    try:
        assert await portal.request("agent-1", "echo", 1) == 1
        await redis_server.stop()
        await eventually(lambda: not portal.connected, what="the portal notices Redis is gone")
        with pytest.raises(BusUnavailable, match="Redis"):
            await portal.request("agent-1", "echo", 2)
        await redis_server.start()
        await eventually(lambda: portal.connected and agent.connected, what="both reconnect")
        assert await portal.request("agent-1", "echo", 3) == 3
    finally:
        await portal.close()
        await agent.close()


async def test_start_without_redis_says_so(tmp_path: Any) -> None:
    bus = Bus("redis://127.0.0.1:1/0", "portal-1")
    try:
        with pytest.raises(BusUnavailable, match="did not answer"):
            await bus.start(wait=0.5)
    finally:
        await bus.close()

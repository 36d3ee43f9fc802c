"""Leases and room placement on a real redis-server: atomic, spread, re-placed, claimed."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from tessera.cluster.nodes import NodeLease, live_nodes
from tessera.cluster.placement import NodeInfo, NodeLoad
from tessera.cluster.roomplacement import NoAgentAvailable, RoomPlacement
from tests.eventually import eventually
from tests.redisserver import RedisServer


def lease(client: aioredis.Redis, node_id: str, role: str = "agent", **kw: float) -> NodeLease:
    return NodeLease(client, NodeInfo(id=node_id, role=role), lambda: NodeLoad(), **kw)


async def test_two_portals_placing_one_room_at_once_get_one_agent(
    redis_server: RedisServer,
) -> None:
    clients = [aioredis.Redis.from_url(redis_server.url) for _ in range(3)]
    leases = [lease(clients[0], f"agent-{i}") for i in range(3)]
    try:
        for one in leases:
            await one.start()
        portals = [RoomPlacement(clients[1]), RoomPlacement(clients[2])]
        placed = await asyncio.gather(*(portals[i % 2].place("svc/room-1") for i in range(100)))
        assert len(set(placed)) == 1
        assert await portals[0].rooms_of(placed[0]) == ["svc/room-1"]
    finally:
        for one in leases:
            await one.stop()
        for client in clients:
            await client.aclose()


async def test_thirty_rooms_spread_over_three_agents(redis_server: RedisServer) -> None:
    client = aioredis.Redis.from_url(redis_server.url)
    leases = [lease(client, f"agent-{i}") for i in range(3)]
    try:
        for one in leases:
            await one.start()
        placement = RoomPlacement(client)
        for n in range(30):
            await placement.place(f"svc/room-{n}")
        counts = [len(await placement.rooms_of(f"agent-{i}")) for i in range(3)]
        assert counts == [10, 10, 10]
    finally:
        for one in leases:
            await one.stop()
        await client.aclose()


async def test_a_dead_agents_rooms_are_placed_again_and_draining_takes_none(
    redis_server: RedisServer,
) -> None:
    client = aioredis.Redis.from_url(redis_server.url)
    first = lease(client, "agent-a", lease=0.5, interval=0.1)
    second = lease(client, "agent-b", lease=0.5, interval=0.1)
    try:
        await first.start()
        placement = RoomPlacement(client)
        assert await placement.place("svc/r") == "agent-a"
        await second.start()
        second.set_draining(True)
        await eventually(
            lambda: _draining(client, "agent-b"), what="agent-b's lease says it drains"
        )
        # agent-a dies without a word: its lease runs out, its room goes elsewhere.
        assert first._task is not None
        first._task.cancel()
        await eventually(lambda: _gone(client, "agent-a"), what="agent-a's lease expires")
        with pytest.raises(NoAgentAvailable, match="full or draining"):
            await placement.place("svc/r")
        second.set_draining(False)
        await eventually(lambda: _draining(client, "agent-b", False), what="agent-b takes rooms")
        assert await placement.place("svc/r") == "agent-b"
        assert await placement.agent_of("svc/r") == "agent-b"
        # The dead agent cannot take it back; the live one can release it.
        assert not await placement.claim("svc/r", "agent-a")
        await placement.release("svc/r", "agent-b")
        assert await placement.agent_of("svc/r") is None
    finally:
        await first.stop()
        await second.stop()
        await client.aclose()


async def test_after_redis_restarts_empty_agents_claim_their_rooms_again(
    redis_server: RedisServer,
) -> None:
    client = aioredis.Redis.from_url(redis_server.url)
    hosted: list[str] = []
    placement = RoomPlacement(client)

    async def claim_hosted() -> None:
        for room in hosted:
            await placement.claim(room, "agent-a")

    agent = NodeLease(
        client, NodeInfo(id="agent-a", role="agent"), lambda: NodeLoad(), interval=0.1,
        lease=1.0, after_renew=claim_hosted,
    )  # fmt: skip
    try:
        await agent.start()
        assert await placement.place("svc/r") == "agent-a"
        hosted.append("svc/r")
        await redis_server.restart()
        await eventually(
            lambda: _agent_is(placement, "svc/r", "agent-a"), what="agent-a claims svc/r again"
        )
        assert [n.id for n in await live_nodes(client)] == ["agent-a"]
    finally:
        await agent.stop()
        await client.aclose()


async def _gone(client: aioredis.Redis, node_id: str) -> bool:
    return node_id not in [n.id for n in await live_nodes(client)]


async def _draining(client: aioredis.Redis, node_id: str, value: bool = True) -> bool:
    return any(n.id == node_id and n.draining == value for n in await live_nodes(client))


async def _agent_is(placement: RoomPlacement, room: str, agent_id: str) -> bool:
    try:
        return await placement.agent_of(room) == agent_id
    except (aioredis.ConnectionError, OSError):
        return False


async def test_a_lease_stops_right_after_draining(redis_server: RedisServer) -> None:
    """Draining wakes the renewal loop; a stop at that moment must still end it (Python
    3.11's wait_for swallowed that cancellation and the lease renewed forever)."""
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        for _ in range(20):
            one = lease(client, "agent-stopping", interval=5.0)
            await one.start()
            one.set_draining(True)
            await asyncio.wait_for(one.stop(), 10)
            assert await _gone(client, "agent-stopping")
    finally:
        await client.aclose()


async def test_a_lease_is_settled_after_a_whole_lease_of_renewals(
    redis_server: RedisServer,
) -> None:
    client = aioredis.Redis.from_url(redis_server.url)
    one = lease(client, "portal-settling", role="portal", lease=0.5, interval=0.1)
    try:
        await one.start()
        assert not one.settled()
        await eventually(one.settled, 10, "settled after half a second of renewals")
        await redis_server.stop()
        await eventually(lambda: one.steady_since is None, 10, "a failed renewal noticed")
        assert not one.settled()
        await redis_server.start()
        await eventually(one.settled, 10, "settled again once Redis is back")
    finally:
        await one.stop()
        await client.aclose()

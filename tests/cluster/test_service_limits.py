"""Per-service limits hold for the whole cluster, not per agent: two rooms of one service
on two agents, `recordings_per_service = 2`; a third recording is refused on either agent
once the other agent's report shows its recording, and allowed again after one stops."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from tessera.cluster.nodes import info_key
from tessera.cluster.placement import NodeInfo
from tessera.cluster.roomplacement import RoomPlacement
from tessera_client import ConferenceClient
from tests.cluster.processes import Cluster, room_name, running_cluster
from tests.cluster.test_cluster import joined
from tests.eventually import eventually
from tests.synthetic import ToneTrack

REFUSED = "Too many recordings for this service (at most 2: [limits] recordings_per_service)"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    limits = {"recordings_per_service": 2}
    with running_cluster(
        tmp_path_factory.mktemp("cluster"), portals=1, agents=2, limits=limits
    ) as running:
        yield running


async def reported_recordings(redis: aioredis.Redis, agent: str) -> int:
    """The recordings of the default service in ``agent``'s last lease report."""
    value = await redis.get(info_key(agent))
    assert value is not None, f"{agent} has no lease"
    services = NodeInfo.from_json(json.loads(value)).load.services
    return services.get("default", {}).get("recording", 0)


async def test_recordings_per_service_count_every_agent(cluster: Cluster) -> None:
    redis = aioredis.Redis.from_url(cluster.redis_url)
    placement = RoomPlacement(redis)
    clients: list[ConferenceClient] = []
    rooms: dict[str, str] = {}  # agent -> a room it hosts
    try:
        # Rooms go to the less busy agent: a few are enough to have one on each.
        for _ in range(8):
            client = await joined(cluster, 0, room_name(), "ada")
            clients.append(client)
            publication = await client.publish(audio=ToneTrack(440))
            await publication.wait_ready()
            agent = await placement.agent_of(client.room_id)
            assert agent is not None
            rooms.setdefault(agent, client.room_id)
            if len(rooms) == 2:
                break
        assert len(rooms) == 2, f"every room went to one agent: {rooms}"
        (agent_a, room_a), (agent_b, room_b) = sorted(rooms.items())
        streams = {c.room_id: next(iter(c.publications)) for c in clients}

        async def record(room: str) -> tuple[int, Any]:
            body = {"media": {"audio": {"from": streams[room]}, "video": False}}
            return await cluster.rest(0, "POST", f"/v1/rooms/{room}/recordings", body)

        status, first = await record(room_a)
        assert status == 200, first
        status, second = await record(room_b)
        assert status == 200, second

        async def both_reported() -> bool:
            return all([await reported_recordings(redis, a) == 1 for a in (agent_a, agent_b)])

        await eventually(both_reported, timeout=30, what="each agent reports its recording")
        # One each: per agent both would have room for another; the service has none.
        for room in (room_a, room_b):
            status, error = await record(room)
            assert status == 403, error
            assert error["error"]["message"] == REFUSED

        status, _ = await cluster.rest(0, "DELETE", f"/v1/rooms/{room_b}/recordings/{second['id']}")
        assert status == 200

        async def b_reports_none() -> bool:
            return await reported_recordings(redis, agent_b) == 0

        await eventually(b_reports_none, timeout=30, what="agent B reports no recording")
        status, third = await record(room_a)
        assert status == 200, third
    finally:
        for client in clients:
            await client.leave()
        await redis.aclose()

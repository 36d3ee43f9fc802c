"""Recordings of a lost agent, in a real redis-server: marked failed once, never a live one."""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis

from tessera.cluster.nodes import NodeLease
from tessera.cluster.placement import NodeInfo, NodeLoad
from tessera.cluster.redisstore import RedisStore
from tessera.cluster.roomplacement import RoomPlacement
from tests.redisserver import RedisServer

REASON = "the room's media server was lost while recording"


def running(recording_id: str) -> dict[str, Any]:
    return {"id": recording_id, "state": "recording", "duration": 3.0}


async def stored(store: RedisStore, room: str) -> dict[str, dict[str, Any]]:
    return {i: info for i, info, _ in await store.list_recordings("svc", room)}


async def test_a_lost_agents_recordings_fail_once_and_a_live_hosts_do_not(
    redis_server: RedisServer,
) -> None:
    client = aioredis.Redis.from_url(redis_server.url)
    store = RedisStore(client)
    placement = RoomPlacement(client)
    live = NodeLease(client, NodeInfo(id="agent-live", role="agent"), lambda: NodeLoad())
    try:
        await live.start()
        # room-1's agent is gone (never live); room-2 is hosted by a live agent.
        await store.save_recording("r1", "svc", "room-1", running("r1"), "/rec/r1.mkv")
        await store.save_recording("r0", "svc", "room-1", {"id": "r0", "state": "stopped"}, "")
        await store.save_recording("r2", "svc", "room-2", running("r2"), "/rec/r2.mkv")
        assert await placement.place("room-2") == "agent-live"

        # Two processes notice at once: one of them marks it.
        marked = await asyncio.gather(
            *(store.fail_lost_recordings("svc", "room-1", REASON) for _ in range(5))
        )
        assert sorted(i for ids in marked for i in ids) == ["r1"]
        one = await stored(store, "room-1")
        assert one["r1"] == {**running("r1"), "state": "failed", "reason": REASON}
        assert one["r0"]["state"] == "stopped"
        assert [i for i, _ in await store.interrupted_recordings()] == ["r2"]

        # A live host's recordings run: nobody else fails them, but the host itself may
        # (it claimed the room from a lost agent).
        assert await store.fail_lost_recordings("svc", "room-2", REASON) == []
        assert (await stored(store, "room-2"))["r2"]["state"] == "recording"
        claimed = await store.fail_lost_recordings("svc", "room-2", REASON, claiming="agent-live")
        assert claimed == ["r2"]
        assert await store.fail_lost_recordings("svc", "room-2", REASON) == []
    finally:
        await live.stop()
        await client.aclose()

"""Room placement in Redis: which agent hosts each room, decided atomically.

``tessera:room-agent:<room id>`` names the agent hosting a room (room ids are made by
the store, unique across services), and ``tessera:agent-rooms:<agent>`` lists an agent's rooms.
Both change only inside Lua scripts, which Redis runs one at a time, so two portals
placing the same room at once get the same agent: **a room is never hosted twice**.

A placement holds while its agent's lease does (cluster/nodes.py). When the agent is gone,
the next request for the room places it again on a live agent. An agent re-asserts its
rooms (``claim``) whenever it renews its lease, so a Redis that restarted empty learns
again where every running room is before anyone places it elsewhere.
"""

from __future__ import annotations

import logging

import redis.asyncio as aioredis

from .nodes import INFO_PREFIX, live_nodes
from .placement import select_agent

logger = logging.getLogger(__name__)

ROOM_AGENT_PREFIX = "tessera:room-agent:"
AGENT_ROOMS_PREFIX = "tessera:agent-rooms:"

# Place ARGV[1] (an agent) as the host of KEYS[1] unless a live agent hosts it already.
# Returns the hosting agent. Fails (returns false) if ARGV[1] itself is not live.
_PLACE = """
local current = redis.call('GET', KEYS[1])
if current and redis.call('EXISTS', ARGV[2] .. current) == 1 then
  return current
end
if redis.call('EXISTS', ARGV[2] .. ARGV[1]) == 0 then
  return false
end
if current then
  redis.call('SREM', ARGV[3] .. current, ARGV[4])
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SADD', ARGV[3] .. ARGV[1], ARGV[4])
return ARGV[1]
"""

# Delete KEYS[1] only if it still names ARGV[1].
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
redis.call('SREM', ARGV[2] .. ARGV[1], ARGV[3])
return 1
"""


class NoAgentAvailable(Exception):
    """No live agent can take a new room; the message says why."""


class RoomPlacement:
    """Looks up, places, claims and releases rooms on agents."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._place = redis.register_script(_PLACE)
        self._release = redis.register_script(_RELEASE)

    async def agent_of(self, room: str) -> str | None:
        """The live agent hosting ``room``, or None."""
        agent = await self.redis.get(ROOM_AGENT_PREFIX + room)
        if agent is None:
            return None
        agent_id = agent.decode() if isinstance(agent, bytes) else str(agent)
        if not await self.redis.exists(INFO_PREFIX + agent_id):
            return None
        return agent_id

    async def place(self, room: str) -> str:
        """The agent hosting ``room``, placing it on the least loaded live agent if needed."""
        for _ in range(5):
            current = await self.agent_of(room)
            if current is not None:
                return current
            agents = [n for n in await live_nodes(self.redis) if n.role == "agent"]
            counts = {a.id: int(await self.redis.scard(AGENT_ROOMS_PREFIX + a.id)) for a in agents}
            choice = select_agent(agents, counts)
            if choice is None:
                if not agents:
                    raise NoAgentAvailable("no agent is running")
                raise NoAgentAvailable(f"every agent is full or draining ({len(agents)} agents)")
            placed = await self._place(
                keys=[ROOM_AGENT_PREFIX + room],
                args=[choice.id, INFO_PREFIX, AGENT_ROOMS_PREFIX, room],
            )
            if placed:
                agent_id = placed.decode() if isinstance(placed, bytes) else str(placed)
                if agent_id == choice.id:
                    logger.info("room placed", extra={"room": room, "agent": agent_id})
                return agent_id
            # The chosen agent died between the choice and the placement: choose again.
        raise NoAgentAvailable("agents keep vanishing while the room is placed")

    async def claim(self, room: str, agent_id: str) -> bool:
        """Host ``room`` on ``agent_id`` unless another live agent does; True if ours."""
        placed = await self._place(
            keys=[ROOM_AGENT_PREFIX + room],
            args=[agent_id, INFO_PREFIX, AGENT_ROOMS_PREFIX, room],
        )
        owner = placed.decode() if isinstance(placed, bytes) else placed
        return owner == agent_id

    async def release(self, room: str, agent_id: str) -> None:
        """``agent_id`` no longer hosts ``room`` (it closed)."""
        await self._release(
            keys=[ROOM_AGENT_PREFIX + room], args=[agent_id, AGENT_ROOMS_PREFIX, room]
        )

    async def rooms_of(self, agent_id: str) -> list[str]:
        members = await self.redis.smembers(AGENT_ROOMS_PREFIX + agent_id)
        return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)

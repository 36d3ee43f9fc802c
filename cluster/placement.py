"""Placement: which agent should host a new room (pure; LiveKit's node selectors, in Python).

An agent reports its load every second (:class:`NodeLoad`). A room goes to a live agent
that is not draining and has room to spare, the least loaded first. The load of an agent
is the larger of its CPU use and its rooms against its capacity, so an agent busy with a
few big rooms and one full of small ones are both seen as busy. Rooms placed since the
last report count at once (``rooms`` is read live from Redis), so a burst of new rooms
spreads instead of piling onto the agent that looked idle a second ago.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .servicecounts import ServiceCounts, parse_service_counts


@dataclass(frozen=True)
class NodeLoad:
    """What a node reports about itself under its lease."""

    rooms: int = 0
    participants: int = 0
    encoders: int = 0
    cpu: float = 0.0  # share of one core the process used over the last second
    cores: float = 1.0  # cores the process may use (an agent: one)
    max_rooms: int = 0  # 0: no limit but the CPU
    # Per service: rooms loaded, recordings and streaming-outs running (servicecounts.py).
    services: ServiceCounts = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "rooms": self.rooms,
            "participants": self.participants,
            "encoders": self.encoders,
            "cpu": round(self.cpu, 4),
            "cores": self.cores,
            "maxRooms": self.max_rooms,
            "services": self.services,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NodeLoad:
        return cls(
            rooms=int(data.get("rooms", 0)),
            participants=int(data.get("participants", 0)),
            encoders=int(data.get("encoders", 0)),
            cpu=float(data.get("cpu", 0.0)),
            cores=float(data.get("cores", 1.0)) or 1.0,
            max_rooms=int(data.get("maxRooms", 0)),
            services=parse_service_counts(data.get("services")),
        )


@dataclass(frozen=True)
class NodeInfo:
    """A live node of the cluster: who it is, where, and its last report."""

    id: str
    role: str  # "portal" or "agent"
    url: str = ""  # its HTTP address (health, metrics; a portal's clients)
    host: str = ""  # the machine's name
    started: float = 0.0
    draining: bool = False
    load: NodeLoad = field(default_factory=NodeLoad)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "role": self.role,
            "url": self.url,
            "host": self.host,
            "started": self.started,
            "draining": self.draining,
            "load": self.load.to_json(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NodeInfo:
        load = data.get("load")
        return cls(
            id=str(data["id"]),
            role=str(data.get("role", "")),
            url=str(data.get("url", "")),
            host=str(data.get("host", "")),
            started=float(data.get("started", 0.0)),
            draining=bool(data.get("draining", False)),
            load=NodeLoad.from_json(load if isinstance(load, dict) else {}),
        )


# An agent above this share of its cores takes no new rooms (its rooms would suffer).
CPU_LIMIT = 0.85
# Agents within this utilisation of the least busy one count as equally busy.
SIMILAR = 0.2


def utilisation(agent: NodeInfo, rooms: int) -> float:
    """How full ``agent`` is, 0..1 and beyond, hosting ``rooms`` rooms."""
    cpu = agent.load.cpu / agent.load.cores
    by_rooms = rooms / agent.load.max_rooms if agent.load.max_rooms > 0 else 0.0
    return max(cpu, by_rooms)


def can_take(agent: NodeInfo, rooms: int) -> bool:
    """True if ``agent`` may be given one more room."""
    if agent.role != "agent" or agent.draining:
        return False
    if agent.load.max_rooms > 0 and rooms >= agent.load.max_rooms:
        return False
    return agent.load.cpu / agent.load.cores < CPU_LIMIT


def select_agent(agents: Sequence[NodeInfo], rooms: dict[str, int]) -> NodeInfo | None:
    """The agent a new room should go to, or None if none can take it.

    ``rooms`` maps agent id to the rooms it hosts now (placements not yet in its report).
    The agents within ``SIMILAR`` of the least utilised count as equally busy: below that
    the CPU figure is noise (a burst of joins, a room that just ended), and a room without
    media yet costs no CPU but soon will. Among them the one with fewer rooms wins, then
    the less utilised, then the id (a stable order).
    """
    hosted = {a.id: rooms.get(a.id, a.load.rooms) for a in agents}
    candidates = [a for a in agents if can_take(a, hosted[a.id])]
    if not candidates:
        return None
    load = {a.id: utilisation(a, hosted[a.id]) for a in candidates}
    least = min(load.values())
    similar = [a for a in candidates if load[a.id] - least < SIMILAR]
    return min(similar, key=lambda a: (hosted[a.id], load[a.id], a.id))

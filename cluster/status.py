"""`tessera cluster status`: the portals, agents, rooms and load of a cluster, from Redis,
and what each service runs on each agent (the counts agents report with their lease)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from .nodes import live_nodes
from .placement import NodeInfo, utilisation
from .roomplacement import RoomPlacement
from .servicecounts import KINDS, ServiceCounts, sum_service_counts


@dataclass(frozen=True)
class ClusterStatus:
    """A snapshot: every live node and the rooms each agent hosts."""

    nodes: list[NodeInfo]
    rooms: dict[str, list[str]]  # agent id -> ids of the rooms it hosts

    def to_json(self) -> dict[str, Any]:
        return {
            "portals": [n.to_json() for n in self.nodes if n.role == "portal"],
            "agents": [
                {**n.to_json(), "hostedRooms": self.rooms.get(n.id, [])}
                for n in self.nodes
                if n.role == "agent"
            ],
            "services": self.service_totals(),
        }

    def service_totals(self) -> ServiceCounts:
        """Cluster-wide counts per service (the agents' reports added up): service id ->
        kind (``room``, ``recording``, ``streaming-out``) -> count."""
        total = sum_service_counts(n.load.services for n in self.nodes if n.role == "agent")
        counts: ServiceCounts = {}
        for (kind, service_id), value in sorted(total.items(), key=lambda i: (i[0][1], i[0][0])):
            counts.setdefault(service_id, {})[kind] = value
        return counts


async def read_status(redis: aioredis.Redis) -> ClusterStatus:
    nodes = await live_nodes(redis)
    placement = RoomPlacement(redis)
    rooms = {n.id: await placement.rooms_of(n.id) for n in nodes if n.role == "agent"}
    return ClusterStatus(nodes, rooms)


def format_status(status: ClusterStatus, now: float | None = None) -> str:
    """A table for people (pure)."""
    now = time.time() if now is None else now
    portals = [n for n in status.nodes if n.role == "portal"]
    agents = [n for n in status.nodes if n.role == "agent"]
    lines = [f"{len(portals)} portal(s), {len(agents)} agent(s)"]
    header = (
        f"{'role':<7} {'id':<22} {'url':<28} {'up':>7} {'cpu':>5} {'rooms':>5} {'people':>6}  state"
    )
    lines.append(header)
    for node in portals + agents:
        rooms = len(status.rooms.get(node.id, [])) if node.role == "agent" else node.load.rooms
        state = "draining" if node.draining else "ok"
        if node.role == "agent" and utilisation(node, rooms) >= 0.85:
            state = "full" if state == "ok" else state
        lines.append(
            f"{node.role:<7} {node.id[:22]:<22} {node.url[:28]:<28} "
            f"{_duration(now - node.started):>7} {node.load.cpu * 100:>4.0f}% "
            f"{rooms:>5} {node.load.participants:>6}  {state}"
        )
    hosted = sum(len(r) for r in status.rooms.values())
    lines.append(f"{hosted} room(s) hosted")
    lines.extend(format_services(status))
    return "\n".join(lines)


# The table's column per kind a service count has (servicecounts.KINDS).
_COLUMNS = {"room": "rooms", "recording": "recordings", "streaming-out": "streaming-outs"}


def format_services(status: ClusterStatus) -> list[str]:
    """Per service, its cluster-wide counts and, below, each agent's share (pure)."""
    totals = status.service_totals()
    if not totals:
        return ["no service runs rooms, recordings or streaming-outs"]
    agents = [n for n in status.nodes if n.role == "agent"]
    # Ids are shown whole (they are what `tessera service` and the REST API take).
    first = max([15, *(len(s) for s in totals), *(len(a.id) + 2 for a in agents)])
    widths = [len(_COLUMNS[k]) for k in KINDS]

    def row(name: str, counts: dict[str, int]) -> str:
        figures = " ".join(f"{counts.get(k, 0):>{w}}" for k, w in zip(KINDS, widths, strict=True))
        return f"{name:<{first}} {figures}"

    header = " ".join(f"{_COLUMNS[k]:>{w}}" for k, w in zip(KINDS, widths, strict=True))
    lines = [f"{'service (agent)':<{first}} {header}"]
    for service_id, counts in totals.items():
        lines.append(row(service_id, counts))
        for agent in agents:
            share = agent.load.services.get(service_id)
            if share:
                lines.append(row(f"  {agent.id}", share))
    return lines


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"

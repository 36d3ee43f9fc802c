"""AgentNode: a media agent's place in the cluster.

An agent runs a room service of its own (rooms, WebRTC sessions, mixer, recorder) and
hosts the rooms the cluster's placement gives it. Its node:

- answers room-service calls from portals over the bus (an allowlist, see :mod:`.rpc`);
- holds its lease with its load (rooms, participants, encoders, CPU) every second;
- hosts a room only while the placement names it (:class:`PlacedHost`): a room is
  claimed when it loads and released when it closes; after each lease renewal every
  hosted room is claimed again (a Redis that restarted empty learns where rooms are),
  and a room the placement gives to another agent meanwhile is closed here;
- closes every room (their clients told why) if it cannot renew its lease for a whole
  lease: other agents may already host them (fencing);
- takes the participants of a portal whose lease lapsed (killed) as away: their clients
  relogin through another portal within their keep time, or leave;
- can be drained: no new rooms are placed on it, its rooms finish.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from redis.exceptions import RedisError

from tessera.conference.errors import ConferenceError, ErrorCode
from tessera.conference.events import ClientAddress
from tessera.conference.requests import ParticipantRef
from tessera.conference.stats import ConferenceStats

from .bus import Bus, RemoteError
from .cpumeter import CpuMeter
from .nodes import NodeLease, info_key, live_nodes
from .placement import NodeInfo, NodeLoad
from .roomplacement import RoomPlacement
from .rpc import MethodTable, RequestRouter, RpcServer
from .servicecounts import ServiceCounts, sum_service_counts

logger = logging.getLogger(__name__)

ROOMS_PREFIX = "rooms."
NODE_PREFIX = "node."
# Reasons rooms close on an agent, as clients hear them.
ROOM_MOVED = "the room moved to another media server"
LEASE_LOST = "the media server lost contact with the cluster"
# Why a recording whose agent died is failed (its file plays up to the cut).
RECORDING_LOST = "the room's media server was lost while recording; the file ends where it was cut"


class HostedRooms(Protocol):
    """What the node needs of its room service."""

    def hosted(self) -> list[tuple[str, str]]:
        """(service id, room id) of every room loaded here."""
        ...

    async def close_hosted(self, service_id: str, room_id: str, reason: str) -> None: ...

    def counters(self) -> ConferenceStats: ...

    def service_counts(self) -> ServiceCounts:
        """Per service: rooms loaded, recordings and streaming-outs running here."""
        ...

    def set_running_elsewhere(self, counts: Counter[tuple[str, str]]) -> None:
        """What the other agents run, by (kind, service id): the limits count it too."""
        ...

    def clients(self) -> list[tuple[ParticipantRef, ClientAddress]]:
        """Every participant connected now (not away), and where its client is."""
        ...

    async def client_lost(self, ref: ParticipantRef, client: ClientAddress) -> None:
        """The participant's connection is gone (its portal died): away, as after a lost
        connection (its keep time to relogin through another portal)."""
        ...


class LostRecordings(Protocol):
    """The store's side of recordings whose agent was lost (RedisStore)."""

    async def fail_lost_recordings(
        self, service_id: str, room_id: str, reason: str, *, claiming: str = ""
    ) -> list[str]: ...


class PlacedHost:
    """The RoomHost of an agent: a room loads here only if the placement names this agent.

    A room claimed here may have been hosted by an agent that died: its recordings still
    stored as running are marked failed before the room loads (``recordings``)."""

    def __init__(
        self, placement: RoomPlacement, agent_id: str, recordings: LostRecordings | None = None
    ) -> None:
        self.placement = placement
        self.agent_id = agent_id
        self.recordings = recordings
        self.accepting = True

    async def claim(self, service_id: str, room_id: str, name: str, persistent: bool) -> None:
        if not self.accepting:
            raise ConferenceError(
                "This media server is leaving the cluster; try again", ErrorCode.CLOUD, 503
            )
        if not await self.placement.claim(room_id, self.agent_id):
            raise ConferenceError(
                "The room is hosted by another media server; try again", ErrorCode.CLOUD, 503
            )
        if self.recordings is not None:
            try:
                failed = await self.recordings.fail_lost_recordings(
                    service_id, room_id, RECORDING_LOST, claiming=self.agent_id
                )
            except Exception as exc:  # the room still loads; a portal may mark them later
                logger.warning(
                    "recordings of a lost agent not marked failed: %s", exc, extra={"room": room_id}
                )
            else:
                if failed:
                    logger.warning(
                        "%d recordings of the room's lost media server marked failed",
                        len(failed),
                        extra={"room": room_id, "recordings": failed},
                    )

    async def release(self, service_id: str, room_id: str, name: str, persistent: bool) -> None:
        try:
            await self.placement.release(room_id, self.agent_id)
        except Exception as exc:  # Redis down: the placement lapses with the lease anyway
            logger.warning(
                "room placement not released: %s",
                exc,
                extra={"room": room_id, "agent": self.agent_id},
            )


class AgentNode:
    """The cluster side of an agent process (module docstring)."""

    def __init__(
        self,
        bus: Bus,
        host: PlacedHost,
        rooms: HostedRooms,
        table: MethodTable,
        target: object,
        *,
        url: str = "",
        max_rooms: int = 0,
        lease: float = 5.0,
        interval: float = 1.0,
        restore: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.bus = bus
        # Writes back what a Redis that restarted empty forgot (cluster/redisrestore.py).
        self.restore = restore
        self.rooms = rooms
        self.host = host
        self.placement = host.placement
        self.cpu = CpuMeter()
        self.max_rooms = max_rooms
        requests = RequestRouter()
        requests.add(ROOMS_PREFIX, RpcServer(table, target, ROOMS_PREFIX).handle)
        requests.add(NODE_PREFIX, self._node_request)
        bus.on_request(requests.handle)
        info = NodeInfo(
            id=bus.node_id, role="agent", url=url, host=socket.gethostname(), started=time.time()
        )
        self.lease = NodeLease(
            bus.redis,
            info,
            self.load,
            lease=lease,
            interval=interval,
            on_lease_lost=self._lease_lost,
            after_renew=self._claim_hosted,
        )
        self._closing: set[asyncio.Task[None]] = set()

    @property
    def node_id(self) -> str:
        return self.bus.node_id

    @property
    def draining(self) -> bool:
        return self.lease.info.draining

    def load(self) -> NodeLoad:
        stats = self.rooms.counters()
        return NodeLoad(
            rooms=stats.rooms,
            participants=stats.participants,
            encoders=stats.encoders,
            cpu=self.cpu.sample(),
            cores=1.0,
            max_rooms=self.max_rooms,
            services=self.rooms.service_counts(),
        )

    async def start(self) -> None:
        await self.bus.start()
        await self.lease.start()
        logger.info("agent joined the cluster", extra={"node": self.node_id})

    async def stop(self) -> None:
        """Leave the cluster (rooms already closed by the room service's own shutdown)."""
        self.host.accepting = False
        await self.lease.stop()
        for task in list(self._closing):
            await asyncio.gather(task, return_exceptions=True)
        await self.bus.close()

    def drain(self, draining: bool = True) -> None:
        """No new rooms are placed here (rooms placed already finish)."""
        self.lease.set_draining(draining)
        logger.info(
            "agent %s", "draining" if draining else "open again", extra={"node": self.node_id}
        )

    async def _node_request(self, method: str, body: Any, sender: str) -> Any:
        if method == NODE_PREFIX + "drain":
            self.drain(bool(body.get("draining", True)) if isinstance(body, dict) else True)
            # Answer once placement sees it: after `tessera agent drain` returns, no new
            # room is placed here.
            try:
                await self.lease.renew()
            except (RedisError, OSError) as exc:
                raise RemoteError("unavailable", f"the drain is not in Redis yet: {exc}") from None
            return {"draining": self.draining, "rooms": len(self.rooms.hosted())}
        raise RemoteError("bad-call", f"no node request {method!r}")

    async def _claim_hosted(self) -> None:
        if self.restore is not None:
            await self.restore()
        await self._check_portals()
        await self.count_elsewhere()
        for service_id, room_id in self.rooms.hosted():
            if not await self.placement.claim(room_id, self.node_id):
                logger.error(
                    "room placed on another agent meanwhile, closed here",
                    extra={"room": room_id, "service": service_id, "agent": self.node_id},
                )
                self._close(service_id, room_id, ROOM_MOVED)

    async def count_elsewhere(self) -> None:
        """The per-service limits hold for the cluster: add up the other agents' reports
        (a second old at most; a lapsed agent's are gone with its lease)."""
        others = [
            node.load.services
            for node in await live_nodes(self.bus.redis)
            if node.role == "agent" and node.id != self.node_id
        ]
        self.rooms.set_running_elsewhere(sum_service_counts(others))

    async def _check_portals(self) -> None:
        """A killed portal says no goodbye: once its lease has lapsed, the participants
        whose clients it held are away (they relogin through another portal or leave when
        their keep time is up). Not before this node's own renewals have gone through for
        a whole lease: a Redis that restarted empty knows no portal until each renews."""
        if not self.lease.settled():
            return
        clients = self.rooms.clients()
        portals = sorted({client.node for _, client in clients if client.node})
        if not portals:
            return
        leases = await self.bus.redis.mget([info_key(node) for node in portals])
        gone = {node for node, value in zip(portals, leases, strict=True) if value is None}
        for ref, client in clients:
            if client.node in gone:
                logger.warning(
                    "the participant's portal is gone: away",
                    extra={"room": ref.room_id, "participant": ref.participant_id,
                           "portal": client.node, "agent": self.node_id},
                )  # fmt: skip
                await self.rooms.client_lost(ref, client)

    def _lease_lost(self) -> None:
        hosted = self.rooms.hosted()
        logger.error(
            "lease lost: closing %d rooms (other agents may host them now)",
            len(hosted),
            extra={"agent": self.node_id},
        )
        for service_id, room_id in hosted:
            self._close(service_id, room_id, LEASE_LOST)

    def _close(self, service_id: str, room_id: str, reason: str) -> None:
        task = asyncio.ensure_future(self.rooms.close_hosted(service_id, room_id, reason))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)


def default_node_id(role: str) -> str:
    """A node id unique in the cluster and over restarts: role, host, pid, and a few random
    digits (a restarted process may get a pid again)."""
    return f"{role}-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"

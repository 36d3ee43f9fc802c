"""The agent process of a cluster: ``tessera agent --redis URL``.

An agent hosts the rooms the cluster places on it: a room service of its own (its rooms'
WebRTC sessions, mixer and recorder) whose store is the cluster's Redis and whose events
go over the bus to the portal holding each client. Clients send media straight to the
agent (its own ICE candidates are in every answer); portals only carry signalling. It
serves ``/healthz``, ``/readyz`` and ``/metrics`` on its own HTTP port (no front end).

On SIGTERM it drains: no new rooms are placed on it, recordings are finalised, its
participants are told (through their portals) and its rooms released, then it leaves.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
import time
from collections import Counter
from dataclasses import replace

from aiohttp import web
from prometheus_client import generate_latest

from tessera.cluster.agent import AgentNode, PlacedHost, default_node_id
from tessera.cluster.bus import Bus, BusUnavailable
from tessera.cluster.busrouter import BusRouter
from tessera.cluster.redisrestore import RedisRestore
from tessera.cluster.redisstore import RedisStore
from tessera.cluster.roomcalls import agent_table
from tessera.cluster.roomplacement import RoomPlacement
from tessera.cluster.servicecounts import ServiceCounts, count_services
from tessera.conference.events import ClientAddress
from tessera.conference.requests import ParticipantRef
from tessera.conference.roomservice import RoomService
from tessera.conference.selfcheck import (
    MediaCheckFailed,
    PrivateNameMissing,
    check_private_names,
    media_self_check,
)
from tessera.conference.stats import ConferenceStats

from . import logs
from .config import Config
from .looplag import LoopLagMonitor
from .malloc import trim_heap
from .metrics import create_registry
from .server import conference_settings

logger = logging.getLogger(__name__)

CLOSING = "the media server is shutting down"


class HostedRoomsOf:
    """The rooms of a room service, as the agent's node sees them."""

    def __init__(self, service: RoomService) -> None:
        self.service = service

    def hosted(self) -> list[tuple[str, str]]:
        return [(room.service_id, room.id) for room in self.service.rooms.values()]

    def adhoc(self) -> list[tuple[str, str, str]]:
        """(service id, room id, name) of the ad-hoc rooms loaded here."""
        return [
            (room.service_id, room.id, room.name)
            for room in self.service.rooms.values()
            if not room.persistent
        ]

    async def close_hosted(self, service_id: str, room_id: str, reason: str) -> None:
        room = self.service.room(room_id)
        if room is not None and room.service_id == service_id:
            await self.service.close_room(room, reason)

    def counters(self) -> ConferenceStats:
        return self.service.counters()

    def service_counts(self) -> ServiceCounts:
        return count_services(
            self.service.context.running,
            (room.service_id for room in self.service.rooms.values()),
        )

    def set_running_elsewhere(self, counts: Counter[tuple[str, str]]) -> None:
        self.service.context.running_elsewhere = counts

    def clients(self) -> list[tuple[ParticipantRef, ClientAddress]]:
        return [
            (ParticipantRef(room_id=room.id, participant_id=p.id), p.address)
            for room in self.service.rooms.values()
            for p in room.participants.values()
            if p.address is not None
        ]

    async def client_lost(self, ref: ParticipantRef, client: ClientAddress) -> None:
        await self.service.away(ref, client)


class AgentServer:
    """One agent process: bus, store, room service, node, health and metrics."""

    def __init__(self, config: Config, redis_url: str, node_id: str | None = None) -> None:
        self.config = config
        self.bus = Bus(
            redis_url,
            node_id or default_node_id("agent"),
            timeout=config.cluster.request_timeout,
        )
        self.store = RedisStore(self.bus.redis)
        host = PlacedHost(RoomPlacement(self.bus.redis), self.bus.node_id, self.store)
        self.port = 0
        self.conference = RoomService(
            conference_settings(config, lambda: config.advertised_host()),
            self.store,
            BusRouter(self.bus),
            host,
        )
        hosted = HostedRoomsOf(self.conference)
        restore = RedisRestore(
            self.store,
            lambda: self.conference.context.ticket_secret,
            adhoc_rooms=hosted.adhoc,
            node=self.bus.node_id,
        )
        self.node = AgentNode(
            self.bus,
            host,
            hosted,
            agent_table(),
            self.conference,
            max_rooms=config.cluster.agent_max_rooms,
            lease=config.cluster.lease,
            restore=restore.restore,
        )
        # The per-service limits count the whole cluster: read afresh before a start.
        self.conference.context.count_elsewhere = self.node.count_elsewhere
        self.loop_lag = LoopLagMonitor()
        self.closing = False

    async def start(self, url: str) -> None:
        self.node.lease.info = replace(self.node.lease.info, url=url)
        # Not the only process on the store: what other agents run is theirs to close.
        await self.conference.start(only_process=False)
        self.loop_lag.start()
        await self.node.start()

    async def stop(self) -> None:
        """Drain: no new rooms here, recordings finalised, rooms closed (clients told why),
        placements released; then leave the cluster."""
        self.closing = True
        self.node.drain()
        self.node.host.accepting = False
        await self.conference.drain()
        for service_id, room_id in self.node.rooms.hosted():
            await self.node.rooms.close_hosted(service_id, room_id, CLOSING)
        await self.conference.close()
        await self.loop_lag.stop()
        await self.node.stop()
        await self.store.close()


def create_agent_app(server: AgentServer) -> web.Application:
    app = web.Application()
    registry = create_registry(server.conference, server.loop_lag)

    async def metrics(request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=generate_latest(registry), content_type="text/plain", charset="utf-8"
        )

    async def healthz(request: web.Request) -> web.StreamResponse:
        return web.json_response({"status": "alive", "node": server.bus.node_id})

    async def readyz(request: web.Request) -> web.StreamResponse:
        if server.closing:
            return web.json_response({"status": "shutting down"}, status=503)
        if not server.bus.connected:
            return web.json_response({"status": "the cluster's Redis is unreachable"}, status=503)
        if server.node.draining:
            return web.json_response({"status": "draining"}, status=503)
        lag, limit = server.loop_lag.recent(90, 2.0), server.config.server.ready_max_loop_lag
        if lag > limit:
            reason = f"event-loop lag {lag * 1000:.0f} ms is above {limit * 1000:.0f} ms"
            return web.json_response({"status": "overloaded", "reason": reason}, status=503)
        return web.json_response({"status": "ready", "node": server.bus.node_id})

    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


def run_agent(config: Config, redis_url: str, node_id: str | None = None) -> int:
    """``tessera agent``: host rooms until SIGTERM or SIGINT; the exit status."""
    return asyncio.run(_serve_agent(config, redis_url, node_id))


async def _serve_agent(config: Config, redis_url: str, node_id: str | None) -> int:
    try:
        check_private_names()
        if config.server.media_check:
            media_self_check(trim_heap)
    except (MediaCheckFailed, PrivateNameMissing) as exc:
        print(f"tessera: {exc}", file=sys.stderr)
        return 1
    server = AgentServer(config, redis_url, node_id)
    logs.set_process_ids(node=server.bus.node_id)
    runner = web.AppRunner(create_agent_app(server), handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, config.server.host, config.server.port)
    await site.start()
    server.port = int(runner.addresses[0][1])
    url = f"http://{config.server.host}:{server.port}"
    try:
        await server.start(url)
    except BusUnavailable as exc:
        print(f"tessera: {exc}", file=sys.stderr)
        await runner.cleanup()
        return 1
    gc.collect()
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    logger.info(
        "agent %s joined the cluster at %s; health and metrics on %s",
        server.bus.node_id,
        redis_url,
        url,
        extra={"event": "node up", "node": server.bus.node_id, "url": url},
    )
    await stop.wait()
    started = time.monotonic()
    try:
        await asyncio.wait_for(server.stop(), config.server.shutdown_timeout)
    except TimeoutError:
        logger.error("agent shutdown took longer than %.1f s", config.server.shutdown_timeout)
        return 1
    finally:
        await runner.cleanup()
    logger.info("agent stopped in %.1f s", time.monotonic() - started)
    return 0

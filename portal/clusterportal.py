"""A cluster's portal process: ``tessera portal --redis URL``.

The front ends of the embedded default (Socket.IO portal with the Engine.IO 3 gateway,
REST, web pages, the PeerJS endpoint) on a room service that holds no room:
:class:`~tessera.cluster.roomcalls.ClusterRooms` routes every call about a room to the
agent hosting it, and the agents' events for this portal's clients arrive on its bus
channel. Its store is the cluster's Redis, so a token is used once on any portal, and a
client may relogin through any portal with its ticket.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import time
from dataclasses import replace

from tessera.cluster.agent import default_node_id
from tessera.cluster.bus import Bus, BusUnavailable
from tessera.cluster.cpumeter import CpuMeter
from tessera.cluster.nodes import NodeLease
from tessera.cluster.placement import NodeInfo, NodeLoad
from tessera.cluster.redisrestore import RedisRestore
from tessera.cluster.redisstore import RedisStore
from tessera.cluster.roomcalls import ClusterRooms
from tessera.conference.events import LocalRouter
from tessera.conference.records import bootstrap_service
from tessera.conference.selfcheck import MediaCheckFailed, PrivateNameMissing

from . import logs
from .clusterpeers import cluster_peer_model
from .config import Config
from .server import Server, _serve, conference_settings, create_app

logger = logging.getLogger(__name__)


def run_portal(config: Config, redis_url: str, node_id: str | None = None) -> int:
    """``tessera portal``: serve the front ends until SIGTERM or SIGINT; the exit status."""
    return asyncio.run(_serve_portal(config, redis_url, node_id))


async def _serve_portal(config: Config, redis_url: str, node_id: str | None) -> int:
    bus = Bus(
        redis_url, node_id or default_node_id("portal"), timeout=config.cluster.request_timeout
    )
    logs.set_process_ids(node=bus.node_id)
    try:
        await bus.start()
    except BusUnavailable as exc:
        print(f"tessera: {exc}", file=sys.stderr)
        await bus.close()
        return 1
    store = RedisStore(bus.redis)
    default_service = await bootstrap_service(store, config.service)
    router = LocalRouter()
    holder: list[Server] = []
    conference = ClusterRooms(
        conference_settings(config, lambda: holder[0].advertised_host()),
        store,
        router,
        bus,
    )
    # PeerJS peers across portals: who holds which peer id, and messages for the others.
    directory, relay = cluster_peer_model(bus)
    bus.on_message(relay.message_handler(fallback=conference.client_message))
    server = Server(
        config,
        conference=conference,
        router=router,
        default_service=default_service,
        peer_directory=directory,
        peer_relay=relay,
    )
    holder.append(server)
    try:
        app = create_app(config, server=server)
    except (MediaCheckFailed, PrivateNameMissing) as exc:
        print(f"tessera: {exc}", file=sys.stderr)
        await bus.close()
        return 1
    cpu = CpuMeter()

    def load() -> NodeLoad:
        return NodeLoad(participants=len(server.portal.connections), cpu=cpu.sample())

    info = NodeInfo(id=bus.node_id, role="portal", host=socket.gethostname(), started=time.time())
    restore = RedisRestore(
        store, lambda: conference.context.ticket_secret, service=config.service, node=bus.node_id
    )

    last_sweep = time.monotonic()

    async def after_renew() -> None:
        nonlocal last_sweep
        await restore.restore()
        settled = lease.settled()
        await conference.check_agents(settled=settled)
        if settled and time.monotonic() - last_sweep >= config.cluster.lease:
            last_sweep = time.monotonic()
            await conference.sweep_lost_recordings()

    lease = NodeLease(
        bus.redis,
        info,
        load,
        lease=config.cluster.lease,
        after_renew=after_renew,
    )

    async def listening(url: str) -> None:
        lease.info = replace(lease.info, url=url)
        await lease.start()
        logger.info(
            "portal %s joined the cluster at %s",
            bus.node_id,
            redis_url,
            extra={"event": "node up", "node": bus.node_id, "url": url},
        )

    async def stopped() -> None:
        await lease.stop()
        await bus.close()

    return await _serve(config, app, on_listening=listening, on_stopped=stopped)

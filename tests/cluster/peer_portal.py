"""A PeerJS front end of a cluster for tests: a PeerGateway on its own port and Bus node.

In a test process (:func:`start_peer_portal`) several of them share one room service,
as the portals of a cluster share the agents. As a process of its own
(``python -m tests.cluster.peer_portal REDIS_URL NODE DATA_DIR PORTFILE``) it writes its
port to PORTFILE once listening, and a test kills it to play a portal that died.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from tessera.cluster.bus import Bus
from tessera.conference.roomservice import RoomService
from tessera.portal.clusterpeers import cluster_peer_model
from tessera.portal.config import Config, load_config
from tessera.portal.peergateway import PeerGateway
from tessera.portal.server import Server
from tests.eventually import within

# Short, so that a portal's death frees its peers' ids quickly in tests.
TEST_LEASE = 1.5


def peer_config(data_dir: Path, **overrides: Any) -> Config:
    settings = {
        "storage.data_dir": str(data_dir),
        "server.port": 0,
        "peer.allow_discovery": True,
        "peer.expire_timeout": 4.0,
        **overrides,
    }
    return load_config(None, env={}, overrides=settings)


@dataclass
class PeerPortal:
    """One portal: its bus node, its PeerJS gateway and the HTTP site it listens on."""

    bus: Bus
    gateway: PeerGateway
    runner: web.AppRunner
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        # Each step bounded and named: a hang says where.
        await within(self.gateway.close(), 20, f"{self.bus.node_id}'s PeerJS gateway closing")
        await within(self.runner.cleanup(), 20, f"{self.bus.node_id}'s HTTP site stopping")
        await within(self.bus.close(), 20, f"{self.bus.node_id}'s bus closing")


async def start_peer_portal(
    conference: RoomService, config: Config, redis_url: str, node: str, lease: float = TEST_LEASE
) -> PeerPortal:
    bus = Bus(redis_url, node)
    await bus.start()
    directory, relay = cluster_peer_model(bus, lease=lease)
    gateway = PeerGateway(conference, config, directory=directory, relay=relay)
    bus.on_message(relay.message_handler())
    app = web.Application()
    gateway.add_routes(app)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    assert site._server is not None
    port = int(site._server.sockets[0].getsockname()[1])
    gateway.start()
    return PeerPortal(bus, gateway, runner, port)


async def main(redis_url: str, node: str, data_dir: str, port_file: str) -> None:
    config = peer_config(Path(data_dir))
    server = Server(config)
    portal = await start_peer_portal(server.conference, config, redis_url, node)
    Path(port_file).write_text(f"{portal.port}\n")
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))

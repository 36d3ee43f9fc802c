"""A real Tessera server on 127.0.0.1 for tests (random port, SQLite in a temp dir)."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from tessera.conference.store import ServiceRecord
from tessera.conference.tokens import issue_token
from tessera.portal.config import Config, load_config
from tessera.portal.listener import listen
from tessera.portal.server import SERVER_KEY, Server, create_app
from tessera_client import ConferenceClient


@dataclass
class RunningServer:
    """A Tessera server listening on 127.0.0.1 for one test."""

    app: web.Application
    runner: web.AppRunner
    server: Server
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def token(
        self,
        room: str = "default",
        user: str = "alice",
        role: str = "presenter",
        service: ServiceRecord | None = None,
        lifetime: float = 180.0,
        issued_at: float | None = None,
    ) -> str:
        """A join token; `issued_at` (a Unix time) in the past makes an expired one at once."""
        service = service or self.server.default_service
        return issue_token(
            service_id=service.id,
            key=service.key,
            room=room,
            user=user,
            role=role,
            host=self.server.advertised_host(),
            secure=False,
            lifetime=lifetime,
            now=issued_at,
        )

    async def stop(self) -> None:
        # As `tessera serve` does on SIGTERM: drop the clients, then stop aiohttp.
        await self.server.shutdown()
        await self.runner.cleanup()


async def start_server(data_dir: Path, **overrides: Any) -> RunningServer:
    """Start a server on a free port with `overrides` ({"portal.reconnection_keep": 2}, ...)."""
    settings = {"storage.data_dir": str(data_dir), "server.port": 0, **overrides}
    return await serve(load_config(None, env={}, overrides=settings))


async def serve(config: Config) -> RunningServer:
    """Run the app of `config` on 127.0.0.1, on a free port."""
    app = create_app(config)
    # As `tessera serve` does: a connection that lingers after the clients were told to go
    # (a browser's Engine.IO socket whose login never completed) is cut, not waited for
    # until the Engine.IO ping timeout (47 s of teardown per browser test).
    linger = min(0.5, config.server.shutdown_timeout / 8)
    # With the listener's connection hygiene, as `tessera serve` listens.
    runner, site = await listen(app, config, "127.0.0.1", 0, linger)
    server = app[SERVER_KEY]
    server.port = site.port
    return RunningServer(app=app, runner=runner, server=server, port=server.port)


async def joined(
    tessera: RunningServer, user: str, role: str = "presenter", **kw: Any
) -> ConferenceClient:
    """A ConferenceClient logged in to `tessera` (room "default" unless `room=` is given)."""
    client = ConferenceClient()
    await client.join(tessera.token(user=user, role=role, **kw))
    return client


async def room_with(tessera: RunningServer, name: str, **options: Any) -> str:
    """The id of a room created over REST with these room options."""
    status, room = await api(tessera, "POST", "/v1/rooms", {"name": name, "options": options})
    assert status == 200, room
    return str(room["id"])


async def rest_call(
    url: str, key: str, method: str, path: str, body: Any = None
) -> tuple[int, Any]:
    """One REST request with `Authorization: Bearer <key>`: (status, JSON or raw body)."""
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession() as session:
        async with session.request(method, url + path, json=body, headers=headers) as resp:
            if resp.content_type == "application/json":
                return resp.status, await resp.json()
            return resp.status, await resp.read()


async def api(tessera: RunningServer, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """A REST request to `tessera` as its default service."""
    return await rest_call(tessera.url, tessera.server.default_service.key, method, path, body)


def listening(port: int) -> bool:
    """Whether a socket listens on 127.0.0.1 `port` (read from /proc: a probe connection
    would take the one client that `ffmpeg -listen 1` accepts)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


def region_box(region: dict[str, Any]) -> tuple[float, float, float, float]:
    """A layout region's area as (left, top, width, height) fractions of the view."""
    area = region["area"]
    left, top, width, height = (
        float(Fraction(area[k])) for k in ("left", "top", "width", "height")
    )
    return left, top, width, height


# Room option `transcoding` of a room whose forward streams have no ladder (subscribers stay
# on the publisher's stream as it is): for tests of what a forward subscriber gets unadapted.
NO_LADDER = {"video": {"parameters": {"resolution": False}}}

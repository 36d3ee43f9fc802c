"""A real Tessera server on 127.0.0.1 for tests (random port, SQLite in a temp dir)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from portal.config import Config, load_config
from portal.server import SERVER_KEY, Server, create_app
from portal.store import ServiceRecord
from portal.tokens import issue_token


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
    ) -> str:
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
        )

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_server(data_dir: Path, **overrides: Any) -> RunningServer:
    """Start a server on a free port with `overrides` ({"portal.reconnection_keep": 2}, ...)."""
    settings = {"storage.data_dir": str(data_dir), "server.port": 0, **overrides}
    return await serve(load_config(None, env={}, overrides=settings))


async def serve(config: Config) -> RunningServer:
    """Run the app of `config` on 127.0.0.1, on a free port."""
    app = create_app(config)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = app[SERVER_KEY]
    assert site._server is not None
    server.port = site._server.sockets[0].getsockname()[1]
    return RunningServer(app=app, runner=runner, server=server, port=server.port)

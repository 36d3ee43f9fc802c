"""Real receivers for streaming-out tests, on 127.0.0.1.

FFmpeg's command line as an RTMP or RTSP server that takes one push into a file, and
`Store`, an HTTP server that keeps what HLS/DASH pushes PUT or POST.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web

from tests.eventually import eventually
from tests.support import listening

# protocol -> (FFmpeg's flags to listen as its server, the container written)
LISTENERS = {
    "rtmp": (["-listen", "1"], "flv"),
    "rtsp": (["-rtsp_flags", "listen"], "matroska"),
}


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ffmpeg_or_skip() -> str:
    """FFmpeg's command line, or skip the test saying how to get it."""
    path = shutil.which("ffmpeg")
    if path is None:
        pytest.skip("the receivers need FFmpeg's command line: apt-get install ffmpeg")
    return path


class Receiver:
    """`ffmpeg` listening as an RTMP or RTSP server, copying the one push it takes to `out`."""

    def __init__(self, ffmpeg: str, out: Path, protocol: str) -> None:
        listen, container = LISTENERS[protocol]
        self.port = free_port()
        self.url = f"{protocol}://127.0.0.1:{self.port}/live/x"
        self.out = out
        command = [ffmpeg, "-hide_banner", "-loglevel", "error", *listen, "-i", self.url]
        self.process = subprocess.Popen(
            [*command, "-c", "copy", "-f", container, str(out)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    async def wait_listening(self) -> None:
        def ready() -> bool:
            assert self.process.poll() is None, self.process.communicate()[1].decode()
            return listening(self.port)

        await eventually(ready, what="ffmpeg listening")

    async def finished(self, timeout: float = 30) -> str:
        _, err = await asyncio.wait_for(asyncio.to_thread(self.process.communicate), timeout)
        assert self.process.returncode == 0, err.decode()
        return err.decode()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


@asynccontextmanager
async def running_receiver(ffmpeg: str, out: Path, protocol: str) -> AsyncIterator[Receiver]:
    """A `Receiver` listening, killed at the end if it still runs."""
    running = Receiver(ffmpeg, out, protocol)
    try:
        await running.wait_listening()
        yield running
    finally:
        running.close()


class Store:
    """A user's HTTP server: keeps what is PUT or POSTed, forgets what is DELETEd."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.log: list[tuple[str, str]] = []  # (method, name) in arrival order
        self.deleted: list[str] = []
        self.fail_with: int | None = None  # answer every request with this status
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.log.append((request.method, name))
        if self.fail_with is not None:
            return web.Response(status=self.fail_with, text="no")
        if request.method == "DELETE":
            self.deleted.append(name)
            return web.Response(status=204 if self.files.pop(name, None) is not None else 404)
        self.files[name] = await request.read()
        return web.Response(status=201)

    def uploads(self, method: str) -> list[str]:
        return [name for m, name in self.log if m == method]


@asynccontextmanager
async def running_store() -> AsyncIterator[Store]:
    """A `Store` serving `<url>/<name>` until the end."""
    kept = Store()
    app = web.Application(client_max_size=64 << 20)
    app.router.add_route("*", "/live/{name}", kept.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    kept.url = f"http://127.0.0.1:{port}/live"
    try:
        yield kept
    finally:
        await runner.cleanup()


def playlist_names(text: str) -> list[str]:
    """The entries of an HLS playlist (its lines that are not tags)."""
    return [line for line in text.splitlines() if line and not line.startswith("#")]

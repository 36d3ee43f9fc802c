"""A real redis-server for tests: a private instance on a free loopback port.

Cluster tests run against Debian's `redis-server` (installed by scripts/test.sh), never a
fake. Each instance keeps nothing on disk, so a restart (`restart()`) starts empty, as a
Redis without persistence does after a crash.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.eventually import eventually, within

REDIS_SERVER = shutil.which("redis-server")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_redis_server() -> str:
    """The redis-server binary, or skip the test saying how to get it."""
    if REDIS_SERVER is None:
        pytest.skip(
            "redis-server is not installed (apt-get install redis-server; scripts/test.sh does)"
        )
    return REDIS_SERVER


class RedisServer:
    """One redis-server process on 127.0.0.1, started and stopped by a test."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.binary = require_redis_server()
        self.directory = directory
        self.port = port or free_port()
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = await asyncio.create_subprocess_exec(
            self.binary,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
            "--logfile", str(self.directory / "redis.log"),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        client = aioredis.Redis.from_url(self.url)
        try:

            async def answers() -> bool:
                try:
                    return bool(await client.ping())
                except (OSError, aioredis.ConnectionError):
                    return False

            await eventually(answers, what="redis-server answers PING")
        finally:
            await client.aclose()

    async def stop(self) -> None:
        """Kill the server (SIGKILL: what a crash looks like to its clients)."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            pid = self.process.pid
            await within(self.process.wait(), 30, f"redis-server (pid {pid}) exiting on SIGKILL")
        self.process = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()

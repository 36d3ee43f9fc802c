"""ClusterLauncher: a whole cluster on one machine with one command (`tessera cluster up`).

It starts a local redis-server (append-only file in the data directory, so services,
rooms and recordings survive a Redis restart), then M portals and N agents as child
processes of the same Python, and watches them: a child that dies is started again (after
a short backoff, longer if it keeps dying), so a crashed agent costs its rooms a
re-placement, not the cluster. SIGINT/SIGTERM stops the children (portals first, so no
new work arrives), then Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

# Seconds before a dead child is started again: doubling while it keeps dying young.
RESTART_DELAYS = (0.5, 1.0, 2.0, 5.0, 10.0)
# A child that lived this long is healthy again: its next death restarts it at once.
HEALTHY_AFTER = 30.0
STOP_TIMEOUT = 15.0


@dataclass
class ClusterPlan:
    """What `tessera cluster up` starts."""

    portals: int = 1
    agents: int = 1
    host: str = "127.0.0.1"
    port: int = 8080  # the first portal's port; the next ones count up
    # Agents' health/metrics ports count up from here (None: the portal's + 100; 0: each
    # agent takes any free port, printed in its "node up" log line and `cluster status`).
    agent_port: int | None = None
    redis_port: int = 6379
    redis_url: str | None = None  # an existing Redis instead of starting one
    data_dir: Path = field(default_factory=lambda: Path.home() / ".local/share/tessera")
    config: str | None = None  # a TOML file every process reads

    def portal_ports(self) -> list[int]:
        return [self.port + i for i in range(self.portals)]

    def agent_ports(self) -> list[int]:
        if self.agent_port == 0:
            return [0] * self.agents
        first = self.port + 100 if self.agent_port is None else self.agent_port
        return [first + i for i in range(self.agents)]

    @property
    def url(self) -> str:
        return self.redis_url or f"redis://127.0.0.1:{self.redis_port}/0"


def redis_command(plan: ClusterPlan, binary: str) -> list[str]:
    directory = plan.data_dir / "redis"
    return [
        binary,
        "--bind", "127.0.0.1",
        "--port", str(plan.redis_port),
        "--dir", str(directory),
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--save", "",
        "--logfile", str(directory / "redis.log"),
    ]  # fmt: skip


def child_commands(plan: ClusterPlan) -> list[tuple[str, list[str]]]:
    """(name, argv) of every Tessera process the plan runs."""
    common = ["--redis", plan.url]
    if plan.config:
        common += ["--config", plan.config]
    python = [sys.executable, "-m", "tessera.portal.cli"]
    children = [
        (
            f"portal-{i + 1}",
            [*python, "portal", *common, "--host", plan.host, "--port", str(port)],
        )
        for i, port in enumerate(plan.portal_ports())
    ]
    children += [
        (f"agent-{i + 1}", [*python, "agent", *common, "--port", str(port)])
        for i, port in enumerate(plan.agent_ports())
    ]
    return children


@dataclass
class _Child:
    name: str
    argv: list[str]
    process: asyncio.subprocess.Process | None = None
    started: float = 0.0
    deaths: int = 0


class ClusterLauncher:
    """Runs a ClusterPlan until asked to stop."""

    def __init__(self, plan: ClusterPlan) -> None:
        self.plan = plan
        self.children = [_Child(name, argv) for name, argv in child_commands(plan)]
        self.redis: asyncio.subprocess.Process | None = None
        self._stopping = asyncio.Event()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stopping.set)
        try:
            if self.plan.redis_url is None:
                await self._start_redis()
            for child in self.children:
                await self._start(child)
            print(self._banner(), flush=True)
            watchers = [asyncio.create_task(self._watch(child)) for child in self.children]
            await self._stopping.wait()
            for task in watchers:
                task.cancel()
            return 0
        finally:
            await self._stop_all()

    def _banner(self) -> str:
        portals = ", ".join(f"http://{self.plan.host}:{p}/" for p in self.plan.portal_ports())
        return (
            f"Tessera cluster: {self.plan.portals} portal(s) at {portals}; "
            f"{self.plan.agents} agent(s); Redis at {self.plan.url}. "
            "`tessera cluster status` shows it; Ctrl-C stops it."
        )

    async def _start_redis(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server is not installed (Debian: apt-get install redis-server)")
        (self.plan.data_dir / "redis").mkdir(parents=True, exist_ok=True)
        self.redis = await asyncio.create_subprocess_exec(
            *redis_command(self.plan, binary), stdin=asyncio.subprocess.DEVNULL
        )
        # Ready when it accepts a connection; a port taken by another Redis is an error.
        deadline = time.monotonic() + 10.0
        while True:
            if self.redis.returncode is not None:
                raise SystemExit(
                    f"redis-server exited ({self.redis.returncode}); is port "
                    f"{self.plan.redis_port} taken? See {self.plan.data_dir / 'redis/redis.log'}"
                )
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.plan.redis_port)
                writer.close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("redis-server did not start within 10 s") from None
                await asyncio.sleep(0.05)

    async def _start(self, child: _Child) -> None:
        child.process = await asyncio.create_subprocess_exec(
            *child.argv, stdin=asyncio.subprocess.DEVNULL, env={**os.environ}
        )
        child.started = time.monotonic()
        logger.info("started %s (pid %d)", child.name, child.process.pid)

    async def _watch(self, child: _Child) -> None:
        while True:
            assert child.process is not None
            code = await child.process.wait()
            if self._stopping.is_set():
                return
            lived = time.monotonic() - child.started
            child.deaths = 0 if lived > HEALTHY_AFTER else child.deaths + 1
            delay = RESTART_DELAYS[min(child.deaths, len(RESTART_DELAYS) - 1)]
            logger.warning(
                "%s exited with %s after %.0f s; starting it again in %.1f s",
                child.name,
                code,
                lived,
                delay,
            )
            await asyncio.sleep(delay)
            if self._stopping.is_set():
                return
            await self._start(child)

    async def _stop_all(self) -> None:
        # Portals first: no new requests while the agents finish their recordings.
        for role in ("portal", "agent"):
            group = [c for c in self.children if c.name.startswith(role) and c.process]
            for child in group:
                assert child.process is not None
                if child.process.returncode is None:
                    child.process.send_signal(signal.SIGTERM)
            for child in group:
                assert child.process is not None
                try:
                    await asyncio.wait_for(child.process.wait(), STOP_TIMEOUT)
                except TimeoutError:
                    logger.error("%s did not stop in %.0f s; killed", child.name, STOP_TIMEOUT)
                    child.process.kill()
                    await child.process.wait()
        if self.redis is not None and self.redis.returncode is None:
            self.redis.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.redis.wait(), STOP_TIMEOUT)

"""A whole Tessera cluster started by a benchmark: a redis-server, one portal, N agents.

`ClusterProcess` has the interface of `ServerProcess` (join tokens, `/metrics`,
CPU seconds, stop), so a benchmark runs the same rooms on either. The portal and
agents are `python -m tessera.portal.cli portal|agent` children on loopback (free
ports, JSON logs read from their stderr and kept in the data directory); Redis
keeps nothing on disk. Its `/metrics` are the agents' (where the rooms run),
merged by labels: views are unique to their agent, counts add up, and the
event-loop lag is the worst agent's. Its CPU is every process of the cluster:
the portal, the agents and Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tessera.conference.tokens import issue_token

from .machine import process_cpu_seconds
from .subscribers import ROOT, Metrics, parse_metrics

logger = logging.getLogger(__name__)

SERVICE = "default"
#: Samples merged by their maximum over agents (the others are summed).
WORST_OF_AGENTS = frozenset({"tessera_event_loop_lag_seconds"})
STOP_TIMEOUT = 20.0


def cluster_config(directory: Path, key: str) -> Path:
    """The TOML every process of the cluster reads (one data directory, as on one machine)."""
    sections: dict[str, dict[str, Any]] = {
        "server": {"host": "127.0.0.1", "port": 0},
        "storage": {"data_dir": str(directory)},
        "service": {"id": SERVICE, "key": key},
        # "node up" is logged at INFO; JSON so that it can be read back.
        "log": {"format": "json", "level": "INFO"},
        # Every benchmark client logs in from 127.0.0.1, and fast (as bench._server).
        "limits": {
            "login_attempts_per_minute": 100_000,
            "requests_per_second": 10_000.0,
            "request_burst": 10_000,
        },
    }
    lines: list[str] = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    path = directory / "tessera.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def merge_metrics(parts: list[Metrics]) -> Metrics:
    """Several processes' /metrics as one: sums by labels, the maximum for WORST_OF_AGENTS."""
    merged: Metrics = {}
    for metrics in parts:
        for name, samples in metrics.items():
            target = merged.setdefault(name, {})
            for labels, value in samples.items():
                if labels not in target:
                    target[labels] = value
                elif name in WORST_OF_AGENTS:
                    target[labels] = max(target[labels], value)
                else:
                    target[labels] += value
    return merged


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class _Node:
    """One child process of the cluster and what its log said."""

    name: str
    process: asyncio.subprocess.Process
    log: Path
    url: str = ""
    up: asyncio.Event = field(default_factory=asyncio.Event)
    errors: list[str] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None


class ClusterProcess:
    """A redis-server, one `tessera portal` and `agents` `tessera agent` processes."""

    def __init__(
        self, directory: Path, agents: int, cpus: set[int] | None, pin_agents: bool = False
    ) -> None:
        self.directory = directory
        self.agent_count = agents
        self.cpus = cpus
        self.pin_agents = pin_agents
        self.key = secrets.token_hex(24)
        self.redis: asyncio.subprocess.Process | None = None
        self.portal: _Node | None = None
        self.agents: list[_Node] = []
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    async def start(
        cls,
        data_dir: Path,
        agents: int,
        timeout: float = 90.0,
        cpus: set[int] | None = None,
        pin_agents: bool = False,
    ) -> ClusterProcess:
        """Start Redis, then the agents and the portal; return once every node has joined.

        `cpus` pins every process of the cluster (and its threads). `pin_agents` pins
        agent k (and its threads) to the k-th CPU of `cpus` (or of this process's CPUs),
        round robin: one agent per core. Raises RuntimeError naming the node that did
        not come up (its log tail), after stopping the others.
        """
        if agents < 1:
            raise ValueError(f"a cluster needs at least one agent, not {agents}")
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        cluster = cls(data_dir, agents, cpus, pin_agents)
        try:
            await cluster._start(binary, timeout)
        except BaseException:
            await cluster.stop()
            raise
        return cluster

    def _pin(self, agent: int | None = None) -> Callable[[], None] | None:
        cpus = self.cpus
        if agent is not None and self.pin_agents:
            available = sorted(cpus if cpus is not None else os.sched_getaffinity(0))
            cpus = {available[agent % len(available)]}
        if cpus is None:
            return None

        def pin() -> None:
            # In the child before exec: every thread it starts inherits the CPU set.
            os.sched_setaffinity(0, cpus)

        return pin

    async def _start(self, binary: str, timeout: float) -> None:
        redis_dir = self.directory / "redis"
        redis_dir.mkdir(parents=True, exist_ok=True)
        port = _free_port()
        self.redis = await asyncio.create_subprocess_exec(
            binary,
            "--bind", "127.0.0.1",
            "--port", str(port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(redis_dir),
            "--logfile", str(redis_dir / "redis.log"),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            preexec_fn=self._pin(),
        )  # fmt: skip
        await self._wait_redis(port, timeout)
        redis_url = f"redis://127.0.0.1:{port}/0"
        config = cluster_config(self.directory, self.key)
        self.agents = [
            await self._spawn("agent", f"agent-{i + 1}", config, redis_url, self._pin(i))
            for i in range(self.agent_count)
        ]
        self.portal = await self._spawn("portal", "portal-1", config, redis_url, self._pin())
        for node in [*self.agents, self.portal]:
            await self._wait_up(node, timeout)
        self._session = aiohttp.ClientSession()

    async def _wait_redis(self, port: int, timeout: float) -> None:
        assert self.redis is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self.redis.returncode is not None:
                raise RuntimeError(f"redis-server exited at start ({self.redis.returncode})")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                if loop.time() > deadline:
                    raise RuntimeError(f"redis-server not listening after {timeout:g} s") from None
                await asyncio.sleep(0.05)  # it is still starting
            else:
                writer.close()
                return

    async def _spawn(
        self,
        role: str,
        name: str,
        config: Path,
        redis_url: str,
        pin: Callable[[], None] | None,
    ) -> _Node:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tessera.portal.cli",
            role,
            "--config", str(config),
            "--redis", redis_url,
            "--node-id", name,
            cwd=ROOT,
            env={k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=pin,
        )  # fmt: skip
        node = _Node(name, process, self.directory / f"{name}.log")
        node.reader = asyncio.create_task(self._read_log(node), name=f"log of {name}")
        return node

    async def _read_log(self, node: _Node) -> None:
        # Drained all the time (a full pipe would stall the child), kept in a file.
        stream = node.process.stderr
        assert stream is not None
        with node.log.open("w") as out:
            async for raw in stream:
                line = raw.decode(errors="replace").rstrip()
                out.write(line + "\n")
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(event, dict):
                    continue
                if event.get("event") == "node up" and not node.up.is_set():
                    node.url = str(event.get("url", ""))
                    node.up.set()
                if event.get("level") in ("error", "critical"):
                    node.errors.append(str(event.get("msg")))

    async def _wait_up(self, node: _Node, timeout: float) -> None:
        exited = asyncio.create_task(node.process.wait())
        up = asyncio.create_task(node.up.wait())
        try:
            await asyncio.wait({exited, up}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            exited.cancel()
            up.cancel()
        if not node.up.is_set() or not node.url:
            tail = "\n".join(node.log.read_text().splitlines()[-15:]) if node.log.exists() else ""
            raise RuntimeError(f"{node.name} did not join the cluster in {timeout:g} s:\n{tail}")

    @property
    def url(self) -> str:
        """Where clients connect: the portal."""
        assert self.portal is not None
        return self.portal.url

    @property
    def nodes(self) -> list[_Node]:
        """The portal and the agents."""
        return [n for n in [self.portal, *self.agents] if n is not None]

    @property
    def pids(self) -> list[int]:
        """Every process of the cluster: Redis, the portal, the agents."""
        redis = [self.redis.pid] if self.redis is not None else []
        return redis + [n.process.pid for n in self.nodes]

    def node_cpu_seconds(self) -> dict[str, float]:
        """CPU seconds of each process so far, by name (redis, the portal, each agent)."""
        seconds: dict[str, float] = {}
        if self.redis is not None:
            seconds["redis"] = process_cpu_seconds(self.redis.pid)
        for node in self.nodes:
            seconds[node.name] = process_cpu_seconds(node.process.pid)
        return seconds

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of every process of the cluster so far."""
        return sum(process_cpu_seconds(pid) for pid in self.pids)

    async def _fetch(self, url: str) -> Metrics:
        assert self._session is not None
        async with self._session.get(f"{url}/metrics") as response:
            response.raise_for_status()
            return parse_metrics(await response.text())

    async def agent_metrics(self) -> list[Metrics]:
        """Each agent's /metrics, in agent order."""
        return list(await asyncio.gather(*(self._fetch(a.url) for a in self.agents)))

    async def metrics(self) -> Metrics:
        """The agents' /metrics merged (see `merge_metrics`)."""
        return merge_metrics(await self.agent_metrics())

    async def portal_metrics(self) -> Metrics:
        """The portal's own /metrics."""
        assert self.portal is not None
        return await self._fetch(self.portal.url)

    def token(self, user: str, role: str, room: str | None = None) -> str:
        """A join token for `room` (by name: an ad-hoc room, placed on an agent at first join)."""
        assert self.portal is not None
        return issue_token(
            service_id=SERVICE,
            key=self.key,
            room=room or "default",
            user=user,
            role=role,
            host=self.url.removeprefix("http://"),
            secure=False,
            lifetime=600.0,
        )

    def errors(self) -> list[str]:
        """What the portal and agents logged at error level, named by node."""
        return [f"{n.name}: {e}" for n in self.nodes for e in n.errors]

    async def stop(self) -> list[str]:
        """SIGTERM the portal, then the agents (they drain), then Redis; kill what lingers.

        Returns the error lines the nodes logged.
        """
        if self.portal is not None:
            await _terminate(self.portal.process)
        await asyncio.gather(*(_terminate(a.process) for a in self.agents))
        if self.redis is not None:
            await _terminate(self.redis)
        for node in self.nodes:
            if node.reader is not None:
                with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                    await asyncio.wait_for(node.reader, 5)
        if self._session is not None:
            await self._session.close()
        return self.errors()


async def _terminate(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
    except TimeoutError:
        logger.warning("process %d did not stop in %.0f s; killed", process.pid, STOP_TIMEOUT)
        process.kill()
        await process.wait()

"""Real cluster processes for tests: ``tessera portal`` and ``tessera agent`` children of the
test, on loopback, sharing one real redis-server, with JSON logs collected."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from tessera.conference.tokens import issue_token
from tests.redisserver import free_port, require_redis_server
from tests.support import rest_call

ROOT = Path(__file__).resolve().parents[2]
KEY = "cluster-test-key-of-at-least-32-characters"
START_TIMEOUT = 90.0


def write_config(directory: Path, **sections: dict[str, Any]) -> Path:
    """A TOML config for every process of one test cluster (one data directory, so one
    recordings directory, as on one machine)."""
    directory.mkdir(parents=True, exist_ok=True)
    base: dict[str, dict[str, Any]] = {
        "server": {"port": 0, "host": "127.0.0.1", "shutdown_timeout": 15.0, "media_check": False},
        "storage": {"data_dir": str(directory)},
        "service": {"key": KEY},
        "log": {"format": "json"},
        "cluster": {"request_timeout": 5.0, "lease": 3.0},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    lines = []
    for name, values in base.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    path = directory / "tessera.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


class NodeProcess:
    """One ``python -m tessera.portal.cli portal|agent`` process (a thread reads its log, so
    module-scoped fixtures need no event loop)."""

    def __init__(self, role: str, config: Path, redis_url: str, name: str) -> None:
        self.role = role
        self.config = config
        self.redis_url = redis_url
        self.name = name
        self.lines: list[dict[str, Any]] = []
        self.url = ""
        self.node_id = ""
        self.proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._up = threading.Event()
        self._settled = threading.Event()  # up, or its stderr closed (it exited)

    def start(self) -> None:
        """Start it; returns once it has joined the cluster (raises if it did not)."""
        self._up.clear()
        self._settled.clear()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tessera.portal.cli",
                self.role,
                "--config",
                str(self.config),
                "--redis",
                self.redis_url,
                "--node-id",
                self.name,
            ],
            cwd=ROOT,
            env={k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True)
        self._reader.start()

    def wait_up(self, timeout: float = START_TIMEOUT) -> None:
        """Until it has joined the cluster; raises if it exits or takes over ``timeout``."""
        assert self.proc is not None
        # The reader sets _ended when the process's stderr closes (it exited).
        self._settled.wait(timeout)
        if not self._up.is_set():
            self.kill()
            if self._reader is not None:
                self._reader.join(5)
            tail = "\n".join(str(e.get("msg")) for e in self.lines[-20:])
            raise RuntimeError(f"{self.name} did not join the cluster in {timeout:g} s:\n{tail}")

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode(errors="replace").strip()
            try:
                event = json.loads(line)
            except ValueError:
                event = {"msg": line, "unstructured": True}
            self.lines.append(event)
            if event.get("event") == "node up":
                self.url = str(event["url"])
                self.node_id = str(event["node"])
                self._up.set()
                self._settled.set()
        self._settled.set()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """``kill -9``: no goodbye; its leases lapse."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM and the exit status (killed if it does not stop in ``timeout``)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._reader is not None:
            self._reader.join(5)
        return int(self.proc.returncode or 0)

    def errors(self) -> list[dict[str, Any]]:
        """Lines logged at error level or with a traceback."""
        return [e for e in self.lines if e.get("level") in ("error", "critical") or "exc" in e]


class Cluster:
    """Portals and agents of one test cluster on one Redis."""

    def __init__(
        self,
        directory: Path,
        redis_url: str,
        portals: int,
        agents: int,
        **sections: dict[str, Any],
    ) -> None:
        self.directory = directory
        self.redis_url = redis_url
        self.config = write_config(directory, **sections)
        self.portals = [
            NodeProcess("portal", self.config, redis_url, f"portal-{i + 1}") for i in range(portals)
        ]
        self.agents = [
            NodeProcess("agent", self.config, redis_url, f"agent-{i + 1}") for i in range(agents)
        ]
        #: Agents a test killed and replaced (their logs are still read).
        self.killed: list[NodeProcess] = []
        #: The Redis of a cluster from running_cluster().
        self.redis: RedisProcess | None = None

    def start(self) -> None:
        nodes = self.agents + self.portals
        for node in nodes:
            node.start()
        for node in nodes:
            node.wait_up()

    def stop(self) -> None:
        for node in self.portals + self.agents:
            if node.proc is not None and node.proc.poll() is None:
                node.proc.send_signal(signal.SIGTERM)
        for node in self.portals + self.agents:
            if node.proc is not None:
                node.terminate()

    async def rest(self, portal: int, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """A REST request to portal ``portal`` (0-based) as the default service."""
        return await rest_call(self.portals[portal].url, KEY, method, path, body)

    def token(self, portal: int, room: str, user: str, role: str = "presenter") -> str:
        """A join token that sends its client to portal ``portal`` (0-based)."""
        return issue_token(
            service_id="default",
            key=KEY,
            room=room,
            user=user,
            role=role,
            host=self.portals[portal].url.removeprefix("http://"),
            secure=False,
            lifetime=120,
        )


class RedisProcess:
    """A redis-server for a module's cluster (no event loop needed; see tests/redisserver.py
    for the per-test one). ``restart`` keeps the port; nothing is kept on disk."""

    def __init__(self, directory: Path) -> None:
        self.binary = require_redis_server()
        self.directory = directory
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--bind", "127.0.0.1",
                "--port", str(self.port),
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.directory),
                "--logfile", "",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        # Its log goes to stdout; it is up once it says it accepts connections.
        assert self.proc.stdout is not None
        ready = threading.Event()

        def read(stream: IO[bytes]) -> None:
            for line in stream:
                if b"Ready to accept connections" in line:
                    ready.set()
            ready.set()  # exited

        threading.Thread(target=read, args=(self.proc.stdout,), daemon=True).start()
        if not ready.wait(30) or self.proc.poll() is not None:
            self.kill()
            raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> None:
        """Kill it and start it again on the same port, empty (no persistence)."""
        self.kill()
        self.start()


@contextmanager
def running_cluster(
    directory: Path, portals: int, agents: int, **sections: dict[str, Any]
) -> Iterator[Cluster]:
    """Redis (``cluster.redis``), ``portals`` portals and ``agents`` agents for a test
    module, with ``sections`` over the test configuration; on the way out they stop, and a
    node that logged an error or a traceback fails the module (one a test killed with
    SIGKILL is not held to it: it died mid-work on purpose)."""
    redis = RedisProcess(directory / "redis")
    redis.start()
    running = Cluster(directory, redis.url, portals=portals, agents=agents, **sections)
    running.redis = redis
    try:
        running.start()
        yield running
    finally:
        running.stop()
        redis.kill()
    for node in running.portals + running.agents:
        if node.proc is not None and node.proc.returncode == -signal.SIGKILL:
            continue
        tracebacks = [e for e in node.lines if "exc" in e]
        assert tracebacks == [], f"{node.name} logged tracebacks: {tracebacks[:3]}"
        assert node.errors() == [], f"{node.name} logged errors: {node.errors()[:3]}"


def room_name() -> str:
    """A room name no other test uses."""
    return f"room-{uuid.uuid4().hex[:8]}"

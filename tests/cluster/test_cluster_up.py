"""``tessera cluster up`` as a user runs it (a real process tree: the launcher, its
redis-server, 1 portal, 2 agents), ``tessera cluster status`` against it and against a
Redis that is not there."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from tessera_client import ConferenceClient
from tests.cluster.processes import ROOT, write_config
from tests.eventually import eventually
from tests.redisserver import free_port, require_redis_server


def tessera(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tessera.portal.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue  # gone meanwhile
        ppid = next(
            int(line.split()[1]) for line in status.splitlines() if line.startswith("PPid:")
        )
        if ppid == pid:
            found.append(int(entry.name))
    return found


def parse(line: str) -> dict[str, Any]:
    try:
        event = json.loads(line)
    except ValueError:
        return {}
    return event if isinstance(event, dict) else {}


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie no longer does)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


async def test_cluster_up_status_join_and_stop(tmp_path: Path) -> None:
    require_redis_server()
    # No [service] key: the cluster generates one in Redis, as for a user who sets none.
    config = write_config(tmp_path, service={"key": ""})
    redis_url = f"redis://127.0.0.1:{free_port()}/0"
    port = free_port()
    launcher = subprocess.Popen(
        [
            sys.executable, "-m", "tessera.portal.cli", "cluster", "up",
            "--portals", "1", "--agents", "2",
            "--port", str(port), "--agent-port", "0",
            "--redis-port", redis_url.rsplit(":", 1)[1].split("/")[0],
            "--data-dir", str(tmp_path / "data"),
            "--config", str(config),
        ],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    lines: list[str] = []
    readers = [
        threading.Thread(target=lambda s=s: lines.extend(s), daemon=True)
        for s in (launcher.stdout, launcher.stderr)
    ]
    for reader in readers:
        reader.start()
    client = ConferenceClient()
    try:

        async def all_up() -> dict[str, Any]:
            assert launcher.poll() is None, "\n".join(lines[-20:])
            listed = await asyncio.to_thread(
                tessera, "cluster", "status", "--json", "--redis", redis_url
            )
            assert listed.returncode == 0, listed.stderr
            shown: dict[str, Any] = json.loads(listed.stdout)
            assert len(shown["portals"]) == 1 and len(shown["agents"]) == 2, shown
            return shown

        shown = await eventually(all_up, 120, "1 portal and 2 agents in cluster status")
        portal = shown["portals"][0]["url"]
        assert portal == f"http://127.0.0.1:{port}"
        assert all(a["url"] and not a["url"].endswith(":0") for a in shown["agents"])
        table = tessera("cluster", "status", "--redis", redis_url)
        assert table.returncode == 0 and table.stdout.startswith("1 portal(s), 2 agent(s)")

        # `tessera token` finds the running cluster (its record in the data directory):
        # the key from Redis, the portal's address.
        issued = tessera(
            "token", "up", "--user", "alice", "--role", "presenter", "--config", str(config)
        )
        assert issued.returncode == 0 and issued.stderr == "", issued.stderr
        await client.join(issued.stdout.strip())
        assert client.room_id is not None
        await client.leave()
        # Or names the cluster by its Redis: the address of a live portal.
        elsewhere = write_config(tmp_path / "elsewhere", service={"key": ""})
        issued = tessera(
            "token", "up", "--user", "bob", "--role", "viewer",
            "--config", str(elsewhere), "--redis", redis_url,
        )  # fmt: skip
        assert issued.returncode == 0 and issued.stderr == "", issued.stderr
        second = ConferenceClient()
        try:
            await second.join(issued.stdout.strip())
            assert second.room_id is not None
        finally:
            await second.leave()
        wrong = tessera("token", "up", "--user", "x", "--role", "nobody", "--redis", redis_url)
        assert wrong.returncode == 2 and "role 'nobody' is not one of" in wrong.stderr

        children = children_of(launcher.pid)
        assert len(children) == 4, children  # redis-server, the portal, two agents
        launcher.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(launcher.wait, 60)
        assert code == 0, "\n".join(lines[-20:])
        await eventually(lambda: not any(alive(p) for p in children), 30, "no orphan process")
        assert not (tmp_path / "server.json").exists()  # the record goes with the cluster
        for reader in readers:
            reader.join(10)
        tracebacks = [line for line in lines if "Traceback" in line or '"exc"' in line]
        assert tracebacks == []
        errors = [e for e in map(parse, lines) if e.get("level") in ("error", "critical")]
        assert errors == [], "\n".join(lines[-40:])  # e.g. a child that had to be killed
    finally:
        await client.leave()
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()


def test_cluster_status_without_redis_is_a_clear_error() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    done = tessera("cluster", "status", "--redis", url)
    assert done.returncode == 2
    assert done.stderr.startswith(f"tessera: cannot read the cluster at {url}"), done.stderr

"""Placement under a race, draining, SIGTERM, and what operators see (real processes: one
redis-server, 2 portals, 2 agents; the tests run in order, the last stops an agent).

- many clients joining one new room name at the same moment through both portals end
  in one room on one agent;
- ``tessera agent drain NODE``: no new rooms there, its rooms carry on; ``--undo``;
- each process serves /healthz and /metrics (agents count their rooms, portals their
  connections), ``tessera cluster status`` shows the load, logs name room and agent;
- a SIGTERM'd agent drains: its participants are told through their portals, its
  recordings are finalised and playable.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import aiohttp
import av
import pytest
import redis.asyncio as aioredis

from tessera.cluster.status import read_status
from tessera_client import ConferenceClient
from tests.cluster.processes import ROOT, Cluster, room_name, running_cluster
from tests.eventually import eventually
from tests.synthetic import ColorVideoTrack, ToneTrack

GREEN = (30, 200, 30)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("drain"), portals=2, agents=2) as running:
        yield running


def cli(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    """``tessera ARGS`` against the test cluster's Redis (a real process)."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "tessera.portal.cli",
            *args,
            "--redis",
            cluster.redis_url,
            "--config",
            str(cluster.config),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def hosts(cluster: Cluster) -> dict[str, list[str]]:
    """Agent id -> the room ids it hosts (the placement)."""
    redis = aioredis.Redis.from_url(cluster.redis_url)
    try:
        return (await read_status(redis)).rooms
    finally:
        await redis.aclose()


async def agent_of(cluster: Cluster, room_id: str | None) -> str:
    placed = [agent for agent, rooms in (await hosts(cluster)).items() if room_id in rooms]
    assert len(placed) == 1, placed
    return placed[0]


async def joined(cluster: Cluster, portal: int, room: str, user: str) -> ConferenceClient:
    client = ConferenceClient()
    await client.join(cluster.token(portal, room, user))
    return client


async def get_text(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, await resp.text()


def metric(text: str, name: str) -> float:
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ")]
    assert values, f"no {name} in the metrics"
    return values[0]


async def test_one_room_when_many_join_a_new_name_at_once(cluster: Cluster) -> None:
    room = room_name()
    clients = [ConferenceClient() for _ in range(12)]
    await asyncio.gather(
        *(c.join(cluster.token(i % 2, room, f"u{i}")) for i, c in enumerate(clients))
    )
    try:
        assert len({c.room_id for c in clients}) == 1
        placed = [a for a, rooms in (await hosts(cluster)).items() if clients[0].room_id in rooms]
        assert len(placed) == 1, placed
        # Loaded on that agent only: every participant sees the eleven others.
        await eventually(
            lambda: all(len(c.participants) >= 11 for c in clients), 30, "everyone sees everyone"
        )
        for agent in cluster.agents:
            status, text = await get_text(agent.url + "/metrics")
            assert status == 200
            expected = 1.0 if agent.node_id == placed[0] else 0.0
            assert metric(text, "tessera_rooms") == expected, agent.name
    finally:
        await asyncio.gather(*(c.leave() for c in clients))


async def test_drain_sends_new_rooms_elsewhere_and_lets_rooms_finish(cluster: Cluster) -> None:
    first = await joined(cluster, 0, room_name(), "first")
    drained = await agent_of(cluster, first.room_id)
    other = next(a.node_id for a in cluster.agents if a.node_id != drained)
    later: list[ConferenceClient] = []
    try:
        done = cli(cluster, "agent", "drain", drained)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"{drained}: draining; 1 room(s) still hosted"
        listed = cli(cluster, "cluster", "status")
        assert listed.returncode == 0, listed.stderr
        assert any(drained in line and "draining" in line for line in listed.stdout.splitlines())

        # New rooms go to the other agent, through either portal.
        later = [await joined(cluster, i % 2, room_name(), f"new{i}") for i in range(4)]
        assert [await agent_of(cluster, c.room_id) for c in later] == [other] * 4
        # The drained agent's room carries on: someone joins it, media flows.
        second = await joined(cluster, 1, first.room_id or "", "second")
        later.append(second)
        assert second.room_id == first.room_id
        assert await agent_of(cluster, first.room_id) == drained
        publication = await first.publish(video=ColorVideoTrack(GREEN))
        await publication.wait_ready()
        await eventually(lambda: publication.id in second.streams, 30, "the stream at second")

        undone = cli(cluster, "agent", "drain", drained, "--undo")
        assert undone.returncode == 0, undone.stderr
        assert undone.stdout.strip() == f"{drained}: taking new rooms; 1 room(s) still hosted"
        # Open again: with the other agent drained now, the next new room is its.
        assert cli(cluster, "agent", "drain", other).returncode == 0
        try:
            fresh = await joined(cluster, 0, room_name(), "fresh")
            later.append(fresh)
            assert await agent_of(cluster, fresh.room_id) == drained
        finally:
            assert cli(cluster, "agent", "drain", other, "--undo").returncode == 0

        refused = cli(cluster, "agent", "drain", "agent-that-is-not-there")
        assert refused.returncode == 2
        assert "agent-that-is-not-there" in refused.stderr and "not running" in refused.stderr
    finally:
        await asyncio.gather(*(c.leave() for c in [first, *later]))


async def test_health_metrics_status_and_logs(cluster: Cluster) -> None:
    alice = await joined(cluster, 1, room_name(), "alice")
    try:
        agent = await agent_of(cluster, alice.room_id)
        for node in cluster.portals + cluster.agents:
            status, body = await get_text(node.url + "/healthz")
            assert status == 200 and json.loads(body)["status"] == "alive", node.name
        status, text = await get_text(cluster.portals[1].url + "/metrics")
        assert status == 200 and metric(text, "tessera_connections") >= 1
        hosting = next(a for a in cluster.agents if a.node_id == agent)
        status, text = await get_text(hosting.url + "/metrics")
        assert metric(text, "tessera_rooms") >= 1 and metric(text, "tessera_participants") >= 1

        # Status shows the load each agent reports every second.
        async def load_shown() -> dict[str, Any]:
            listed = cli(cluster, "cluster", "status", "--json")
            assert listed.returncode == 0, listed.stderr
            shown = json.loads(listed.stdout)
            assert {p["id"] for p in shown["portals"]} == {p.node_id for p in cluster.portals}
            mine = next(a for a in shown["agents"] if a["id"] == agent)
            assert alice.room_id in mine["hostedRooms"]
            assert mine["load"]["rooms"] >= 1 and mine["load"]["participants"] >= 1, mine
            # What the service runs there, and in the whole cluster (issue 16).
            assert mine["load"]["services"]["default"]["room"] >= 1, mine
            assert shown["services"]["default"]["room"] >= 1, shown["services"]
            return mine

        mine = await eventually(load_shown, 30, "the agent's load in cluster status")
        assert set(mine["load"]) >= {"rooms", "participants", "encoders", "cpu"}
        table = cli(cluster, "cluster", "status")
        assert table.returncode == 0, table.stderr
        lines = table.stdout.splitlines()
        services = lines.index(next(line for line in lines if line.startswith("service (agent)")))
        assert lines[services].split()[2:] == ["rooms", "recordings", "streaming-outs"]
        rows = {line.split()[0]: line.split()[1:] for line in lines[services + 1 :]}
        assert int(rows["default"][0]) >= 1 and int(rows[agent][0]) >= 1, table.stdout

        # Logs name the room and the agent: the agent's lines carry its node id, and the
        # portal's placement line names both.
        assert any(
            line.get("room") == alice.room_id and line.get("node") == agent
            for line in hosting.lines
        ), "no agent log line naming the room"
        portal_lines = cluster.portals[0].lines + cluster.portals[1].lines
        assert any(
            line.get("room") == alice.room_id and line.get("agent") == agent
            for line in portal_lines
        ), "no portal log line naming the room and its agent"
    finally:
        await alice.leave()


async def test_a_terminated_agent_drains_tells_its_clients_and_finalises_recordings(
    cluster: Cluster,
) -> None:
    # A stored room: its recordings are listed after it closed (an ad-hoc room's are not).
    status, created = await cluster.rest(0, "POST", "/v1/rooms", {"name": room_name()})
    assert status == 200, created
    alice = await joined(cluster, 0, created["id"], "alice")
    bob = await joined(cluster, 1, created["id"], "bob")
    agent_id = await agent_of(cluster, alice.room_id)
    agent = next(a for a in cluster.agents if a.node_id == agent_id)
    publication = await alice.publish(audio=ToneTrack(440), video=ColorVideoTrack(GREEN))
    await publication.wait_ready()
    media = {"audio": {"from": publication.id}, "video": {"from": publication.id}}
    path = f"/v1/rooms/{alice.room_id}/recordings"
    status, recording = await cluster.rest(0, "POST", path, {"media": media})
    assert status == 200, recording

    async def recorded() -> bool:
        status, info = await cluster.rest(0, "GET", f"{path}/{recording['id']}")
        assert status == 200, info
        return float(info.get("duration", 0)) >= 1.0

    await eventually(recorded, 30, "a second of media recorded")

    code = await asyncio.to_thread(agent.terminate)
    assert code == 0
    # Its participants are told, through their portals (a drop, then the connection ends).
    await eventually(lambda: alice.dropped.is_set() and bob.dropped.is_set(), 30, "both dropped")
    for portal in cluster.portals:
        assert any(
            line.get("reason") == "the media server is shutting down" for line in portal.lines
        ), portal.name
    # The recording was finalised (the room is no longer hosted: read from the store).
    status, info = await cluster.rest(0, "GET", f"{path}/{recording['id']}")
    assert status == 200 and info["state"] == "stopped", info
    assert "reason" not in info, info
    # The recording itself, not its timeline sidecar.
    files = list(cluster.directory.rglob(f"{recording['id']}.{recording['container']}"))
    assert files, f"no file of recording {recording['id']}"
    with av.open(str(files[0])) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames > 10, frames
    # No room left placed on the stopped agent.
    assert agent_id not in await hosts(cluster)
    await alice.leave()
    await bob.leave()

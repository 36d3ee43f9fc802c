"""`tessera cluster status` table and the launcher's plan (pure parts)."""

from __future__ import annotations

from pathlib import Path

from tessera.cluster.launcher import ClusterPlan, child_commands, redis_command
from tessera.cluster.placement import NodeInfo, NodeLoad
from tessera.cluster.status import ClusterStatus, format_status


def test_status_table_lists_every_node_with_its_rooms() -> None:
    status = ClusterStatus(
        nodes=[
            NodeInfo(id="portal-a", role="portal", url="http://127.0.0.1:8080", started=0.0),
            NodeInfo(
                id="agent-a", role="agent", started=0.0, load=NodeLoad(cpu=0.42, participants=9)
            ),
            NodeInfo(id="agent-b", role="agent", started=0.0, draining=True),
        ],
        rooms={"agent-a": ["svc/r1", "svc/r2"], "agent-b": []},
    )
    text = format_status(status, now=300.0)
    assert text.splitlines()[0] == "1 portal(s), 2 agent(s)"
    row = next(line for line in text.splitlines() if line.startswith("agent   agent-a"))
    assert "42%" in row and row.split()[-3:] == ["2", "9", "ok"]
    assert next(line for line in text.splitlines() if "agent-b" in line).endswith("draining")
    assert "2 room(s) hosted" in text.splitlines()
    assert text.splitlines()[-1] == "no service runs rooms, recordings or streaming-outs"
    assert status.to_json()["agents"][0]["hostedRooms"] == ["svc/r1", "svc/r2"]
    assert status.to_json()["services"] == {}


def test_status_shows_each_services_counts_per_agent_and_in_total() -> None:
    status = ClusterStatus(
        nodes=[
            NodeInfo(id="portal-a", role="portal", load=NodeLoad(services={"x": {"room": 9}})),
            NodeInfo(
                id="agent-a",
                role="agent",
                load=NodeLoad(services={"acme": {"room": 2, "recording": 1}, "zeta": {"room": 1}}),
            ),
            NodeInfo(
                id="agent-b",
                role="agent",
                load=NodeLoad(services={"acme": {"room": 1, "streaming-out": 3}}),
            ),
        ],
        rooms={"agent-a": ["r1", "r2", "r3"], "agent-b": ["r4"]},
    )
    # A portal hosts nothing: what it may report is not counted.
    assert status.to_json()["services"] == {
        "acme": {"recording": 1, "room": 3, "streaming-out": 3},
        "zeta": {"room": 1},
    }
    lines = format_status(status, now=10.0).splitlines()
    start = lines.index("4 room(s) hosted") + 1
    table = [line.split() for line in lines[start:]]
    assert table == [
        ["service", "(agent)", "rooms", "recordings", "streaming-outs"],
        ["acme", "3", "1", "3"],
        ["agent-a", "2", "1", "0"],
        ["agent-b", "1", "0", "3"],
        ["zeta", "1", "0", "0"],
        ["agent-a", "1", "0", "0"],
    ]


def test_plan_starts_m_portals_and_n_agents_on_counted_ports(tmp_path: Path) -> None:
    plan = ClusterPlan(portals=2, agents=3, port=9000, redis_port=7000, data_dir=tmp_path)
    names = [name for name, _ in child_commands(plan)]
    assert names == ["portal-1", "portal-2", "agent-1", "agent-2", "agent-3"]
    argv = dict(child_commands(plan))
    assert argv["portal-2"][-4:] == ["--host", "127.0.0.1", "--port", "9001"]
    assert argv["agent-3"][-2:] == ["--port", "9102"]
    assert all("redis://127.0.0.1:7000/0" in a for a in argv.values())
    redis = redis_command(plan, "/usr/bin/redis-server")
    assert redis[redis.index("--appendonly") + 1] == "yes"
    assert redis[redis.index("--dir") + 1] == str(tmp_path / "redis")


def test_plan_agent_ports_given_or_any(tmp_path: Path) -> None:
    given = ClusterPlan(agents=2, port=9000, agent_port=9500, data_dir=tmp_path)
    assert given.agent_ports() == [9500, 9501]
    anywhere = ClusterPlan(agents=2, port=9000, agent_port=0, data_dir=tmp_path)
    assert anywhere.agent_ports() == [0, 0]
    assert dict(child_commands(anywhere))["agent-2"][-2:] == ["--port", "0"]

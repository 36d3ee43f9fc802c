"""Placement selector: table-driven, pure (which agent takes a new room)."""

from __future__ import annotations

import pytest

from tessera.cluster.placement import NodeInfo, NodeLoad, can_take, select_agent


def agent(node_id: str, cpu: float = 0.0, rooms: int = 0, **kw: object) -> NodeInfo:
    max_rooms = int(kw.pop("max_rooms", 0))  # type: ignore[call-overload]
    draining = bool(kw.pop("draining", False))
    role = str(kw.pop("role", "agent"))
    return NodeInfo(
        id=node_id,
        role=role,
        draining=draining,
        load=NodeLoad(rooms=rooms, cpu=cpu, max_rooms=max_rooms),
    )


@pytest.mark.parametrize(
    ("agents", "rooms", "expected"),
    [
        # The least loaded by CPU.
        ([agent("a", cpu=0.6), agent("b", cpu=0.2)], {}, "b"),
        # Similar CPU (within a fifth of a core is noise): fewer rooms wins, counted live.
        ([agent("a", cpu=0.21), agent("b", cpu=0.25)], {"a": 3, "b": 1}, "b"),
        ([agent("a", cpu=0.05), agent("b", cpu=0.24)], {"a": 3, "b": 1}, "b"),
        ([agent("a", cpu=0.05), agent("b", cpu=0.26)], {"a": 3, "b": 1}, "a"),
        # Equal rooms: the less busy.
        ([agent("a", cpu=0.15), agent("b", cpu=0.05)], {"a": 1, "b": 1}, "b"),
        ([agent("a"), agent("b")], {"a": 1, "b": 1}, "a"),
        # Rooms against capacity count as load too.
        (
            [agent("a", cpu=0.3, max_rooms=4), agent("b", cpu=0.1, max_rooms=4)],
            {"a": 0, "b": 3},
            "a",
        ),
        # Draining agents, portals and full agents take nothing.
        ([agent("a", draining=True), agent("b", cpu=0.5)], {}, "b"),
        ([agent("p", role="portal"), agent("b", cpu=0.5)], {}, "b"),
        ([agent("a", max_rooms=2), agent("b", cpu=0.7)], {"a": 2}, "b"),
        ([agent("a", cpu=0.9), agent("b", cpu=0.95)], {}, None),
        ([], {}, None),
    ],
)
def test_select_agent(agents: list[NodeInfo], rooms: dict[str, int], expected: str | None) -> None:
    chosen = select_agent(agents, rooms)
    assert (chosen.id if chosen else None) == expected


def test_a_burst_of_rooms_spreads_over_idle_agents() -> None:
    agents = [agent("a"), agent("b"), agent("c")]
    rooms: dict[str, int] = {}
    for _ in range(30):
        chosen = select_agent(agents, rooms)
        assert chosen is not None
        rooms[chosen.id] = rooms.get(chosen.id, 0) + 1
    assert rooms == {"a": 10, "b": 10, "c": 10}


def test_cpu_is_judged_against_the_cores_a_node_has() -> None:
    two_cores = NodeInfo(id="x", role="agent", load=NodeLoad(cpu=1.2, cores=2.0))
    assert can_take(two_cores, 0)
    assert not can_take(NodeInfo(id="y", role="agent", load=NodeLoad(cpu=1.2)), 0)


def test_node_info_round_trips_through_json() -> None:
    info = NodeInfo(
        id="n1",
        role="agent",
        url="http://127.0.0.1:9000",
        host="box",
        started=12.5,
        draining=True,
        load=NodeLoad(rooms=2, participants=7, encoders=3, cpu=0.42, cores=1.0, max_rooms=8),
    )
    assert NodeInfo.from_json(info.to_json()) == info

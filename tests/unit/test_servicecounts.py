"""Per-service counts across agents: what an agent reports, what others trust of it."""

from __future__ import annotations

from collections import Counter

from tessera.cluster.placement import NodeInfo, NodeLoad
from tessera.cluster.servicecounts import (
    count_services,
    parse_service_counts,
    sum_service_counts,
)


def test_an_agent_reports_rooms_and_what_runs_per_service() -> None:
    running = Counter({("recording", "a"): 2, ("streaming-out", "b"): 1, ("recording", "c"): 0})
    assert count_services(running, ["a", "a", "b"]) == {
        "a": {"room": 2, "recording": 2},
        "b": {"room": 1, "streaming-out": 1},
    }


def test_reports_add_up_by_kind_and_service() -> None:
    total = sum_service_counts(
        [{"a": {"recording": 2, "room": 1}}, {"a": {"recording": 1}, "b": {"room": 3}}]
    )
    assert total == Counter({("recording", "a"): 3, ("room", "a"): 1, ("room", "b"): 3})


def test_a_report_round_trips_through_the_lease_record() -> None:
    load = NodeLoad(rooms=2, services={"a": {"room": 2, "recording": 1}})
    info = NodeInfo(id="agent-1", role="agent", load=load)
    assert NodeInfo.from_json(info.to_json()).load.services == load.services


def test_malformed_reports_keep_only_what_is_well_formed() -> None:
    assert parse_service_counts(None) == {}
    assert parse_service_counts(["a"]) == {}
    assert parse_service_counts(
        {
            "a": {"recording": 2, "room": -1, "bogus": 5, "streaming-out": True},
            "b": "many",
            "c": {"recording": 10**9, "room": 1.5},
            "d": {"room": 1},
        }
    ) == {"a": {"recording": 2}, "d": {"room": 1}}
    # An old agent without the field reports nothing per service.
    assert NodeLoad.from_json({"rooms": 1}).services == {}

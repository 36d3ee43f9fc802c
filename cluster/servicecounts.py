"""Per-service counts across a cluster's agents (pure).

Each agent reports, with its lease, what each service runs on it: rooms loaded,
recordings and streaming-outs running. Every agent sums the other live agents' reports
after each renewal, so that `[limits] rooms_per_service`, `recordings_per_service` and
`streaming_outs_per_service` hold for the whole cluster, not per agent.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

# What a report counts per service; the same words as the room service's counters.
KINDS = ("room", "recording", "streaming-out")
# A report is read from Redis, written by another process: bounded before it is trusted.
MAX_SERVICES = 10_000
MAX_COUNT = 1_000_000

ServiceCounts = dict[str, dict[str, int]]


def parse_service_counts(data: Any) -> ServiceCounts:
    """A node's reported counts, keeping only well-formed entries (service -> kind -> n)."""
    counts: ServiceCounts = {}
    if not isinstance(data, dict):
        return counts
    for service_id, kinds in list(data.items())[:MAX_SERVICES]:
        if not isinstance(service_id, str) or not isinstance(kinds, dict):
            continue
        kept = {
            kind: value
            for kind, value in kinds.items()
            if kind in KINDS
            and isinstance(value, int)
            and not isinstance(value, bool)
            and 0 < value <= MAX_COUNT
        }
        if kept:
            counts[service_id] = kept
    return counts


def count_services(running: Mapping[tuple[str, str], int], rooms: Iterable[str]) -> ServiceCounts:
    """This agent's report: ``running`` by (kind, service id), and one service id per room."""
    counts: ServiceCounts = {}
    for service_id in rooms:
        entry = counts.setdefault(service_id, {})
        entry["room"] = entry.get("room", 0) + 1
    for (kind, service_id), value in running.items():
        if kind in KINDS and value > 0:
            counts.setdefault(service_id, {})[kind] = value
    return counts


def sum_service_counts(reports: Iterable[ServiceCounts]) -> Counter[tuple[str, str]]:
    """The reports added up, by (kind, service id)."""
    total: Counter[tuple[str, str]] = Counter()
    for report in reports:
        for service_id, kinds in report.items():
            for kind, value in kinds.items():
                total[kind, service_id] += value
    return total

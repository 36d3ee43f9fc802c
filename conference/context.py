"""What every object of the ownership tree shares: settings, store, sessions, the router."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from tessera.webrtc_agent.agent import WebrtcAgent

from .background import SerialWork
from .events import ClientRouter
from .records import ConferenceStore
from .settings import ConferenceSettings

logger = logging.getLogger(__name__)


@dataclass
class ConferenceContext:
    """Handed down from the room service to services, rooms and participants."""

    settings: ConferenceSettings
    store: ConferenceStore
    agent: WebrtcAgent  # creates and indexes every client Transport
    router: ClientRouter  # events out, to the clients' front ends
    # Signs reconnection tickets: the store's, read when the room service starts.
    ticket_secret: bytes = b""
    # Records of recordings and streaming-outs, written in the order they changed.
    saves: SerialWork = field(default_factory=lambda: SerialWork("saving a record"))
    # How many recordings ("recording", state) and streaming-outs ("streaming-out", state)
    # ended in each state this run (they leave memory when they end).
    finished: Counter[tuple[str, str]] = field(default_factory=Counter)
    # How many recordings ("recording", service id) and streaming-outs ("streaming-out",
    # service id) run now, for the per-service limits.
    running: Counter[tuple[str, str]] = field(default_factory=Counter)
    # The same (and ("room", service id) for rooms loaded) on the other agents of a
    # cluster, from their last lease reports: the per-service limits count the cluster.
    # Empty in one process.
    running_elsewhere: Counter[tuple[str, str]] = field(default_factory=Counter)
    # A cluster agent's way to read running_elsewhere afresh (between its lease renewals)
    # before starting what a per-service limit guards; None in one process.
    count_elsewhere: Callable[[], Awaitable[None]] | None = None

    def running_in_cluster(self, kind: str, service_id: str) -> int:
        """Recordings or streaming-outs of a service running here and on other agents."""
        return self.running[kind, service_id] + self.running_elsewhere[kind, service_id]

    async def recount_elsewhere(self) -> None:
        """Read the other agents' counts now, if in a cluster (else, or failing, keep the
        last ones: a Redis that is down must not stop a recording)."""
        if self.count_elsewhere is None:
            return
        try:
            await self.count_elsewhere()
        except Exception as exc:
            logger.warning("other agents' counts not read (the last ones count): %s", exc)

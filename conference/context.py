"""What every object of the ownership tree shares: settings, store, sessions, the router."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from tessera.webrtc_agent.agent import WebrtcAgent

from .background import SerialWork
from .events import ClientRouter
from .records import ConferenceStore
from .settings import ConferenceSettings


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

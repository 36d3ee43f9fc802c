"""What the room service counts, as plain data for metrics and load reports (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ViewCounters:
    """One view's counters (seconds are thread CPU time; ``started`` is monotonic)."""

    id: str
    running: bool
    frames: int
    dropped: int
    composite_seconds: float
    encode_seconds: float
    started: float
    input_frames: int = 0  # decoded video frames its inputs delivered, all together
    # CPU seconds of the full mix's second Opus encode, with in-band FEC (for lossy subscribers).
    fec_encode_seconds: float = 0.0


@dataclass(frozen=True)
class RungCounters:
    """Adaptive subscribers of one view on one rung of its ladder (0 is the top)."""

    view: str
    rung: int
    resolution: str  # "640x360"
    subscribers: int
    switches: int  # rung switches of these subscribers so far


@dataclass(frozen=True)
class AudioCounters:
    """Subscribers of one view's audio on one encoding: "opus", or "opus+fec" (in-band FEC
    for a lossy link, tessera.webrtc_agent.adaptiveaudio)."""

    view: str
    encoding: str
    subscribers: int
    switches: int  # FEC switches (on or off) of these subscribers so far


@dataclass(frozen=True)
class ConferenceStats:
    """Rooms, participants, sessions, views, encoders and outputs of the room service now."""

    rooms: int = 0
    participants: int = 0
    publications: int = 0
    subscriptions: int = 0
    views: int = 0
    views_running: int = 0
    # One per view output format, one per forward stream's transcode.
    encoders: int = 0
    transports: dict[str, int] = field(default_factory=dict)  # by connection state
    # Of this run by state: running ones, and how many ended in each state.
    recordings: dict[str, int] = field(default_factory=dict)
    streaming_outs: dict[str, int] = field(default_factory=dict)
    view_counters: list[ViewCounters] = field(default_factory=list)
    rung_counters: list[RungCounters] = field(default_factory=list)
    audio_counters: list[AudioCounters] = field(default_factory=list)

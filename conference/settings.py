"""What the room service needs of the configuration, as one frozen value.

The configuration file and its loader belong to the process that runs the service
(``tessera.portal.config``); the assembly builds these settings from it, so the room
service depends on no front end and a test can build one by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tessera.mixer.overlay import allow_overlays


def _no_host() -> str:
    return "localhost"


@dataclass(frozen=True)
class ConferenceSettings:
    """Limits, media settings and directories of the room service (every field documented)."""

    # Where recordings are written (a folder per room) and HLS streaming-outs are served from.
    recording_dir: Path
    hls_dir: Path
    # Bytes recordings leave free on their disk, for the database beside them: a recording
    # does not start with less free and stops ("disk full") when it gets there. 0: none.
    recording_disk_reserve: int = 0
    # ``host:port`` clients connect to (join tokens, recordings' ``storage.host``); a
    # function because the port may be known only once the server listens.
    advertised_host: Callable[[], str] = field(default=_no_host)
    secure: bool = False  # join tokens tell clients to use TLS
    token_lifetime: float = 180.0
    single_use_tokens: bool = True
    # A participant whose connection is lost is kept this long at most (its client may ask
    # for less); reconnection tickets are valid this long.
    reconnection_keep: float = 60.0
    ticket_lifetime: float = 600.0
    text_max_length: int = 4096
    rooms_per_service: int = 1000
    # Recordings and streaming-outs running at once (each costs a muxer or pusher thread).
    recordings_per_room: int = 10
    recordings_per_service: int = 50
    streaming_outs_per_room: int = 10
    streaming_outs_per_service: int = 50
    publications_per_participant: int = 4
    subscriptions_per_participant: int = 32
    stun_servers: tuple[str, ...] = ()
    # A publication or subscription whose offer, ICE and DTLS are not done this long after
    # it was asked for fails (a progress error to its client).
    connect_timeout: float = 30.0
    keyframe_min_interval: float = 1.0
    # Forward transcodes one agent runs at once (0: 4 per core).
    max_transcodes: int = 0
    frame_timeout: float = 2.0
    max_mixed_talkers: int = 3
    # "module:Class" overlays that views may load besides the example (``[mixer] overlays``).
    overlays: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Room options are checked against the allowed overlays wherever they are parsed in
        # this process (REST, Socket.IO, agents): every process builds its settings first.
        allow_overlays(self.overlays)

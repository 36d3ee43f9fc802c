"""WebrtcAgent: the factory and registry of every client Transport."""

from __future__ import annotations

import asyncio
from typing import Any

from .transcodelimit import TranscodeLimit
from .transport import Transport, TransportObserver


class WebrtcAgent:
    """Creates Transports for participants and closes whatever is left at shutdown.

    A participant owns its transports; the agent only keeps the index that
    shutdown, metrics and leak checks need.
    """

    def __init__(
        self,
        *,
        stun_servers: list[str] | None = None,
        keyframe_min_interval: float = 1.0,
        max_transcodes: int = 0,
    ):
        self.stun_servers = list(stun_servers or [])
        self.keyframe_min_interval = keyframe_min_interval
        # Forward transcodes (other formats, adaptive rungs) running at once on this agent.
        self.transcodes = TranscodeLimit(max_transcodes)
        self.transports: dict[str, Transport] = {}
        # Subscribers are sent by the shared fan-out; the fan-out benchmark turns it off to
        # measure aiortc's own sender beside it (bench/fanout.py).
        self.shared_fanout = True

    def create_transport(
        self,
        transport_id: str,
        observer: TransportObserver,
        connect_timeout: float | None = None,
    ) -> Transport:
        """A new transport; its sessions fail if not connected within ``connect_timeout`` s."""
        transport = Transport(
            transport_id,
            observer,
            stun_servers=self.stun_servers,
            connect_timeout=connect_timeout,
            shared_fanout=self.shared_fanout,
        )
        self.transports[transport_id] = transport
        return transport

    async def close_transport(self, transport: Transport) -> None:
        self.transports.pop(transport.id, None)
        await transport.close()

    def stats(self) -> dict[str, Any]:
        return {
            "transports": len(self.transports),
            "transcodes": self.transcodes.running,
            "transcodeLimit": self.transcodes.limit,
            "transcodesRefused": self.transcodes.refused,
        }

    async def close(self) -> None:
        transports = list(self.transports.values())
        self.transports.clear()
        await asyncio.gather(*(t.close() for t in transports), return_exceptions=True)

"""RoomHost: where the room service asks before it hosts a room, and says when it stops.

One process hosts every room it loads (:class:`LocalHost`). An agent of a cluster hosts
a room only while the cluster's placement names it (``tessera.cluster``): it claims the
room when it loads it, and releases it when the room closes, so no two agents ever host
the same room.
"""

from __future__ import annotations

from typing import Protocol


class RoomHost(Protocol):
    """Asked when a room loads (claim) and told when it closes (release)."""

    async def claim(self, service_id: str, room_id: str, name: str, persistent: bool) -> None:
        """Host this room here, or raise ConferenceError saying why not (it is hosted
        elsewhere)."""
        ...

    async def release(self, service_id: str, room_id: str, name: str, persistent: bool) -> None:
        """The room closed here."""
        ...


class LocalHost:
    """The one process of the embedded default hosts every room."""

    async def claim(self, service_id: str, room_id: str, name: str, persistent: bool) -> None:
        return None

    async def release(self, service_id: str, room_id: str, name: str, persistent: bool) -> None:
        return None

"""Events out of the room service: a client address, the router that reaches it.

The room service never calls a front end. It hands ``(event, data)`` for a participant
to a :class:`ClientRouter` with the participant's :class:`ClientAddress` (plain data:
which front end, and that front end's key for the client). In one process the router is
a :class:`LocalRouter`, a dict of the front ends that registered; in a cluster a router
that carries the same calls over a bus stands in its place, behind the same interface.

Events and their data are the Client-Portal protocol's pushes, in its newest form
(``participant``, ``stream``, ``progress``, ``text``), plus ``transport`` ``{id,
status: "closed", reason}`` when a transport ends on its own (the peer model hangs up
its call; OWT's protocol has no such push, so the Socket.IO portal does not forward it).
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

logger = logging.getLogger(__name__)

# The one event that is not a Client-Portal push (see the module docstring).
TRANSPORT_EVENT = "transport"


class ClientAddress(BaseModel):
    """Where a participant's client is reached: a front end's name and its key there."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    front_end: str = Field(min_length=1, max_length=64)
    key: str = Field(min_length=1, max_length=256)
    # The process holding the client in a cluster (its bus node id); "" in one process.
    node: str = Field(default="", max_length=128)


class FrontEnd(Protocol):
    """A front end as the router reaches it (the portal, the room peer, ...)."""

    def deliver(self, key: str, event: str, data: Any) -> None:
        """Send ``event`` to the client ``key`` (without waiting for it to be sent)."""
        ...

    def disconnect(
        self, key: str, reason: str, *, notify: bool = True, rejoin: str | None = None
    ) -> None:
        """End the client's session: the participant was removed (dropped, its room closed),
        or (``notify`` False, the client is not told) its client came back elsewhere.
        ``rejoin``: a fresh join token for the same seat, when the client may join again at
        once (its room's media server died); a front end that can hands it to the client."""
        ...


class ClientRouter(Protocol):
    """What the room service calls to reach clients."""

    def deliver(self, address: ClientAddress, event: str, data: Any) -> None: ...

    def disconnect(
        self, address: ClientAddress, reason: str, *, notify: bool = True, rejoin: str | None = None
    ) -> None: ...


class LocalRouter:
    """The router of one process: front ends register under their name.

    A front end that raises does not stop the room service: the failure is logged.
    """

    def __init__(self) -> None:
        self._front_ends: dict[str, FrontEnd] = {}

    def register(self, name: str, front_end: FrontEnd) -> None:
        self._front_ends[name] = front_end

    def _front_end(self, address: ClientAddress) -> FrontEnd | None:
        front_end = self._front_ends.get(address.front_end)
        if front_end is None:
            logger.warning(
                "no front end %r for a client, event dropped",
                address.front_end,
                extra={"front_end": address.front_end},
            )
        return front_end

    def deliver(self, address: ClientAddress, event: str, data: Any) -> None:
        front_end = self._front_end(address)
        if front_end is None:
            return
        try:
            front_end.deliver(address.key, event, data)
        except Exception:
            logger.exception("front end failed to deliver %s", event, extra={"event": event})

    def disconnect(
        self, address: ClientAddress, reason: str, *, notify: bool = True, rejoin: str | None = None
    ) -> None:
        front_end = self._front_end(address)
        if front_end is None:
            return
        try:
            front_end.disconnect(address.key, reason, notify=notify, rejoin=rejoin)
        except Exception:
            logger.exception("front end failed to disconnect a client", extra={"reason": reason})

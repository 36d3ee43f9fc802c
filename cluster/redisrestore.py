"""RedisRestore: what a Redis that restarted empty forgot, written back by the processes
that know it.

A Redis without persistence comes back from a restart empty (``tessera cluster up`` runs
it with an append-only file, so there this never happens). The cluster's processes hold
part of what it knew and write it back after each lease renewal if it is missing:

- the reconnection-ticket secret: every process read the same one at start, so tickets
  issued before the restart stay good on every portal and agent;
- the configured service and its default room (a portal, from its configuration, as at
  start): tokens of that service are accepted again;
- the names of the ad-hoc rooms an agent runs: a name still means the room its
  participants are in, not a new one.

Placement is claimed again by each agent itself (:class:`~.agent.AgentNode`). What only
Redis knew is gone: services and stored rooms made over REST, finished recordings'
records, which tokens were used.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from tessera.conference.records import DefaultService, StoreUnavailable, bootstrap_service

from .redisstore import RedisStore

logger = logging.getLogger(__name__)

# (service id, room id, name) of each running ad-hoc room.
AdhocRooms = Callable[[], list[tuple[str, str, str]]]


class RedisRestore:
    """Writes back one process's share of the cluster's state (module docstring)."""

    def __init__(
        self,
        store: RedisStore,
        secret: Callable[[], bytes],
        *,
        service: DefaultService | None = None,
        adhoc_rooms: AdhocRooms | None = None,
        node: str = "",
    ) -> None:
        self.store = store
        self.secret = secret
        self.service = service
        self.adhoc_rooms = adhoc_rooms
        self.node = node

    async def restore(self) -> None:
        """Write back what is missing (a few round trips when nothing is); a Redis that
        fails meanwhile is retried at the next renewal."""
        try:
            await self._restore()
        except StoreUnavailable as exc:
            logger.warning("cluster state not restored yet: %s", exc, extra={"node": self.node})

    async def _restore(self) -> None:
        secret = self.secret()
        if secret and await self.store.restore_ticket_secret(secret):
            logger.warning(
                "Redis had no ticket secret (restarted empty?): wrote back this process's",
                extra={"node": self.node},
            )
        if self.service is not None and await self.store.get_service(self.service.id) is None:
            await bootstrap_service(self.store, self.service)
            logger.warning(
                "configured service missing in Redis (restarted empty?): written again",
                extra={"node": self.node, "service": self.service.id},
            )
        for service_id, room_id, name in self.adhoc_rooms() if self.adhoc_rooms else []:
            named = await self.store.restore_adhoc_room(service_id, name, room_id)
            if named != room_id:
                # Someone made a new room of that name while Redis had forgotten this one.
                logger.warning(
                    "ad-hoc room name taken by another room meanwhile",
                    extra={"node": self.node, "room": room_id, "service": service_id},
                )

"""Participant: one logged-in client, its transports, publications and subscriptions."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from tessera.portal.legacy import CURRENT, downgrade_notification
from tessera.webrtc_agent.publication import Publication
from tessera.webrtc_agent.subscription import Subscription
from tessera.webrtc_agent.transport import Session, Transport

from .background import spawn
from .errors import ConferenceError

if TYPE_CHECKING:
    from .room import Room

logger = logging.getLogger(__name__)

Emit = Callable[[str, str, Any], Coroutine[Any, Any, None]]

# Notifications kept for a client that is away; older ones are dropped first.
MAX_QUEUED_NOTIFICATIONS = 1000


class Participant:
    """A client in a room. Parent of its Transports; its sessions live on them.

    While the client's Socket.IO connection is away (network drop), the
    participant keeps its id, transports and sessions and queues the
    notifications it misses, numbered by `seq`, for `relogin` to replay.
    """

    def __init__(
        self,
        participant_id: str,
        user: str,
        role: str,
        permission: dict[str, Any],
        room: Room,
        emit: Emit,
    ) -> None:
        self.id = participant_id
        self.user = user
        self.role = role
        self.permission = permission
        self.room = room
        self._emit = emit
        self.sid: str | None = None
        self.transports: dict[str, Transport] = {}
        self.publications: dict[str, Publication] = {}
        self.subscriptions: dict[str, Subscription] = {}
        self.seq = 0
        self.missed: list[dict[str, Any]] = []
        self.away_timer: asyncio.TimerHandle | None = None
        self.ticket_id: str | None = None
        self.keep_time = 0.0  # seconds kept after a lost connection (0: removed at once)
        self.protocol = CURRENT  # the Client-Portal protocol its pushes are written in
        self.closed = False

    @property
    def log_ids(self) -> dict[str, str]:
        """The ids a log line about this participant carries."""
        return {"room": self.room.id, "participant": self.id}

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "user": self.user, "role": self.role}

    def rest_info(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "role": self.role,
            "user": self.user,
            "permission": self.permission,
            "publications": [{"id": p, "type": "webrtc"} for p in self.publications],
            "subscriptions": [{"id": s, "type": "webrtc"} for s in self.subscriptions],
        }

    # -- limits -----------------------------------------------------------

    def check_publication_limit(self, limit: int) -> None:
        """ConferenceError if the participant already publishes ``limit`` streams."""
        if len(self.publications) >= limit:
            raise ConferenceError(f"Too many publications (at most {limit} per participant)")

    def check_subscription_limit(self, limit: int) -> None:
        """ConferenceError if the participant already holds ``limit`` subscriptions."""
        if len(self.subscriptions) >= limit:
            raise ConferenceError(f"Too many subscriptions (at most {limit} per participant)")

    # -- notifications --------------------------------------------------

    def notify(self, event: str, data: Any = None) -> None:
        """Push `event` to the client now, or queue it while the client is away."""
        if self.closed:
            return
        data = downgrade_notification(self.protocol, event, data)
        self.seq += 1
        if self.sid is None:
            self.missed.append({"event": event, "data": data, "seq": self.seq})
            del self.missed[:-MAX_QUEUED_NOTIFICATIONS]
            return
        spawn(self._emit(event, self.sid, data), f"notification {event}")

    def take_missed(self) -> list[dict[str, Any]]:
        missed, self.missed = self.missed, []
        return missed

    # -- TransportObserver ----------------------------------------------

    def transport_progress(self, transport: Transport, message: dict[str, Any]) -> None:
        self.notify("progress", message)

    def session_ready(self, session: Session) -> None:
        if isinstance(session, Publication):
            spawn(self._announce(session), "announcing a stream")
        else:
            self._notify_ready(session)

    async def _announce(self, publication: Publication) -> None:
        # Wait briefly for the first keyframe so the StreamInfo carries the
        # resolution; the publisher hears "ready" once others can subscribe.
        await publication.stream.first_media(timeout=1.0)
        if not publication.closed and publication.id in self.publications:
            self.room.publication_ready(self, publication)
            self._notify_ready(publication)

    def _notify_ready(self, session: Session) -> None:
        self.notify(
            "progress", {"id": session.transport.id, "sessionId": session.id, "status": "ready"}
        )

    def session_failed(self, session: Session, reason: str) -> None:
        logger.info("session failed: %s", reason, extra={**self.log_ids, "session": session.id})
        self.notify(
            "progress",
            {
                "id": session.transport.id,
                "sessionId": session.id,
                "status": "error",
                "data": reason,
            },
        )
        self.end_session(session.id)

    def transport_failed(self, transport: Transport) -> None:
        logger.info("transport failed", extra={**self.log_ids, "transport": transport.id})
        for session in list(transport.sessions.values()):
            self.end_session(session.id)
        self.transports.pop(transport.id, None)
        spawn(self.room.server.agent.close_transport(transport), "closing a transport")

    # -- sessions -------------------------------------------------------

    def end_session(self, session_id: str) -> bool:
        """Unpublish or unsubscribe `session_id`; False if it is not ours."""
        publication = self.publications.pop(session_id, None)
        if publication is not None:
            publication.close()
            self.room.remove_stream(session_id)
            return True
        subscription = self.subscriptions.pop(session_id, None)
        if subscription is not None:
            subscription.close()
            return True
        return False

    async def close(self) -> None:
        """Idempotent: ends every session and closes every transport."""
        if self.closed:
            return
        self.closed = True
        if self.away_timer is not None:
            self.away_timer.cancel()
            self.away_timer = None
        for session_id in list(self.publications) + list(self.subscriptions):
            self.end_session(session_id)
        transports = list(self.transports.values())
        self.transports.clear()
        for transport in transports:
            await self.room.server.agent.close_transport(transport)

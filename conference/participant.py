"""Participant: one logged-in client, its transports, publications and subscriptions."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol

from tessera.webrtc_agent.publication import Publication
from tessera.webrtc_agent.subscription import Subscription
from tessera.webrtc_agent.transport import Session, Transport

from .background import spawn
from .context import ConferenceContext
from .errors import ConferenceError
from .events import TRANSPORT_EVENT, ClientAddress
from .linkquality import LinkFigures, ReceivedLoss, worst
from .subscriptionview import subscription_link, subscription_view

logger = logging.getLogger(__name__)

# Notifications kept for a client that is away; older ones are dropped first.
MAX_QUEUED_NOTIFICATIONS = 1000


class ParticipantRoom(Protocol):
    """What a participant tells its room (the Room; a protocol keeps the import one-way)."""

    @property
    def id(self) -> str: ...

    @property
    def service_id(self) -> str: ...

    def publication_ready(self, participant: Participant, publication: Publication) -> None: ...

    def remove_stream(self, stream_id: str) -> None: ...


class Participant:
    """A client in a room. Parent of its Transports; its sessions live on them.

    Its client is reached at ``address`` through the router. While the client's
    connection is away (``address`` is None), the participant keeps its id,
    transports and sessions and queues the notifications it misses, numbered by
    ``seq``, for relogin to replay.
    """

    def __init__(
        self,
        participant_id: str,
        user: str,
        role: str,
        permission: dict[str, Any],
        room: ParticipantRoom,
        context: ConferenceContext,
        address: ClientAddress | None,
    ) -> None:
        self.id = participant_id
        self.user = user
        self.role = role
        self.permission = permission
        self.room = room
        self._context = context
        self.address = address
        self.transports: dict[str, Transport] = {}
        self.publications: dict[str, Publication] = {}
        self.subscriptions: dict[str, Subscription] = {}
        self.seq = 0
        self.missed: list[dict[str, Any]] = []
        self.away_timer: asyncio.TimerHandle | None = None
        self.ticket_id: str | None = None
        self.keep_time = 0.0  # seconds kept after a lost connection (0: removed at once)
        self.protocol = "1.2"  # the client's protocol version, for its front end
        self.closed = False
        # The loss of what each publication sends, measured when asked (link_figures).
        self._received_loss: dict[str, ReceivedLoss] = {}

    @property
    def log_ids(self) -> dict[str, str]:
        """The ids a log line about this participant carries."""
        return {"room": self.room.id, "participant": self.id}

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "user": self.user, "role": self.role}

    def detail(self) -> dict[str, Any]:
        """OWT's ParticipantDetail ``{id, user, role, permission}``, and Tessera's
        ``subscriptions`` (its webrtc subscriptions with their estimates; subscriptionview.py)."""
        return {
            **self.describe(),
            "permission": self.permission,
            "subscriptions": [subscription_view(s) for s in self.subscriptions.values()],
        }

    def link_figures(self) -> LinkFigures:
        """The worst figures of the participant's measured paths (linkquality.py): its
        adapted subscriptions' estimates and the loss of what its publications send."""
        measured = [subscription_link(s) for s in self.subscriptions.values()]
        now = time.monotonic()
        meters = {p: self._received_loss.get(p) or ReceivedLoss() for p in self.publications}
        self._received_loss = meters  # those of ended publications go
        for publication_id, meter in meters.items():
            meter.update(now, *self.publications[publication_id].received_counts())
            measured.append(meter.figures())
        return worst(f for f in measured if f is not None)

    # -- limits and permissions ------------------------------------------

    def may(self, action: str, kind: str) -> bool:
        """Whether the participant's permission lets it ``publish``/``subscribe`` ``kind``."""
        allowed = self.permission.get(action)
        return bool(allowed.get(kind)) if isinstance(allowed, dict) else False

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
        """Send `event` to the client now, or queue it while the client is away."""
        if self.closed:
            return
        if event == TRANSPORT_EVENT:
            # For the front end that holds the client's session, now or never (not a push
            # a client could be replayed).
            if self.address is not None:
                self._context.router.deliver(self.address, event, data)
            return
        self.seq += 1
        if self.address is None:
            self.missed.append({"event": event, "data": data, "seq": self.seq})
            del self.missed[:-MAX_QUEUED_NOTIFICATIONS]
            return
        self._context.router.deliver(self.address, event, data)

    def take_missed(self) -> list[dict[str, Any]]:
        missed, self.missed = self.missed, []
        return missed

    # -- transports -------------------------------------------------------

    def transport(self, transport_id: str | None, new_id: str) -> tuple[Transport, bool]:
        """The transport ``transport_id``, or a new one with the id ``new_id`` if that is None.

        The flag says whether it is new. ConferenceError if the participant has no such one.
        """
        if transport_id is not None:
            transport = self.transports.get(transport_id)
            if transport is None:
                raise ConferenceError("Transport does NOT exist")
            return transport, False
        transport = self._context.agent.create_transport(
            new_id, self, connect_timeout=self._context.settings.connect_timeout
        )
        self.transports[transport.id] = transport
        return transport, True

    async def close_transport(self, transport: Transport, reason: str) -> None:
        """End the transport's sessions and close it (idempotent)."""
        for session in list(transport.sessions.values()):
            self.end_session(session.id)
        if self.transports.pop(transport.id, None) is not None:
            logger.info(
                "transport closed: %s", reason, extra={**self.log_ids, "transport": transport.id}
            )
        await self._context.agent.close_transport(transport)

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
        """The session ends; its client hears why (``progress`` ``error`` with the reason)."""
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
        reason = f"the peer connection is {transport.pc.connectionState}"
        logger.info("transport failed", extra={**self.log_ids, "transport": transport.id})
        for session in list(transport.sessions.values()):
            self.end_session(session.id)
        self.transports.pop(transport.id, None)
        self.notify(TRANSPORT_EVENT, {"id": transport.id, "status": "closed", "reason": reason})
        spawn(self._context.agent.close_transport(transport), "closing a transport")

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

    async def close(self, reason: str) -> None:
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
            await self._context.agent.close_transport(transport)
        logger.debug("participant closed: %s", reason, extra=self.log_ids)

"""Room events across processes: the agent's ClientRouter, the portal's receiving end.

An agent hosts rooms but holds no client connection: every :class:`ClientAddress` it is
given names the portal node holding the client (``address.node``). :class:`BusRouter`
posts each event (and each end of a session) to that node over the bus, in the order
the room produced them (the bus sends everything of a node through one queue, replies
included, so an answer to ``publish`` reaches the portal before the events that follow
it). On the portal, :func:`client_message_handler` hands them to its
:class:`~tessera.conference.events.LocalRouter`, as if the room were in-process.
"""

from __future__ import annotations

import logging
from typing import Any

import pydantic

from tessera.conference.events import ClientAddress, LocalRouter

from .bus import Bus, MessageHandler

logger = logging.getLogger(__name__)

DELIVER = "client.deliver"
DISCONNECT = "client.disconnect"


class BusRouter:
    """The ClientRouter of an agent: events go to the portal node holding the client."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    def _node_of(self, address: ClientAddress) -> str | None:
        if not address.node:
            # A client without a portal node cannot be reached from an agent: a bug upstream.
            logger.error(
                "client address without a portal node, event dropped",
                extra={"front_end": address.front_end},
            )
            return None
        return address.node

    def deliver(self, address: ClientAddress, event: str, data: Any) -> None:
        node = self._node_of(address)
        if node is not None:
            body = {"address": address.model_dump(), "event": event, "data": data}
            self.bus.post(node, DELIVER, body)

    def disconnect(
        self, address: ClientAddress, reason: str, *, notify: bool = True, rejoin: str | None = None
    ) -> None:
        node = self._node_of(address)
        if node is not None:
            body = {"address": address.model_dump(), "reason": reason, "notify": notify}
            if rejoin is not None:
                body["rejoin"] = rejoin
            self.bus.post(node, DISCONNECT, body)


def client_message_handler(
    router: LocalRouter, fallback: MessageHandler | None = None
) -> MessageHandler:
    """The portal's handler of the bus messages :class:`BusRouter` sends (others go to
    ``fallback``). A malformed message is logged and dropped."""

    def handle(kind: str, body: Any, sender: str) -> None:
        if kind not in (DELIVER, DISCONNECT):
            if fallback is not None:
                fallback(kind, body, sender)
            else:
                logger.warning("unexpected bus message %r dropped", kind, extra={"from": sender})
            return
        try:
            if not isinstance(body, dict):
                raise TypeError("not an object")
            address = ClientAddress.model_validate(body.get("address"))
            if kind == DELIVER:
                router.deliver(address, str(body["event"]), body.get("data"))
            else:
                rejoin = body.get("rejoin")
                router.disconnect(
                    address,
                    str(body["reason"]),
                    notify=bool(body.get("notify")),
                    rejoin=rejoin if isinstance(rejoin, str) else None,
                )
        except (pydantic.ValidationError, TypeError, KeyError) as exc:
            logger.warning("malformed %s from %s dropped: %s", kind, sender, exc)

    return handle

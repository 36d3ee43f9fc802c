"""ClusterRooms: the room service as a portal of a cluster sees it.

A portal holds no room. It keeps the front ends' interface (the room service's API) and
routes each call:

- **participant calls** (``publish``, ``signaling``, ``text``...) go to the agent hosting
  the participant's room (``ref.room_id``), found in the placement;
- **join** resolves the room (a stored room by id or name, or an ad-hoc room, whose name
  the store gives one id cluster-wide), places it on an agent (atomically: never two),
  and joins there; **relogin** (``back``) reads the room from the reconnection ticket;
- **management calls on a room** go to its agent while it is hosted, and are answered
  from the store when it is not (stored options, finished recordings, no participants);
- **services, tokens, stored rooms** are answered here, from the store every process
  shares.

Every client address leaving the portal names this portal's node, so the agent's events
come back here. A call whose agent is gone or silent fails within the bus timeout with a
clear error ("The room's media server is not answering; try again"), never a hang.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tessera.conference.errors import ConferenceError, ErrorCode
from tessera.conference.events import ClientAddress, LocalRouter
from tessera.conference.management import room_json
from tessera.conference.records import ConferenceStore
from tessera.conference.requests import (
    BackResult,
    JoinRequest,
    JoinResult,
    ParticipantInfo,
    ParticipantRef,
    PerStreamRecordingRequest,
    PublishRequest,
    RecordingRequest,
    SessionResult,
    SignalingRequest,
    StreamControlRequest,
    StreamingOutRequest,
    SubscribeRequest,
    SubscriptionControlRequest,
    TextRequest,
)
from tessera.conference.roomoptions import RoomOptions
from tessera.conference.roomservice import LOGOUT, RoomService
from tessera.conference.settings import ConferenceSettings
from tessera.conference.streaminginrequest import StreamingInRequest
from tessera.conference.tokens import TokenError, verify_ticket

from .agent import RECORDING_LOST
from .bus import Bus, BusError, BusUnavailable
from .busrouter import DISCONNECT, client_message_handler
from .nodes import live_nodes
from .redisstore import RedisStore
from .roomplacement import NoAgentAvailable, RoomPlacement
from .rpc import MethodTable, RpcClient

logger = logging.getLogger(__name__)

ROOMS_PREFIX = "rooms."

# Calls naming a participant (ParticipantRef first): to the agent of its room.
PARTICIPANT_CALLS = (
    "leave",
    "away",
    "refresh_ticket",
    "room_info",
    "publish",
    "subscribe",
    "unpublish",
    "unsubscribe",
    "signaling",
    "close_transport",
    "stream_control",
    "subscription_control",
    "text",
    "connection_quality",
)
# Management calls on one room (service id, room id or name first): to its agent if hosted.
ROOM_CALLS = (
    "get_room",
    "update_room",
    "delete_room",
    "list_participants",
    "get_participant",
    "update_permission",
    "drop_participant",
    "list_streams",
    "get_stream",
    "patch_stream",
    "delete_stream",
    "start_recording",
    "list_recordings",
    "get_recording",
    "patch_recording",
    "stop_recording",
    "recording_file",
    "start_streaming_out",
    "list_streaming_outs",
    "get_streaming_out",
    "patch_streaming_out",
    "stop_streaming_out",
    "start_per_stream_recording",
    "list_streaming_ins",
    "get_streaming_in",
    "remove_streaming_in",
)
# A call that loads the room where it is hosted, or places it on an agent (as a join does).
PLACING_CALLS = ("add_streaming_in",)
# Calls naming a room by id (the web app's): to its agent if hosted.
ROOM_ID_CALLS = ("set_view_template", "record_view", "view_template")
# What an agent answers over the bus.
AGENT_CALLS = (
    "join",
    "back",
    "participant_of_ticket",
    "delete_service",
    *PARTICIPANT_CALLS,
    *ROOM_CALLS,
    *ROOM_ID_CALLS,
    *PLACING_CALLS,
)

NOT_ANSWERING = "The room's media server is not answering; try again"
UNREACHABLE = "The cluster is unreachable (its Redis is down); try again"


def agent_table() -> MethodTable:
    """The room-service methods a portal may call on an agent."""
    return MethodTable(RoomService, AGENT_CALLS, errors=[TokenError])


# Why a portal ends the sessions of a room whose agent stopped (clients may join again).
AGENT_LOST = "the room's media server stopped; join again"


@dataclass(frozen=True)
class Seat:
    """Who a client of this portal is in its room, to give it a token to join again."""

    service_id: str
    user: str
    role: str


def _unavailable(message: str) -> ConferenceError:
    return ConferenceError(message, ErrorCode.CLOUD, 503)


class NoRoomsHere:
    """The RoomHost of a portal: rooms are hosted by agents, never here."""

    async def claim(self, service_id: str, room_id: str, name: str, persistent: bool) -> None:
        raise _unavailable("Rooms are hosted by the cluster's media servers, not by a portal")

    async def release(self, service_id: str, room_id: str, name: str, persistent: bool) -> None:
        return None


class ClusterRooms(RoomService):
    """A portal's room service (module docstring): a room service without rooms of its
    own, whose calls about rooms go to their agents."""

    def __init__(
        self, settings: ConferenceSettings, store: ConferenceStore, router: LocalRouter, bus: Bus
    ) -> None:
        super().__init__(settings, store, router, NoRoomsHere())
        self.bus = bus
        self.placement = RoomPlacement(bus.redis)
        self.rpc = RpcClient(bus, agent_table(), ROOMS_PREFIX)
        # The clients of this portal in each room, and the agent they joined it on: when
        # that agent stops hosting the room they are told (check_agents).
        self._clients: dict[str, dict[ParticipantRef, ClientAddress]] = {}
        self._room_agents: dict[str, str] = {}
        self._refs: dict[ClientAddress, ParticipantRef] = {}
        self._seats: dict[ParticipantRef, Seat] = {}
        self._deliver = client_message_handler(router)
        # Rooms with recordings stored as running and no live host at the last sweep.
        self._hostless: set[tuple[str, str]] = set()

    async def start(self, *, only_process: bool = False) -> None:
        """Read the ticket secret; never clean up as the only process would (other
        processes' rooms and recordings are running)."""
        await super().start(only_process=False)

    def client_message(self, kind: str, body: Any, sender: str) -> None:
        """The portal's bus messages: agents' events for its clients (a client the agent
        ended is no longer this portal's to watch)."""
        if kind == DISCONNECT and isinstance(body, dict):
            try:
                ref = self._refs.get(ClientAddress.model_validate(body.get("address")))
            except ValueError:
                ref = None
            if ref is not None:
                self._untrack(ref)
        self._deliver(kind, body, sender)

    # -- clients of rooms whose agent stopped -------------------------------------------

    def _track(
        self, ref: ParticipantRef, client: ClientAddress, agent: str, seat: Seat | None
    ) -> None:
        self._clients.setdefault(ref.room_id, {})[ref] = client
        self._room_agents[ref.room_id] = agent
        self._refs[client] = ref
        if seat is not None:
            self._seats[ref] = seat

    def _untrack(self, ref: ParticipantRef) -> None:
        self._seats.pop(ref, None)
        clients = self._clients.get(ref.room_id)
        if clients is not None:
            client = clients.pop(ref, None)
            if client is not None:
                self._refs.pop(client, None)
            if not clients:
                del self._clients[ref.room_id]
                self._room_agents.pop(ref.room_id, None)

    async def check_agents(self, settled: bool = True) -> None:
        """End the sessions of this portal's clients whose room's agent is gone (its lease
        lapsed) or changed (the room was placed again): they are told why, with a fresh
        join token for the same seat, so that they may join again at once (the room is
        placed on a live agent then). The lost agent's recordings of the room are marked
        failed. Runs after each lease renewal (every second). Until Redis has been
        reachable for a whole lease (``settled``), a room without an agent is not taken as
        gone: a Redis that restarted empty knows no agent until each renews and claims
        again."""
        for room_id, joined_on in list(self._room_agents.items()):
            try:
                agent = await self.placement.agent_of(room_id)
            except Exception:
                return  # Redis is down: nothing can be told apart now
            if agent == joined_on or (agent is None and not settled):
                continue
            clients = self._clients.pop(room_id, {})
            self._room_agents.pop(room_id, None)
            seats = {ref: self._seats.pop(ref, None) for ref in clients}
            for client in clients.values():
                self._refs.pop(client, None)
            logger.warning(
                "room's agent stopped: ending %d sessions here",
                len(clients),
                extra={"room": room_id, "agent": joined_on},
            )
            for ref, client in clients.items():
                seat = seats[ref]
                rejoin = await self._rejoin_token(room_id, seat) if seat is not None else None
                self.router.disconnect(client, AGENT_LOST, notify=True, rejoin=rejoin)
            services = {seat.service_id for seat in seats.values() if seat is not None}
            for service_id in sorted(services):
                await self._fail_lost_recordings(service_id, room_id, joined_on)

    async def sweep_lost_recordings(self) -> list[tuple[str, str]]:
        """Mark failed the recordings stored as running whose room no live agent hosts on
        this sweep and the one before (the portal runs it every lease period, once Redis
        has settled). They are those of an agent that died with nobody in the room on any
        portal to notice (``check_agents`` covers rooms with clients here; an agent
        covers a room placed on it again). Two sweeps in a row, because a room that closes
        releases its placement a moment before its recordings' stop is stored. Each is
        marked once whichever portal sweeps first; the (service, room) pairs swept now."""
        if not isinstance(self.store, RedisStore):
            return []
        try:
            running = await self.store.running_recordings()
            rooms = {(service_id, room_id) for _, service_id, room_id, _ in running}
            hostless = {key for key in rooms if await self.placement.agent_of(key[1]) is None}
        except Exception as exc:  # Redis down: the next sweep looks again
            logger.warning("lost recordings not swept: %s", exc)
            return []
        lost = sorted(hostless & self._hostless)
        self._hostless = hostless
        for service_id, room_id in lost:
            await self._fail_lost_recordings(service_id, room_id, "")
        return lost

    async def _rejoin_token(self, room_id: str, seat: Seat) -> str | None:
        """A single-use join token for the same user, role, service and room (by id), or
        None if none can be issued now (the client is told the reason alone)."""
        try:
            issued = await self.issue_token(
                seat.service_id, room_id, seat.user, seat.role, adhoc=True
            )
        except Exception as exc:  # the room or service was deleted, Redis is down, ...
            logger.warning(
                "no token to join again: %s", exc, extra={"room": room_id, "user": seat.user}
            )
            return None
        return issued.token

    async def _fail_lost_recordings(self, service_id: str, room_id: str, agent: str) -> None:
        if not isinstance(self.store, RedisStore):
            return
        try:
            failed = await self.store.fail_lost_recordings(service_id, room_id, RECORDING_LOST)
        except Exception as exc:  # the agent hosting the room next marks them
            logger.warning(
                "recordings of a lost agent not marked failed: %s", exc, extra={"room": room_id}
            )
            return
        if failed:
            logger.warning(
                "%d recordings of the room's lost media server marked failed",
                len(failed),
                extra={"room": room_id, "agent": agent or "unknown", "recordings": failed},
            )

    # -- routing --------------------------------------------------------------------

    def _address(self, client: ClientAddress) -> ClientAddress:
        return client.model_copy(update={"node": self.bus.node_id})

    async def _agent_of(self, room_id: str) -> str | None:
        try:
            return await self.placement.agent_of(room_id)
        except BusError:
            raise _unavailable(UNREACHABLE) from None
        except Exception as exc:  # redis errors: the store's clear error
            logger.warning("placement lookup failed: %s", exc, extra={"room": room_id})
            raise _unavailable(UNREACHABLE) from None

    async def _call(self, agent: str, name: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return await self.rpc.call(agent, name, *args, **kwargs)
        except BusUnavailable:
            raise _unavailable(UNREACHABLE) from None
        except BusError as exc:
            logger.warning("agent call failed: %s", exc, extra={"agent": agent, "call": name})
            raise _unavailable(NOT_ANSWERING) from None

    async def _on_room_agent(self, room_id: str, name: str, *args: Any, **kwargs: Any) -> Any:
        """``name`` on the agent hosting the room; the participant is gone if none does."""
        agent = await self._agent_of(room_id)
        if agent is None:
            raise ConferenceError(
                "The room is no longer running (its media server stopped)", ErrorCode.CLOUD, 410
            )
        return await self._call(agent, name, *args, **kwargs)

    async def _hosted_room(self, service_id: str, room: str) -> tuple[str, str] | None:
        """(room id, agent) of a room named by id or name if an agent hosts it now."""
        room_id = await self._known_room_id(service_id, room)
        if room_id is None:
            return None
        agent = await self._agent_of(room_id)
        return (room_id, agent) if agent is not None else None

    async def _known_room_id(self, service_id: str, room: str) -> str | None:
        """The id of a stored room (by id or name) or of a live ad-hoc room (by id or name)."""
        store = self.store
        record = await store.get_room(service_id, room)
        if record is not None:
            return record.id
        named = await store.find_rooms_by_name(service_id, room, limit=1)
        if named:
            return named[0].id
        return await self._adhoc_id(service_id, room)

    async def _adhoc_id(self, service_id: str, room: str) -> str | None:
        if await self.store.adhoc_room_name(service_id, room) is not None:
            return room
        return await self.store.adhoc_room(service_id, room, create=False)

    async def room_id(self, service_id: str, room: str) -> str:
        """A stored room's id (by id, or by a name only one room has) or a live ad-hoc
        room's (by id or name)."""
        try:
            return await super().room_id(service_id, room)
        except ConferenceError as exc:
            if exc.status != 404:
                raise
            adhoc = await self._adhoc_id(service_id, room)
            if adhoc is None:
                raise
            return adhoc

    async def live_adhoc_rooms(self, service_id: str) -> list[dict[str, Any]]:
        """The service's ad-hoc rooms alive on any agent (the store's index), by id, with
        the default options an ad-hoc room has."""
        return [
            room_json(room_id, name, RoomOptions(name=name).to_json())
            for room_id, name in await self.store.list_adhoc_rooms(service_id)
        ]

    async def _room_call(self, name: str, service_id: str, room: str, *args: Any) -> Any:
        hosted = await self._hosted_room(service_id, room)
        if hosted is None:
            return await getattr(super(), name)(service_id, room, *args)
        room_id, agent = hosted
        return await self._call(agent, name, service_id, room_id, *args)

    # -- joining and coming back -------------------------------------------------------

    async def join(self, request: JoinRequest) -> JoinResult:
        room_id = await self._room_to_join(request.service_id, request.room)
        try:
            agent = await self.placement.place(room_id)
        except NoAgentAvailable as exc:
            raise _unavailable(f"No media server can take the room: {exc}") from None
        except Exception as exc:
            logger.warning("room placement failed: %s", exc, extra={"room": room_id})
            raise _unavailable(UNREACHABLE) from None
        client = self._address(request.client)
        joining = request.model_copy(update={"room": room_id, "client": client})
        result: JoinResult = await self._call(agent, "join", joining)
        seat = Seat(service_id=request.service_id, user=result.user, role=result.role)
        self._track(result.participant, client, agent, seat)
        return result

    async def _room_to_join(self, service_id: str, room: str) -> str:
        """The id of the room a join names: stored, or ad-hoc (given an id now if the
        service allows ad-hoc rooms; the agent applies the rest of the rules)."""
        known = await self._known_room_id(service_id, room)
        if known is not None:
            return known
        service = await self.get_service(service_id)
        if service is None:
            raise ConferenceError("The service no longer exists", ErrorCode.AUTHENTICATION, 401)
        if not service.adhoc_rooms:
            raise ConferenceError("Room not found", ErrorCode.ROOM_NOT_FOUND, 404)
        created = await self.store.adhoc_room(service_id, room, create=True)
        if created is None:  # the store always answers an id when asked to create
            raise _unavailable("The room could not be created; try again")
        return created

    async def _ticket_room(self, ticket: str) -> str:
        # The secret read at start, not the store's: a Redis that restarted empty would
        # make a new one, and tickets issued before must keep working (see RedisRestore).
        claims = verify_ticket(ticket, self.context.ticket_secret)
        return claims.room_id

    async def back(self, ticket: str, client: ClientAddress, origin: str | None) -> BackResult:
        room_id = await self._ticket_room(ticket)
        agent = await self._agent_of(room_id)
        if agent is None:
            raise ConferenceError(
                "The room is no longer running (its media server stopped)", ErrorCode.CLOUD, 410
            )
        address = self._address(client)
        result: BackResult = await self._call(agent, "back", ticket, address, origin)
        self._track(result.participant, address, agent, await self._seat_of(agent, result))
        return result

    async def _seat_of(self, agent: str, result: BackResult) -> Seat | None:
        """Who came back (the ticket names the participant only), or None if the agent does
        not say: the client then gets no token to join again if the agent dies."""
        try:
            info: ParticipantInfo = await self._call(agent, "participant_of_ticket", result.ticket)
        except ConferenceError as exc:
            logger.warning(
                "who came back is unknown: %s", exc, extra={"room": result.participant.room_id}
            )
            return None
        return Seat(service_id=info.service_id, user=info.user, role=info.role)

    async def participant_of_ticket(self, ticket: str) -> ParticipantInfo:
        room_id = await self._ticket_room(ticket)
        result: ParticipantInfo = await self._on_room_agent(
            room_id, "participant_of_ticket", ticket
        )
        return result

    # -- participant calls -------------------------------------------------------------

    async def leave(self, ref: ParticipantRef, reason: str = LOGOUT) -> None:
        self._untrack(ref)
        await self._on_room_agent(ref.room_id, "leave", ref, reason)

    async def away(self, ref: ParticipantRef, client: ClientAddress) -> None:
        # It may come back through another portal: this one no longer holds it.
        self._untrack(ref)
        await self._on_room_agent(ref.room_id, "away", ref, self._address(client))

    async def refresh_ticket(self, ref: ParticipantRef) -> str:
        ticket: str = await self._on_room_agent(ref.room_id, "refresh_ticket", ref)
        return ticket

    async def room_info(self, ref: ParticipantRef) -> dict[str, Any]:
        info: dict[str, Any] = await self._on_room_agent(ref.room_id, "room_info", ref)
        return info

    async def publish(self, ref: ParticipantRef, request: PublishRequest) -> SessionResult:
        result: SessionResult = await self._on_room_agent(ref.room_id, "publish", ref, request)
        return result

    async def subscribe(self, ref: ParticipantRef, request: SubscribeRequest) -> SessionResult:
        result: SessionResult = await self._on_room_agent(ref.room_id, "subscribe", ref, request)
        return result

    async def unpublish(self, ref: ParticipantRef, stream_id: str) -> None:
        await self._on_room_agent(ref.room_id, "unpublish", ref, stream_id)

    async def unsubscribe(self, ref: ParticipantRef, subscription_id: str) -> None:
        await self._on_room_agent(ref.room_id, "unsubscribe", ref, subscription_id)

    async def signaling(self, ref: ParticipantRef, request: SignalingRequest) -> None:
        await self._on_room_agent(ref.room_id, "signaling", ref, request)

    async def close_transport(self, ref: ParticipantRef, transport_id: str, reason: str) -> None:
        await self._on_room_agent(ref.room_id, "close_transport", ref, transport_id, reason)

    async def stream_control(
        self, ref: ParticipantRef, request: StreamControlRequest
    ) -> dict[str, Any] | None:
        result: dict[str, Any] | None = await self._on_room_agent(
            ref.room_id, "stream_control", ref, request
        )
        return result

    async def subscription_control(
        self, ref: ParticipantRef, request: SubscriptionControlRequest
    ) -> dict[str, Any] | None:
        result: dict[str, Any] | None = await self._on_room_agent(
            ref.room_id, "subscription_control", ref, request
        )
        return result

    async def text(self, ref: ParticipantRef, request: TextRequest) -> None:
        await self._on_room_agent(ref.room_id, "text", ref, request)

    async def connection_quality(self, ref: ParticipantRef) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._on_room_agent(
            ref.room_id, "connection_quality", ref
        )
        return result

    # -- management calls on a room ------------------------------------------------------

    async def get_room(self, service_id: str, room: str, *, stored: bool = False) -> dict[str, Any]:
        hosted = await self._hosted_room(service_id, room)
        if hosted is None:
            return await super().get_room(service_id, room, stored=stored)
        result: dict[str, Any] = await self._call(
            hosted[1], "get_room", service_id, hosted[0], stored=stored
        )
        return result

    async def update_room(self, service_id: str, room: str, options: RoomOptions) -> dict[str, Any]:
        result: dict[str, Any] = await self._room_call("update_room", service_id, room, options)
        return result

    async def delete_room(self, service_id: str, room: str) -> None:
        await self._room_call("delete_room", service_id, room)

    async def list_participants(self, service_id: str, room: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._room_call("list_participants", service_id, room)
        return result

    async def get_participant(
        self, service_id: str, room: str, participant_id: str
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._room_call(
            "get_participant", service_id, room, participant_id
        )
        return result

    async def update_permission(
        self, service_id: str, room: str, participant_id: str, operations: list[dict[str, Any]]
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._room_call(
            "update_permission", service_id, room, participant_id, operations
        )
        return result

    async def drop_participant(
        self, service_id: str, room: str, participant_id: str, reason: str
    ) -> None:
        await self._room_call("drop_participant", service_id, room, participant_id, reason)

    async def list_streams(self, service_id: str, room: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._room_call("list_streams", service_id, room)
        return result

    async def get_stream(self, service_id: str, room: str, stream_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._room_call("get_stream", service_id, room, stream_id)
        return result

    async def patch_stream(
        self, service_id: str, room: str, stream_id: str, operations: list[dict[str, Any]]
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._room_call(
            "patch_stream", service_id, room, stream_id, operations
        )
        return result

    async def delete_stream(self, service_id: str, room: str, stream_id: str) -> None:
        await self._room_call("delete_stream", service_id, room, stream_id)

    async def start_recording(
        self, service_id: str, room: str, request: RecordingRequest
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._room_call("start_recording", service_id, room, request)
        return result

    async def start_per_stream_recording(
        self, service_id: str, room: str, request: PerStreamRecordingRequest
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._room_call(
            "start_per_stream_recording", service_id, room, request
        )
        return result

    async def list_recordings(
        self, service_id: str, room: str, state: str = "all"
    ) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._room_call(
            "list_recordings", service_id, room, state
        )
        return result

    async def get_recording(self, service_id: str, room: str, recording_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._room_call(
            "get_recording", service_id, room, recording_id
        )
        return result

    async def patch_recording(
        self, service_id: str, room: str, recording_id: str, operations: Any
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._room_call(
            "patch_recording", service_id, room, recording_id, operations
        )
        return result

    async def stop_recording(self, service_id: str, room: str, recording_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._room_call(
            "stop_recording", service_id, room, recording_id
        )
        return result

    async def recording_file(self, service_id: str, room: str, recording_id: str) -> Path:
        # The agent's path: the portal reads it from the recordings directory every
        # process of a machine (or, across machines, a shared volume) has.
        result: Path = await self._room_call("recording_file", service_id, room, recording_id)
        return result

    async def start_streaming_out(
        self, service_id: str, room: str, request: StreamingOutRequest
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._room_call(
            "start_streaming_out", service_id, room, request
        )
        return result

    async def list_streaming_outs(self, service_id: str, room: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._room_call(
            "list_streaming_outs", service_id, room
        )
        return result

    async def get_streaming_out(
        self, service_id: str, room: str, streaming_id: str
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._room_call(
            "get_streaming_out", service_id, room, streaming_id
        )
        return result

    async def patch_streaming_out(
        self, service_id: str, room: str, streaming_id: str, operations: Any
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._room_call(
            "patch_streaming_out", service_id, room, streaming_id, operations
        )
        return result

    async def stop_streaming_out(self, service_id: str, room: str, streaming_id: str) -> None:
        await self._room_call("stop_streaming_out", service_id, room, streaming_id)

    # -- streaming-ins ---------------------------------------------------------------

    async def add_streaming_in(
        self, service_id: str, room: str, request: StreamingInRequest
    ) -> dict[str, Any]:
        # The room's agent pulls the source; a room nobody is in is placed as a join does.
        room_id = await self._known_room_id(service_id, room)
        if room_id is None:
            raise ConferenceError("Room not found", ErrorCode.ROOM_NOT_FOUND, 404)
        try:
            agent = await self.placement.place(room_id)
        except NoAgentAvailable as exc:
            raise _unavailable(f"No media server can take the room: {exc}") from None
        except Exception as exc:
            logger.warning("room placement failed: %s", exc, extra={"room": room_id})
            raise _unavailable(UNREACHABLE) from None
        result: dict[str, Any] = await self._call(
            agent, "add_streaming_in", service_id, room_id, request
        )
        return result

    async def list_streaming_ins(self, service_id: str, room: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._room_call("list_streaming_ins", service_id, room)
        return result

    async def get_streaming_in(self, service_id: str, room: str, stream_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._room_call(
            "get_streaming_in", service_id, room, stream_id
        )
        return result

    async def remove_streaming_in(self, service_id: str, room: str, stream_id: str) -> None:
        await self._room_call("remove_streaming_in", service_id, room, stream_id)

    # -- the web app's calls by room id ------------------------------------------------

    async def set_view_template(self, room_id: str, label: str | None, base: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._on_room_agent(
            room_id, "set_view_template", room_id, label, base
        )
        return result

    async def view_template(self, room_id: str, label: str | None) -> dict[str, Any]:
        result: dict[str, Any] = await self._on_room_agent(room_id, "view_template", room_id, label)
        return result

    async def record_view(
        self, service_id: str, room_id: str, label: str | None, container: str
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._on_room_agent(
            room_id, "record_view", service_id, room_id, label, container
        )
        return result

    # -- services ------------------------------------------------------------------------

    async def delete_service(self, service_id: str) -> None:
        """Out of the store, then every agent closes the service's rooms it hosts."""
        await super().delete_service(service_id)
        try:
            agents = [n.id for n in await live_nodes(self.bus.redis) if n.role == "agent"]
        except Exception:
            raise _unavailable(UNREACHABLE) from None
        for agent in agents:
            try:
                await self.rpc.call(agent, "delete_service", service_id)
            except BusError as exc:
                logger.warning(
                    "an agent did not close a deleted service's rooms: %s",
                    exc,
                    extra={"agent": agent, "service": service_id},
                )

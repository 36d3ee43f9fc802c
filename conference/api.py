"""Conference: every call a front end (``tessera.portal``) makes on the room service.

The front ends (Socket.IO portal, REST, the web app, the PeerJS gateway and its room
peer, metrics) are typed against this Protocol, not against :class:`RoomService`, so
that the same front ends can run on another implementation: in one process the
``RoomService`` itself; in a cluster a portal-side implementation that routes each call
to the agent hosting the room (or answers it from the shared store).

Every call is a coroutine and takes and returns plain data: ids, strings, dicts of OWT's
JSON objects, the pydantic models of ``requests.py`` and ``roomoptions.py``, the
dataclasses of ``records.py`` and ``stats.py``, a :class:`ClientAddress`, a ``Path``.
Never a live Room, Participant or stream, so that any call can cross processes. The
refusals are ``ConferenceError`` and ``TokenError``, as on ``RoomService``.

What the one-process assembly (``portal/server.py`` ``Server``) also reads off the
``RoomService`` — ``rooms``, ``agent``, ``stats()``, ``room_closed_listeners``,
``start()``, ``drain()``, ``close()``, and setting ``closing`` — is not part of this
Protocol: it is the lifecycle and inspection of the process that hosts the rooms, which
in a cluster is the agent's, never on a portal's path. Two things front ends read are
part of it, as plain data: ``closing`` (whether this process refuses new logins: it
is shutting down) and ``counters()`` (what this process hosts now, for its metrics: on
a cluster's portal, nothing; each agent serves its own).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from .events import ClientAddress
from .records import RoomRecord, ServiceRecord
from .requests import (
    BackResult,
    Grant,
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
    TokenResult,
)
from .roomoptions import RoomOptions
from .stats import ConferenceStats
from .streaminginrequest import StreamingInRequest


class Conference(Protocol):
    """The room service as the front ends see it (see the module docstring)."""

    @property
    def closing(self) -> bool:
        """True once this process is shutting down: front ends refuse new logins."""
        ...

    def counters(self) -> ConferenceStats:
        """What this process hosts now (plain counts, for its metrics)."""
        ...

    # -- tokens, origins, services --

    async def authenticate(
        self,
        token: str,
        origin: str | None = None,
        *,
        service_id: str | None = None,
        consume: bool = True,
    ) -> tuple[Grant, str, float]:
        """(what a join token grants, its id, its expiry); consumes it unless told not to."""
        ...

    async def consume_token(self, token_id: str, expires_at: float) -> bool:
        """Use up a single-use token: False if it was used already (anywhere)."""
        ...

    async def get_service(self, service_id: str) -> ServiceRecord | None: ...
    async def all_services(self) -> list[ServiceRecord]: ...
    async def list_services(self) -> list[ServiceRecord]: ...
    async def create_service(self, service: ServiceRecord) -> None: ...
    async def delete_service(self, service_id: str) -> None: ...
    async def service_rooms(self, service_id: str) -> list[dict[str, Any]]: ...
    async def check_origin(self, service: ServiceRecord, origin: str | None) -> None:
        """ConferenceError (403) if a browser's Origin is not allowed by the service."""
        ...

    # -- participants: joining, leaving, coming back --

    async def join(self, request: JoinRequest) -> JoinResult: ...
    async def leave(self, ref: ParticipantRef, reason: str = ...) -> None: ...
    async def away(self, ref: ParticipantRef, client: ClientAddress) -> None: ...
    async def back(self, ticket: str, client: ClientAddress, origin: str | None) -> BackResult:
        """A relogin with a reconnection ticket (which names its service and room)."""
        ...

    async def refresh_ticket(self, ref: ParticipantRef) -> str: ...
    async def participant_of_ticket(self, ticket: str) -> ParticipantInfo: ...
    async def room_info(self, ref: ParticipantRef) -> dict[str, Any]: ...

    # -- participants: media and messages --

    async def publish(self, ref: ParticipantRef, request: PublishRequest) -> SessionResult: ...
    async def subscribe(self, ref: ParticipantRef, request: SubscribeRequest) -> SessionResult: ...
    async def unpublish(self, ref: ParticipantRef, stream_id: str) -> None: ...
    async def unsubscribe(self, ref: ParticipantRef, subscription_id: str) -> None: ...
    async def signaling(self, ref: ParticipantRef, request: SignalingRequest) -> None: ...
    async def close_transport(
        self, ref: ParticipantRef, transport_id: str, reason: str
    ) -> None: ...
    async def stream_control(
        self, ref: ParticipantRef, request: StreamControlRequest
    ) -> dict[str, Any] | None: ...
    async def subscription_control(
        self, ref: ParticipantRef, request: SubscriptionControlRequest
    ) -> dict[str, Any] | None: ...
    async def text(self, ref: ParticipantRef, request: TextRequest) -> None: ...

    # -- rooms --

    async def create_room(self, service_id: str, options: RoomOptions) -> dict[str, Any]: ...
    async def list_rooms(
        self, service_id: str, paging: tuple[int, int] | None = None
    ) -> list[dict[str, Any]]: ...
    async def get_room(
        self, service_id: str, room: str, *, stored: bool = False
    ) -> dict[str, Any]: ...
    async def get_room_record(self, service_id: str, room_id: str) -> RoomRecord | None: ...
    async def update_room(
        self, service_id: str, room: str, options: RoomOptions
    ) -> dict[str, Any]: ...
    async def delete_room(self, service_id: str, room: str) -> None: ...
    async def room_id(self, service_id: str, room: str) -> str: ...
    async def issue_token(
        self, service_id: str, room: str, user: str, role: str, *, adhoc: bool = False
    ) -> TokenResult: ...
    async def set_view_template(
        self, room_id: str, label: str | None, base: str
    ) -> dict[str, Any]: ...
    async def view_template(self, room_id: str, label: str | None) -> dict[str, Any]: ...

    # -- participants and streams (management) --

    async def list_participants(self, service_id: str, room: str) -> list[dict[str, Any]]: ...
    async def get_participant(
        self, service_id: str, room: str, participant_id: str
    ) -> dict[str, Any]: ...
    async def update_permission(
        self, service_id: str, room: str, participant_id: str, operations: list[dict[str, Any]]
    ) -> dict[str, Any]: ...
    async def drop_participant(
        self, service_id: str, room: str, participant_id: str, reason: str
    ) -> None: ...
    async def list_streams(self, service_id: str, room: str) -> list[dict[str, Any]]: ...
    async def get_stream(self, service_id: str, room: str, stream_id: str) -> dict[str, Any]: ...
    async def patch_stream(
        self, service_id: str, room: str, stream_id: str, operations: list[dict[str, Any]]
    ) -> dict[str, Any]: ...
    async def delete_stream(self, service_id: str, room: str, stream_id: str) -> None: ...

    # -- recordings and streaming-outs --

    async def start_recording(
        self, service_id: str, room: str, request: RecordingRequest
    ) -> dict[str, Any]: ...
    async def record_view(
        self, service_id: str, room_id: str, label: str | None, container: str
    ) -> dict[str, Any]: ...
    async def list_recordings(
        self, service_id: str, room: str, state: str = "all"
    ) -> list[dict[str, Any]]: ...
    async def get_recording(
        self, service_id: str, room: str, recording_id: str
    ) -> dict[str, Any]: ...
    async def patch_recording(
        self, service_id: str, room: str, recording_id: str, operations: Any
    ) -> dict[str, Any]: ...
    async def stop_recording(
        self, service_id: str, room: str, recording_id: str
    ) -> dict[str, Any]: ...
    async def recording_file(self, service_id: str, room: str, recording_id: str) -> Path: ...
    async def service_recordings(
        self, service_id: str, state: str = "all"
    ) -> list[dict[str, Any]]: ...
    async def service_recording(self, service_id: str, recording_id: str) -> dict[str, Any]: ...
    async def service_recording_file(self, service_id: str, recording_id: str) -> Path: ...
    async def start_streaming_out(
        self, service_id: str, room: str, request: StreamingOutRequest
    ) -> dict[str, Any]: ...
    async def start_per_stream_recording(
        self, service_id: str, room: str, request: PerStreamRecordingRequest
    ) -> dict[str, Any]: ...
    async def list_streaming_outs(self, service_id: str, room: str) -> list[dict[str, Any]]: ...
    async def get_streaming_out(
        self, service_id: str, room: str, streaming_id: str
    ) -> dict[str, Any]: ...
    async def patch_streaming_out(
        self, service_id: str, room: str, streaming_id: str, operations: Any
    ) -> dict[str, Any]: ...
    async def stop_streaming_out(self, service_id: str, room: str, streaming_id: str) -> None: ...
    async def hls_directory(self, streaming_id: str) -> Path | None:
        """Where an HLS streaming-out served by Tessera writes (running or ended)."""
        ...

    # -- streaming-ins --

    async def add_streaming_in(
        self, service_id: str, room: str, request: StreamingInRequest
    ) -> dict[str, Any]:
        """Pull an outside source into a room as a forward stream (its REST object)."""
        ...

    async def list_streaming_ins(self, service_id: str, room: str) -> list[dict[str, Any]]: ...
    async def get_streaming_in(
        self, service_id: str, room: str, stream_id: str
    ) -> dict[str, Any]: ...
    async def remove_streaming_in(self, service_id: str, room: str, stream_id: str) -> None: ...

    # -- connection quality --

    async def connection_quality(self, ref: ParticipantRef) -> list[dict[str, Any]]:
        """``[{id, loss, rtt, limited}]`` of everyone in the caller's room (the page's
        connection-quality indicators)."""
        ...

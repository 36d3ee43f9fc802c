"""What the room service keeps beyond a process: its records, and the store interface.

The room service reads and writes its lasting state through :class:`ConferenceStore`,
an async interface with two implementations: SQLite for the embedded default
(``store.py`` and ``sqlitestore.py``, one process) and Redis for a cluster
(``tessera.cluster.redisstore``, every portal and agent sharing it). Both pass the same
contract tests (``tests/unit/test_store_contract.py``).

Every room query takes the service id: two services never see each other's rooms,
even when they choose the same room id.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from .errors import ConferenceError, ErrorCode
from .roomoptions import RoomOptions


class StoreError(Exception):
    """Base class of the store's errors."""


class StoreUnavailable(ConferenceError):
    """The store cannot be reached now (a cluster's Redis is down): a clear error for the
    caller, who may try again; nothing was changed."""

    def __init__(self, message: str, code: ErrorCode = ErrorCode.CLOUD, status: int = 503) -> None:
        super().__init__(message, code, status)


# What logins and REST calls answer (503) when the database cannot be written.
STORAGE_FULL = (
    "Storage full: the server cannot save its state now (its disk is full); try again later"
)


def storage_full(detail: str = "") -> StoreUnavailable:
    """The 503 of a store whose disk is full (``detail``: what the database said, for logs)."""
    return StoreUnavailable(STORAGE_FULL + (f" ({detail})" if detail else ""))


class DuplicateError(StoreError):
    """A record with that id already exists."""


class NotFoundError(StoreError):
    """No record with that id exists."""


@dataclass
class ServiceRecord:
    """A service (tenant / API key): its secret, allowed browser origins, ad-hoc room policy."""

    id: str
    key: str
    allowed_origins: list[str] = field(default_factory=list)
    adhoc_rooms: bool = True
    recording: bool = True  # False: no room of this service may be recorded
    peer_tokens: bool = False  # True: peers must open with a valid join token

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "key": self.key,
            "allowedOrigins": list(self.allowed_origins),
            "adhocRooms": self.adhoc_rooms,
            "recording": self.recording,
            "peerTokens": self.peer_tokens,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ServiceRecord:
        return cls(
            id=str(data["id"]),
            key=str(data["key"]),
            allowed_origins=[str(o) for o in data.get("allowedOrigins", [])],
            adhoc_rooms=bool(data.get("adhocRooms", True)),
            recording=bool(data.get("recording", True)),
            peer_tokens=bool(data.get("peerTokens", False)),
        )


@dataclass
class RoomRecord:
    """A stored room; ``options`` is the JSON form of RoomOptions (camelCase)."""

    id: str
    service_id: str
    name: str
    options: dict[str, Any]


def new_room_id() -> str:
    """A new room id: 24 lowercase hex digits like a MongoDB ObjectId (as OWT's room ids).

    As in an ObjectId, the first 8 digits are the creation time, so ids sort roughly by age.
    """
    return f"{int(time.time()) & 0xFFFFFFFF:08x}{secrets.token_hex(8)}"


# (id, info, file or directory) of a recording or streaming-out record.
OutputRecord = tuple[str, dict[str, Any], str]
# (id, room id, info, file) of a recording found by its service alone.
RecordingRecord = tuple[str, str, dict[str, Any], str]


class ConferenceStore(Protocol):
    """The room service's lasting state (see the module docstring). Every method is a
    coroutine: an implementation does its blocking work off the event loop."""

    # -- services --
    async def get_service(self, service_id: str) -> ServiceRecord | None: ...
    async def list_services(self) -> list[ServiceRecord]: ...
    async def put_service(self, service: ServiceRecord) -> None:
        """Create or replace a service."""
        ...

    async def create_service(self, service: ServiceRecord) -> None:
        """DuplicateError if a service has that id."""
        ...

    async def delete_service(self, service_id: str) -> bool:
        """Delete a service with its rooms and records; False if there is none."""
        ...

    # -- stored rooms --
    async def create_room(self, room: RoomRecord) -> None:
        """DuplicateError if the room exists; NotFoundError if its service does not."""
        ...

    async def ensure_named_room(self, room: RoomRecord) -> RoomRecord:
        """The service's first room named ``room.name``, creating ``room`` if it has none
        (atomically: processes starting together make one default room)."""
        ...

    async def update_room(self, room: RoomRecord) -> None:
        """NotFoundError if there is no such room."""
        ...

    async def get_room(self, service_id: str, room_id: str) -> RoomRecord | None: ...
    async def find_rooms_by_name(
        self, service_id: str, name: str, limit: int = 10
    ) -> list[RoomRecord]:
        """Up to ``limit`` of the service's rooms with that name, in creation order."""
        ...

    async def list_rooms(
        self, service_id: str, page: int = 1, per_page: int = 50
    ) -> list[RoomRecord]:
        """One page (1-based) of the service's rooms, in creation order."""
        ...

    async def count_rooms(self, service_id: str) -> int: ...
    async def delete_room(self, service_id: str, room_id: str) -> bool: ...

    # -- ad-hoc rooms: a name resolves to one id everywhere while the room lives --
    async def adhoc_room(self, service_id: str, name: str, *, create: bool) -> str | None:
        """The id of the service's ad-hoc room ``name``; with ``create``, a new id is
        given to a name that has none (atomically: two callers get the same id)."""
        ...

    async def adhoc_room_name(self, service_id: str, room_id: str) -> str | None:
        """The name of the ad-hoc room with that id, or None."""
        ...

    async def list_adhoc_rooms(self, service_id: str) -> list[tuple[str, str]]:
        """(id, name) of the service's ad-hoc rooms, by id."""
        ...

    async def end_adhoc_room(self, service_id: str, room_id: str) -> None:
        """The ad-hoc room with that id ended: its name is free again."""
        ...

    async def clear_adhoc_rooms(self) -> None:
        """Forget every ad-hoc room (one process starting: none of them runs)."""
        ...

    # -- recordings and streaming-outs --
    async def save_recording(
        self, recording_id: str, service_id: str, room_id: str, info: dict[str, Any], file: str
    ) -> None: ...
    async def update_recording(self, recording_id: str, info: dict[str, Any]) -> None: ...
    async def list_recordings(self, service_id: str, room_id: str) -> list[OutputRecord]:
        """(id, info, file) of a room's recordings, oldest first."""
        ...

    async def get_recording(self, service_id: str, recording_id: str) -> RecordingRecord | None:
        """The service's recording with that id, whatever became of its room."""
        ...

    async def list_service_recordings(self, service_id: str) -> list[RecordingRecord]:
        """Every recording of the service (of rooms that live or not), oldest first."""
        ...

    async def interrupted_recordings(self) -> list[tuple[str, dict[str, Any]]]:
        """(id, info) of the recordings stored as running."""
        ...

    async def save_streaming_out(
        self, streaming_id: str, service_id: str, room_id: str, info: dict[str, Any], directory: str
    ) -> None: ...
    async def list_streaming_outs(self, service_id: str, room_id: str) -> list[OutputRecord]:
        """(id, info, directory) of a room's streaming-outs, oldest first."""
        ...

    async def streaming_out_directory(self, streaming_id: str) -> str | None: ...
    async def close_interrupted_streaming_outs(self, reason: str) -> int: ...

    # -- tokens and tickets --
    async def consume_token(self, token_id: str, expires_at: float) -> bool:
        """True the first time a token id is used (anywhere), False after."""
        ...

    async def ticket_secret(self) -> bytes:
        """The secret reconnection tickets are signed with: made once, then shared."""
        ...

    async def close(self) -> None: ...


class DefaultService(Protocol):
    """The configured service (``[service]`` of the configuration)."""

    @property
    def id(self) -> str: ...
    @property
    def key(self) -> str: ...
    @property
    def allowed_origins(self) -> list[str]: ...
    @property
    def adhoc_rooms(self) -> bool: ...
    @property
    def default_room(self) -> str: ...
    @property
    def recording(self) -> bool: ...
    @property
    def peer_tokens(self) -> bool: ...


def configured_service(existing: ServiceRecord | None, settings: DefaultService) -> ServiceRecord:
    """The configured service's record: an empty configured key keeps the stored one
    (tokens already handed out stay valid) or is generated; a configured key wins."""
    key = settings.key or (existing.key if existing else "") or secrets.token_urlsafe(32)
    return ServiceRecord(
        id=settings.id,
        key=key,
        allowed_origins=list(settings.allowed_origins),
        adhoc_rooms=settings.adhoc_rooms,
        recording=settings.recording,
        peer_tokens=settings.peer_tokens,
    )


def default_room_record(service_id: str, name: str) -> RoomRecord:
    """A new stored room with the default options."""
    return RoomRecord(
        id=new_room_id(),
        service_id=service_id,
        name=name,
        options=RoomOptions(name=name).to_json(),
    )


async def bootstrap_service(store: ConferenceStore, settings: DefaultService) -> ServiceRecord:
    """Make sure the configured service and its default room exist; return the service.

    Several processes may run it at once (a cluster starting): the service is written
    whole, and the default room made once (a second one would make its name ambiguous).
    """
    existing = await store.get_service(settings.id)
    service = configured_service(existing, settings)
    if service != existing:
        await store.put_service(service)
    await store.ensure_named_room(default_room_record(service.id, settings.default_room))
    return service

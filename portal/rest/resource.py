"""What every REST resource shares: the server, the caller, the room in the path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.typedefs import Handler

from ..room import Room
from ..roomoptions import RoomOptions, parse_room_options
from ..store import RoomRecord, ServiceRecord
from .auth import CREDENTIALS, Credentials
from .bodies import path_id, read_json
from .errors import ErrorCode, RestError

if TYPE_CHECKING:
    from ..server import Server

# (method, path under the prefix, handler, prefixes): one route of a resource.
Route = tuple[str, str, Handler, tuple[str, ...]]
V1 = ("/v1",)
BOTH = ("/v1", "/v1.1")


@dataclass(frozen=True)
class RoomRef:
    """A room of the calling service: stored (``record``), loaded (``loaded``) or both."""

    id: str
    record: RoomRecord | None
    loaded: Room | None

    def options(self) -> RoomOptions:
        if self.loaded is not None:
            return self.loaded.options
        assert self.record is not None
        return parse_room_options(self.record.options)

    def to_json(self) -> dict[str, Any]:
        """OWT's room object: ``_id`` (and ``id``) plus the options."""
        if self.record is not None:
            data, name = self.record.options, self.record.name
        else:
            assert self.loaded is not None
            data, name = self.loaded.settings, self.loaded.name
        return room_json(self.id, name, data)


def room_json(room_id: str, name: str, options: dict[str, Any]) -> dict[str, Any]:
    return {"_id": room_id, "id": room_id, **options, "name": name}


class Resource:
    """Base of a REST resource: its routes, and the lookups its handlers share."""

    def __init__(self, server: Server) -> None:
        self.server = server

    def routes(self) -> list[Route]:
        raise NotImplementedError

    @staticmethod
    def _credentials(request: web.Request) -> Credentials:
        return request[CREDENTIALS]

    @staticmethod
    async def _read_json(request: web.Request) -> Any:
        return await read_json(request)

    def _loaded_room(self, service: ServiceRecord, room_id: str) -> Room | None:
        room = self.server.rooms.get(room_id)
        if room is None or room.service_id != service.id or room.closed:
            return None
        return room

    def _room(self, request: web.Request) -> RoomRef:
        service = self._credentials(request).service
        room_id = path_id(request, "room", ErrorCode.ROOM_NOT_FOUND, "Room")
        record = self.server.store.get_room(service.id, room_id)
        loaded = self._loaded_room(service, room_id)
        if record is None and loaded is None:
            raise RestError(404, ErrorCode.ROOM_NOT_FOUND, "Room not found")
        return RoomRef(room_id, record, loaded)

"""What every REST resource shares: the server, the caller, the room in the path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.typedefs import Handler

from tessera.conference.room import Room
from tessera.conference.roomoptions import RoomOptions, parse_room_options
from tessera.conference.store import RoomRecord, ServiceRecord

from .auth import CREDENTIALS, Credentials
from .bodies import path_id, read_json
from .errors import ErrorCode, RestError

if TYPE_CHECKING:
    from ..server import Server

# (method, path under the prefix, handler, prefixes): one route of a resource.
Route = tuple[str, str, Handler, tuple[str, ...]]
# OWT 5.x mounts every /v1 route under /v1.1 too (its v1.1 router ends with the v1 router).
BOTH = ("/v1", "/v1.1")
# OWT's /services routes have no version prefix.
ROOT = ("",)
# A room name shared by more rooms than this is reported with this many ids.
AMBIGUOUS_IDS_SHOWN = 5


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


def empty_response() -> web.Response:
    """OWT's answer to a DELETE (Express ``res.send()``): 200 with an empty body."""
    return web.Response(status=200, body=b"")


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
        """The room the path names: a room id, or a room name that only one room has."""
        service = self._credentials(request).service
        ref = path_id(request, "room", ErrorCode.ROOM_NOT_FOUND, "Room")
        record = self.server.store.get_room(service.id, ref)
        loaded = self._loaded_room(service, ref)
        if record is not None or loaded is not None:
            return RoomRef(ref, record, loaded)
        return self._room_by_name(service, ref)

    def _room_by_name(self, service: ServiceRecord, name: str) -> RoomRef:
        records = self.server.store.find_rooms_by_name(
            service.id, name, limit=AMBIGUOUS_IDS_SHOWN + 1
        )
        ids = [r.id for r in records]
        adhoc = [
            room
            for room in self.server.rooms.values()
            if room.service_id == service.id
            and room.name == name
            and not room.persistent
            and not room.closed
            and room.id not in ids
        ]
        ids += [room.id for room in adhoc]
        if not ids:
            raise RestError(
                404,
                ErrorCode.ROOM_NOT_FOUND,
                "Room not found: no room of this service has that id or name",
            )
        if len(ids) > 1:
            shown = ", ".join(ids[:AMBIGUOUS_IDS_SHOWN])
            more = " and more" if len(ids) > AMBIGUOUS_IDS_SHOWN else ""
            raise RestError(
                409,
                ErrorCode.BAD_REQUEST,
                f"Room name {name[:64]!r} is ambiguous: rooms {shown}{more} have it;"
                " name the room by its id",
            )
        room_id = ids[0]
        record = records[0] if records else None
        return RoomRef(room_id, record, self._loaded_room(service, room_id))

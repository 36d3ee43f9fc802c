"""Service: a tenant (OWT's word: an API key), the parent of its loaded rooms."""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Protocol

from tessera.recorder.recording import Recording
from tessera.recorder.streamingout import StreamingOut

from .context import ConferenceContext
from .errors import ConferenceError
from .room import Room
from .roomoptions import RoomOptions, parse_room_options
from .store import ServiceRecord, new_room_id

logger = logging.getLogger(__name__)


class ServiceParent(Protocol):
    """What a service tells the room service (a protocol keeps the import one-way)."""

    def room_unloaded(self, room: Room) -> None:
        """A room closed (emptied, deleted, or the service closed)."""
        ...


class Service:
    """One tenant's rooms while they run: loaded from the store, or ad hoc.

    Rooms defined over REST live in the store and are loaded when someone joins;
    ad-hoc rooms (a join token naming a room nobody defined, if the service allows
    them) live only while they have participants. Either is closed and forgotten
    when its last participant leaves. The service's settings (key, origins, ad-hoc
    rooms, recording) are read from the store when used, so a change applies at once.
    """

    def __init__(self, context: ConferenceContext, parent: ServiceParent, service_id: str) -> None:
        self._context = context
        self._parent = parent
        self.id = service_id
        self.rooms: dict[str, Room] = {}
        # Weak: a lock lives only while a join holds or awaits it (one per room name ever
        # joined would pile up otherwise).
        self._room_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        self.closed = False

    def record(self) -> ServiceRecord | None:
        """The service's settings in the store (None once it is deleted)."""
        return self._context.store.get_service(self.id)

    def loaded_room(self, ref: str) -> Room | None:
        """The running room whose id is ``ref``, or the ad-hoc room named ``ref``."""
        room = self.rooms.get(ref)
        if room is not None and not room.closed:
            return room
        return next(
            (r for r in self.rooms.values() if r.name == ref and not r.persistent and not r.closed),
            None,
        )

    async def room(self, ref: str, *, create: bool) -> Room | None:
        """The room ``ref`` (an id or a name), loading it from the store or, if ``create``,
        creating an ad-hoc room of that name. ConferenceError past the service's room limit."""
        lock = self._room_locks.setdefault(ref, asyncio.Lock())
        async with lock:
            if self.closed:
                raise ConferenceError("The service is closing")
            room = self.loaded_room(ref)
            if room is not None:
                return room
            store = self._context.store
            record = store.get_room(self.id, ref) or store.find_room_by_name(self.id, ref)
            if record is not None:
                room = self.rooms.get(record.id)
                if room is None or room.closed:
                    options = parse_room_options(record.options)
                    room = self._add(record.id, record.name, options, persistent=True)
                return room
            if not create:
                return None
            limit = self._context.settings.rooms_per_service
            if len(self.rooms) >= limit:
                raise ConferenceError(f"Too many rooms for this service (at most {limit})")
            room = self._add(
                new_room_id(), ref, parse_room_options({"name": ref}), persistent=False
            )
            logger.info(
                "ad-hoc room created",
                extra={"service": self.id, "room": room.id, "room_name": ref},
            )
            return room

    def _add(self, room_id: str, name: str, options: RoomOptions, *, persistent: bool) -> Room:
        room = Room(self._context, self, self.id, room_id, name, options, persistent=persistent)
        self.rooms[room.id] = room
        return room

    # -- RoomParent -------------------------------------------------------

    def recording_allowed(self) -> bool:
        record = self.record()
        return record is not None and record.recording

    def recording_saved(self, room: Room, recording: Recording) -> None:
        try:
            self._context.store.save_recording(
                recording.id, self.id, room.id, recording.describe(), str(recording.path)
            )
        except Exception:
            logger.exception(
                "cannot save a recording in the store",
                extra={"room": room.id, "recording": recording.id},
            )

    def streaming_out_saved(self, room: Room, out: StreamingOut) -> None:
        directory = str(out.hls_directory) if out.hls_directory is not None else ""
        try:
            self._context.store.save_streaming_out(
                out.id, self.id, room.id, out.describe(), directory
            )
        except Exception:
            logger.exception(
                "cannot save a streaming-out in the store",
                extra={"room": room.id, "streaming": out.id},
            )

    async def room_emptied(self, room: Room) -> None:
        """The last participant left: an ad-hoc room ends; a stored room is unloaded."""
        if room.participants or room.closing is not None:
            return  # someone came in meanwhile, or whoever is closing it goes on
        reason = "ad-hoc room ended" if not room.persistent else "room unloaded"
        await self.close_room(room, reason)
        if not room.persistent:
            logger.info("ad-hoc room removed", extra={"room": room.id, "room_name": room.name})

    async def close_room(self, room: Room, reason: str) -> None:
        """Close a room and forget it; its participants must have been told (``drop``)."""
        if self.rooms.get(room.id) is room:
            del self.rooms[room.id]
        await room.close(reason)
        self._parent.room_unloaded(room)

    async def close(self, reason: str) -> None:
        """Idempotent: every room of the service closes."""
        self.closed = True
        for room in list(self.rooms.values()):
            await self.close_room(room, reason)

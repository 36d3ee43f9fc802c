"""Service: a tenant (OWT's word: an API key), the parent of its loaded rooms."""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from tessera.recorder.perstream import PerStreamRecording
from tessera.recorder.recording import Recording
from tessera.recorder.streamingout import StreamingOut

from .context import ConferenceContext
from .errors import ConferenceError
from .records import ServiceRecord
from .room import Room
from .roomoptions import RoomOptions, parse_room_options

logger = logging.getLogger(__name__)


class ServiceParent(Protocol):
    """What a service tells the room service (a protocol keeps the import one-way)."""

    async def room_loading(
        self, service_id: str, room_id: str, name: str, *, persistent: bool
    ) -> None:
        """A room is about to be hosted here: ConferenceError if it may not be."""
        ...

    def room_unloaded(self, room: Room) -> None:
        """A room closed (emptied, deleted, or the service closed)."""
        ...


class Service:
    """One tenant's rooms while they run: loaded from the store, or ad hoc.

    Rooms defined over REST live in the store and are loaded when someone joins;
    ad-hoc rooms (a join token naming a room nobody defined, if the service allows
    them) live only while they have participants: the store gives the name its id
    (the same id in every process of a cluster) until the room ends. Either is closed
    and forgotten when its last participant leaves. The service's settings (key,
    origins, ad-hoc rooms, recording) are read from the store when used, so a change
    applies at once.
    """

    def __init__(self, context: ConferenceContext, parent: ServiceParent, service_id: str) -> None:
        self._context = context
        self._parent = parent
        self.id = service_id
        self.rooms: dict[str, Room] = {}
        # Rooms are looked up, loaded and unloaded one at a time: a name and an id of the
        # same room, or a join and the close of an ad-hoc room, never make two rooms.
        self._loading = asyncio.Lock()
        self.closed = False

    async def record(self) -> ServiceRecord | None:
        """The service's settings in the store (None once it is deleted)."""
        return await self._context.store.get_service(self.id)

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
        creating an ad-hoc room of that name. ConferenceError past the service's room
        limit, or if the room may not be hosted here (it is hosted elsewhere)."""
        async with self._loading:
            if self.closed:
                raise ConferenceError("The service is closing")
            room = self.loaded_room(ref)
            if room is not None:
                return room
            store = self._context.store
            record = await store.get_room(self.id, ref)
            if record is None:
                named = await store.find_rooms_by_name(self.id, ref, limit=1)
                record = named[0] if named else None
            if record is not None:
                room = self.rooms.get(record.id)
                if room is None or room.closed:
                    options = parse_room_options(record.options)
                    room = await self._add(record.id, record.name, options, persistent=True)
                return room
            # An ad-hoc room named by its id (a client coming back to it), or by its name.
            name = await store.adhoc_room_name(self.id, ref)
            room_id: str | None = ref
            if name is None:
                name = ref
                room_id = await store.adhoc_room(self.id, ref, create=False)
                if room_id is None:
                    if not create:
                        return None
                    await self._check_room_limit()
                    room_id = await store.adhoc_room(self.id, ref, create=True)
            if room_id is None:
                return None
            room = self.rooms.get(room_id)
            if room is not None and not room.closed:
                return room
            await self._check_room_limit()
            room = await self._add(
                room_id, name, parse_room_options({"name": name}), persistent=False
            )
            logger.info(
                "ad-hoc room created",
                extra={"service": self.id, "room": room.id, "room_name": name},
            )
            return room

    async def _check_room_limit(self) -> None:
        limit = self._context.settings.rooms_per_service
        await self._context.recount_elsewhere()
        # Rooms loaded on other agents of a cluster count too (they report them).
        if len(self.rooms) + self._context.running_elsewhere["room", self.id] >= limit:
            raise ConferenceError(f"Too many rooms for this service (at most {limit})")

    async def _add(
        self, room_id: str, name: str, options: RoomOptions, *, persistent: bool
    ) -> Room:
        await self._parent.room_loading(self.id, room_id, name, persistent=persistent)
        room = Room(self._context, self, self.id, room_id, name, options, persistent=persistent)
        self.rooms[room.id] = room
        return room

    # -- RoomParent -------------------------------------------------------

    async def recording_allowed(self) -> bool:
        record = await self.record()
        return record is not None and record.recording

    def recording_saved(self, room: Room, recording: Recording | PerStreamRecording) -> None:
        # What it is now, written after what was queued before (its start before its end).
        info, store, ids = recording.describe(), self._context.store, (self.id, room.id)

        async def save() -> None:
            try:
                await store.save_recording(recording.id, *ids, info, str(recording.path))
            except Exception:
                logger.exception(
                    "cannot save a recording in the store",
                    extra={"room": room.id, "recording": recording.id},
                )

        self._context.saves.put(save)

    def streaming_out_saved(self, room: Room, out: StreamingOut) -> None:
        directory = str(out.hls_directory) if out.hls_directory is not None else ""
        info, store, ids = out.describe(), self._context.store, (self.id, room.id)

        async def save() -> None:
            try:
                await store.save_streaming_out(out.id, *ids, info, directory)
            except Exception:
                logger.exception(
                    "cannot save a streaming-out in the store",
                    extra={"room": room.id, "streaming": out.id},
                )

        self._context.saves.put(save)

    async def room_emptied(self, room: Room) -> None:
        """The last participant left: an ad-hoc room ends; a stored room is unloaded."""
        if room.participants or room.streaming_ins or room.closing is not None:
            return  # someone came in meanwhile, or whoever is closing it goes on
        reason = "ad-hoc room ended" if not room.persistent else "room unloaded"
        if await self.close_room(room, reason, if_empty=True) and not room.persistent:
            logger.info("ad-hoc room removed", extra={"room": room.id, "room_name": room.name})

    async def close_room(self, room: Room, reason: str, *, if_empty: bool = False) -> bool:
        """Close a room and forget it; its participants must have been told (``drop``).

        ``if_empty``: only if nobody is in it once the room may be unloaded (a join that
        found the room while this waited has its participant in it by then): False if
        it stays."""
        async with self._loading:
            if if_empty and (room.participants or room.streaming_ins or room.closing is not None):
                return False
            if self.rooms.get(room.id) is room:
                del self.rooms[room.id]
                if not room.persistent:
                    try:
                        await self._context.store.end_adhoc_room(self.id, room.id)
                    except Exception as exc:
                        # Its name then keeps its id: the next room of that name reuses it.
                        logger.warning(
                            "cannot free an ad-hoc room's name: %s", exc, extra=room.log_ids
                        )
        await room.close(reason)
        self._parent.room_unloaded(room)
        return True

    async def close(self, reason: str) -> None:
        """Idempotent: every room of the service closes."""
        self.closed = True
        for room in list(self.rooms.values()):
            await self.close_room(room, reason)

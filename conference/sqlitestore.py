"""SqliteStore: the embedded default's ConferenceStore, the SQLite :class:`Store` on a thread.

SQLite may wait for its disk (a write's fsync, a lock another process holds): the
event loop must not. Every call runs on one thread of the store's own, in the order the
calls were made, so a recording saved as started and then as finished is stored finished.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from .records import OutputRecord, RecordingRecord, RoomRecord, ServiceRecord
from .store import Store

T = TypeVar("T")


class SqliteStore:
    """The room service's store in one SQLite file (see the module docstring)."""

    def __init__(self, store: Store, *, owned: bool = False) -> None:
        self.db = store
        # ``owned``: close() closes the database too (else its opener does).
        self._owned = owned
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")

    async def _run(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, functools.partial(call, *args, **kwargs))

    # -- services --

    async def get_service(self, service_id: str) -> ServiceRecord | None:
        return await self._run(self.db.get_service, service_id)

    async def list_services(self) -> list[ServiceRecord]:
        return await self._run(self.db.list_services)

    async def put_service(self, service: ServiceRecord) -> None:
        await self._run(self.db.put_service, service)

    async def create_service(self, service: ServiceRecord) -> None:
        await self._run(self.db.create_service, service)

    async def delete_service(self, service_id: str) -> bool:
        return await self._run(self.db.delete_service, service_id)

    # -- stored rooms --

    async def create_room(self, room: RoomRecord) -> None:
        await self._run(self.db.create_room, room)

    async def ensure_named_room(self, room: RoomRecord) -> RoomRecord:
        return await self._run(self.db.ensure_named_room, room)

    async def update_room(self, room: RoomRecord) -> None:
        await self._run(self.db.update_room, room)

    async def get_room(self, service_id: str, room_id: str) -> RoomRecord | None:
        return await self._run(self.db.get_room, service_id, room_id)

    async def find_rooms_by_name(
        self, service_id: str, name: str, limit: int = 10
    ) -> list[RoomRecord]:
        return await self._run(self.db.find_rooms_by_name, service_id, name, limit)

    async def list_rooms(
        self, service_id: str, page: int = 1, per_page: int = 50
    ) -> list[RoomRecord]:
        return await self._run(self.db.list_rooms, service_id, page, per_page)

    async def count_rooms(self, service_id: str) -> int:
        return await self._run(self.db.count_rooms, service_id)

    async def delete_room(self, service_id: str, room_id: str) -> bool:
        return await self._run(self.db.delete_room, service_id, room_id)

    # -- ad-hoc rooms --

    async def adhoc_room(self, service_id: str, name: str, *, create: bool) -> str | None:
        return await self._run(self.db.adhoc_room, service_id, name, create=create)

    async def adhoc_room_name(self, service_id: str, room_id: str) -> str | None:
        return await self._run(self.db.adhoc_room_name, service_id, room_id)

    async def list_adhoc_rooms(self, service_id: str) -> list[tuple[str, str]]:
        return await self._run(self.db.list_adhoc_rooms, service_id)

    async def end_adhoc_room(self, service_id: str, room_id: str) -> None:
        await self._run(self.db.end_adhoc_room, service_id, room_id)

    async def clear_adhoc_rooms(self) -> None:
        await self._run(self.db.clear_adhoc_rooms)

    # -- recordings and streaming-outs --

    async def save_recording(
        self, recording_id: str, service_id: str, room_id: str, info: dict[str, Any], file: str
    ) -> None:
        await self._run(self.db.save_recording, recording_id, service_id, room_id, info, file)

    async def update_recording(self, recording_id: str, info: dict[str, Any]) -> None:
        await self._run(self.db.update_recording, recording_id, info)

    async def list_recordings(self, service_id: str, room_id: str) -> list[OutputRecord]:
        return await self._run(self.db.list_recordings, service_id, room_id)

    async def get_recording(self, service_id: str, recording_id: str) -> RecordingRecord | None:
        return await self._run(self.db.get_recording, service_id, recording_id)

    async def list_service_recordings(self, service_id: str) -> list[RecordingRecord]:
        return await self._run(self.db.list_service_recordings, service_id)

    async def interrupted_recordings(self) -> list[tuple[str, dict[str, Any]]]:
        return await self._run(self.db.interrupted_recordings)

    async def save_streaming_out(
        self, streaming_id: str, service_id: str, room_id: str, info: dict[str, Any], directory: str
    ) -> None:
        await self._run(
            self.db.save_streaming_out, streaming_id, service_id, room_id, info, directory
        )

    async def list_streaming_outs(self, service_id: str, room_id: str) -> list[OutputRecord]:
        return await self._run(self.db.list_streaming_outs, service_id, room_id)

    async def streaming_out_directory(self, streaming_id: str) -> str | None:
        return await self._run(self.db.streaming_out_directory, streaming_id)

    async def close_interrupted_streaming_outs(self, reason: str) -> int:
        return await self._run(self.db.close_interrupted_streaming_outs, reason)

    # -- tokens and tickets --

    async def consume_token(self, token_id: str, expires_at: float) -> bool:
        return await self._run(self.db.consume_token, token_id, expires_at)

    async def ticket_secret(self) -> bytes:
        return await self._run(self.db.ticket_secret)

    async def close(self) -> None:
        """Let queued calls finish, then stop the thread (and close the database if owned)."""
        await asyncio.get_running_loop().run_in_executor(None, self._thread.shutdown, True)
        if self._owned:
            self.db.close()

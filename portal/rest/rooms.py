"""REST: /rooms, the rooms of the calling service and their options."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from tessera.conference.roomoptions import (
    OptionsError,
    RoomOptions,
    merge_room_options,
    parse_room_options,
)
from tessera.conference.store import NotFoundError, RoomRecord, new_room_id

from .bodies import MAX_PER_PAGE, checked_name, expect_object, parse_paging
from .errors import ErrorCode, RestError, bad_request, unauthorized
from .resource import BOTH, Resource, RoomRef, Route, room_json

logger = logging.getLogger(__name__)


class Rooms(Resource):
    """POST, GET (one or paged), PUT, PATCH and DELETE of rooms."""

    def routes(self) -> list[Route]:
        return [
            ("POST", "/rooms", self.create_room, BOTH),
            ("GET", "/rooms", self.list_rooms, BOTH),
            ("GET", "/rooms/{room}", self.get_room, BOTH),
            ("PUT", "/rooms/{room}", self.replace_room, BOTH),
            ("PATCH", "/rooms/{room}", self.patch_room, BOTH),
            ("DELETE", "/rooms/{room}", self.delete_room, BOTH),
        ]

    async def create_room(self, request: web.Request) -> web.StreamResponse:
        service = self._credentials(request).service
        body = expect_object(await self._read_json(request))
        name, options, prefix = _split_room_body(body, None)
        name = checked_name(name, "name")
        limit = self.server.config.limits.rooms_per_service
        if self.server.store.count_rooms(service.id) >= limit:
            raise RestError(
                403,
                ErrorCode.PERMISSION_DENIED,
                f"Too many rooms for this service (at most {limit})",
            )
        try:
            parsed = parse_room_options({**options, "name": name})
        except OptionsError as exc:
            raise _options_error(exc, prefix) from None
        record = RoomRecord(
            id=new_room_id(), service_id=service.id, name=name, options=parsed.to_json()
        )
        try:
            self.server.store.create_room(record)
        except NotFoundError:
            raise unauthorized("The service no longer exists") from None
        logger.info(
            "room created over REST",
            extra={"service": service.id, "room": record.id, "room_name": name},
        )
        return web.json_response(room_json(record.id, record.name, record.options))

    async def list_rooms(self, request: web.Request) -> web.StreamResponse:
        service = self._credentials(request).service
        paging = parse_paging(request.query)
        store = self.server.store
        # Stored rooms first, in creation order; then ad-hoc rooms alive right now.
        adhoc = sorted(
            (
                room
                for room in self.server.rooms.values()
                if room.service_id == service.id and not room.persistent and not room.closed
            ),
            key=lambda room: room.id,
        )
        if paging is None:
            stored = self._all_stored(service.id)
            rooms = [room_json(r.id, r.name, r.options) for r in stored]
            rooms += [room_json(r.id, r.name, r.settings) for r in adhoc]
            return web.json_response(rooms)
        page, per_page = paging
        start = (page - 1) * per_page
        stored = store.list_rooms(service.id, page, per_page)
        rooms = [room_json(r.id, r.name, r.options) for r in stored]
        if len(stored) < per_page:
            stored_total = start + len(stored) if stored else len(self._all_stored(service.id))
            offset = max(0, start - stored_total)
            extra = adhoc[offset : offset + per_page - len(stored)]
            rooms += [room_json(r.id, r.name, r.settings) for r in extra]
        return web.json_response(rooms)

    def _all_stored(self, service_id: str) -> list[RoomRecord]:
        records: list[RoomRecord] = []
        page = 1
        while True:
            chunk = self.server.store.list_rooms(service_id, page, MAX_PER_PAGE)
            records.extend(chunk)
            if len(chunk) < MAX_PER_PAGE:
                return records
            page += 1

    async def get_room(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self._room(request).to_json())

    def _stored_room(self, request: web.Request) -> tuple[RoomRef, RoomRecord]:
        ref = self._room(request)
        if ref.record is None:
            raise RestError(
                409,
                ErrorCode.BAD_REQUEST,
                "Room is an ad-hoc room (created by a join token) and has no stored options "
                "to change; create a room with POST /v1/rooms to configure it",
            )
        return ref, ref.record

    async def replace_room(self, request: web.Request) -> web.StreamResponse:
        """PUT: each top-level field given replaces the room's (OWT's ``Object.assign``).

        A field not given keeps its value; a field given is replaced whole
        (a ``views`` list replaces every view, with defaults for what it omits).
        """
        ref, record = self._stored_room(request)
        body = expect_object(await self._read_json(request))
        name, options, prefix = _split_room_body(body, ref.id)
        name = record.name if name is None else checked_name(name, f"{prefix}name")
        try:
            parsed = parse_room_options({**record.options, **options, "name": name})
        except OptionsError as exc:
            raise _options_error(exc, prefix) from None
        return await self._save_room(ref, record, parsed)

    async def patch_room(self, request: web.Request) -> web.StreamResponse:
        ref, record = self._stored_room(request)
        body = expect_object(await self._read_json(request))
        name, patch, prefix = _split_room_body(body, ref.id)
        if name is not None:
            patch["name"] = checked_name(name, f"{prefix}name")
        try:
            parsed = merge_room_options(parse_room_options(record.options), patch)
        except OptionsError as exc:
            raise _options_error(exc, prefix) from None
        return await self._save_room(ref, record, parsed)

    async def _save_room(
        self, ref: RoomRef, record: RoomRecord, options: RoomOptions
    ) -> web.StreamResponse:
        name = checked_name(options.name, "name")
        updated = RoomRecord(
            id=record.id, service_id=record.service_id, name=name, options=options.to_json()
        )
        try:
            self.server.store.update_room(updated)
        except NotFoundError:
            raise RestError(404, ErrorCode.ROOM_NOT_FOUND, "Room not found") from None
        await self.server.reload_room_options(ref.id, options)
        logger.info("room options updated", extra={"service": record.service_id, "room": record.id})
        return web.json_response(room_json(updated.id, updated.name, updated.options))

    async def delete_room(self, request: web.Request) -> web.StreamResponse:
        ref = self._room(request)
        service = self._credentials(request).service
        if ref.record is not None:
            self.server.store.delete_room(service.id, ref.id)
        if ref.loaded is not None:
            await self.server.delete_room(ref.loaded)
        logger.info("room deleted over REST", extra={"service": service.id, "room": ref.id})
        return web.Response(text="Room deleted")


def _options_error(exc: OptionsError, prefix: str) -> RestError:
    # OptionsError reads "path: reason; path: reason"; name the fields as the client sent them.
    parts = []
    for part in str(exc).split("; "):
        if prefix and ": " in part and not part.startswith("and "):
            part = prefix + part
        parts.append(part)
    return bad_request("Invalid room options: " + "; ".join(parts))


def _split_room_body(body: dict[str, Any], room_id: str | None) -> tuple[Any, dict[str, Any], str]:
    """(name or None, options, field prefix) of a room body.

    OWT documents ``{name, options}`` (RoomConfig) but its PUT really takes the
    room object itself; both are accepted, and a room object fetched with GET
    (with its ``_id``) can be sent back as it is.
    """
    body = dict(body)
    for key in ("_id", "id"):
        if key in body:
            value = body.pop(key)
            if room_id is None:
                raise bad_request(f"{key}: a new room's id is chosen by the server")
            if value != room_id:
                raise bad_request(f"{key}: does not match the room in the URL")
    if "options" in body:
        unknown = sorted(set(body) - {"name", "options"})
        if unknown:
            raise bad_request(f"{unknown[0]}: unknown field (expected name and options)")
        options = expect_object(body["options"], "options")
        return body.get("name"), dict(options), "options."
    return body.get("name"), body, ""

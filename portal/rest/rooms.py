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

from .bodies import checked_name, expect_object, parse_paging
from .errors import RestError, bad_request
from .resource import BOTH, Resource, Route

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
        service_id = self._service_id(request)
        body = expect_object(await self._read_json(request))
        name, options, prefix = _split_room_body(body, None)
        name = checked_name(name, "name")
        try:
            parsed = parse_room_options({**options, "name": name})
        except OptionsError as exc:
            raise _options_error(exc, prefix) from None
        room = await self.conference.create_room(service_id, parsed)
        logger.info(
            "room created over REST",
            extra={"service": service_id, "room": room["_id"], "room_name": name},
        )
        return web.json_response(room)

    async def list_rooms(self, request: web.Request) -> web.StreamResponse:
        paging = parse_paging(request.query)
        rooms = await self.conference.list_rooms(self._service_id(request), paging)
        return web.json_response(rooms)

    async def get_room(self, request: web.Request) -> web.StreamResponse:
        room_id = await self._room(request)
        return web.json_response(await self.conference.get_room(self._service_id(request), room_id))

    async def _stored_room(self, request: web.Request) -> tuple[str, dict[str, Any]]:
        room_id = await self._room(request)
        room = await self.conference.get_room(self._service_id(request), room_id, stored=True)
        return room_id, _options_of(room)

    async def replace_room(self, request: web.Request) -> web.StreamResponse:
        """PUT: each top-level field given replaces the room's (OWT's ``Object.assign``).

        A field not given keeps its value; a field given is replaced whole
        (a ``views`` list replaces every view, with defaults for what it omits).
        """
        room_id, current = await self._stored_room(request)
        body = expect_object(await self._read_json(request))
        name, options, prefix = _split_room_body(body, room_id)
        name = current["name"] if name is None else checked_name(name, f"{prefix}name")
        try:
            parsed = parse_room_options({**current, **options, "name": name})
        except OptionsError as exc:
            raise _options_error(exc, prefix) from None
        return await self._save_room(request, room_id, parsed)

    async def patch_room(self, request: web.Request) -> web.StreamResponse:
        room_id, current = await self._stored_room(request)
        body = expect_object(await self._read_json(request))
        name, patch, prefix = _split_room_body(body, room_id)
        if name is not None:
            patch["name"] = checked_name(name, f"{prefix}name")
        try:
            parsed = merge_room_options(parse_room_options(current), patch)
        except OptionsError as exc:
            raise _options_error(exc, prefix) from None
        return await self._save_room(request, room_id, parsed)

    async def _save_room(
        self, request: web.Request, room_id: str, options: RoomOptions
    ) -> web.StreamResponse:
        checked_name(options.name, "name")
        service_id = self._service_id(request)
        room = await self.conference.update_room(service_id, room_id, options)
        logger.info("room options updated", extra={"service": service_id, "room": room_id})
        return web.json_response(room)

    async def delete_room(self, request: web.Request) -> web.StreamResponse:
        room_id = await self._room(request)
        service_id = self._service_id(request)
        await self.conference.delete_room(service_id, room_id)
        logger.info("room deleted over REST", extra={"service": service_id, "room": room_id})
        return web.Response(text="Room deleted")


def _options_of(room: dict[str, Any]) -> dict[str, Any]:
    """A room object's options (without its ids)."""
    return {k: v for k, v in room.items() if k not in ("_id", "id")}


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

"""REST: /rooms/{room}/participants, who is in a room, their permissions, removal."""

from __future__ import annotations

import logging

from aiohttp import web

from .bodies import expect_patch, path_id
from .errors import ErrorCode
from .resource import BOTH, Resource, Route, empty_response

logger = logging.getLogger(__name__)


class Participants(Resource):
    """GET, PATCH (permission) and DELETE (drop) of participants."""

    def routes(self) -> list[Route]:
        return [
            ("GET", "/rooms/{room}/participants", self.list_participants, BOTH),
            ("GET", "/rooms/{room}/participants/{participant}", self.get_participant, BOTH),
            ("PATCH", "/rooms/{room}/participants/{participant}", self.patch_participant, BOTH),
            ("DELETE", "/rooms/{room}/participants/{participant}", self.delete_participant, BOTH),
        ]

    async def _participant(self, request: web.Request) -> tuple[str, str]:
        room_id = await self._room(request)
        participant_id = path_id(
            request, "participant", ErrorCode.PARTICIPANT_NOT_FOUND, "Participant"
        )
        return room_id, participant_id

    async def list_participants(self, request: web.Request) -> web.StreamResponse:
        room_id = await self._room(request)
        listed = await self.conference.list_participants(self._service_id(request), room_id)
        return web.json_response(listed)

    async def get_participant(self, request: web.Request) -> web.StreamResponse:
        room_id, participant_id = await self._participant(request)
        detail = await self.conference.get_participant(
            self._service_id(request), room_id, participant_id
        )
        return web.json_response(detail)

    async def patch_participant(self, request: web.Request) -> web.StreamResponse:
        room_id, participant_id = await self._participant(request)
        service_id = self._service_id(request)
        # The participant first: an unknown one is a 404 whatever the body.
        await self.conference.get_participant(service_id, room_id, participant_id)
        operations = expect_patch(await self._read_json(request))
        detail = await self.conference.update_permission(
            service_id, room_id, participant_id, operations
        )
        return web.json_response(detail)

    async def delete_participant(self, request: web.Request) -> web.StreamResponse:
        room_id, participant_id = await self._participant(request)
        await self.conference.drop_participant(
            self._service_id(request), room_id, participant_id, "dropped over REST"
        )
        return empty_response()

"""REST: /rooms/{room}/streams, forward and mixed streams: status, mixing, layout."""

from __future__ import annotations

import logging

from aiohttp import web

from .bodies import expect_patch, path_id
from .errors import ErrorCode
from .resource import BOTH, Resource, Route, empty_response
from .streamformat import API_V1, API_V11, rest_stream

logger = logging.getLogger(__name__)


def api_version(request: web.Request) -> str:
    """Which of OWT's stream formats the request's path asks for (/v1 or /v1.1)."""
    return API_V11 if request.path.startswith("/v1.1/") else API_V1


class Streams(Resource):
    """GET, PATCH (JSON patch) and DELETE of streams, in OWT's format of the path's version."""

    def routes(self) -> list[Route]:
        return [
            ("GET", "/rooms/{room}/streams", self.list_streams, BOTH),
            ("GET", "/rooms/{room}/streams/{stream}", self.get_stream, BOTH),
            ("PATCH", "/rooms/{room}/streams/{stream}", self.patch_stream, BOTH),
            ("DELETE", "/rooms/{room}/streams/{stream}", self.delete_stream, BOTH),
        ]

    async def _stream(self, request: web.Request) -> tuple[str, str]:
        room_id = await self._room(request)
        return room_id, path_id(request, "stream", ErrorCode.STREAM_NOT_FOUND, "Stream")

    async def list_streams(self, request: web.Request) -> web.StreamResponse:
        room_id = await self._room(request)
        streams = await self.conference.list_streams(self._service_id(request), room_id)
        version = api_version(request)
        return web.json_response([rest_stream(info, version) for info in streams])

    async def get_stream(self, request: web.Request) -> web.StreamResponse:
        room_id, stream_id = await self._stream(request)
        info = await self.conference.get_stream(self._service_id(request), room_id, stream_id)
        return web.json_response(rest_stream(info, api_version(request), keep_tracks=True))

    async def patch_stream(self, request: web.Request) -> web.StreamResponse:
        room_id, stream_id = await self._stream(request)
        service_id = self._service_id(request)
        # The stream first: an unknown one is a 404 whatever the body.
        await self.conference.get_stream(service_id, room_id, stream_id)
        operations = expect_patch(await self._read_json(request))
        info = await self.conference.patch_stream(service_id, room_id, stream_id, operations)
        return web.json_response(rest_stream(info, api_version(request)))

    async def delete_stream(self, request: web.Request) -> web.StreamResponse:
        room_id, stream_id = await self._stream(request)
        await self.conference.delete_stream(self._service_id(request), room_id, stream_id)
        logger.info("stream removed over REST", extra={"room": room_id, "stream": stream_id})
        return empty_response()

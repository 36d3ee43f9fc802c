"""REST: /rooms/{room}/streaming-ins, outside sources (RTSP, RTMP, HLS, files) pulled in."""

from __future__ import annotations

from aiohttp import web

from tessera.conference.streaminginrequest import StreamingInRequestError, parse_streaming_in

from .bodies import path_id
from .errors import ErrorCode, bad_request
from .resource import BOTH, Resource, Route, empty_response


class StreamingIns(Resource):
    """POST (pull a source in), GET (list, one) and DELETE (stop pulling, remove the stream)."""

    def routes(self) -> list[Route]:
        return [
            ("POST", "/rooms/{room}/streaming-ins", self.add_streaming_in, BOTH),
            ("GET", "/rooms/{room}/streaming-ins", self.list_streaming_ins, BOTH),
            ("GET", "/rooms/{room}/streaming-ins/{stream}", self.get_streaming_in, BOTH),
            ("DELETE", "/rooms/{room}/streaming-ins/{stream}", self.remove_streaming_in, BOTH),
        ]

    async def _stream(self, request: web.Request) -> tuple[str, str]:
        room_id = await self._room(request)
        return room_id, path_id(request, "stream", ErrorCode.STREAM_NOT_FOUND, "Streaming-in")

    async def add_streaming_in(self, request: web.Request) -> web.StreamResponse:
        room_id = await self._room(request)
        try:
            body = parse_streaming_in(await self._read_json(request))
        except StreamingInRequestError as exc:
            raise bad_request(str(exc)) from None
        stream = await self.conference.add_streaming_in(self._service_id(request), room_id, body)
        return web.json_response(stream)

    async def list_streaming_ins(self, request: web.Request) -> web.StreamResponse:
        room_id = await self._room(request)
        streams = await self.conference.list_streaming_ins(self._service_id(request), room_id)
        return web.json_response(streams)

    async def get_streaming_in(self, request: web.Request) -> web.StreamResponse:
        room_id, stream_id = await self._stream(request)
        stream = await self.conference.get_streaming_in(
            self._service_id(request), room_id, stream_id
        )
        return web.json_response(stream)

    async def remove_streaming_in(self, request: web.Request) -> web.StreamResponse:
        room_id, stream_id = await self._stream(request)
        await self.conference.remove_streaming_in(self._service_id(request), room_id, stream_id)
        return empty_response()

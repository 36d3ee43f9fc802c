"""REST: /rooms/{room}/streaming-outs, RTMP, RTSP, HLS and DASH outputs of any stream."""

from __future__ import annotations

import logging

from aiohttp import web

from tessera.conference.outputs import PROTOCOLS, guess_protocol
from tessera.conference.requests import StreamingOutRequest

from .bodies import expect_object, path_id
from .errors import ErrorCode, bad_request
from .mediarequest import media_request
from .resource import BOTH, Resource, Route

logger = logging.getLogger(__name__)


class StreamingOuts(Resource):
    """POST (start), GET, PATCH (sources, video parameters, status) and DELETE (stop)."""

    def routes(self) -> list[Route]:
        return [
            ("POST", "/rooms/{room}/streaming-outs", self.create_streaming_out, BOTH),
            ("GET", "/rooms/{room}/streaming-outs", self.list_streaming_outs, BOTH),
            ("GET", "/rooms/{room}/streaming-outs/{streaming}", self.get_streaming_out, BOTH),
            ("PATCH", "/rooms/{room}/streaming-outs/{streaming}", self.patch_streaming_out, BOTH),
            ("DELETE", "/rooms/{room}/streaming-outs/{streaming}", self.delete_streaming_out, BOTH),
        ]

    async def _streaming_out(self, request: web.Request) -> tuple[str, str]:
        room_id = await self._room(request)
        return room_id, path_id(request, "streaming", ErrorCode.NOT_FOUND, "Streaming-out")

    async def create_streaming_out(self, request: web.Request) -> web.StreamResponse:
        room_id = await self._room(request)
        body = expect_object(await self._read_json(request))
        unknown = sorted(set(body) - {"protocol", "url", "parameters", "media"})
        if unknown:
            raise bad_request(
                f"{unknown[0]}: unknown field (expected protocol, url, parameters, media)"
            )
        url = body.get("url")
        if url is not None and not isinstance(url, str):
            raise bad_request("url: a string is required")
        protocol = body.get("protocol")
        if protocol is None:
            # OWT guesses a missing protocol from the url.
            protocol = guess_protocol(url)
            if protocol is None:
                raise bad_request(
                    "protocol: missing, and the url does not tell "
                    "(rtmp://..., rtsp://..., .../name.m3u8, .../name.mpd)"
                )
        if protocol not in PROTOCOLS:
            raise bad_request(f"protocol: expected one of {', '.join(PROTOCOLS)}")
        media = media_request({"media": body.get("media")}).media
        out = await self.conference.start_streaming_out(
            self._service_id(request),
            room_id,
            StreamingOutRequest(
                protocol=protocol, url=url, parameters=body.get("parameters"), media=media
            ),
        )
        return web.json_response(out)

    async def list_streaming_outs(self, request: web.Request) -> web.StreamResponse:
        room_id = await self._room(request)
        outs = await self.conference.list_streaming_outs(self._service_id(request), room_id)
        return web.json_response(outs)

    async def get_streaming_out(self, request: web.Request) -> web.StreamResponse:
        room_id, streaming_id = await self._streaming_out(request)
        out = await self.conference.get_streaming_out(
            self._service_id(request), room_id, streaming_id
        )
        return web.json_response(out)

    async def patch_streaming_out(self, request: web.Request) -> web.StreamResponse:
        room_id, streaming_id = await self._streaming_out(request)
        service_id = self._service_id(request)
        # The streaming-out first: an unknown one is a 404 whatever the body.
        await self.conference.get_streaming_out(service_id, room_id, streaming_id)
        operations = await self._read_json(request)
        out = await self.conference.patch_streaming_out(
            service_id, room_id, streaming_id, operations
        )
        return web.json_response(out)

    async def delete_streaming_out(self, request: web.Request) -> web.StreamResponse:
        room_id, streaming_id = await self._streaming_out(request)
        await self.conference.stop_streaming_out(self._service_id(request), room_id, streaming_id)
        # OWT answers an empty body.
        return web.Response(status=200)

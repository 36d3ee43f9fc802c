"""REST: /rooms/{room}/streaming-outs, RTMP and HLS outputs of any stream."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from tessera.media.mediasource import ParameterError
from tessera.recorder.muxer import MuxerError
from tessera.recorder.streamingout import StreamingOut

from .bodies import expect_object, expect_patch, path_id
from .errors import ErrorCode, RestError, bad_request
from .mediarequest import media_request, source_patch
from .resource import BOTH, Resource, RoomRef, Route

logger = logging.getLogger(__name__)


class StreamingOuts(Resource):
    """POST (start), GET, PATCH (sources) and DELETE (stop) of streaming-outs."""

    def routes(self) -> list[Route]:
        return [
            ("POST", "/rooms/{room}/streaming-outs", self.create_streaming_out, BOTH),
            ("GET", "/rooms/{room}/streaming-outs", self.list_streaming_outs, BOTH),
            ("GET", "/rooms/{room}/streaming-outs/{streaming}", self.get_streaming_out, BOTH),
            ("PATCH", "/rooms/{room}/streaming-outs/{streaming}", self.patch_streaming_out, BOTH),
            ("DELETE", "/rooms/{room}/streaming-outs/{streaming}", self.delete_streaming_out, BOTH),
        ]

    def _streaming_out(self, request: web.Request) -> tuple[RoomRef, StreamingOut]:
        ref = self._room(request)
        service = self._credentials(request).service
        streaming_id = path_id(request, "streaming", ErrorCode.NOT_FOUND, "Streaming-out")
        entry = self.server.streaming_outs.get(streaming_id)
        if entry is None or entry[0] != service.id or entry[1] != ref.id:
            raise RestError(404, ErrorCode.NOT_FOUND, "Streaming-out not found")
        return ref, entry[2]

    async def create_streaming_out(self, request: web.Request) -> web.StreamResponse:
        ref = self._room(request)
        body = expect_object(await self._read_json(request))
        protocol = body.get("protocol", "rtmp")
        if protocol not in ("rtmp", "hls"):
            raise bad_request("protocol: expected rtmp or hls")
        url = body.get("url")
        if protocol == "rtmp" and not isinstance(url, str):
            raise bad_request("url: an rtmp:// URL is required")
        parameters: dict[str, Any] = {}
        hls = body.get("parameters") or {}
        if not isinstance(hls, dict):
            raise bad_request("parameters: an object is required")
        for key, name in (("hlsTime", "hls_time"), ("hlsListSize", "hls_list_size")):
            value = hls.get(key)
            if value is not None:
                if not isinstance(value, int) or not 1 <= value <= 60:
                    raise bad_request(f"parameters.{key}: a whole number from 1 to 60")
                parameters[name] = value
        unknown = sorted(set(body) - {"protocol", "url", "parameters", "media"})
        if unknown:
            raise bad_request(
                f"{unknown[0]}: unknown field (expected protocol, url, parameters, media)"
            )
        media = media_request({"media": body.get("media")}).media
        if ref.loaded is None:
            raise bad_request("The room has no streams (nobody is in it)")
        try:
            out = ref.loaded.start_streaming_out(
                str(protocol), url if protocol == "rtmp" else None, media, parameters
            )
        except (ParameterError, MuxerError) as exc:
            raise bad_request(str(exc)) from None
        return web.json_response(out.describe())

    async def list_streaming_outs(self, request: web.Request) -> web.StreamResponse:
        ref = self._room(request)
        service = self._credentials(request).service
        outs = self.server.streaming_outs_of(service.id, ref.id)
        return web.json_response([o.describe() for o in outs])

    async def get_streaming_out(self, request: web.Request) -> web.StreamResponse:
        _, out = self._streaming_out(request)
        return web.json_response(out.describe())

    async def patch_streaming_out(self, request: web.Request) -> web.StreamResponse:
        ref, out = self._streaming_out(request)
        operations = expect_patch(await self._read_json(request))
        sources = source_patch(operations)
        if ref.loaded is None or out.state not in ("connecting", "streaming"):
            raise bad_request("The streaming-out is not running")
        try:
            out.update(ref.loaded.streams, sources.get("audio"), sources.get("video"))
        except ParameterError as exc:
            raise bad_request(str(exc)) from None
        return web.json_response(out.describe())

    async def delete_streaming_out(self, request: web.Request) -> web.StreamResponse:
        _, out = self._streaming_out(request)
        await out.stop()
        return web.json_response(out.describe())

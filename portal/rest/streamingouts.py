"""REST: /rooms/{room}/streaming-outs, RTMP, RTSP, HLS and DASH outputs of any stream."""

from __future__ import annotations

import logging

from aiohttp import web

from tessera.media.mediasource import ParameterError
from tessera.recorder.muxer import MuxerError
from tessera.recorder.outputpatch import parse_output_patch
from tessera.recorder.streamingout import StreamingOut
from tessera.recorder.streamingtarget import PROTOCOLS, guess_protocol

from .bodies import expect_object, path_id
from .errors import ErrorCode, RestError, bad_request
from .mediarequest import media_request
from .resource import BOTH, Resource, RoomRef, Route

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
        if ref.loaded is None:
            raise bad_request("The room has no streams (nobody is in it)")
        try:
            out = ref.loaded.start_streaming_out(protocol, url, media, body.get("parameters"))
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
        try:
            patch = parse_output_patch(await self._read_json(request))
        except ParameterError as exc:
            raise bad_request(str(exc)) from None
        if ref.loaded is None or out.state not in ("connecting", "streaming"):
            raise bad_request(f"The streaming-out is not running (it is {out.state})")
        try:
            out.update(ref.loaded.streams, patch)
        except (ParameterError, MuxerError) as exc:
            raise bad_request(str(exc)) from None
        return web.json_response(out.describe())

    async def delete_streaming_out(self, request: web.Request) -> web.StreamResponse:
        _, out = self._streaming_out(request)
        await out.stop()
        # OWT answers an empty body.
        return web.Response(status=200)

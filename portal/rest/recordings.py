"""REST: /rooms/{room}/recordings, recordings of any stream, and their files."""

from __future__ import annotations

import logging

from aiohttp import web

from tessera.media.mediasource import ParameterError
from tessera.recorder.muxer import MuxerError
from tessera.recorder.recording import Recording, StoredRecording

from .bodies import expect_patch, path_id
from .errors import ErrorCode, RestError, bad_request
from .mediarequest import media_request, source_patch
from .resource import BOTH, Resource, RoomRef, Route

logger = logging.getLogger(__name__)


class Recordings(Resource):
    """POST (start), GET, PATCH (sources), DELETE (stop) and the file of recordings."""

    def routes(self) -> list[Route]:
        return [
            ("POST", "/rooms/{room}/recordings", self.create_recording, BOTH),
            ("GET", "/rooms/{room}/recordings", self.list_recordings, BOTH),
            ("GET", "/rooms/{room}/recordings/{recording}", self.get_recording, BOTH),
            ("PATCH", "/rooms/{room}/recordings/{recording}", self.patch_recording, BOTH),
            ("DELETE", "/rooms/{room}/recordings/{recording}", self.delete_recording, BOTH),
            ("GET", "/rooms/{room}/recordings/{recording}/file", self.download_recording, BOTH),
        ]

    def _recording(self, request: web.Request) -> tuple[RoomRef, Recording | StoredRecording]:
        ref = self._room(request)
        service = self._credentials(request).service
        recording_id = path_id(request, "recording", ErrorCode.NOT_FOUND, "Recording")
        recording = self.server.find_recording(service.id, ref.id, recording_id)
        if recording is None:
            raise RestError(404, ErrorCode.NOT_FOUND, "Recording not found")
        return ref, recording

    async def create_recording(self, request: web.Request) -> web.StreamResponse:
        service = self._credentials(request).service
        ref = self._room(request)
        body = media_request(await self._read_json(request))
        if not service.recording:
            raise RestError(
                403, ErrorCode.PERMISSION_DENIED, "Recording is switched off for this service"
            )
        if ref.loaded is None:
            raise bad_request("The room has no streams to record (nobody is in it)")
        try:
            recording = ref.loaded.start_recording(body.container, body.media)
        except (ParameterError, MuxerError) as exc:
            raise bad_request(str(exc)) from None
        return web.json_response(recording.describe())

    async def list_recordings(self, request: web.Request) -> web.StreamResponse:
        ref = self._room(request)
        service = self._credentials(request).service
        recordings = self.server.recordings_of(service.id, ref.id)
        return web.json_response([r.describe() for r in recordings])

    async def get_recording(self, request: web.Request) -> web.StreamResponse:
        _, recording = self._recording(request)
        return web.json_response(recording.describe())

    async def patch_recording(self, request: web.Request) -> web.StreamResponse:
        ref, recording = self._recording(request)
        operations = expect_patch(await self._read_json(request))
        sources = source_patch(operations)
        if ref.loaded is None or recording.state != "recording":
            raise bad_request("The recording is not running")
        try:
            recording.update(ref.loaded.streams, sources.get("audio"), sources.get("video"))
        except ParameterError as exc:
            raise bad_request(str(exc)) from None
        return web.json_response(recording.describe())

    async def delete_recording(self, request: web.Request) -> web.StreamResponse:
        _, recording = self._recording(request)
        await recording.stop()
        return web.json_response(recording.describe())

    async def download_recording(self, request: web.Request) -> web.StreamResponse:
        _, recording = self._recording(request)
        if recording.state == "recording":
            raise bad_request("The recording is still running; stop it first", 409)
        if not recording.path.is_file():
            raise RestError(404, ErrorCode.NOT_FOUND, "The recording has no file")
        return web.FileResponse(
            recording.path,
            headers={
                "Content-Disposition": f'attachment; filename="{recording.path.name}"',
            },
        )

"""REST: /rooms/{room}/recordings, recordings of any stream, and their files."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from tessera.media.mediasource import ParameterError
from tessera.recorder.muxer import MuxerError
from tessera.recorder.outputpatch import parse_output_patch
from tessera.recorder.recording import Recording, StoredRecording

from .bodies import path_id
from .errors import ErrorCode, RestError, bad_request
from .mediarequest import media_request
from .resource import BOTH, Resource, RoomRef, Route, empty_response

logger = logging.getLogger(__name__)

# ?state= of the list: OWT lists the recordings that are running; Tessera also keeps
# finished ones (of this run and earlier ones) to download.
LIST_STATES = ("recording", "stopped", "failed", "all")


class Recordings(Resource):
    """POST (start), GET, PATCH (sources, status, video parameters), DELETE (stop), and the
    file of recordings."""

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
        raw = await self._read_json(request)
        body = media_request(raw)
        _check_audio_format(raw)
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
        state = request.query.get("state", "recording")
        if state not in LIST_STATES:
            raise bad_request(f"state must be one of {', '.join(LIST_STATES)}")
        recordings = self.server.recordings_of(service.id, ref.id)
        listed = [r for r in recordings if state in ("all", r.state)]
        return web.json_response([r.describe() for r in listed])

    async def get_recording(self, request: web.Request) -> web.StreamResponse:
        _, recording = self._recording(request)
        return web.json_response(recording.describe())

    async def patch_recording(self, request: web.Request) -> web.StreamResponse:
        ref, recording = self._recording(request)
        # OWT's SubscriptionControlInfo, as a streaming-out's PATCH reads it.
        try:
            patch = parse_output_patch(await self._read_json(request))
        except ParameterError as exc:
            raise bad_request(str(exc)) from None
        if ref.loaded is None or recording.state != "recording":
            raise bad_request(f"The recording is not running (it is {recording.state})")
        try:
            recording.update(
                ref.loaded.streams,
                patch.sources.get("audio"),
                patch.sources.get("video"),
                patch.parameters,
                patch.status,
            )
        except ParameterError as exc:
            raise bad_request(str(exc)) from None
        logger.info(
            "recording updated over REST", extra={"room": ref.id, "recording": recording.id}
        )
        return web.json_response(recording.describe())

    async def delete_recording(self, request: web.Request) -> web.StreamResponse:
        _, recording = self._recording(request)
        await recording.stop()
        return empty_response()

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


def _check_audio_format(body: Any) -> None:
    """``media.audio.format``: Tessera records the publishers' Opus as it is."""
    media = body.get("media") if isinstance(body, dict) else None
    audio = media.get("audio") if isinstance(media, dict) else None
    fmt = audio.get("format") if isinstance(audio, dict) else None
    if fmt is None:
        return
    codec = fmt.get("codec") if isinstance(fmt, dict) else None
    if not isinstance(codec, str):
        raise bad_request('media.audio.format: an object like {"codec": "opus"}')
    if codec.lower() != "opus":
        raise bad_request(
            f"media.audio.format.codec: Tessera records audio as Opus (as it arrives), "
            f"not {codec[:32]}; leave format out or ask for opus"
        )
    for key, wanted in (("sampleRate", 48000), ("channelNum", 2)):
        if key in fmt and fmt[key] != wanted:
            raise bad_request(f"media.audio.format.{key}: Opus is recorded at {wanted}")
    unknown = sorted(set(fmt) - {"codec", "sampleRate", "channelNum"})
    if unknown:
        raise bad_request(f"media.audio.format.{unknown[0]}: unknown field")

"""REST: /rooms/{room}/recordings, recordings of any stream, and their files; /recordings,
the service's recordings whatever became of their rooms (Tessera's, named as OWT names
its per-service collection /rooms)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from aiohttp import web

from tessera.conference.requests import RecordingRequest

from .bodies import path_id
from .errors import ErrorCode, bad_request
from .mediarequest import media_request
from .perstreamrequest import is_per_stream, per_stream_request
from .resource import BOTH, Resource, Route, empty_response

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
            ("GET", "/recordings", self.list_service_recordings, BOTH),
            ("GET", "/recordings/{recording}", self.get_service_recording, BOTH),
            ("GET", "/recordings/{recording}/file", self.download_service_recording, BOTH),
        ]

    async def _recording(self, request: web.Request) -> tuple[str, str]:
        room_id = await self._room(request)
        return room_id, path_id(request, "recording", ErrorCode.NOT_FOUND, "Recording")

    @staticmethod
    def _room_ref(request: web.Request) -> str:
        # Not resolved here: a room that ended or was deleted is still named by its id in
        # its recordings' paths, and the room service finds them by it.
        return path_id(request, "room", ErrorCode.ROOM_NOT_FOUND, "Room")

    @staticmethod
    def _recording_id(request: web.Request) -> str:
        return path_id(request, "recording", ErrorCode.NOT_FOUND, "Recording")

    async def create_recording(self, request: web.Request) -> web.StreamResponse:
        room_id = await self._room(request)
        raw = await self._read_json(request)
        if is_per_stream(raw):
            # Tessera's: each forward stream in its own file (perstreamrequest.py).
            started = await self.conference.start_per_stream_recording(
                self._service_id(request), room_id, per_stream_request(raw)
            )
            return web.json_response(started)
        body = media_request(raw)
        _check_audio_format(raw)
        recording = await self.conference.start_recording(
            self._service_id(request),
            room_id,
            RecordingRequest(container=body.container, media=body.media),
        )
        return web.json_response(recording)

    async def list_recordings(self, request: web.Request) -> web.StreamResponse:
        room = self._room_ref(request)
        state = _state(request, "recording")
        listed = await self.conference.list_recordings(self._service_id(request), room, state)
        return web.json_response(listed)

    async def get_recording(self, request: web.Request) -> web.StreamResponse:
        room, recording_id = self._room_ref(request), self._recording_id(request)
        info = await self.conference.get_recording(self._service_id(request), room, recording_id)
        return web.json_response(info)

    async def patch_recording(self, request: web.Request) -> web.StreamResponse:
        room_id, recording_id = await self._recording(request)
        service_id = self._service_id(request)
        # The recording first: an unknown one is a 404 whatever the body.
        await self.conference.get_recording(service_id, room_id, recording_id)
        # OWT's SubscriptionControlInfo, as a streaming-out's PATCH reads it.
        operations = await self._read_json(request)
        info = await self.conference.patch_recording(service_id, room_id, recording_id, operations)
        logger.info("recording updated over REST", extra={"room": room_id, "recording": info["id"]})
        return web.json_response(info)

    async def delete_recording(self, request: web.Request) -> web.StreamResponse:
        room_id, recording_id = await self._recording(request)
        await self.conference.stop_recording(self._service_id(request), room_id, recording_id)
        return empty_response()

    async def download_recording(self, request: web.Request) -> web.StreamResponse:
        room, recording_id = self._room_ref(request), self._recording_id(request)
        path = await self.conference.recording_file(self._service_id(request), room, recording_id)
        return _download(path)

    async def list_service_recordings(self, request: web.Request) -> web.StreamResponse:
        state = _state(request, "all")
        return web.json_response(
            await self.conference.service_recordings(self._service_id(request), state)
        )

    async def get_service_recording(self, request: web.Request) -> web.StreamResponse:
        recording_id = self._recording_id(request)
        info = await self.conference.service_recording(self._service_id(request), recording_id)
        return web.json_response(info)

    async def download_service_recording(self, request: web.Request) -> web.StreamResponse:
        recording_id = self._recording_id(request)
        path = await self.conference.service_recording_file(self._service_id(request), recording_id)
        return _download(path)


def _state(request: web.Request, default: str) -> str:
    """``?state=`` of a list of recordings."""
    state = request.query.get("state", default)
    if state not in LIST_STATES:
        raise bad_request(f"state must be one of {', '.join(LIST_STATES)}")
    return state


def _download(path: Path) -> web.FileResponse:
    """The file as an attachment named as it is on disk (``<recording id>.<container>``)."""
    return web.FileResponse(
        path, headers={"Content-Disposition": f'attachment; filename="{path.name}"'}
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

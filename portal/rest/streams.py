"""REST: /rooms/{room}/streams, forward and mixed streams: status, mixing, layout."""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Callable
from typing import Any

from aiohttp import web

from tessera.conference.room import Room
from tessera.media.mediasource import Stream
from tessera.mixer.activeaudio import ActiveAudioStream
from tessera.mixer.layout import LayoutError

from .bodies import expect_patch, path_id
from .errors import ErrorCode, RestError, bad_request
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

    def _stream(self, request: web.Request) -> tuple[Room, Stream]:
        ref = self._room(request)
        stream_id = path_id(request, "stream", ErrorCode.STREAM_NOT_FOUND, "Stream")
        stream = ref.loaded.streams.get(stream_id) if ref.loaded else None
        if ref.loaded is None or stream is None:
            raise RestError(404, ErrorCode.STREAM_NOT_FOUND, "Stream not found")
        return ref.loaded, stream

    async def list_streams(self, request: web.Request) -> web.StreamResponse:
        room = self._room(request).loaded
        streams = list(room.streams.values()) if room is not None else []
        version = api_version(request)
        return web.json_response([rest_stream(stream.info(), version) for stream in streams])

    async def get_stream(self, request: web.Request) -> web.StreamResponse:
        _, stream = self._stream(request)
        info = rest_stream(stream.info(), api_version(request), keep_tracks=True)
        return web.json_response(info)

    async def patch_stream(self, request: web.Request) -> web.StreamResponse:
        room, stream = self._stream(request)
        operations = expect_patch(await self._read_json(request))
        # Validate everything first: a patch applies whole or not at all.
        changes = [
            _stream_change(room, stream, operation, f"[{index}]")
            for index, operation in enumerate(operations)
        ]
        for change in changes:
            change()
        return web.json_response(rest_stream(stream.info(), api_version(request)))

    async def delete_stream(self, request: web.Request) -> web.StreamResponse:
        room, stream = self._stream(request)
        if stream.type != "forward" or isinstance(stream, ActiveAudioStream):
            raise bad_request(
                "Only a published stream can be removed; a mixed stream is a view, "
                "an active audio stream (selectActiveAudio) the room's own"
            )
        owner = next((p for p in room.participants.values() if stream.id in p.publications), None)
        if owner is not None:
            owner.end_session(stream.id)
        else:
            room.remove_stream(stream.id)
        logger.info("stream removed over REST", extra={"room": room.id, "stream": stream.id})
        return empty_response()


_LAYOUT_STREAM_RE = re.compile(r"^/info/layout/(\d+)/stream$")


def _stream_change(
    room: Room, stream: Stream, operation: dict[str, Any], where: str
) -> Callable[[], None]:
    """Check one OWT StreamUpdate and return the change to make, or raise RestError."""
    path, op, value = operation["path"], operation["op"], operation["value"]
    if isinstance(stream, ActiveAudioStream):
        # It carries whoever is loudest: nothing of it is the client's to change.
        raise bad_request(f"{where}: an active audio stream (selectActiveAudio) cannot be changed")
    if path in ("/media/audio/status", "/media/video/status"):
        kind = path.split("/")[2]
        if op != "replace":
            raise bad_request(f"{where}.op: {path} takes 'replace'")
        if value not in ("active", "inactive"):
            raise bad_request(f"{where}.value: {path} takes 'active' or 'inactive'")
        if stream.type != "forward":
            raise bad_request(f"{where}: only a forward stream's track status can be changed")
        if not stream.has_track(kind):
            raise bad_request(f"{where}: the stream has no {kind} track")
        return lambda: room.set_track_status(stream.id, kind, value == "active")
    if path == "/info/inViews":
        if stream.type != "forward":
            raise bad_request(f"{where}: only forward streams are mixed into views")
        if op not in ("add", "remove"):
            raise bad_request(f"{where}.op: /info/inViews takes 'add' or 'remove'")
        if not isinstance(value, str) or value not in room.views:
            raise bad_request(f"{where}.value: view {str(value)[:64]!r} does NOT exist")
        if op == "add":
            return lambda: room.mix(stream.id, value)
        return lambda: room.unmix(stream.id, value)
    match = _LAYOUT_STREAM_RE.match(path)
    if path == "/info/layout" or match:
        view = room.views.get(getattr(stream, "label", ""))
        if stream.type != "mixed" or view is None:
            raise bad_request(f"{where}: only a mixed stream has a layout")
        if op != "replace":
            raise bad_request(f"{where}.op: {path} takes 'replace'")
        if match:
            layout = view.layout.to_json()
            index = int(match.group(1))
            if index >= len(layout):
                raise bad_request(f"{where}.path: the layout has no entry {index}")
            if not isinstance(value, str):
                raise bad_request(f"{where}.value: a stream id is required")
            layout[index] = {**layout[index], "stream": value}
            value = layout
        if not isinstance(value, list):
            raise bad_request(f"{where}.value: a list of {{stream, region}} is required")
        trial = copy.deepcopy(view.layout)
        try:
            trial.apply(value)
        except LayoutError as exc:
            raise bad_request(f"{where}.value: {exc}") from None
        new_layout = value
        return lambda: view.apply_layout(new_layout)
    raise bad_request(
        f"{where}.path: {path[:80]!r} cannot be changed; expected /media/audio/status, "
        "/media/video/status, /info/inViews or /info/layout"
    )

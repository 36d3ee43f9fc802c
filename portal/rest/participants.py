"""REST: /rooms/{room}/participants, who is in a room, their permissions, removal."""

from __future__ import annotations

import logging
import re
from typing import Any

from aiohttp import web

from tessera.conference.participant import Participant
from tessera.conference.room import Room

from .bodies import expect_patch, path_id
from .errors import ErrorCode, RestError, bad_request
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

    def _participant(self, request: web.Request) -> tuple[Room, Participant]:
        ref = self._room(request)
        participant_id = path_id(
            request, "participant", ErrorCode.PARTICIPANT_NOT_FOUND, "Participant"
        )
        participant = ref.loaded.participants.get(participant_id) if ref.loaded else None
        if ref.loaded is None or participant is None:
            raise RestError(404, ErrorCode.PARTICIPANT_NOT_FOUND, "Participant not found")
        return ref.loaded, participant

    async def list_participants(self, request: web.Request) -> web.StreamResponse:
        room = self._room(request).loaded
        participants = list(room.participants.values()) if room is not None else []
        return web.json_response([participant_detail(p) for p in participants])

    async def get_participant(self, request: web.Request) -> web.StreamResponse:
        _, participant = self._participant(request)
        return web.json_response(participant_detail(participant))

    async def patch_participant(self, request: web.Request) -> web.StreamResponse:
        _, participant = self._participant(request)
        operations = expect_patch(await self._read_json(request))
        permission = _permission_copy(participant.permission)
        for index, operation in enumerate(operations):
            _apply_permission(permission, operation, f"[{index}]")
        participant.permission = permission
        logger.info("participant permission set to %s", permission, extra=participant.log_ids)
        return web.json_response(participant_detail(participant))

    async def delete_participant(self, request: web.Request) -> web.StreamResponse:
        _, participant = self._participant(request)
        await self.server.portal.kick(participant)
        logger.info("participant dropped over REST", extra=participant.log_ids)
        return empty_response()


def participant_detail(participant: Participant) -> dict[str, Any]:
    """OWT's ParticipantDetail: ``{id, user, role, permission}``."""
    return {
        "id": participant.id,
        "user": participant.user,
        "role": participant.role,
        "permission": participant.permission,
    }


_PERMISSION_PATH_RE = re.compile(r"^/permission/(publish|subscribe)(?:/(audio|video))?$")


def _permission_copy(permission: dict[str, Any]) -> dict[str, Any]:
    copy = dict(permission)
    for action in ("publish", "subscribe"):
        current = permission.get(action)
        current = current if isinstance(current, dict) else {}
        copy[action] = {
            "audio": bool(current.get("audio", False)),
            "video": bool(current.get("video", False)),
        }
    return copy


def _apply_permission(permission: dict[str, Any], operation: dict[str, Any], where: str) -> None:
    """Apply one OWT PermissionUpdate to ``permission`` (already copied)."""
    path, value = operation["path"], operation["value"]
    match = _PERMISSION_PATH_RE.match(path)
    if match is None:
        raise bad_request(
            f"{where}.path: {path[:80]!r} cannot be changed; expected /permission/publish, "
            "/permission/subscribe or one of their /audio and /video"
        )
    if operation["op"] != "replace":
        raise bad_request(f"{where}.op: only 'replace' is supported")
    action, kind = match[1], match[2]
    if kind is not None:
        if not isinstance(value, bool):
            raise bad_request(f"{where}.value: {path} takes true or false")
        permission[action][kind] = value
        return
    if isinstance(value, bool):
        permission[action] = {"audio": value, "video": value}
        return
    if not isinstance(value, dict):
        raise bad_request(f"{where}.value: {path} takes false or {{audio: bool, video: bool}}")
    unknown = sorted(set(value) - {"audio", "video"})
    if unknown:
        raise bad_request(f"{where}.value.{unknown[0]}: unknown field (expected audio, video)")
    for key in ("audio", "video"):
        if not isinstance(value.get(key), bool):
            raise bad_request(f"{where}.value.{key}: true or false is required")
    permission[action] = {"audio": value["audio"], "video": value["video"]}

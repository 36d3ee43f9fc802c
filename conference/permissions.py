"""A participant's permission and OWT's PermissionUpdate operations on it (pure).

A permission is ``{"publish": {"audio": bool, "video": bool}, "subscribe": {...}}``
(OWT's ParticipantDetail). An update is a JSON-patch list of ``replace`` operations
on ``/permission/{publish,subscribe}[/{audio,video}]``; a bad one refuses the whole
list with a ConferenceError naming it (``[1].path: ...``).
"""

from __future__ import annotations

import re
from typing import Any

from .errors import ConferenceError

_PERMISSION_PATH_RE = re.compile(r"^/permission/(publish|subscribe)(?:/(audio|video))?$")


def permission_copy(permission: dict[str, Any]) -> dict[str, Any]:
    """A copy with both actions as ``{audio, video}`` booleans (an update works on it)."""
    copy = dict(permission)
    for action in ("publish", "subscribe"):
        current = permission.get(action)
        current = current if isinstance(current, dict) else {}
        copy[action] = {
            "audio": bool(current.get("audio", False)),
            "video": bool(current.get("video", False)),
        }
    return copy


def apply_permission(permission: dict[str, Any], operation: dict[str, Any], where: str) -> None:
    """Apply one PermissionUpdate ``{op, path, value}`` to ``permission`` (a copy)."""
    path, value = operation["path"], operation["value"]
    match = _PERMISSION_PATH_RE.match(path)
    if match is None:
        raise ConferenceError(
            f"{where}.path: {path[:80]!r} cannot be changed; expected /permission/publish, "
            "/permission/subscribe or one of their /audio and /video"
        )
    if operation["op"] != "replace":
        raise ConferenceError(f"{where}.op: only 'replace' is supported")
    action, kind = match[1], match[2]
    if kind is not None:
        if not isinstance(value, bool):
            raise ConferenceError(f"{where}.value: {path} takes true or false")
        permission[action][kind] = value
        return
    if isinstance(value, bool):
        permission[action] = {"audio": value, "video": value}
        return
    if not isinstance(value, dict):
        raise ConferenceError(f"{where}.value: {path} takes false or {{audio: bool, video: bool}}")
    unknown = sorted(set(value) - {"audio", "video"})
    if unknown:
        raise ConferenceError(f"{where}.value.{unknown[0]}: unknown field (expected audio, video)")
    for key in ("audio", "video"):
        if not isinstance(value.get(key), bool):
            raise ConferenceError(f"{where}.value.{key}: true or false is required")
    permission[action] = {"audio": value["audio"], "video": value["video"]}


def updated_permission(
    permission: dict[str, Any], operations: list[dict[str, Any]]
) -> dict[str, Any]:
    """The permission after every operation, or ConferenceError (nothing changes)."""
    updated = permission_copy(permission)
    for index, operation in enumerate(operations):
        apply_permission(updated, operation, f"[{index}]")
    return updated

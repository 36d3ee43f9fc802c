"""Pure helpers for StreamInfo objects (see PROTOCOL.md, "StreamInfo").

A client keeps every stream of the room as the StreamInfo dict the portal sent
(in the login reply and in ``stream`` ``add`` events) and applies ``stream``
``update`` events to it with :func:`apply_stream_update`.
"""

from __future__ import annotations

import copy
from typing import Any

#: The update fields that Tessera and OWT portals send.
KNOWN_UPDATE_FIELDS = ("audio.status", "video.status", "video.layout", "activeInput", ".")

# Keys that only a whole StreamInfo has (an ``info`` sub-object has none of them; both
# may have a "type", but only a StreamInfo's is "forward" or "mixed").
_STREAMINFO_KEYS = ("media", "id")
_STREAM_TYPES = ("forward", "mixed")


def apply_stream_update(stream: dict[str, Any], field: str, value: Any) -> dict[str, Any]:
    """Return a copy of ``stream`` with one ``stream`` ``update`` applied.

    - ``"audio.status"`` / ``"video.status"``: the ``status`` of every track of that kind.
    - ``"video.layout"``: ``info.layout``.
    - ``"activeInput"``: ``info.activeInput``.
    - ``"."``: the whole StreamInfo is replaced by ``value`` (as OWT's SDK does). A value
      that is clearly an ``info`` object rather than a StreamInfo replaces ``info`` only.
    - Any other dotted path is set as is (``"info.attributes"`` sets ``info.attributes``),
      so that a field this client does not know yet is not lost.

    The input is not modified.
    """
    updated = copy.deepcopy(stream)
    value = copy.deepcopy(value)
    if field == ".":
        if isinstance(value, dict) and (
            any(key in value for key in _STREAMINFO_KEYS) or value.get("type") in _STREAM_TYPES
        ):
            if "id" not in value and "id" in updated:
                value["id"] = updated["id"]
            return value
        updated["info"] = value
        return updated
    if field in ("audio.status", "video.status"):
        kind = field.split(".", 1)[0]
        for track in stream_tracks(updated):
            if track.get("type") == kind:
                track["status"] = value
        return updated
    if field == "video.layout":
        _info(updated)["layout"] = value
        return updated
    if field == "activeInput":
        _info(updated)["activeInput"] = value
        return updated
    _set_path(updated, field.split("."), value)
    return updated


def stream_tracks(stream: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``media.tracks`` list of a StreamInfo (an empty list if it has none)."""
    media = stream.get("media")
    if not isinstance(media, dict):
        return []
    tracks = media.get("tracks")
    if not isinstance(tracks, list):
        return []
    return [track for track in tracks if isinstance(track, dict)]


def stream_track_kinds(stream: dict[str, Any]) -> set[str]:
    """The kinds (``"audio"``, ``"video"``) a StreamInfo has tracks of."""
    return {str(track["type"]) for track in stream_tracks(stream) if "type" in track}


def _info(stream: dict[str, Any]) -> dict[str, Any]:
    info = stream.get("info")
    if not isinstance(info, dict):
        info = {}
        stream["info"] = info
    return info


def _set_path(target: dict[str, Any], path: list[str], value: Any) -> None:
    node = target
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[path[-1]] = value

"""What a protocol 1.0 or 1.1 client (OWT's 4.x SDKs) reads, from the 1.2 form (pure).

OWT's portal answers every client in the form of the protocol it logged in with
(`portalDataAdapter.js`): 1.1 clients read a stream's media as `media.audio` and
`media.video.original[]` instead of `media.tracks`, and `progress` without
`sessionId` (they have one transport per session, named by the session's id);
1.0 clients read `media.video.format` and `.parameters` directly. Requests of
those clients are brought to 1.2 by `messages.normalize_session_request`.
"""

from __future__ import annotations

import copy
from typing import Any

CURRENT = "1.2"


def downgrade_notification(protocol: str, event: str, data: Any) -> Any:
    """``data`` of push ``event`` as a ``protocol`` client reads it (a copy when it differs)."""
    if protocol == CURRENT or not isinstance(data, dict):
        return data
    if event == "progress" and "sessionId" in data:
        return {k: v for k, v in data.items() if k != "sessionId"}
    if event != "stream":
        return data
    inner = data.get("data")
    if data.get("status") == "add" and isinstance(inner, dict):
        return {**data, "data": downgrade_stream(protocol, inner)}
    if (
        data.get("status") == "update"
        and isinstance(inner, dict)
        and inner.get("field") == "."
        and isinstance(inner.get("value"), dict)
    ):
        value = downgrade_stream(protocol, inner["value"])
        return {**data, "data": {**inner, "value": value}}
    return data


def downgrade_login(protocol: str, result: dict[str, Any]) -> dict[str, Any]:
    """The login result as a ``protocol`` client reads it: its room's streams converted."""
    room = result.get("room")
    if protocol == CURRENT or not isinstance(room, dict):
        return result
    streams = [downgrade_stream(protocol, s) for s in room.get("streams", [])]
    return {**result, "room": {**room, "streams": streams}}


def downgrade_stream(protocol: str, info: dict[str, Any]) -> dict[str, Any]:
    """A StreamInfo with ``media.tracks`` as 1.1 (``media.audio``/``.video.original``) or 1.0."""
    media = info.get("media")
    if protocol == CURRENT or not isinstance(media, dict) or "tracks" not in media:
        return info
    tracks = [t for t in media.get("tracks", []) if isinstance(t, dict)]
    converted: dict[str, Any] = {k: v for k, v in media.items() if k != "tracks"}
    audio = next((t for t in tracks if t.get("type") == "audio"), None)
    if audio is not None:
        converted["audio"] = _pick(audio, ("status", "source", "format", "optional"))
    video = next((t for t in tracks if t.get("type") == "video"), None)
    if video is not None:
        entry = _pick(video, ("status", "source", "optional"))
        original = _pick(video, ("format", "parameters"))
        if protocol == "1.0":
            entry.update(original)
        else:
            entry["original"] = [original]
        converted["video"] = entry
    return {**info, "media": copy.deepcopy(converted)}


def _pick(track: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: track[k] for k in keys if track.get(k) is not None}

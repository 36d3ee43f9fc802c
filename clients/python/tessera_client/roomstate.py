"""RoomState: what the client knows of its room, from the login reply and the server pushes.

Pure bookkeeping (no I/O): the participants and the streams (StreamInfo dicts) of
the room, kept as the Client-Portal protocol's ``participant`` and ``stream``
pushes describe them.
"""

from __future__ import annotations

from typing import Any

from .streaminfo import apply_stream_update


class RoomState:
    """The room as the client last heard of it."""

    def __init__(self) -> None:
        #: The login reply.
        self.info: dict[str, Any] = {}
        self.participant_id: str | None = None
        self.room_id: str | None = None
        #: participant id -> {"id", "user", "role"}, this client included.
        self.participants: dict[str, dict[str, Any]] = {}
        #: stream id -> StreamInfo.
        self.streams: dict[str, dict[str, Any]] = {}

    def apply_login(self, info: dict[str, Any]) -> None:
        """Start over from a login reply (``id``, ``user``, ``role``, ``room``)."""
        self.info = info
        self.participant_id = str(info["id"]) if "id" in info else None
        room = info.get("room") if isinstance(info.get("room"), dict) else {}
        assert isinstance(room, dict)
        self.room_id = str(room["id"]) if "id" in room else None
        self.participants = {
            str(p["id"]): p
            for p in room.get("participants") or []
            if isinstance(p, dict) and "id" in p
        }
        if self.participant_id is not None and self.participant_id not in self.participants:
            self.participants[self.participant_id] = {
                "id": self.participant_id,
                "user": info.get("user"),
                "role": info.get("role"),
            }
        self.streams = {
            str(s["id"]): s for s in room.get("streams") or [] if isinstance(s, dict) and "id" in s
        }

    def apply_participant(self, data: Any) -> None:
        """A ``participant`` push: ``{action: "join" | "leave", data}``."""
        if not isinstance(data, dict):
            return
        action, payload = data.get("action"), data.get("data")
        if action == "join" and isinstance(payload, dict) and "id" in payload:
            self.participants[str(payload["id"])] = payload
        elif action == "leave":
            participant_id = payload.get("id") if isinstance(payload, dict) else payload
            self.participants.pop(str(participant_id), None)

    def apply_stream(self, data: Any) -> object:
        """A ``stream`` push (``add``, ``update``, ``remove``); returns the id a removal names.

        That id, as the push gave it, is for the client to end the sessions of the
        stream; None when the push removed nothing.
        """
        if not isinstance(data, dict):
            return None
        stream_id, status = data.get("id"), data.get("status")
        if status == "add":
            info = data.get("data")
            if isinstance(info, dict):
                self.streams[str(info.get("id", stream_id))] = info
        elif status == "remove":
            self.streams.pop(str(stream_id), None)
            return stream_id
        elif status == "update":
            update = data.get("data")
            current = self.streams.get(str(stream_id))
            if current is not None and isinstance(update, dict) and "field" in update:
                self.streams[str(stream_id)] = apply_stream_update(
                    current, str(update["field"]), update.get("value")
                )
        return None

"""Timeline: what happened in a room during a recording, on the recording's own clock (pure)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Timeline:
    """Events of one recording, written next to it as a single JSON sidecar.

    Times are seconds on the recording's clock: 0 is the first media written
    to the file, so `t` can be used to seek in it directly. Events that
    happened before the first media (the state of the room when recording
    started) are at 0.
    """

    recording_id: str
    room_id: str
    started_at: float = field(default_factory=time.time)  # wall clock, for people
    origin: float | None = None  # time.monotonic() of the first media written
    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    # What `t` counts from (a per-stream recording counts from its start: see perstream.py).
    clock: str = "seconds from the first media in the recording"

    def add(self, event_type: str, at: float | None = None, **data: Any) -> None:
        """Record an event that happened at monotonic time `at` (now by default)."""
        self.events.append((time.monotonic() if at is None else at, {"type": event_type, **data}))

    def to_json(self) -> dict[str, Any]:
        origin = self.origin
        out = []
        # In time order: a per-stream recording adds a file's end when the file is closed.
        for at, event in sorted(self.events, key=lambda item: item[0]):
            t = 0.0 if origin is None else max(0.0, at - origin)
            out.append({"t": round(t, 3), **event})
        return {
            "recording": self.recording_id,
            "room": self.room_id,
            "startedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started_at)),
            "clock": self.clock,
            "events": out,
        }

    def write(self, path: Path, extra: dict[str, Any] | None = None) -> None:
        """Write atomically: a reader (or a crash) never sees half a file.

        ``extra``: more top-level fields (a per-stream recording's list of files)."""
        partial = path.with_suffix(path.suffix + ".partial")
        try:
            partial.write_text(json.dumps({**self.to_json(), **(extra or {})}, indent=1))
            partial.replace(path)
        except OSError:
            partial.unlink(missing_ok=True)  # a full disk left it empty: no half file stays
            raise


def room_event(event: str, data: Any) -> tuple[str, dict[str, Any]] | None:
    """Translate a room notification (`participant`, `stream`) into a timeline event."""
    if not isinstance(data, dict):
        return None
    if event == "participant":
        info = data.get("data")
        if data.get("action") == "join" and isinstance(info, dict):
            who = {k: info.get(k) for k in ("id", "user", "role")}
            return "join", {"participant": who["id"], "user": who["user"], "role": who["role"]}
        if data.get("action") == "leave":
            return "leave", {"participant": info}
        return None
    if event != "stream":
        return None
    stream_id = data.get("id")
    status = data.get("status")
    if status == "add":
        info = data.get("data") or {}
        owner = (info.get("info") or {}).get("owner")
        return "stream-add", {"stream": stream_id, "owner": owner, "kind": info.get("type")}
    if status == "remove":
        return "stream-remove", {"stream": stream_id}
    if status == "update":
        update = data.get("data") or {}
        field_name = update.get("field")
        value = update.get("value")
        if field_name == "video.layout":
            return "layout", {"stream": stream_id, "layout": value}
        if field_name == "activeInput":
            return "active-speaker", {"stream": stream_id, "input": value}
        if field_name in ("audio.status", "video.status"):
            kind = field_name.split(".")[0]
            return "mute" if value == "inactive" else "unmute", {"stream": stream_id, "kind": kind}
    return None

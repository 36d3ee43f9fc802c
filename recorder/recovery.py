"""What a recording file holds, read back from the file: for recordings that a stopped or
killed server never finalised, whose stored duration and state are those of the cut.

Every container Tessera writes plays up to where it was cut: WebM/Matroska to the last
cluster, fragmented MP4 to the last fragment, MPEG-TS to the last packet (see muxer.py).
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av

logger = logging.getLogger(__name__)

# The reason a recording that was running when the server stopped (or was killed) gets at
# the next start (conference/tree.py); its figures are then read from its file.
INTERRUPTED = "the server stopped while recording"
CUT = INTERRUPTED + "; the file ends where it was cut"
PER_STREAM_CUT = INTERRUPTED + "; each of its files ends where it was cut"
NOTHING_PLAYABLE = "the server stopped while recording; nothing playable was written"


@dataclass(frozen=True)
class FileMedia:
    """The media a file holds: seconds from its first packet to the end of its last."""

    duration: float
    packets: int


def read_media(path: Path) -> FileMedia:
    """Demux ``path`` (no decoding) up to its end or where it was cut off."""
    stat = path.stat()
    return _read_media(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _read_media(path: str, size: int, mtime_ns: int) -> FileMedia:
    # Keyed by size and time too: a file is read again only if it changed.
    first: float | None = None
    end = 0.0
    packets = 0
    try:
        with av.open(path) as container:
            for packet in container.demux():
                if packet.pts is None or packet.time_base is None or packet.size == 0:
                    continue
                start = float(packet.pts * packet.time_base)
                first = start if first is None else min(first, start)
                end = max(end, float((packet.pts + (packet.duration or 0)) * packet.time_base))
                packets += 1
    except av.error.FFmpegError as exc:
        # The cut-off end of a killed recording, or no media at all.
        logger.debug("reading %s stopped: %s", path, exc)
    duration = max(0.0, end - first) if first is not None else 0.0
    return FileMedia(round(duration, 3), packets)


def closed_after_interruption(info: dict[str, Any]) -> dict[str, Any]:
    """``info`` of a recording stored as running when the server stopped (or was killed),
    as the next start stores it: stopped with the reason and the duration its file plays,
    or failed if nothing in it plays. Reads the file (blocking: run it off the loop)."""
    out = dict(info)
    out["state"] = "stopped"
    out["reason"] = CUT
    storage = info.get("storage")
    file = storage.get("file") if isinstance(storage, dict) else None
    if "perStream" in info:
        # Its "file" is the timeline sidecar; its files are recordings closed one by one.
        out["reason"] = PER_STREAM_CUT
        out["files"] = _files_after_interruption(Path(file) if isinstance(file, str) else None)
        return out
    try:
        media = read_media(Path(file)) if isinstance(file, str) and file else FileMedia(0.0, 0)
    except OSError:
        media = FileMedia(0.0, 0)
    out["duration"] = media.duration
    if media.packets == 0:
        out["state"] = "failed"
        out["reason"] = NOTHING_PLAYABLE
    return out


def _files_after_interruption(sidecar: Path | None) -> list[dict[str, Any]]:
    """The files a per-stream recording's sidecar (rewritten every few seconds) names, each
    with the duration its file plays and no longer running."""
    try:
        listed = json.loads(sidecar.read_text()).get("files") if sidecar else None
    except (OSError, ValueError, AttributeError):
        return []
    files = []
    for entry in listed if isinstance(listed, list) else []:
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
            continue
        path = sidecar.parent / Path(entry["file"]).name if sidecar else None
        try:
            media = read_media(path) if path is not None else FileMedia(0.0, 0)
        except OSError:
            media = FileMedia(0.0, 0)
        if entry.get("state") == "recording":
            entry = {**entry, "state": "stopped" if media.packets else "failed"}
        files.append({**entry, "duration": media.duration})
    return files

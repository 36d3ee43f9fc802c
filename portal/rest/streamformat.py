"""A StreamInfo as OWT's REST API shows it, under /v1 and under /v1.1 (pure).

The portal's StreamInfo lists its tracks (``media.tracks``). OWT's REST API
answers with one entry per kind instead (``resource/streamAdapter.js``):

- /v1.1: ``media.audio = {status, source, format, optional}`` and
  ``media.video = {status, source, original: [{format, parameters}], optional}``;
- /v1: the same, with the video's ``format`` and ``parameters`` in place of
  ``original``.

A field the track does not have is left out (OWT's ``undefined``).
"""

from __future__ import annotations

import copy
from typing import Any

API_V1 = "v1"
API_V11 = "v1.1"


def _present(entries: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in entries.items() if value is not None}


def _first_track(tracks: list[Any], kind: str) -> dict[str, Any] | None:
    return next((t for t in tracks if isinstance(t, dict) and t.get("type") == kind), None)


def rest_stream(info: dict[str, Any], version: str, *, keep_tracks: bool = False) -> dict[str, Any]:
    """``info`` (a portal StreamInfo) as OWT's REST API of ``version`` shows it.

    ``keep_tracks`` leaves ``media.tracks`` in as well: OWT 5.x answers a
    GET of one stream with the portal's format (its handler converts another
    variable by mistake), so an application may read either.
    """
    stream = copy.deepcopy(info)
    media = stream.get("media")
    if not isinstance(media, dict) or not isinstance(media.get("tracks"), list):
        return stream
    tracks = media["tracks"]
    audio = _first_track(tracks, "audio")
    video = _first_track(tracks, "video")
    if audio is not None:
        media["audio"] = _present(
            {
                "status": audio.get("status"),
                "source": audio.get("source"),
                "format": audio.get("format"),
                "optional": audio.get("optional"),
            }
        )
    if video is not None:
        original = _present({"format": video.get("format"), "parameters": video.get("parameters")})
        entry: dict[str, Any] = {"status": video.get("status"), "source": video.get("source")}
        if version == API_V1:
            entry.update(original)
        else:
            entry["original"] = [original]
        entry["optional"] = video.get("optional")
        media["video"] = _present(entry)
    if not keep_tracks:
        del media["tracks"]
    return stream

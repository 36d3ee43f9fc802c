"""The media a recording or streaming-out takes, as OWT's REST bodies name it (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tessera.conference.outputs import RECORDING_CONTAINERS
from tessera.conference.requests import OutputMedia

from .bodies import MAX_ID_LENGTH, expect_object
from .errors import bad_request


@dataclass
class MediaRequest:
    """A checked POST /recordings body."""

    container: str
    media: OutputMedia


def media_request(body: Any) -> MediaRequest:
    """OWT's {container, media: {audio: {from} | false, video: {from, parameters} | false}}."""
    data = expect_object(body)
    unknown = sorted(set(data) - {"container", "media"})
    if unknown:
        raise bad_request(f"{unknown[0]}: unknown field (expected container, media)")
    container = data.get("container", "auto")
    if container not in RECORDING_CONTAINERS:
        raise bad_request(f"container: expected one of {', '.join(RECORDING_CONTAINERS)}")
    media = data.get("media")
    if not isinstance(media, dict):
        raise bad_request("media: an object with audio and/or video is required")
    sources: dict[str, str | None] = {}
    parameters: dict[str, Any] | None = None
    video_format: dict[str, Any] | None = None
    for kind in ("audio", "video"):
        value = media.get(kind, False)
        if value is False or value is None:
            sources[kind] = None
            continue
        if not isinstance(value, dict) or not isinstance(value.get("from"), str):
            raise bad_request(f'media.{kind}: expected {{"from": <stream id>}} or false')
        extra = sorted(set(value) - {"from", "parameters", "format"})
        if extra:
            raise bad_request(f"media.{kind}.{extra[0]}: unknown field")
        sources[kind] = value["from"][:MAX_ID_LENGTH]
        if kind == "video" and value.get("parameters") is not None:
            if not isinstance(value["parameters"], dict):
                raise bad_request("media.video.parameters: an object is required")
            parameters = value["parameters"]
        if kind == "video" and value.get("format") is not None:
            if not isinstance(value["format"], dict):
                raise bad_request('media.video.format: an object like {"codec": "h264"}')
            video_format = value["format"]
    if sources["audio"] is None and sources["video"] is None:
        raise bad_request("media: at least one of audio and video is required")
    return MediaRequest(
        container=str(container),
        media=OutputMedia(
            audio_from=sources["audio"],
            video_from=sources["video"],
            video_parameters=parameters,
            video_format=video_format,
        ),
    )

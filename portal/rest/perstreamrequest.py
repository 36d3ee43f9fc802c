"""Tessera's per-stream recording body of POST /rooms/{room}/recordings (pure).

OWT records one stream by its id in ``media.audio.from``/``media.video.from``; Tessera
extends the same endpoint with ``perStream``: each forward stream of the room, of one
participant, or one stream, in its own file, all on one clock, with a timeline sidecar.

``{"container": "auto", "perStream": {}}`` (or ``true``): every forward stream of the room,
present and future; ``{"perStream": {"participant": id}}``: those that participant
publishes; ``{"perStream": {"stream": id}}``: that stream.
"""

from __future__ import annotations

from typing import Any

from tessera.conference.outputs import RECORDING_CONTAINERS
from tessera.conference.requests import PerStreamRecordingRequest

from .bodies import MAX_ID_LENGTH, expect_object
from .errors import bad_request

PER_STREAM = "perStream"


def is_per_stream(body: Any) -> bool:
    """Whether a POST /recordings body asks for a per-stream recording."""
    return isinstance(body, dict) and PER_STREAM in body


def per_stream_request(body: Any) -> PerStreamRecordingRequest:
    """A checked ``{container, perStream}`` body (RestError 400 naming the field)."""
    data = expect_object(body)
    if "media" in data:
        raise bad_request(
            "media: a per-stream recording takes whole streams; "
            "leave media out (or perStream out to record chosen tracks)"
        )
    unknown = sorted(set(data) - {"container", PER_STREAM})
    if unknown:
        raise bad_request(f"{unknown[0]}: unknown field (expected container, perStream)")
    container = data.get("container", "auto")
    if container not in RECORDING_CONTAINERS:
        raise bad_request(f"container: expected one of {', '.join(RECORDING_CONTAINERS)}")
    scope = data[PER_STREAM]
    if scope is True:
        scope = {}
    if not isinstance(scope, dict):
        raise bad_request(
            'perStream: expected {} or true (the room), {"participant": <id>} or {"stream": <id>}'
        )
    extra = sorted(set(scope) - {"participant", "stream"})
    if extra:
        raise bad_request(f"perStream.{extra[0]}: unknown field (expected participant or stream)")
    if len(scope) > 1:
        raise bad_request("perStream: name a participant or a stream, not both")
    for key, value in scope.items():
        if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH:
            raise bad_request(f"perStream.{key}: an id (1 to {MAX_ID_LENGTH} characters)")
    return PerStreamRecordingRequest(
        container=str(container),
        participant=scope.get("participant"),
        stream=scope.get("stream"),
    )

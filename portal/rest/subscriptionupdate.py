"""OWT's SubscriptionControlInfo: the JSON patch of a recording or streaming-out (pure).

OWT's request validator (``restReqValidator.js``) takes, each with ``op: "replace"``:

- ``/media/audio/status``, ``/media/video/status``: ``"active"`` or ``"inactive"``;
- ``/media/audio/from``, ``/media/video/from``: a stream id;
- ``/media/video/parameters/resolution``: ``{width, height}``;
- ``/media/video/parameters/framerate``: 6, 12, 15, 24, 30, 48 or 60;
- ``/media/video/parameters/bitrate``: ``"x0.8"``, ``"x0.6"``, ``"x0.4"`` or ``"x0.2"``;
- ``/media/video/parameters/keyFrameInterval``: 1, 2, 5, 30 or 100.

Whether a value suits the source stream (one of its ``optional`` values) is
checked where the stream is known; this module checks the shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .bodies import MAX_ID_LENGTH
from .errors import bad_request

FRAMERATES = (6, 12, 15, 24, 30, 48, 60)
BITRATES = ("x0.8", "x0.6", "x0.4", "x0.2")
KEYFRAME_INTERVALS = (1, 2, 5, 30, 100)
MAX_DIMENSION = 7680

_STATUS_PATHS = {"/media/audio/status": "audio", "/media/video/status": "video"}
_FROM_PATHS = {"/media/audio/from": "audio", "/media/video/from": "video"}
_PARAMETER_PREFIX = "/media/video/parameters/"
PATHS = (
    *_STATUS_PATHS,
    *_FROM_PATHS,
    *(
        _PARAMETER_PREFIX + name
        for name in ("resolution", "framerate", "bitrate", "keyFrameInterval")
    ),
)


@dataclass
class SubscriptionUpdate:
    """What a PATCH asks: new sources, track statuses and video parameters."""

    sources: dict[str, str] = field(default_factory=dict)  # kind -> stream id
    active: dict[str, bool] = field(default_factory=dict)  # kind -> True (active) / False
    video_parameters: dict[str, Any] = field(default_factory=dict)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _resolution(value: Any, where: str) -> dict[str, int]:
    if not isinstance(value, dict) or set(value) != {"width", "height"}:
        raise bad_request(f"{where}.value: a resolution is {{width, height}} and nothing else")
    size = {}
    for key in ("width", "height"):
        number = value[key]
        if not _is_number(number) or number != int(number) or not 2 <= number <= MAX_DIMENSION:
            raise bad_request(f"{where}.value.{key}: a whole number of pixels is required")
        size[key] = int(number)
    return size


def _parameter(name: str, value: Any, where: str) -> Any:
    if name == "resolution":
        return _resolution(value, where)
    if name == "framerate":
        if not _is_number(value) or value not in FRAMERATES:
            raise bad_request(f"{where}.value: framerate is one of {list(FRAMERATES)}")
        return int(value)
    if name == "bitrate":
        if value not in BITRATES or not isinstance(value, str):
            raise bad_request(f"{where}.value: bitrate is one of {', '.join(BITRATES)}")
        return value
    if not _is_number(value) or value not in KEYFRAME_INTERVALS:
        raise bad_request(f"{where}.value: keyFrameInterval is one of {list(KEYFRAME_INTERVALS)}")
    return int(value)


def subscription_update(operations: list[dict[str, Any]]) -> SubscriptionUpdate:
    """Check a patch (already a list of ``{op, path, value}``); RestError (400) naming the fault.

    A path given twice is refused: which value was meant cannot be told.
    """
    update = SubscriptionUpdate()
    seen: set[str] = set()
    for index, operation in enumerate(operations):
        where = f"[{index}]"
        path, op, value = operation["path"], operation["op"], operation["value"]
        if path not in PATHS:
            raise bad_request(
                f"{where}.path: {path[:80]!r} cannot be changed; expected one of {', '.join(PATHS)}"
            )
        if op != "replace":
            raise bad_request(f"{where}.op: {path} takes 'replace'")
        if path in seen:
            raise bad_request(f"{where}.path: {path} is given twice")
        seen.add(path)
        if path in _STATUS_PATHS:
            if value not in ("active", "inactive"):
                raise bad_request(f"{where}.value: {path} takes 'active' or 'inactive'")
            update.active[_STATUS_PATHS[path]] = value == "active"
        elif path in _FROM_PATHS:
            if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH:
                raise bad_request(f"{where}.value: a stream id is required")
            update.sources[_FROM_PATHS[path]] = value
        else:
            name = path[len(_PARAMETER_PREFIX) :]
            update.video_parameters[name] = _parameter(name, value, where)
    return update

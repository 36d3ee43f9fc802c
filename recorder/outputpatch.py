"""OWT's PATCH of a streaming-out: a list of SubscriptionControlInfo, checked (pure).

RESTAPI.md 5.5.3 and OWT's request validator take `replace` of
`/media/{audio,video}/from` (a stream id), `/media/video/parameters/resolution`
(`{width, height}`), `.../framerate` (a number), `.../bitrate` (`"x0.8"` or
a number of kbps), `.../keyFrameInterval` (a number), and
`/media/{audio,video}/status` (`"active"` | `"inactive"`). Whether a value is
one the source offers is checked against the stream later, as a
subscription's is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tessera.media.mediasource import ParameterError

_PARAMETERS = ("resolution", "framerate", "bitrate", "keyFrameInterval")
PATHS = (
    "/media/audio/from",
    "/media/video/from",
    *(f"/media/video/parameters/{name}" for name in _PARAMETERS),
    "/media/audio/status",
    "/media/video/status",
)


@dataclass
class OutputPatch:
    """What a PATCH changes; None: left as it is."""

    sources: dict[str, str] = field(default_factory=dict)  # kind -> stream id
    parameters: dict[str, Any] = field(default_factory=dict)  # video parameters
    status: dict[str, bool] = field(default_factory=dict)  # kind -> active
    paths: list[str] = field(default_factory=list)

    @property
    def changes_video(self) -> bool:
        return "video" in self.sources or bool(self.parameters)


def parse_output_patch(operations: Any) -> OutputPatch:
    """The changes of a JSON-patch list; ParameterError names the entry and field."""
    if not isinstance(operations, list) or not operations:
        raise ParameterError("expected a non-empty list of {op, path, value}")
    patch = OutputPatch()
    for index, operation in enumerate(operations):
        where = f"[{index}]"
        if not isinstance(operation, dict):
            raise ParameterError(f"{where}: expected an object {{op, path, value}}")
        unknown = sorted(set(operation) - {"op", "path", "value"})
        if unknown:
            raise ParameterError(f"{where}.{unknown[0]}: unknown field (expected op, path, value)")
        path, op = operation.get("path"), operation.get("op")
        if path not in PATHS:
            raise ParameterError(f"{where}.path: expected one of {', '.join(PATHS)}")
        if op != "replace":
            raise ParameterError(f"{where}.op: {path} takes 'replace'")
        if "value" not in operation:
            raise ParameterError(f"{where}.value: missing")
        value = operation["value"]
        parts = path.split("/")
        kind = parts[2]
        if parts[3] == "from":
            if not isinstance(value, str) or not value:
                raise ParameterError(f"{where}.value: a stream id is required for {path}")
            patch.sources[kind] = value
        elif parts[3] == "status":
            if value not in ("active", "inactive"):
                raise ParameterError(f"{where}.value: {path} takes 'active' or 'inactive'")
            patch.status[kind] = value == "active"
        else:
            name = parts[4]
            _check_parameter(where, path, name, value)
            patch.parameters[name] = value
        patch.paths.append(path)
    return patch


def _check_parameter(where: str, path: str, name: str, value: Any) -> None:
    """The value's shape; whether the source offers it is the stream's to say."""
    if name == "resolution":
        if not (
            isinstance(value, dict)
            and set(value) == {"width", "height"}
            and all(isinstance(value[k], int) and not isinstance(value[k], bool) for k in value)
            and value["width"] > 0
            and value["height"] > 0
        ):
            raise ParameterError(f'{where}.value: {path} takes {{"width": n, "height": n}}')
    elif name == "bitrate":
        if isinstance(value, str):
            if not value.startswith("x"):
                raise ParameterError(f'{where}.value: {path} takes a multiple like "x0.8"')
        elif isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ParameterError(f'{where}.value: {path} takes "x0.8" or a number of kbps')
    elif isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ParameterError(f"{where}.value: {path} takes a positive number")

"""Room options: OWT's room configuration schema, its defaults, and validation.

The JSON form is OWT's (camelCase: ``inputLimit``, ``views[].video.parameters
.keyFrameInterval`` ...), so that rooms created by OWT application servers
through the REST API mean the same here. Defaults follow OWT's
``data_access/defaults.js`` and ``roomModel.js`` except where Tessera chose
otherwise on purpose (the default view: VP8 1280x720 at 30 fps; the ``guest``
role; ``autoMix``), see the comments at each.

Models are frozen: a room's options change by building new options
(:func:`merge_room_options`), never by mutating the ones a room is running on.
A view's models (``views[]``) are the mixer's: `tessera.mixer.viewoptions`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any

import pydantic
from pydantic import (
    AfterValidator,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
)

from tessera.config.validation import describe_validation_error
from tessera.mixer.viewoptions import AudioFormat, Name, VideoFormat, ViewOptions
from tessera.mixer.viewoptions import OptionsModel as _Model

__all__ = [
    "DEFAULT_ROLE_NAMES",
    "AutoRecordOptions",
    "MediaIn",
    "MediaOut",
    "MediaOutVideo",
    "MediaOutVideoParameters",
    "MediaPermission",
    "NotifyingOptions",
    "OptionsError",
    "RoleOptions",
    "RoomOptions",
    "SipOptions",
    "TranscodingOptions",
    "TranscodingVideo",
    "TranscodingVideoParameters",
    "merge_room_options",
    "parse_room_options",
    "role_names",
]


class OptionsError(ValueError):
    """Room options that do not validate; the message is ``path: reason``."""


# --- roles -----------------------------------------------------------------


class MediaPermission(_Model):
    """Whether audio and video may be published (or subscribed)."""

    audio: bool = False
    video: bool = False


class RoleOptions(_Model):
    """A role: what a participant holding it may publish and subscribe."""

    role: Name
    publish: MediaPermission = Field(default_factory=MediaPermission)
    subscribe: MediaPermission = Field(default_factory=MediaPermission)


def _role(
    name: str, pub_audio: bool, pub_video: bool, sub_audio: bool, sub_video: bool
) -> RoleOptions:
    return RoleOptions(
        role=name,
        publish=MediaPermission(audio=pub_audio, video=pub_video),
        subscribe=MediaPermission(audio=sub_audio, video=sub_video),
    )


def _default_roles() -> list[RoleOptions]:
    return [
        # OWT's five default roles, same permissions.
        _role("presenter", True, True, True, True),
        _role("viewer", False, False, True, True),
        _role("audio_only_presenter", True, False, True, False),
        _role("video_only_viewer", False, False, False, True),
        _role("sip", True, True, True, True),
        # Tessera's addition (not in OWT): a watch-only role for people let in by link.
        _role("guest", False, False, True, True),
    ]


DEFAULT_ROLE_NAMES: tuple[str, ...] = tuple(role.role for role in _default_roles())


# --- media formats -----------------------------------------------------------


def _default_audio_in() -> list[AudioFormat]:
    return [
        AudioFormat(codec="opus", sample_rate=48000, channel_num=2),
        AudioFormat(codec="isac", sample_rate=16000),
        AudioFormat(codec="isac", sample_rate=32000),
        AudioFormat(codec="g722", sample_rate=16000, channel_num=1),
        AudioFormat(codec="pcma"),
        AudioFormat(codec="pcmu"),
        AudioFormat(codec="aac"),
        AudioFormat(codec="ac3"),
        AudioFormat(codec="nellymoser"),
        AudioFormat(codec="ilbc"),
    ]


def _default_audio_out() -> list[AudioFormat]:
    formats = _default_audio_in()
    # OWT's only difference between in and out: AAC out is 48 kHz stereo.
    return [
        AudioFormat(codec="aac", sample_rate=48000, channel_num=2) if f.codec == "aac" else f
        for f in formats
    ]


def _default_video_in() -> list[VideoFormat]:
    return [VideoFormat(codec="h264"), VideoFormat(codec="vp8"), VideoFormat(codec="vp9")]


def _default_video_out() -> list[VideoFormat]:
    return [
        VideoFormat(codec="vp8"),
        VideoFormat(codec="h264", profile="CB"),
        VideoFormat(codec="h264", profile="B"),
        VideoFormat(codec="vp9"),
    ]


# --- media in/out, transcoding, notifying -----------------------------------

_NAMED_RESOLUTIONS = frozenset(
    {"cif", "vga", "svga", "xga", "hvga", "qvga", "qcif", "sif", "hd720p", "hd1080p", "uhd_4k"}
)
_RESOLUTION_RE = re.compile(r"^(x(\d{1,4})/(\d{1,4})|r(\d{2,4})x(\d{2,4}))$")
_BITRATE_MULTIPLIER_RE = re.compile(r"^x(0(\.\d{1,3})?|1(\.0{1,3})?)$")


def _check_resolution_name(text: str) -> str:
    # OWT's forms: a name ("vga"), "r<width>x<height>", or a multiplier "x<n>/<d>" of the source.
    if text in _NAMED_RESOLUTIONS:
        return text
    match = _RESOLUTION_RE.match(text)
    if match and match[2] is not None:
        numerator, denominator = int(match[2]), int(match[3])
        if 0 < numerator <= denominator:
            return text
    elif match:
        return text
    raise ValueError(
        f"{text!r} is not a resolution: a name like 'vga', 'r640x360' or a multiplier like 'x3/4'"
    )


def _check_bitrate(value: int | str) -> int | str:
    # OWT's forms: a multiplier of the source's bitrate ("x0.8") or Kbps.
    if isinstance(value, str) and not _BITRATE_MULTIPLIER_RE.match(value):
        raise ValueError(f"{value!r} is not a bitrate multiplier like 'x0.8'")
    if isinstance(value, int) and value <= 0:
        raise ValueError(f"{value} is not a positive bitrate")
    return value


class MediaIn(_Model):
    """Formats accepted from publishers."""

    audio: list[AudioFormat] = Field(default_factory=_default_audio_in)
    video: list[VideoFormat] = Field(default_factory=_default_video_in)


class MediaOutVideoParameters(_Model):
    """Alternative video parameters that subscribers may ask for."""

    resolution: list[Annotated[str, AfterValidator(_check_resolution_name)]] = Field(
        default_factory=lambda: [
            "x3/4",
            "x2/3",
            "x1/2",
            "x1/3",
            "x1/4",
            "hd1080p",
            "hd720p",
            "svga",
            "vga",
            "qvga",
            "cif",
        ]
    )
    framerate: list[Annotated[int, Field(ge=1, le=60)]] = Field(
        default_factory=lambda: [6, 12, 15, 24, 30, 48, 60]
    )
    bitrate: list[Annotated[int | str, AfterValidator(_check_bitrate)]] = Field(
        default_factory=lambda: list[int | str](["x0.8", "x0.6", "x0.4", "x0.2"])
    )
    key_frame_interval: list[Annotated[int, Field(ge=1, le=3600)]] = Field(
        default_factory=lambda: [100, 30, 5, 2, 1]
    )


class MediaOutVideo(_Model):
    """Video formats and parameters offered to subscribers."""

    format: list[VideoFormat] = Field(default_factory=_default_video_out)
    parameters: MediaOutVideoParameters = Field(default_factory=MediaOutVideoParameters)


class MediaOut(_Model):
    """What subscribers may receive."""

    audio: list[AudioFormat] = Field(default_factory=_default_audio_out)
    video: MediaOutVideo = Field(default_factory=MediaOutVideo)


class TranscodingVideoParameters(_Model):
    """Which video parameters may be changed for a subscriber of a forward stream."""

    resolution: bool = True
    framerate: bool = True
    bitrate: bool = True
    key_frame_interval: bool = True


class TranscodingVideo(_Model):
    """Whether forward video may be transcoded, by format and by parameter."""

    format: bool = True
    parameters: TranscodingVideoParameters = Field(default_factory=TranscodingVideoParameters)


class TranscodingOptions(_Model):
    """Whether forward streams may be transcoded for subscribers that ask for another format."""

    audio: bool = True
    video: TranscodingVideo = Field(default_factory=TranscodingVideo)


class NotifyingOptions(_Model):
    """Which notifications participants receive."""

    participant_activities: bool = True
    stream_change: bool = True


class AutoRecordOptions(_Model):
    """Tessera's ``autoRecord``: what the room records by itself from its first publication.

    ``true`` is ``{"composite": true}`` (the first view, as before the object form); a key
    left out is false."""

    composite: bool = False
    # Each forward stream in its own file, one clock, one sidecar (recorder/perstream.py).
    participants: bool = False


class SipOptions(_Model):
    """OWT's SIP account of a room: refused when it names a server (Tessera has no SIP gateway).

    An empty account (what an OWT room without SIP may carry) validates.
    """

    sip_server: str | None = None
    username: str | None = None
    password: str | None = None

    @field_validator("sip_server")
    @classmethod
    def _no_gateway(cls, server: str | None) -> str | None:
        if server:
            raise ValueError("Tessera has no SIP gateway: a room cannot register with a SIP server")
        return server


# --- the room ----------------------------------------------------------------


class RoomOptions(_Model):
    """A room's configuration, in OWT's schema plus Tessera's ``autoMix`` and ``autoRecord``."""

    name: str = Field(default="", max_length=256)
    input_limit: int = Field(default=-1, ge=-1)  # -1 = unlimited
    participant_limit: int = Field(default=-1, ge=-1)  # -1 = unlimited
    # OWT: the room offers its 3 most active audio inputs as 3 streams (mixer/activeaudio.py).
    select_active_audio: bool = False
    # OWT 5.x: subscribers' simulcast layers follow their bandwidth. Tessera forwards one
    # layer (no simulcast): false is what it does, true is refused.
    enable_bandwidth_adaptation: bool = False
    roles: list[RoleOptions] = Field(default_factory=_default_roles)
    # An empty list means no mixing at all.
    views: list[ViewOptions] = Field(default_factory=lambda: [ViewOptions()])
    media_in: MediaIn = Field(default_factory=MediaIn)
    media_out: MediaOut = Field(default_factory=MediaOut)
    transcoding: TranscodingOptions = Field(default_factory=TranscodingOptions)
    notifying: NotifyingOptions = Field(default_factory=NotifyingOptions)
    sip: SipOptions | None = None
    # Tessera: a published stream joins every view at once (OWT needs a "mix" request).
    auto_mix: bool = True
    # Tessera: record the first view (composite) and/or each forward stream apart
    # (participants) from the first publication until the room empties.
    auto_record: AutoRecordOptions = Field(default_factory=AutoRecordOptions)

    @field_validator("roles")
    @classmethod
    def _unique_roles(cls, roles: list[RoleOptions]) -> list[RoleOptions]:
        names = [role.role for role in roles]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"duplicate role {name!r}")
        return roles

    @field_validator("views")
    @classmethod
    def _unique_views(cls, views: list[ViewOptions]) -> list[ViewOptions]:
        labels = [view.label for view in views]
        for label in labels:
            if labels.count(label) > 1:
                raise ValueError(f"duplicate view label {label!r}")
        return views

    @field_validator("auto_record", mode="before")
    @classmethod
    def _auto_record_flag(cls, value: Any) -> Any:
        # `true`/`false`, the form before per-stream recording, records the composite.
        return {"composite": value} if isinstance(value, bool) else value

    @field_validator("enable_bandwidth_adaptation")
    @classmethod
    def _no_layers(cls, value: bool) -> bool:
        if value:
            raise ValueError("Tessera forwards one layer (no simulcast): nothing to adapt")
        return value

    @model_serializer(mode="wrap")
    def _leave_out(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict):
            if data.get("sip") is None:
                data.pop("sip", None)
            # Always false (see the field): left out, as rooms were before it was accepted.
            data.pop("enableBandwidthAdaptation", None)
            # Without per-stream recording, the flag it has always been.
            auto = data.get("autoRecord")
            if isinstance(auto, dict) and not auto.get("participants"):
                data["autoRecord"] = bool(auto.get("composite"))
        return data

    def to_json(self) -> dict[str, Any]:
        """The JSON form (camelCase keys), as stored and as the REST API returns it."""
        data: dict[str, Any] = self.model_dump(mode="json", by_alias=True)
        return data

    def role(self, name: str) -> RoleOptions | None:
        """The role called ``name``, or None."""
        return next((role for role in self.roles if role.role == name), None)

    def view(self, label: str) -> ViewOptions | None:
        """The view labelled ``label``, or None."""
        return next((view for view in self.views if view.label == label), None)


def parse_room_options(data: Mapping[str, Any]) -> RoomOptions:
    """Validate room options in their JSON form; missing parts take the defaults."""
    if not isinstance(data, Mapping):
        raise OptionsError("room options must be a JSON object")
    try:
        return RoomOptions.model_validate(dict(data))
    except pydantic.ValidationError as exc:
        raise OptionsError(describe_validation_error(exc)) from None


def role_names(stored: Mapping[str, Any] | None) -> tuple[str, ...]:
    """Role names of a stored room's options; the default roles for a room not stored (an
    ad-hoc room gets the default options) or options that no longer parse."""
    if stored is None:
        return DEFAULT_ROLE_NAMES
    try:
        options = parse_room_options(stored)
    except OptionsError:
        return DEFAULT_ROLE_NAMES
    return tuple(role.role for role in options.roles)


def _deep_merge(base: Any, patch: Any) -> Any:
    # Objects merge key by key; anything else (lists included) is replaced whole.
    if isinstance(base, dict) and isinstance(patch, Mapping):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = _deep_merge(base[key], value) if key in base else value
        return merged
    return patch


def merge_room_options(current: RoomOptions, patch: Mapping[str, Any]) -> RoomOptions:
    """Apply a partial JSON object (camelCase keys) to ``current`` and validate the result."""
    if not isinstance(patch, Mapping):
        raise OptionsError("room options must be a JSON object")
    return parse_room_options(_deep_merge(current.to_json(), patch))

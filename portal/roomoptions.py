"""Room options: OWT's room configuration schema, its defaults, and validation.

The JSON form is OWT's (camelCase: ``inputLimit``, ``views[].video.parameters
.keyFrameInterval`` ...), so that rooms created by OWT application servers
through the REST API mean the same here. Defaults follow OWT's
``data_access/defaults.js`` and ``roomModel.js`` except where Tessera chose
otherwise on purpose (the default view: VP8 1280x720 at 30 fps; the ``guest``
role; ``autoMix``), see the comments at each.

Models are frozen: a room's options change by building new options
(:func:`merge_room_options`), never by mutating the ones a room is running on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from fractions import Fraction
from typing import Annotated, Any, Literal

import pydantic
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_serializer,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic.alias_generators import to_camel

from tessera.portal.validation import describe_validation_error

__all__ = [
    "DEFAULT_ROLE_NAMES",
    "AudioFormat",
    "BgColor",
    "CustomLayout",
    "LayoutOptions",
    "LayoutTemplates",
    "MediaIn",
    "MediaOut",
    "MediaOutVideo",
    "MediaOutVideoParameters",
    "MediaPermission",
    "NotifyingOptions",
    "OptionsError",
    "Region",
    "RegionArea",
    "Resolution",
    "RoleOptions",
    "RoomOptions",
    "SipOptions",
    "TranscodingOptions",
    "TranscodingVideo",
    "TranscodingVideoParameters",
    "VideoFormat",
    "VideoParameters",
    "ViewAudio",
    "ViewOptions",
    "ViewVideo",
    "merge_room_options",
    "parse_fraction",
    "parse_room_options",
]


class OptionsError(ValueError):
    """Room options that do not validate; the message is ``path: reason``."""


class _Model(BaseModel):
    # strict: JSON "30" is not 30 and "true" is not true; ints are still accepted as floats.
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        strict=True,
        allow_inf_nan=False,
    )


# Names of roles and labels of views appear in URLs and stream ids (<room>-<label>).
NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
Name = Annotated[str, Field(pattern=NAME_PATTERN)]

_FRACTION_RE = re.compile(r"^(\d{1,9})/(\d{1,9})$")


def parse_fraction(text: str) -> Fraction:
    """Parse a region coordinate ``"n/d"`` (0 <= n/d <= 1) into an exact Fraction."""
    match = _FRACTION_RE.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a fraction string 'n/d'")
    numerator, denominator = int(match[1]), int(match[2])
    if denominator == 0:
        raise ValueError(f"{text!r} has a zero denominator")
    value = Fraction(numerator, denominator)
    if value > 1:
        raise ValueError(f"{text!r} is greater than 1")
    return value


def _check_fraction(text: str) -> str:
    parse_fraction(text)
    return text


FractionString = Annotated[str, AfterValidator(_check_fraction)]


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

AudioCodec = Literal["opus", "pcmu", "pcma", "isac", "g722", "ilbc", "aac", "ac3", "nellymoser"]
VideoCodec = Literal["h264", "vp8", "vp9", "h265", "av1"]


class _Format(_Model):
    @model_serializer(mode="wrap")
    def _drop_unset(self, handler: SerializerFunctionWrapHandler) -> Any:
        # OWT formats leave out what they do not specify ({"codec": "pcmu"}), not null.
        data = handler(self)
        return {k: v for k, v in data.items() if v is not None} if isinstance(data, dict) else data


class AudioFormat(_Format):
    """An audio format: ``{"codec": "opus", "sampleRate": 48000, "channelNum": 2}``."""

    codec: AudioCodec
    sample_rate: int | None = Field(default=None, gt=0, le=192000)
    channel_num: int | None = Field(default=None, ge=1, le=8)


class VideoFormat(_Format):
    """A video format: ``{"codec": "h264", "profile": "CB"}``; a profile is for H.264 only."""

    codec: VideoCodec
    profile: Literal["CB", "B", "M", "H"] | None = None

    @model_validator(mode="after")
    def _profile_is_h264(self) -> VideoFormat:
        if self.profile is not None and self.codec != "h264":
            raise ValueError(f"a profile is only meaningful for h264, not {self.codec}")
        return self


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


# --- views -------------------------------------------------------------------


class Resolution(_Model):
    """A frame size in pixels; even numbers, as 4:2:0 video needs."""

    width: int = Field(ge=16, le=4096)
    height: int = Field(ge=16, le=4096)

    @field_validator("width", "height")
    @classmethod
    def _even(cls, value: int) -> int:
        if value % 2:
            raise ValueError(f"{value} is not an even number")
        return value


class VideoParameters(_Model):
    """Encoding parameters of a view's video."""

    # Tessera's default is 1280x720 at 30 fps (OWT: 640x480 at 24).
    resolution: Resolution = Field(default_factory=lambda: Resolution(width=1280, height=720))
    framerate: int = Field(default=30, ge=1, le=60)
    # Kbps; null lets the encoder pick from resolution, frame rate and motionFactor.
    bitrate: int | None = Field(default=None, gt=0, le=100_000)
    # Seconds between keyframes (OWT's unit), besides those receivers request.
    key_frame_interval: int = Field(default=100, ge=1, le=3600)


class BgColor(_Model):
    """Background colour of a view's canvas."""

    r: int = Field(default=0, ge=0, le=255)
    g: int = Field(default=0, ge=0, le=255)
    b: int = Field(default=0, ge=0, le=255)


class RegionArea(_Model):
    """Where a region sits, as fractions ``"n/d"`` of the view's width and height."""

    left: FractionString
    top: FractionString
    width: FractionString
    height: FractionString

    @model_validator(mode="after")
    def _inside(self) -> RegionArea:
        if parse_fraction(self.left) + parse_fraction(self.width) > 1:
            raise ValueError("left + width is greater than 1")
        if parse_fraction(self.top) + parse_fraction(self.height) > 1:
            raise ValueError("top + height is greater than 1")
        return self


class Region(_Model):
    """One rectangle of a layout, which shows one input stream."""

    id: str = Field(min_length=1, max_length=64)
    shape: Literal["rectangle"] = "rectangle"
    area: RegionArea


class CustomLayout(_Model):
    """A layout for ``len(region)`` inputs, replacing the base template's one."""

    primary: str | None = None
    region: list[Region] = Field(min_length=1, max_length=256)

    @model_validator(mode="after")
    def _unique_ids(self) -> CustomLayout:
        ids = [region.id for region in self.region]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"duplicate region id {duplicates[0]!r}")
        if self.primary is not None and self.primary not in ids:
            raise ValueError(f"primary region {self.primary!r} is not one of the regions")
        return self

    @model_serializer(mode="wrap")
    def _drop_primary(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict) and data.get("primary") is None:
            data.pop("primary", None)
        return data


class LayoutTemplates(_Model):
    """A base layout family plus custom layouts for given numbers of inputs."""

    base: Literal["fluid", "lecture", "void"] = "fluid"
    custom: list[CustomLayout] = Field(default_factory=list)


class LayoutOptions(_Model):
    """How inputs are placed and fitted into their regions."""

    fit_policy: Literal["letterbox", "crop"] = "letterbox"
    templates: LayoutTemplates = Field(default_factory=LayoutTemplates)


class ViewAudio(_Model):
    """Audio of a view: the mix format and voice activity detection."""

    format: AudioFormat = Field(
        default_factory=lambda: AudioFormat(codec="opus", sample_rate=48000, channel_num=2)
    )
    vad: bool = True

    @field_validator("format")
    @classmethod
    def _mixed_as_opus(cls, fmt: AudioFormat) -> AudioFormat:
        # The audio mixer encodes Opus, 48 kHz stereo; another format would be advertised
        # and never produced.
        if fmt.codec != "opus" or fmt.sample_rate not in (None, 48000):
            raise ValueError("Tessera mixes audio as Opus at 48000 Hz only")
        if fmt.channel_num not in (None, 2):
            raise ValueError("Tessera mixes audio in stereo (channelNum 2) only")
        return fmt


class ViewVideo(_Model):
    """Video of a view: the composite's format, size, background and layout."""

    format: VideoFormat = Field(default_factory=lambda: VideoFormat(codec="vp8"))
    parameters: VideoParameters = Field(default_factory=VideoParameters)
    max_input: int = Field(default=16, ge=1, le=256)

    @field_validator("format")
    @classmethod
    def _encodable(cls, fmt: VideoFormat) -> VideoFormat:
        # The view's encoders are libvpx VP8 and x264 (constrained baseline, which any
        # H.264 profile's decoder plays, as OWT's profile check counts it).
        if fmt.codec not in ("vp8", "h264"):
            raise ValueError(f"Tessera encodes views in vp8 or h264, not {fmt.codec}")
        return fmt

    bg_color: BgColor = Field(default_factory=BgColor)
    # Scales the automatic bitrate: more for high-motion content.
    motion_factor: float = Field(default=0.8, gt=0, le=10)
    keep_active_input_primary: bool = False
    layout: LayoutOptions = Field(default_factory=LayoutOptions)


class ViewOptions(_Model):
    """A view: one mixed stream (``<room id>-<label>``). ``video`` None = audio-only view."""

    label: Name = "common"
    audio: ViewAudio = Field(default_factory=ViewAudio)
    video: ViewVideo | None = Field(default_factory=ViewVideo)

    @field_validator("video", mode="before")
    @classmethod
    def _video_flag(cls, value: object) -> object:
        # OWT writes an audio-only view as "video": false; true means default video.
        if value is False:
            return None
        if value is True:
            return {}
        return value

    @field_serializer("video")
    def _video_json(self, video: ViewVideo | None) -> ViewVideo | Literal[False]:
        return False if video is None else video


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
    # Tessera: record the first view from the first publication until the room empties.
    auto_record: bool = False

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

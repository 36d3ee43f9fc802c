"""View options: a mixed view's video, audio and layout, in OWT's room configuration schema.

The models the mixer runs a view from (``views[]`` of the room options, see
`tessera.portal.roomoptions`, which composes them into a room's options), with
their defaults and validation, and the base model every options model shares.
Defaults follow OWT's ``data_access/defaults.js`` except where Tessera chose
otherwise on purpose (the default view: VP8 1280x720 at 30 fps).
"""

from __future__ import annotations

import itertools
import re
from fractions import Fraction
from typing import Annotated, Any, Literal

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

from .overlay import check_overlay

__all__ = [
    "NAME_PATTERN",
    "AudioFormat",
    "BgColor",
    "CustomLayout",
    "FractionString",
    "LabelOptions",
    "LadderRung",
    "LayoutOptions",
    "LayoutTemplates",
    "MarkOptions",
    "Name",
    "OptionsModel",
    "OverlayOptions",
    "Region",
    "RegionArea",
    "Resolution",
    "VideoFormat",
    "VideoParameters",
    "ViewAudio",
    "ViewOptions",
    "ViewVideo",
    "parse_fraction",
]


class OptionsModel(BaseModel):
    """The base of every options model: camelCase JSON, no unknown keys, frozen, strict."""

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


# --- media formats -----------------------------------------------------------

AudioCodec = Literal["opus", "pcmu", "pcma", "isac", "g722", "ilbc", "aac", "ac3", "nellymoser"]
VideoCodec = Literal["h264", "vp8", "vp9", "h265", "av1"]


class _Format(OptionsModel):
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


# --- views -------------------------------------------------------------------


class Resolution(OptionsModel):
    """A frame size in pixels; even numbers, as 4:2:0 video needs."""

    width: int = Field(ge=16, le=4096)
    height: int = Field(ge=16, le=4096)

    @field_validator("width", "height")
    @classmethod
    def _even(cls, value: int) -> int:
        if value % 2:
            raise ValueError(f"{value} is not an even number")
        return value


class VideoParameters(OptionsModel):
    """Encoding parameters of a view's video."""

    # Tessera's default is 1280x720 at 30 fps (OWT: 640x480 at 24).
    resolution: Resolution = Field(default_factory=lambda: Resolution(width=1280, height=720))
    framerate: int = Field(default=30, ge=1, le=60)
    # Kbps; null lets the encoder pick from resolution, frame rate and motionFactor.
    bitrate: int | None = Field(default=None, gt=0, le=100_000)
    # Seconds between keyframes (OWT's unit), besides those receivers request.
    key_frame_interval: int = Field(default=100, ge=1, le=3600)


class BgColor(OptionsModel):
    """Background colour of a view's canvas."""

    r: int = Field(default=0, ge=0, le=255)
    g: int = Field(default=0, ge=0, le=255)
    b: int = Field(default=0, ge=0, le=255)


class RegionArea(OptionsModel):
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


class Region(OptionsModel):
    """One rectangle of a layout, which shows one input stream."""

    id: str = Field(min_length=1, max_length=64)
    shape: Literal["rectangle"] = "rectangle"
    area: RegionArea


class CustomLayout(OptionsModel):
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


class LayoutTemplates(OptionsModel):
    """A base layout family plus custom layouts for given numbers of inputs.

    ``gallery`` (Tessera's, the default since it exists) fills the view for any
    count; ``fluid``, ``lecture`` and ``void`` are OWT's, unchanged.
    """

    base: Literal["gallery", "fluid", "lecture", "void"] = "gallery"
    custom: list[CustomLayout] = Field(default_factory=list)


class LayoutOptions(OptionsModel):
    """How inputs are placed and fitted into their regions.

    ``fitPolicy`` left out: ``crop`` for the gallery (each picture fills its
    tile, cut around its centre), ``letterbox`` for OWT's bases (OWT's default).
    A shared screen is always letterboxed: its edges are its content.
    """

    fit_policy: Literal["letterbox", "crop"] = "crop"
    templates: LayoutTemplates = Field(default_factory=LayoutTemplates)

    @model_validator(mode="before")
    @classmethod
    def _fit_by_base(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "fitPolicy" in data or "fit_policy" in data:
            return data
        templates = data.get("templates")
        if isinstance(templates, LayoutTemplates):
            base = templates.base
        elif isinstance(templates, dict):
            base = templates.get("base", "gallery")
        else:
            base = "gallery"
        return {**data, "fitPolicy": "crop" if base == "gallery" else "letterbox"}


LabelPosition = Literal["bottom-left", "bottom-right", "top-left", "top-right", "bottom-center"]


class LabelOptions(OptionsModel):
    """Name labels: each region shows its participant's name (the token's user)."""

    enabled: bool = True
    position: LabelPosition = "bottom-left"


class MarkOptions(OptionsModel):
    """State marks: a muted-microphone mark and the active speaker's border."""

    muted: bool = True
    speaker: bool = True
    # Seconds the border stays on a speaker before it may move or go: no flicker.
    speaker_hold: float = Field(default=1.0, ge=0, le=30)


class OverlayOptions(OptionsModel):
    """An overlay drawn on the view's frames (see `tessera.mixer.overlay`)."""

    overlay: str = Field(min_length=3, max_length=200)  # "module:Class", allowed by the server
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _loadable(self) -> OverlayOptions:
        check_overlay(self.overlay, self.options)
        return self


class ViewAudio(OptionsModel):
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


class LadderRung(OptionsModel):
    """A rung of a view's adaptive ladder: a smaller size and bitrate of the same picture."""

    resolution: Resolution
    # Kbps, as the view's own bitrate.
    bitrate: int = Field(gt=0, le=100_000)


class ViewVideo(OptionsModel):
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
    # Tessera: what is drawn over the pictures.
    labels: LabelOptions = Field(default_factory=LabelOptions)
    marks: MarkOptions = Field(default_factory=MarkOptions)
    # Tessera: while an input is a screen share, a large share and a strip of the others.
    presentation: bool = True
    overlays: list[OverlayOptions] = Field(default_factory=list, max_length=8)
    # CPU per frame each overlay may take (ms, on average): see tessera.mixer.overlay.
    overlay_budget_ms: float = Field(default=2.0, gt=0, le=30)
    # Tessera: the rungs below the view's own format that subscribers are switched between
    # by their bandwidth (see tessera.mixer.ladder). None: the default ladder; []: none.
    ladder: list[LadderRung] | None = Field(default=None, max_length=8)

    @field_validator("ladder")
    @classmethod
    def _rungs_go_down(cls, ladder: list[LadderRung] | None) -> list[LadderRung] | None:
        if ladder is None:
            return None
        for index, (upper, lower) in enumerate(itertools.pairwise(ladder)):
            if lower.resolution.height > upper.resolution.height or lower.bitrate >= upper.bitrate:
                raise ValueError(
                    f"ladder.{index + 1}: rungs must go down in bitrate (and not up in height)"
                )
        return ladder

    @model_validator(mode="after")
    def _ladder_below_the_view(self) -> ViewVideo:
        if not self.ladder:
            return self
        top, params = self.ladder[0], self.parameters
        if top.resolution.height > params.resolution.height:
            raise ValueError("ladder.0: a rung cannot be taller than the view")
        if params.bitrate is not None and top.bitrate >= params.bitrate:
            raise ValueError("ladder.0: a rung's bitrate must be below the view's")
        return self

    @model_serializer(mode="wrap")
    def _leave_out_default_ladder(self, handler: SerializerFunctionWrapHandler) -> Any:
        # OWT's schema has no ladder: the default is left out of the JSON.
        data = handler(self)
        if isinstance(data, dict) and data.get("ladder", 0) is None:
            data.pop("ladder")
        return data


class ViewOptions(OptionsModel):
    """A view: one mixed stream (``<room id>-<label>``). ``video`` None = audio-only view."""

    label: Name = "common"
    audio: ViewAudio = Field(default_factory=ViewAudio)
    video: ViewVideo | None = Field(default_factory=ViewVideo)
    # Tessera: the room's live captions burnt into the picture (left out of the JSON if off).
    captions: bool = False

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

    @model_validator(mode="after")
    def _captions_need_a_picture(self) -> ViewOptions:
        if self.captions and self.video is None:
            raise ValueError("captions: an audio-only view has no picture to burn captions into")
        return self

    @model_serializer(mode="wrap")
    def _leave_out_captions(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict) and data.get("captions") is False:
            data.pop("captions")
        return data

"""Pure StreamInfo helpers: what a stream offers and whether a request fits it."""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from .mediasource import ParameterError, VideoFormat

# OWT's named resolutions (mediaOut.video.parameters.resolution).
NAMED_RESOLUTIONS: dict[str, tuple[int, int]] = {
    "uhd_4k": (3840, 2160),
    "hd1080p": (1920, 1080),
    "hd720p": (1280, 720),
    "xga": (1024, 768),
    "svga": (800, 600),
    "vga": (640, 480),
    "hvga": (480, 320),
    "cif": (352, 288),
    "qvga": (320, 240),
    "sif": (320, 240),
    "r640x360": (640, 360),
    "r480x360": (480, 360),
    "r320x180": (320, 180),
}


def _even(value: Fraction) -> int:
    return max(2, round(value / 2) * 2)


def optional_resolutions(
    resolution: tuple[int, int] | None, choices: list[str]
) -> list[dict[str, int]]:
    """Resolutions to offer for a source of `resolution`: multipliers and smaller named sizes."""
    out: list[tuple[int, int]] = []
    for choice in choices:
        if choice.startswith("x"):
            if resolution is None:
                continue
            factor = Fraction(choice[1:])
            if not 0 < factor < 1:
                continue
            size = (_even(resolution[0] * factor), _even(resolution[1] * factor))
        elif choice in NAMED_RESOLUTIONS:
            size = NAMED_RESOLUTIONS[choice]
            if resolution is not None and (size[0] >= resolution[0] or size[1] >= resolution[1]):
                continue
        else:
            continue
        if size != resolution and size not in out:
            out.append(size)
    return [{"width": w, "height": h} for w, h in out]


def optional_video(
    codec: str,
    resolution: tuple[int, int] | None,
    framerate: int | None,
    media_out: Mapping[str, Any],
    transcoding: Mapping[str, Any],
) -> dict[str, Any] | None:
    """The `optional` block of a video track, from the room's mediaOut and transcoding."""
    video_t = transcoding.get("video", {}) if transcoding else {}
    if not video_t:
        return None
    params_t = video_t.get("parameters", {}) if isinstance(video_t, dict) else {}
    out_video = media_out.get("video", {})
    out_params = out_video.get("parameters", {})
    formats = []
    if video_t.get("format"):
        for fmt in out_video.get("format", []):
            if fmt.get("codec") in ("vp8", "h264") and fmt.get("codec") != codec:
                if fmt not in formats:
                    formats.append({k: v for k, v in fmt.items() if v is not None})
    rates = [r for r in out_params.get("framerate", []) if framerate is None or r < framerate]
    return {
        "format": formats,
        "parameters": {
            "resolution": optional_resolutions(resolution, out_params.get("resolution", []))
            if params_t.get("resolution")
            else [],
            "framerate": rates if params_t.get("framerate") else [],
            "bitrate": list(out_params.get("bitrate", [])) if params_t.get("bitrate") else [],
            "keyFrameInterval": list(out_params.get("keyFrameInterval", []))
            if params_t.get("keyFrameInterval")
            else [],
        },
    }


def resolve_video_request(track: Mapping[str, Any], parameters: Any) -> VideoFormat:
    """Check subscription `parameters` against a video track of a StreamInfo.

    Every value must be the track's own or one of its `optional` values;
    otherwise ParameterError names what is not acceptable (OWT's wording).
    """
    codec = str(track.get("format", {}).get("codec", "vp8"))
    if parameters is None:
        return VideoFormat(codec=codec)
    if not isinstance(parameters, dict):
        raise ParameterError("Video parameters must be an object")
    own = track.get("parameters") or {}
    optional = (track.get("optional") or {}).get("parameters") or {}
    width = height = framerate = kfi = None
    bitrate: float | None = None

    resolution = parameters.get("resolution")
    if resolution is not None:
        if not (
            isinstance(resolution, dict)
            and isinstance(resolution.get("width"), int)
            and isinstance(resolution.get("height"), int)
        ):
            raise ParameterError("Resolution is not acceptable")
        wanted = {"width": resolution["width"], "height": resolution["height"]}
        if wanted != own.get("resolution"):
            if wanted not in optional.get("resolution", []):
                raise ParameterError("Resolution is not acceptable")
            width, height = wanted["width"], wanted["height"]

    rate = parameters.get("framerate")
    if rate is not None:
        if rate != own.get("framerate"):
            if rate not in optional.get("framerate", []):
                raise ParameterError("Framerate is not acceptable")
            framerate = int(rate)

    rate_str = parameters.get("bitrate")
    if rate_str is not None and rate_str != own.get("bitrate") and rate_str != "x1.0":
        if rate_str not in optional.get("bitrate", []):
            raise ParameterError("Bitrate is not acceptable")
        try:
            bitrate = float(str(rate_str).lstrip("x"))
        except ValueError as exc:
            raise ParameterError("Bitrate is not acceptable") from exc

    interval = parameters.get("keyFrameInterval")
    if interval is not None and interval != own.get("keyFrameInterval"):
        if interval not in optional.get("keyFrameInterval", []):
            raise ParameterError("KeyFrameInterval is not acceptable")
        kfi = int(interval)

    return VideoFormat(
        codec=codec,
        width=width,
        height=height,
        framerate=framerate,
        bitrate=bitrate,
        keyframe_interval=kfi,
    )


def resolve_video(track: Mapping[str, Any], parameters: Any, fmt: Any = None) -> VideoFormat:
    """A subscription's or recording's video request (`format` and `parameters`), checked."""
    return resolve_video_request(track, parameters).with_codec(resolve_video_codec(track, fmt))


def resolve_video_codec(track: Mapping[str, Any], fmt: Any) -> str:
    """The codec a subscription asks for: the track's own or one of its optional formats."""
    own = str(track.get("format", {}).get("codec", "vp8"))
    if fmt is None:
        return own
    if not isinstance(fmt, dict) or not isinstance(fmt.get("codec"), str):
        raise ParameterError("Format is not acceptable")
    codec = str(fmt["codec"]).lower()
    if codec == own:
        return own
    offered = [f.get("codec") for f in (track.get("optional") or {}).get("format", [])]
    if codec not in offered:
        raise ParameterError("Format is not acceptable")
    return codec


def check_audio_format(track: Mapping[str, Any], fmt: Any) -> None:
    """ParameterError unless an audio request's ``format`` (codec, and sampleRate and
    channelNum where given) is the track's own: audio is never transcoded for a subscriber
    (a StreamInfo offers no optional audio format), so nothing else can be delivered."""
    own = track.get("format") or {}
    codec = str(own.get("codec", "opus")).lower()
    if fmt is None:
        return
    if not isinstance(fmt, dict) or not isinstance(fmt.get("codec"), str):
        raise ParameterError("Format is not acceptable")
    if str(fmt["codec"]).lower() != codec:
        raise ParameterError("Format is not acceptable")
    for field in ("sampleRate", "channelNum"):
        if fmt.get(field) is not None and own.get(field) is not None and fmt[field] != own[field]:
            raise ParameterError("Format is not acceptable")

"""IngestPlan: what a streaming-in does with each track of its source (pure, no I/O).

A source's video is passed through (its packets forwarded as they are) when
its codec is one of the room's forward formats (VP8, or H.264 without
B-frames: RTP has no decode order, and browsers play WebRTC H.264 without
reordering) and the room's ``mediaIn`` accepts it; otherwise it is decoded
and encoded once, in the first format of ``mediaIn`` Tessera can encode
(VP8, then H.264). Audio passes through when it is Opus 48 kHz stereo (what
the mixer and WebRTC senders take) and is accepted by ``mediaIn``; any other
audio codec Tessera decodes is transcoded to Opus.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# FFmpeg decoder names Tessera takes from a source (others are refused by name).
VIDEO_CODECS = ("h264", "vp8", "hevc", "vp9", "av1", "mpeg4", "mpeg2video", "mjpeg")
AUDIO_CODECS = (
    "opus",
    "aac",
    "mp3",
    "ac3",
    "vorbis",
    "pcm_mulaw",
    "pcm_alaw",
    "pcm_s16le",
    "pcm_s16be",
    "g722",
)
# What a transcoded video may become, in order of preference, when mediaIn accepts it.
VIDEO_TARGETS = ("vp8", "h264")
# FFmpeg's H.264 profile names -> OWT's; others (High 10, 4:4:2, 4:4:4) no browser decodes.
_H264_PROFILES = {"Constrained Baseline": "CB", "Baseline": "B", "Main": "M", "High": "H"}


class IngestPlanError(ValueError):
    """The source cannot become a stream of this room: the message says why."""


@dataclass(frozen=True)
class SourceTrack:
    """A track of the source as the demuxer describes it."""

    kind: str  # "audio" | "video"
    codec: str  # FFmpeg's codec name: "h264", "aac", ...
    profile: str | None = None  # FFmpeg's profile name ("High", "Constrained Baseline")
    b_frames: bool = False  # decode order differs from presentation order
    sample_rate: int | None = None
    channels: int | None = None
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True)
class TrackPlan:
    """One track of the stream: the source's codec and what the room receives."""

    kind: str
    source_codec: str
    codec: str  # what the stream offers: "vp8", "h264", "opus"
    transcode: bool
    profile: str | None = None  # OWT's H.264 profile name of a passed-through H.264

    @property
    def passthrough(self) -> bool:
        return not self.transcode


def h264_profile_name(profile: str | None) -> str | None:
    """OWT's name ("CB", "B", "M", "H") of FFmpeg's H.264 profile name, None if another."""
    return _H264_PROFILES.get(profile or "")


def _accepts(formats: Any, codec: str, profile: str | None = None) -> bool:
    if not isinstance(formats, list):
        return False
    rank = {"CB": 1, "B": 2, "M": 3, "H": 4}
    for fmt in formats:
        if not isinstance(fmt, Mapping) or str(fmt.get("codec", "")).lower() != codec:
            continue
        wanted = rank.get(str(fmt.get("profile")))
        have = rank.get(str(profile))
        if wanted is None or have is None or have <= wanted:
            return True
    return False


def _audio_passes(track: SourceTrack, formats: Any) -> bool:
    if track.codec != "opus" or track.sample_rate not in (None, 48000):
        return False
    if track.channels not in (None, 2):
        return False
    return _accepts(formats, "opus")


def plan_video(track: SourceTrack, media_in: Mapping[str, Any]) -> TrackPlan:
    if track.codec not in VIDEO_CODECS:
        raise IngestPlanError(
            f"Unsupported video codec {track.codec} (supported: {', '.join(VIDEO_CODECS)})"
        )
    formats = media_in.get("video")
    profile = h264_profile_name(track.profile) if track.codec == "h264" else None
    fits = track.codec == "vp8" or (
        track.codec == "h264" and profile is not None and not track.b_frames
    )
    if fits and _accepts(formats, track.codec, profile):
        return TrackPlan("video", track.codec, track.codec, transcode=False, profile=profile)
    for target in VIDEO_TARGETS:
        # Tessera's H.264 encode is constrained baseline: accepted by any H.264 format.
        if _accepts(formats, target, "CB" if target == "h264" else None):
            return TrackPlan(
                "video",
                track.codec,
                target,
                transcode=True,
                profile="CB" if target == "h264" else None,
            )
    raise IngestPlanError(
        "The room's mediaIn accepts no video format Tessera can receive or encode (VP8, H.264)"
    )


def plan_audio(track: SourceTrack, media_in: Mapping[str, Any]) -> TrackPlan:
    if track.codec not in AUDIO_CODECS:
        raise IngestPlanError(
            f"Unsupported audio codec {track.codec} (supported: {', '.join(AUDIO_CODECS)})"
        )
    formats = media_in.get("audio")
    if _audio_passes(track, formats):
        return TrackPlan("audio", track.codec, "opus", transcode=False)
    if not _accepts(formats, "opus"):
        raise IngestPlanError("The room's mediaIn does not accept Opus audio")
    return TrackPlan("audio", track.codec, "opus", transcode=True)


def plan_tracks(
    tracks: Sequence[SourceTrack],
    wishes: Mapping[str, str],
    media_in: Mapping[str, Any],
) -> dict[str, TrackPlan]:
    """The plan of each kind the request takes (``wishes``: kind -> auto/yes/no).

    A kind asked for (``yes``) that the source lacks, or a source left with no
    track at all, is an IngestPlanError naming it; the first track of a kind is taken.
    """
    plans: dict[str, TrackPlan] = {}
    for kind in ("video", "audio"):
        wish = wishes.get(kind, "auto")
        if wish == "no":
            continue
        if not media_in.get(kind):
            if wish == "yes":
                raise IngestPlanError(
                    f"{kind.capitalize()} is forbidden in this room (mediaIn), media.{kind} is true"
                )
            continue
        found = next((t for t in tracks if t.kind == kind), None)
        if found is None:
            if wish == "yes":
                raise IngestPlanError(f"The source has no {kind} (media.{kind} is true)")
            continue
        plans[kind] = (
            plan_video(found, media_in) if kind == "video" else plan_audio(found, media_in)
        )
    if not plans:
        asked = [k for k in ("video", "audio") if wishes.get(k, "auto") != "no"]
        raise IngestPlanError(f"The source has no {' or '.join(asked)}")
    return plans

"""CodecFormat: a negotiated codec as OWT names it, and whether a room's mediaIn accepts it.

Pure: no aiortc, no asyncio. The transport describes each codec an offer
carries with `CodecFormat.from_sdp` and keeps those the room accepts
(`accepted_by`, OWT's `isAudioFmtAcceptable` / `isVideoFmtAcceptable` of
`conference/formatUtil.js`); a forward stream advertises the one that was
negotiated (`to_json`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# OWT ranks H.264 profiles so that a stream is acceptable up to the profile a
# format names: a {"codec": "h264", "profile": "B"} entry accepts CB and B.
H264_PROFILE_RANK = {"CB": 1, "B": 2, "M": 3, "H": 4}


def h264_profile(profile_level_id: str) -> str | None:
    """OWT's profile name of an SDP ``profile-level-id`` (RFC 6184), or None if unknown."""
    text = profile_level_id.strip()
    if len(text) != 6:
        return None
    try:
        idc, iop = int(text[0:2], 16), int(text[2:4], 16)
    except ValueError:
        return None
    # RFC 6184 table 5: the constraint flags of profile-iop make some Baseline,
    # Main and Extended streams Constrained Baseline (or Baseline).
    if idc == 0x42:
        return "CB" if iop & 0x40 else "B"
    if idc == 0x4D:
        return "CB" if iop & 0x80 else "M"
    if idc == 0x58:
        return {0xC0: "CB", 0x80: "B"}.get(iop & 0xC0)
    if idc == 0x64:
        return "H"
    return None


@dataclass(frozen=True)
class CodecFormat:
    """One codec of an SDP m-line: OWT's format object plus what matching needs."""

    kind: str  # "audio" | "video"
    codec: str  # lower case: "opus", "pcmu", "vp8", "h264", ...
    sample_rate: int | None = None
    channels: int | None = None
    profile: str | None = None  # H.264 only: "CB", "B", "M", "H"

    @classmethod
    def from_sdp(
        cls,
        kind: str,
        name: str,
        clock_rate: int | None,
        channels: int | None,
        parameters: Mapping[str, Any],
    ) -> CodecFormat:
        """From an ``a=rtpmap`` (name, clock rate, channels) and its ``a=fmtp`` parameters."""
        codec = name.lower()
        if kind == "video":
            level = parameters.get("profile-level-id")
            profile = h264_profile(str(level)) if codec == "h264" and level is not None else None
            return cls(kind, codec, profile=profile)
        # RFC 3551: an audio codec without an explicit channel count is mono.
        return cls(kind, codec, sample_rate=clock_rate, channels=channels or 1)

    def to_json(self) -> dict[str, Any]:
        """The ``format`` of a StreamInfo track, as OWT describes what it receives."""
        if self.kind == "video":
            return {"codec": self.codec, **({"profile": self.profile} if self.profile else {})}
        if self.codec == "opus":
            return {"codec": "opus", "sampleRate": self.sample_rate, "channelNum": self.channels}
        # OWT's formats of the fixed-rate codecs name the codec only ({"codec": "pcmu"}).
        return {"codec": self.codec}

    def accepted_by(self, formats: Sequence[Mapping[str, Any]]) -> bool:
        """Whether one of a room's mediaIn ``formats`` (of this kind) accepts this codec.

        A format accepts a codec of its name; a sample rate or channel count it
        names must match, and an H.264 profile it names is the highest it accepts
        (a codec whose profile is unknown matches, as OWT's check does).
        """
        return any(self._matches(fmt) for fmt in formats)

    def _matches(self, fmt: Mapping[str, Any]) -> bool:
        if str(fmt.get("codec", "")).lower() != self.codec:
            return False
        if self.kind == "video":
            wanted = H264_PROFILE_RANK.get(str(fmt.get("profile")))
            have = H264_PROFILE_RANK.get(str(self.profile))
            return wanted is None or have is None or have <= wanted
        rate, channels = fmt.get("sampleRate"), fmt.get("channelNum")
        return (rate is None or rate == self.sample_rate) and (
            channels is None or channels == self.channels
        )

"""What a peer-model offer carries: its audio and video m-lines (pure: no I/O)."""

from __future__ import annotations

from tessera.webrtc_agent.offercheck import OfferError, check_offer

from .errors import ConferenceError


def offer_sections(sdp: str) -> list[tuple[str, str, bool]]:
    """(mid, kind, whether the caller sends) of the offer's first audio and first video
    m-line; a data offer has none. ConferenceError ("Invalid offer: ...") if the offer
    cannot be applied."""
    try:
        description = check_offer(sdp, [])
    except OfferError as exc:
        raise ConferenceError(f"Invalid offer: {exc}") from None
    sections: list[tuple[str, str, bool]] = []
    for media in description.media:
        mid = media.rtp.muxId
        if (
            media.kind in ("audio", "video")
            and mid
            and all(k != media.kind for _, k, _ in sections)
        ):
            sends = media.direction in (None, "sendrecv", "sendonly")
            sections.append((mid, media.kind, sends))
    return sections

"""Checks on a client offer before aiortc applies it (pure: no I/O)."""

from __future__ import annotations

from aiortc import sdp

# More m-lines than any real client renegotiates up to; refuses resource abuse.
MAX_MEDIA_SECTIONS = 64


class OfferError(ValueError):
    """The offer cannot be applied; the message names the problem."""


def check_offer(text: str, negotiated: list[tuple[str, str]]) -> sdp.SessionDescription:
    """Parse an offer and check it against the m-lines already negotiated.

    `negotiated` lists (mid, kind) by m-line index. m-lines are never removed
    or reordered in renegotiation, so each must still be where it was; a
    description that aiortc would accept but cannot connect (no media, no ICE
    credentials, no DTLS fingerprint) is refused here instead of failing later
    inside the peer connection.
    """
    if not text.lstrip().startswith("v=0"):
        raise OfferError("SDP must start with v=0")
    try:
        description = sdp.SessionDescription.parse(text)
    except Exception as exc:
        raise OfferError(f"SDP does not parse ({exc.__class__.__name__}: {exc})") from exc
    media = description.media
    if not media:
        raise OfferError("SDP has no media section")
    if len(media) > MAX_MEDIA_SECTIONS:
        raise OfferError(f"SDP has more than {MAX_MEDIA_SECTIONS} media sections")
    if len(media) < len(negotiated):
        raise OfferError("SDP removes media sections that were negotiated")
    for index, (mid, kind) in enumerate(negotiated):
        section = media[index]
        if section.rtp.muxId != mid or section.kind != kind:
            raise OfferError(f"media section {index} must stay {kind} with mid {mid}")
    seen: set[str] = set()
    for index, section in enumerate(media):
        if section.kind not in ("audio", "video", "application"):
            raise OfferError(f"media section {index} has unsupported kind {section.kind}")
        mid = section.rtp.muxId
        if not mid:
            raise OfferError(f"media section {index} has no mid")
        if mid in seen:
            raise OfferError(f"mid {mid} appears twice")
        seen.add(mid)
        if section.ice is None or not section.ice.usernameFragment or not section.ice.password:
            raise OfferError(f"media section {index} has no ICE credentials")
        if section.dtls is None or not section.dtls.fingerprints:
            raise OfferError(f"media section {index} has no DTLS fingerprint")
        if section.kind != "application" and not section.rtp.codecs:
            raise OfferError(f"media section {index} offers no codec")
    return description

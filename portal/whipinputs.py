"""What WHIP (RFC 9725) and WHEP requests carry besides the offer (pure: no I/O).

The bearer token of ``Authorization``, the trickle-ICE SDP fragment of a ``PATCH``
(RFC 8840, ``application/trickle-ice-sdpfrag``), the ``If-Match`` test, and the
``Link`` headers that name the server's ICE servers. Every refusal is a
:class:`WhipInputError` whose message names the problem and whose status is the HTTP
answer the RFC asks for.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field

import jwt

# A token (base64 envelope or bare JWT) is well under 2 KB; more is not one.
MAX_TOKEN_LENGTH = 8192
# A trickle fragment carries a few candidates: far less than this.
MAX_SDPFRAG_LENGTH = 16384
MAX_CANDIDATES = 64

_JWT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


class WhipInputError(Exception):
    """A WHIP/WHEP request the server refuses: the message names the problem."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def bearer_token(header: str | None) -> str:
    """The token of ``Authorization: Bearer <token>`` (401 if missing or of another scheme).

    A bare JWT (what an application server signs with its service key: claims ``iss``,
    ``room``, ``user``, ``role``, ``iat``, ``exp``, ``jti``, HS256) is put in the envelope
    a Tessera token has, so that one verification serves both.
    """
    if not header:
        raise WhipInputError("Authorization: Bearer <token> is required", 401)
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise WhipInputError("Authorization must be Bearer <token>", 401)
    if len(token) > MAX_TOKEN_LENGTH:
        raise WhipInputError("Token is malformed", 401)
    if _JWT.fullmatch(token):
        return envelope_of_jwt(token)
    return token


def envelope_of_jwt(signed: str) -> str:
    """A service-signed JWT in a Tessera token's envelope (its ``jti`` as ``tokenId``).

    Nothing is verified here: the envelope is verified like any token (signature, claims,
    expiry, single use)."""
    try:
        claims = jwt.decode(signed, options={"verify_signature": False})
    except (jwt.PyJWTError, ValueError, TypeError):
        raise WhipInputError("Token is malformed", 401) from None
    token_id = claims.get("jti")
    if not isinstance(token_id, str) or not token_id:
        raise WhipInputError("Token is missing the 'jti' claim", 401)
    envelope = {"tokenId": token_id, "host": "", "secure": False, "signature": signed}
    return base64.b64encode(json.dumps(envelope, separators=(",", ":")).encode()).decode("ascii")


@dataclass
class SdpFragment:
    """A trickle-ICE SDP fragment: its ICE credentials (if given) and candidates by mid."""

    ufrag: str | None = None
    pwd: str | None = None
    # (mid or None, candidate attribute value without "candidate:"); "" = end-of-candidates.
    candidates: list[tuple[str | None, str]] = field(default_factory=list)


def parse_sdpfrag(text: str) -> SdpFragment:
    """Parse an ``application/trickle-ice-sdpfrag`` body (RFC 8840 section 9)."""
    if len(text) > MAX_SDPFRAG_LENGTH:
        raise WhipInputError(f"SDP fragment is longer than {MAX_SDPFRAG_LENGTH} characters", 413)
    fragment = SdpFragment()
    mid: str | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if len(line) < 2 or line[1] != "=":
            raise WhipInputError(f"SDP fragment line {number} is not <type>=<value>")
        kind, value = line[0], line[2:]
        if kind == "m":
            mid = None  # the section's a=mid follows
            continue
        if kind != "a":
            continue
        name, _, rest = value.partition(":")
        if name == "mid":
            mid = rest or None
        elif name == "ice-ufrag":
            fragment.ufrag = _credential(rest, "ice-ufrag")
        elif name == "ice-pwd":
            fragment.pwd = _credential(rest, "ice-pwd")
        elif name == "candidate":
            if len(fragment.candidates) >= MAX_CANDIDATES:
                raise WhipInputError(f"SDP fragment has more than {MAX_CANDIDATES} candidates")
            if len(rest.split()) < 8:
                raise WhipInputError(f"SDP fragment line {number} is not an ICE candidate")
            fragment.candidates.append((mid, rest))
        elif name == "end-of-candidates":
            fragment.candidates.append((mid, ""))
    return fragment


def _credential(value: str, name: str) -> str:
    if not value or len(value) > 256 or not value.isprintable() or " " in value:
        raise WhipInputError(f"SDP fragment has an invalid {name}")
    return value


def is_ice_restart(fragment: SdpFragment, if_match: str | None, current_ufrag: str | None) -> bool:
    """RFC 9725 4.3.2: an ICE restart carries ``If-Match: *`` and new ICE credentials."""
    if if_match is not None and if_match.strip() == "*":
        return True
    return fragment.ufrag is not None and fragment.ufrag != current_ufrag


def check_if_match(if_match: str | None, etag: str) -> None:
    """412 if ``If-Match`` names an entity tag that is not the session's (``*`` matches)."""
    if if_match is None:
        return
    tags = [t.strip() for t in if_match.split(",")]
    if "*" in tags or etag in tags or f"W/{etag}" in tags:
        return
    raise WhipInputError("If-Match does not name this session's ICE session (ETag)", 412)


def ice_server_links(urls: list[str]) -> list[str]:
    """``Link`` header values naming the server's ICE (STUN) servers (RFC 9725 4.6)."""
    return [f'<{url}>; rel="ice-server"' for url in urls]


def ice_ufrag(sdp: str) -> str | None:
    """The first ``a=ice-ufrag`` of an SDP (the session's ICE credentials)."""
    for line in sdp.splitlines():
        if line.startswith("a=ice-ufrag:"):
            return line[len("a=ice-ufrag:") :].strip() or None
    return None


def refused_mids(answer: str, mids: list[str]) -> list[str]:
    """The mids of ``mids`` that an SDP answer refused (port 0, ``a=inactive``, or absent)."""
    sections: dict[str, bool] = {}  # mid -> accepted
    port_open, direction_ok, mid = False, True, None

    def close_section() -> None:
        if mid is not None:
            sections[mid] = port_open and direction_ok

    for line in answer.splitlines():
        if line.startswith("m="):
            close_section()
            fields = line[2:].split()
            port_open = len(fields) > 1 and fields[1] != "0"
            direction_ok, mid = True, None
        elif line.startswith("a=mid:"):
            mid = line[len("a=mid:") :].strip()
        elif line.strip() == "a=inactive":
            direction_ok = False
    close_section()
    return [m for m in mids if not sections.get(m, False)]

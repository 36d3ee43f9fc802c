"""Join tokens and reconnection tickets (pure: no I/O, no clock unless none is given).

A join token is what a client logs in with: ``base64(JSON)`` whose ``host`` and
``secure`` tell the client where to connect (OWT clients read them), and whose
``signature`` is an HS256 JWT signed with the issuing service's key naming the
room, user, role, expiry and a unique id (``jti``, also the envelope's
``tokenId``).

A reconnection ticket lets a client that lost its connection take its
participant back: ``base64(JSON {participantId, ticketId, notBefore, notAfter,
signature})`` with times in milliseconds, as in OWT, signed with HMAC-SHA256. Ours
also names the participant's ``serviceId`` and ``roomId`` (signed too), so that any
portal of a cluster can route a relogin to the room's agent without asking anyone.

Every verification failure is a :class:`TokenError` whose message can be sent
to the client as it is; no jwt, binascii or json exception escapes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt

from .errors import ConferenceError, ErrorCode

__all__ = [
    "TicketClaims",
    "TokenClaims",
    "TokenError",
    "issue_ticket",
    "issue_token",
    "read_token_service",
    "verify_ticket",
    "verify_token",
]

ALGORITHM = "HS256"
# Claims longer than this are not ids or names but an attack or a bug.
MAX_CLAIM_LENGTH = 256
# A real token or ticket is well under 2 KB; refuse big input before decoding it.
MAX_INPUT_LENGTH = 8192
# Tolerated clock difference for "issued in the future" (tokens may come from another host).
CLOCK_SKEW = 60.0

_CLAIMS = ("iss", "room", "user", "role", "jti")
_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")


class TokenError(ConferenceError):
    """A token or ticket that cannot be accepted; the message is fit for the client."""

    def __init__(
        self, message: str, code: ErrorCode = ErrorCode.AUTHENTICATION, status: int = 401
    ) -> None:
        super().__init__(message, code, status)


@dataclass(frozen=True)
class TokenClaims:
    """What a verified join token grants."""

    service: str
    room: str
    user: str
    role: str
    token_id: str
    expires_at: float


@dataclass(frozen=True)
class TicketClaims:
    """What a verified reconnection ticket names; ``not_after`` is in seconds since the epoch."""

    participant_id: str
    ticket_id: str
    not_after: float
    service_id: str
    room_id: str


def _b64_json(data: dict[str, Any]) -> str:
    text = json.dumps(data, separators=(",", ":"))
    return base64.b64encode(text.encode()).decode("ascii")


def _decode_envelope(text: object, what: str) -> dict[str, Any]:
    """base64(JSON object) -> dict, or TokenError("<what> is malformed")."""
    malformed = TokenError(f"{what} is malformed")
    if not isinstance(text, str) or not text or len(text) > MAX_INPUT_LENGTH:
        raise malformed
    try:
        raw = base64.b64decode(text.strip(), validate=True)
        data = json.loads(raw)
    except (binascii.Error, ValueError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise malformed from None
    if not isinstance(data, dict):
        raise malformed
    return data


def _valid_string(value: object) -> bool:
    # isprintable() also rules out control characters and lone surrogates from JSON.
    return isinstance(value, str) and 0 < len(value) <= MAX_CLAIM_LENGTH and value.isprintable()


def _is_number(value: object) -> bool:
    # bool is an int subclass; a JSON true is no timestamp.
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def issue_token(
    *,
    service_id: str,
    key: str,
    room: str,
    user: str,
    role: str,
    host: str,
    secure: bool,
    lifetime: float,
    now: float | None = None,
) -> str:
    """Issue a join token for ``user`` in ``room`` with ``role``, valid for ``lifetime`` seconds."""
    if not key:
        raise ValueError("a service key is required to sign tokens")
    if lifetime <= 0:
        raise ValueError("token lifetime must be positive")
    for name, value in (("service_id", service_id), ("room", room), ("user", user), ("role", role)):
        if not _valid_string(value):
            raise ValueError(f"{name} must be a non-empty string of at most {MAX_CLAIM_LENGTH}")
    issued = time.time() if now is None else now
    token_id = uuid.uuid4().hex
    claims = {
        "iss": service_id,
        "room": room,
        "user": user,
        "role": role,
        # JWT NumericDates; PyJWT truncates to int, so round outward to keep the full lifetime.
        "iat": math.floor(issued),
        "exp": math.ceil(issued + lifetime),
        "jti": token_id,
    }
    signature = jwt.encode(claims, key, algorithm=ALGORITHM)
    return _b64_json({"tokenId": token_id, "host": host, "secure": secure, "signature": signature})


def _signature_of(envelope: dict[str, Any]) -> str:
    signature = envelope.get("signature")
    if not isinstance(signature, str) or not signature:
        raise TokenError("Token is malformed")
    return signature


def read_token_service(token: str) -> str:
    """The service id a token claims to come from, *unverified*: it picks the key to verify with."""
    signature = _signature_of(_decode_envelope(token, "Token"))
    try:
        claims = jwt.decode(signature, options={"verify_signature": False})
    except (jwt.PyJWTError, ValueError, TypeError):
        raise TokenError("Token is malformed") from None
    service = claims.get("iss")
    if not isinstance(service, str) or not _valid_string(service):
        raise TokenError("Token is malformed")
    return service


def verify_token(token: str, key: str, *, now: float | None = None) -> TokenClaims:
    """Check a join token against the service ``key`` and return its claims."""
    envelope = _decode_envelope(token, "Token")
    signature = _signature_of(envelope)
    try:
        header = jwt.get_unverified_header(signature)
    except (jwt.PyJWTError, ValueError, TypeError):
        raise TokenError("Token is malformed") from None
    # Refuse "none", RS256 (key confusion) and anything else before touching the key.
    if header.get("alg") != ALGORITHM:
        raise TokenError("Token algorithm is not accepted")
    if not key:
        raise TokenError("Token signature is invalid")
    try:
        claims = jwt.decode(
            signature,
            key,
            algorithms=[ALGORITHM],
            # The clock is checked below against `now`, so that callers and tests control it.
            options={
                "require": ["exp", "iat", "jti", "iss"],
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
            },
        )
    except jwt.InvalidSignatureError:
        raise TokenError("Token signature is invalid") from None
    except jwt.InvalidKeyError:
        # e.g. a PEM public key handed in as an HMAC secret: that can never verify.
        raise TokenError("Token signature is invalid") from None
    except jwt.MissingRequiredClaimError as exc:
        raise TokenError(f"Token is missing the {exc.claim!r} claim") from None
    except jwt.InvalidAlgorithmError:
        raise TokenError("Token algorithm is not accepted") from None
    except (jwt.PyJWTError, ValueError, TypeError):
        raise TokenError("Token is malformed") from None

    for claim in _CLAIMS:
        if claim not in claims:
            raise TokenError(f"Token is missing the {claim!r} claim")
        if not _valid_string(claims[claim]):
            raise TokenError(f"Token claim {claim!r} is invalid")
    expires_at, issued_at = claims["exp"], claims["iat"]
    if not _is_number(expires_at) or not _is_number(issued_at):
        raise TokenError("Token is malformed")
    if envelope.get("tokenId") != claims["jti"]:
        raise TokenError("Token id does not match")
    current = time.time() if now is None else now
    if current >= expires_at:
        raise TokenError("Token has expired")
    if issued_at > current + CLOCK_SKEW:
        raise TokenError("Token is not yet valid")
    return TokenClaims(
        service=claims["iss"],
        room=claims["room"],
        user=claims["user"],
        role=claims["role"],
        token_id=claims["jti"],
        expires_at=float(expires_at),
    )


def _ticket_signature(
    secret: bytes,
    participant_id: str,
    ticket_id: str,
    not_before: int,
    not_after: int,
    service_id: str,
    room_id: str,
) -> str:
    # JSON, not a joined string: ids may hold any character, a comma too.
    message = json.dumps([participant_id, ticket_id, not_before, not_after, service_id, room_id])
    return hmac.new(secret, message.encode(), hashlib.sha256).hexdigest()


def issue_ticket(
    participant_id: str,
    secret: bytes,
    lifetime: float,
    now: float | None = None,
    *,
    service_id: str,
    room_id: str,
) -> str:
    """Issue a reconnection ticket for ``participant_id`` of the room ``room_id`` of
    ``service_id``, valid for ``lifetime`` seconds."""
    if not secret:
        raise ValueError("a secret is required to sign tickets")
    for name, value in (
        ("participant_id", participant_id),
        ("service_id", service_id),
        ("room_id", room_id),
    ):
        if not _valid_string(value):
            raise ValueError(f"{name} must be a non-empty string of at most {MAX_CLAIM_LENGTH}")
    issued = time.time() if now is None else now
    ticket_id = uuid.uuid4().hex
    not_before = math.floor(issued * 1000)
    not_after = math.ceil((issued + lifetime) * 1000)
    signature = _ticket_signature(
        secret, participant_id, ticket_id, not_before, not_after, service_id, room_id
    )
    return _b64_json(
        {
            "participantId": participant_id,
            "ticketId": ticket_id,
            "notBefore": not_before,
            "notAfter": not_after,
            "serviceId": service_id,
            "roomId": room_id,
            "signature": signature,
        }
    )


def verify_ticket(ticket: str, secret: bytes, now: float | None = None) -> TicketClaims:
    """Check a reconnection ticket's signature and validity period."""
    data = _decode_envelope(ticket, "Ticket")
    participant_id = data.get("participantId")
    ticket_id = data.get("ticketId")
    not_before = data.get("notBefore")
    not_after = data.get("notAfter")
    service_id = data.get("serviceId")
    room_id = data.get("roomId")
    signature = data.get("signature")
    if not (
        isinstance(participant_id, str)
        and _valid_string(participant_id)
        and isinstance(ticket_id, str)
        and _valid_string(ticket_id)
        and isinstance(service_id, str)
        and _valid_string(service_id)
        and isinstance(room_id, str)
        and _valid_string(room_id)
        and isinstance(not_before, int)
        and not isinstance(not_before, bool)
        and isinstance(not_after, int)
        and not isinstance(not_after, bool)
        and isinstance(signature, str)
        and _HEX_SHA256.fullmatch(signature)
    ):
        raise TokenError("Ticket is malformed")
    expected = _ticket_signature(
        secret, participant_id, ticket_id, not_before, not_after, service_id, room_id
    )
    if not hmac.compare_digest(expected, signature):
        raise TokenError("Ticket signature is invalid")
    current_ms = (time.time() if now is None else now) * 1000
    if current_ms < not_before:
        raise TokenError("Ticket is not yet valid")
    if current_ms > not_after:
        raise TokenError("Ticket has expired")
    return TicketClaims(
        participant_id=participant_id,
        ticket_id=ticket_id,
        not_after=not_after / 1000,
        service_id=service_id,
        room_id=room_id,
    )

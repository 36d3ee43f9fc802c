"""OWT's MAuth request signatures for the REST API (pure: no I/O, the clock is passed in).

An OWT application server signs every management request with its service key::

    Authorization: MAuth realm=http://marte3.dit.upm.es,mauth_signature_method=HMAC_SHA256,
        mauth_serviceid=<id>,mauth_cnonce=<n>,mauth_timestamp=<ms>,mauth_signature=<sig>

(one line, no spaces), optionally with ``mauth_username`` (base64 of the UTF-8
name) and ``mauth_role``. The signature is what OWT's clients (``nuve.js``,
``icsREST.js``) compute: ``base64(hex(HMAC-SHA256(key, "timestamp,cnonce")))``,
with ``",username,role"`` appended to the signed text when both are present,
the username in its base64 form as it appears in the header.

OWT itself never looks at the timestamp (its replay check is commented out);
Tessera refuses timestamps off the server's clock by more than a window and,
with :class:`NonceCache`, a (service, cnonce, timestamp) seen before.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import heapq
import hmac
import re
from dataclasses import dataclass

__all__ = [
    "DEFAULT_MAX_SKEW_MS",
    "SIGNATURE_METHOD",
    "AuthError",
    "MAuthHeader",
    "NonceCache",
    "parse_mauth",
    "sign",
    "verify_mauth",
]

SIGNATURE_METHOD = "HMAC_SHA256"
# How far a request's timestamp may be from the server's clock (either way).
DEFAULT_MAX_SKEW_MS = 300_000
# A real header is about 300 characters; refuse big input before looking at it.
MAX_HEADER_LENGTH = 4096
MAX_FIELD_LENGTH = 256

_SCHEME_RE = re.compile(r"^mauth\s+", re.IGNORECASE)
# Milliseconds since the epoch, as JavaScript's Date.getTime() prints them (no leading zeros).
_TIMESTAMP_RE = re.compile(r"^(0|[1-9][0-9]{0,15})$")
_TOKEN_RE = re.compile(r"^[!-~]+$")  # printable ASCII, no spaces
_BASE64_RE = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")

_KNOWN = {
    "realm",
    "mauth_signature_method",
    "mauth_serviceid",
    "mauth_cnonce",
    "mauth_timestamp",
    "mauth_signature",
    "mauth_username",
    "mauth_role",
}
_REQUIRED = (
    "mauth_signature_method",
    "mauth_serviceid",
    "mauth_cnonce",
    "mauth_timestamp",
    "mauth_signature",
)


class AuthError(Exception):
    """A request signature that cannot be accepted; the message says what is wrong."""


@dataclass(frozen=True)
class MAuthHeader:
    """The fields of a parsed ``Authorization: MAuth ...`` header, as sent.

    ``username`` is the header's form (base64 of the UTF-8 name, as OWT's
    clients send it and sign it); :attr:`user` is the decoded name.
    """

    service_id: str
    cnonce: str
    timestamp: int
    signature: str
    signature_method: str = SIGNATURE_METHOD
    realm: str | None = None
    username: str | None = None
    role: str | None = None

    @property
    def user(self) -> str | None:
        """The user name carried in ``mauth_username``, decoded (None if absent)."""
        return None if self.username is None else _decode_username(self.username)


def _decode_username(text: str) -> str:
    try:
        return base64.b64decode(text, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise AuthError("mauth_username is not the base64 form of a UTF-8 name") from None


def _unquote(value: str) -> str:
    # OWT's own makeHeader() quotes values ("..."); its clients do not. Accept both.
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def parse_mauth(header: str) -> MAuthHeader:
    """Parse an ``Authorization`` header value of the MAuth scheme.

    Raises AuthError naming the missing, repeated or malformed field.
    """
    if len(header) > MAX_HEADER_LENGTH:
        raise AuthError("Authorization header is too long")
    match = _SCHEME_RE.match(header)
    if match is None:
        raise AuthError("Authorization header is not of the MAuth scheme")
    fields: dict[str, str] = {}
    for part in header[match.end() :].split(","):
        part = part.strip()
        if not part:
            continue
        name, equals, value = part.partition("=")
        name = name.strip().lower()
        if not equals:
            raise AuthError(f"MAuth field {name[:40]!r} has no value")
        if name not in _KNOWN:
            continue  # later OWT versions may add fields; what is signed is checked below
        if name in fields:
            raise AuthError(f"{name} is given more than once")
        fields[name] = _unquote(value.strip())

    for name in _REQUIRED:
        if not fields.get(name):
            raise AuthError(f"{name} is missing")
    for name, value in fields.items():
        if name == "realm":
            continue
        if len(value) > MAX_FIELD_LENGTH:
            raise AuthError(f"{name} is too long")
        if not _TOKEN_RE.match(value):
            raise AuthError(f"{name} must be printable ASCII without spaces")

    method = fields["mauth_signature_method"]
    if method != SIGNATURE_METHOD:
        raise AuthError(
            f"mauth_signature_method {method[:40]!r} is not supported (only {SIGNATURE_METHOD})"
        )
    if not _TIMESTAMP_RE.match(fields["mauth_timestamp"]):
        raise AuthError("mauth_timestamp must be milliseconds since the epoch")
    if not _BASE64_RE.match(fields["mauth_signature"]):
        raise AuthError("mauth_signature is not base64")

    username, role = fields.get("mauth_username"), fields.get("mauth_role")
    if (username is None) != (role is None):
        raise AuthError("mauth_username and mauth_role must be given together")
    if username is not None:
        _decode_username(username)

    return MAuthHeader(
        service_id=fields["mauth_serviceid"],
        cnonce=fields["mauth_cnonce"],
        timestamp=int(fields["mauth_timestamp"]),
        signature=fields["mauth_signature"],
        signature_method=method,
        realm=fields.get("realm"),
        username=username,
        role=role,
    )


def sign(
    key: str,
    timestamp: int | str,
    cnonce: str,
    username: str | None = None,
    role: str | None = None,
) -> str:
    """The MAuth signature of a request, as OWT's clients compute it.

    ``username`` is the header's (base64) form; it and ``role`` are signed only
    when both are given, as in OWT.
    """
    text = f"{timestamp},{cnonce}"
    if username is not None and role is not None:
        text += f",{username},{role}"
    digest = hmac.new(key.encode("utf-8"), text.encode("utf-8"), hashlib.sha256).hexdigest()
    return base64.b64encode(digest.encode("ascii")).decode("ascii")


def verify_mauth(
    header: MAuthHeader, key: str, now_ms: int, max_skew_ms: int = DEFAULT_MAX_SKEW_MS
) -> None:
    """Check the signature with the service ``key`` and the timestamp against ``now_ms``."""
    if not key:
        raise AuthError("the service has no key")
    expected = sign(key, header.timestamp, header.cnonce, header.username, header.role)
    if not hmac.compare_digest(expected.encode("ascii"), header.signature.encode("ascii")):
        raise AuthError("mauth_signature does not match")
    # Checked after the signature, so that an unsigned request learns nothing about the clock.
    skew = header.timestamp - now_ms
    if skew < -max_skew_ms:
        raise AuthError(
            f"mauth_timestamp is {-skew // 1000} s old (at most {max_skew_ms // 1000} s accepted)"
        )
    if skew > max_skew_ms:
        raise AuthError(
            f"mauth_timestamp is {skew // 1000} s in the future "
            f"(at most {max_skew_ms // 1000} s accepted)"
        )


class NonceCache:
    """Remembers signed requests to refuse replays.

    A (service, cnonce, timestamp) is accepted once. It only needs remembering
    while its timestamp is inside the skew window (after that
    :func:`verify_mauth` refuses it anyway), so entries are forgotten then.
    The cache is bounded: when it is full, new requests are refused rather than
    old entries dropped, which would let those be replayed.
    """

    def __init__(self, max_skew_ms: int = DEFAULT_MAX_SKEW_MS, max_entries: int = 100_000) -> None:
        if max_skew_ms <= 0 or max_entries <= 0:
            raise ValueError("max_skew_ms and max_entries must be positive")
        self.max_skew_ms = max_skew_ms
        self.max_entries = max_entries
        self._expiry: dict[tuple[str, str, int], int] = {}
        self._heap: list[tuple[int, tuple[str, str, int]]] = []

    def __len__(self) -> int:
        return len(self._expiry)

    def forget_expired(self, now_ms: int) -> None:
        """Drop entries whose timestamp has left the window."""
        while self._heap and self._heap[0][0] < now_ms:
            _, entry = heapq.heappop(self._heap)
            self._expiry.pop(entry, None)

    def check(self, service_id: str, cnonce: str, timestamp: int, now_ms: int) -> None:
        """Record a request; AuthError if it was seen before or the cache is full."""
        self.forget_expired(now_ms)
        entry = (service_id, cnonce, timestamp)
        if entry in self._expiry:
            raise AuthError("mauth_cnonce was already used with this timestamp (replayed request)")
        if len(self._expiry) >= self.max_entries:
            raise AuthError("too many signed requests within the replay window; retry later")
        expires = timestamp + self.max_skew_ms
        self._expiry[entry] = expires
        heapq.heappush(self._heap, (expires, entry))

"""Pure helpers for the strings the portal hands out: join tokens and reconnection tickets.

Both are ``base64(JSON)``. A client reads ``host`` and ``secure`` from a token to
know where to connect and sends the whole string back in ``login``; it reads
``notAfter`` from a reconnection ticket to know when to refresh it.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

#: Never refresh a reconnection ticket more often than this (seconds).
MIN_TICKET_REFRESH_DELAY = 0.05

# A ``notAfter`` above this is in milliseconds (OWT uses ``Date.now()``), below in seconds.
_MILLISECONDS_THRESHOLD = 100_000_000_000


def decode_b64_json(value: str) -> dict[str, Any]:
    """Decode ``base64(JSON object)``; standard or URL-safe alphabet, padding optional.

    Raises ``ValueError`` when the value is not base64 of a JSON object.
    """
    if not isinstance(value, str):
        raise ValueError(f"Expected a base64 string, got {type(value).__name__}")
    text = "".join(value.split())
    text = text.translate(str.maketrans("-_", "+/"))
    text += "=" * (-len(text) % 4)
    try:
        raw = base64.b64decode(text, validate=True)
        decoded = json.loads(raw.decode("utf-8"))
    except (binascii.Error, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"Not base64-encoded JSON: {exc}") from exc
    if not isinstance(decoded, dict):
        raise ValueError("Not base64-encoded JSON object")
    return decoded


def encode_b64_json(value: dict[str, Any]) -> str:
    """Encode a JSON object as standard base64 (the inverse of :func:`decode_b64_json`)."""
    return base64.b64encode(json.dumps(value).encode("utf-8")).decode("ascii")


def token_text(token: str | bytes) -> str:
    """A join token as sent in ``login``: the REST body as it was read (text or bytes),
    without surrounding whitespace. Raises ``ValueError`` for bytes that are not ASCII."""
    if isinstance(token, bytes | bytearray):
        try:
            token = bytes(token).decode("ascii")
        except UnicodeDecodeError:
            raise ValueError("Invalid token: not ASCII text") from None
    if not isinstance(token, str):
        raise ValueError(f"Invalid token: expected text, got {type(token).__name__}")
    return token.strip()


def decode_token(token: str) -> dict[str, Any]:
    """Decode a join token and check that it names a portal ``host``.

    Raises ``ValueError`` for a token that is not ``base64(JSON)`` or has no host.
    """
    try:
        info = decode_b64_json(token)
    except ValueError as exc:
        raise ValueError(f"Invalid token: {exc}") from exc
    host = info.get("host")
    if not isinstance(host, str) or not host:
        raise ValueError("Invalid token: no host")
    return info


def portal_url(token_info: dict[str, Any]) -> str:
    """The portal's base URL from a decoded token: ``http(s)://host``.

    Like OWT's JavaScript SDK, a host that already carries a scheme is used as is.
    """
    host = token_info.get("host")
    if not isinstance(host, str) or not host:
        raise ValueError("Invalid token: no host")
    if host.startswith(("http://", "https://")):
        return host.rstrip("/")
    scheme = "https" if token_info.get("secure") is True else "http"
    return f"{scheme}://{host.rstrip('/')}"


def decode_ticket(ticket: str) -> dict[str, Any]:
    """Decode a reconnection ticket (``{participantId, ticketId, notBefore, notAfter, ...}``)."""
    return decode_b64_json(ticket)


def ticket_expiry(ticket_info: dict[str, Any]) -> float | None:
    """A ticket's ``notAfter`` as a POSIX time in seconds, or None if it has none."""
    not_after = ticket_info.get("notAfter")
    if isinstance(not_after, bool) or not isinstance(not_after, int | float):
        return None
    if not_after > _MILLISECONDS_THRESHOLD:
        return float(not_after) / 1000.0
    return float(not_after)


def ticket_refresh_delay(ticket_info: dict[str, Any], now: float) -> float | None:
    """Seconds to wait before refreshing a ticket: half of its remaining lifetime.

    ``now`` is a POSIX time in seconds. Returns None when the ticket has no
    expiry or has already expired (there is nothing left to refresh).
    """
    expiry = ticket_expiry(ticket_info)
    if expiry is None:
        return None
    remaining = expiry - now
    if remaining <= 0:
        return None
    return max(remaining / 2.0, MIN_TICKET_REFRESH_DELAY)


def parse_relogin_reply(data: Any) -> tuple[str, list[dict[str, Any]]]:
    """Split a ``relogin`` reply into the new ticket and the queued messages, by ``seq``.

    Protocol 1.2 answers ``{"ticket": ..., "messages": [{event, data, seq}, ...]}``;
    older portals answered the bare ticket string. Raises ``ValueError`` otherwise.
    """
    if isinstance(data, str):
        return data, []
    if not isinstance(data, dict) or not isinstance(data.get("ticket"), str):
        raise ValueError("relogin reply carries no ticket")
    raw_messages = data.get("messages") or []
    if not isinstance(raw_messages, list):
        raise ValueError("relogin reply messages is not a list")
    messages = [m for m in raw_messages if isinstance(m, dict) and isinstance(m.get("event"), str)]
    messages.sort(key=_seq_key)
    return data["ticket"], messages


def _seq_key(message: dict[str, Any]) -> float:
    seq = message.get("seq")
    if isinstance(seq, int | float) and not isinstance(seq, bool):
        return float(seq)
    return float("inf")

"""Token and reconnection-ticket helpers: pure functions, no loop, no socket."""

from __future__ import annotations

import base64
import json

import pytest

from tessera_client.tokens import (
    decode_b64_json,
    decode_ticket,
    decode_token,
    encode_b64_json,
    parse_relogin_reply,
    portal_url,
    ticket_expiry,
    ticket_refresh_delay,
    token_text,
)


def b64(value: object) -> str:
    return base64.b64encode(json.dumps(value).encode()).decode()


def test_decode_token_reads_host_and_secure() -> None:
    token = b64({"tokenId": "t1", "host": "127.0.0.1:8080", "secure": False, "signature": "x.y.z"})
    info = decode_token(token)
    assert info["host"] == "127.0.0.1:8080"
    assert info["secure"] is False
    assert portal_url(info) == "http://127.0.0.1:8080"


def test_portal_url_secure_and_explicit_scheme() -> None:
    assert portal_url({"host": "example.test:3004", "secure": True}) == "https://example.test:3004"
    assert portal_url({"host": "https://example.test/"}) == "https://example.test"
    assert portal_url({"host": "h:1"}) == "http://h:1"


def test_decode_token_accepts_urlsafe_and_missing_padding() -> None:
    payload = {"host": "h:1", "signature": "~~~???>>>"}
    urlsafe = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")
    assert decode_token(urlsafe) == payload
    assert decode_token(" " + b64(payload) + "\n") == payload


@pytest.mark.parametrize(
    "token",
    [
        "not base64 at all!",
        base64.b64encode(b"\xff\xfe").decode(),
        b64([1, 2, 3]),
        b64({"secure": True}),
        b64({"host": ""}),
        b64({"host": 12}),
    ],
)
def test_decode_token_rejects_malformed(token: str) -> None:
    with pytest.raises(ValueError, match="Invalid token"):
        decode_token(token)


def test_encode_decode_round_trip() -> None:
    value = {"participantId": "p", "notAfter": 1_700_000_000_000, "nested": {"a": [1, 2]}}
    assert decode_b64_json(encode_b64_json(value)) == value
    assert decode_ticket(encode_b64_json(value)) == value


def test_ticket_expiry_milliseconds_and_seconds() -> None:
    assert ticket_expiry({"notAfter": 1_700_000_000_000}) == 1_700_000_000.0
    assert ticket_expiry({"notAfter": 1_700_000_000}) == 1_700_000_000.0
    assert ticket_expiry({}) is None
    assert ticket_expiry({"notAfter": "soon"}) is None
    assert ticket_expiry({"notAfter": True}) is None


def test_ticket_refresh_delay_is_half_the_remaining_lifetime() -> None:
    now = 1_700_000_000.0
    assert ticket_refresh_delay({"notAfter": (now + 60) * 1000}, now) == pytest.approx(30.0)
    assert ticket_refresh_delay({"notAfter": now + 10}, now) == pytest.approx(5.0)


def test_ticket_refresh_delay_expired_or_unknown() -> None:
    now = 1_700_000_000.0
    assert ticket_refresh_delay({"notAfter": (now - 1) * 1000}, now) is None
    assert ticket_refresh_delay({"notAfter": now * 1000}, now) is None
    assert ticket_refresh_delay({}, now) is None


def test_ticket_refresh_delay_has_a_floor() -> None:
    now = 1_700_000_000.0
    delay = ticket_refresh_delay({"notAfter": (now + 0.01) * 1000}, now)
    assert delay is not None and delay >= 0.05


def test_parse_relogin_reply_protocol_1_2() -> None:
    reply = {
        "ticket": "T2",
        "messages": [
            {"event": "text", "data": {"message": "second"}, "seq": 18},
            {"event": "stream", "data": {"id": "s", "status": "remove"}, "seq": 17},
            "garbage",
            {"data": "no event", "seq": 1},
        ],
    }
    ticket, messages = parse_relogin_reply(reply)
    assert ticket == "T2"
    assert [m["seq"] for m in messages] == [17, 18]
    assert messages[0]["event"] == "stream"


def test_parse_relogin_reply_bare_ticket_and_errors() -> None:
    assert parse_relogin_reply("T") == ("T", [])
    assert parse_relogin_reply({"ticket": "T"}) == ("T", [])
    with pytest.raises(ValueError):
        parse_relogin_reply({"messages": []})
    with pytest.raises(ValueError):
        parse_relogin_reply({"ticket": "T", "messages": "nope"})
    with pytest.raises(ValueError):
        parse_relogin_reply(None)


def test_token_text_takes_the_rest_body_as_read() -> None:
    # OWT's REST answers the token itself: text, or bytes when read raw; a trailing newline
    # (a shell's) is not part of it.
    token = encode_b64_json({"host": "127.0.0.1:8080"})
    assert token_text(token) == token
    assert token_text(token.encode("ascii")) == token
    assert token_text(f"  {token}\n") == token
    with pytest.raises(ValueError, match="ASCII"):
        token_text("é".encode())
    with pytest.raises(ValueError, match="text"):
        token_text(5)  # type: ignore[arg-type]

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest

from tessera.conference.tokens import (
    TicketClaims,
    TokenClaims,
    TokenError,
    issue_ticket,
    issue_token,
    read_token_service,
    verify_ticket,
    verify_token,
)

KEY = "service-key-" + "x" * 40
OTHER_KEY = "other-key-" + "y" * 40
NOW = 1_700_000_000.0
PUBLIC_KEY = """-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEVs/o5+uQbTjL3chynL4wXgUg2R9
q9UU8I5mEovUf86QZ7kOBIjJwqnzD1omageEHWwHdBO6B+dFabmdT9POxg==
-----END PUBLIC KEY-----"""


def b64(data: Any) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.b64encode(raw).decode()


def b64url(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def make_token(**changes: Any) -> str:
    args: dict[str, Any] = {
        "service_id": "default",
        "key": KEY,
        "room": "room1",
        "user": "alice",
        "role": "presenter",
        "host": "127.0.0.1:8080",
        "secure": False,
        "lifetime": 180.0,
        "now": NOW,
    }
    args.update(changes)
    return issue_token(**args)


def envelope(token: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(base64.b64decode(token))
    return data


def claims(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "iss": "default",
        "room": "room1",
        "user": "alice",
        "role": "presenter",
        "iat": int(NOW),
        "exp": int(NOW) + 180,
        "jti": "a" * 32,
    }
    payload.update(changes)
    return {k: v for k, v in payload.items() if v is not None}


def wrap(signature: str, token_id: str = "a" * 32) -> str:
    return b64(
        {"tokenId": token_id, "host": "127.0.0.1:8080", "secure": False, "signature": signature}
    )


def hs256_by_hand(payload: dict[str, Any], secret: str, alg: str = "HS256") -> str:
    signing_input = f"{b64url({'alg': alg, 'typ': 'JWT'})}.{b64url(payload)}"
    digest = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    signature = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    return f"{signing_input}.{signature}"


# -- join tokens --


def test_roundtrip() -> None:
    token = make_token()
    result = verify_token(token, KEY, now=NOW + 1)
    assert isinstance(result, TokenClaims)
    assert result.service == "default"
    assert result.room == "room1"
    assert result.user == "alice"
    assert result.role == "presenter"
    assert result.expires_at == NOW + 180
    data = envelope(token)
    assert data["host"] == "127.0.0.1:8080"
    assert data["secure"] is False
    assert data["tokenId"] == result.token_id
    assert len(result.token_id) == 32


def test_envelope_carries_host_and_secure() -> None:
    data = envelope(make_token(host="mcu.example.org:443", secure=True))
    assert data["host"] == "mcu.example.org:443"
    assert data["secure"] is True


def test_jwt_claims_are_as_documented() -> None:
    signature = envelope(make_token())["signature"]
    assert jwt.get_unverified_header(signature)["alg"] == "HS256"
    payload = jwt.decode(signature, KEY, algorithms=["HS256"], options={"verify_exp": False})
    assert set(payload) == {"iss", "room", "user", "role", "iat", "exp", "jti"}
    assert payload["iat"] == int(NOW)


def test_token_ids_are_unique() -> None:
    assert envelope(make_token())["tokenId"] != envelope(make_token())["tokenId"]


def test_default_clock() -> None:
    claims_ = verify_token(make_token(now=None, lifetime=60), KEY)
    assert claims_.expires_at > time.time()


def test_read_token_service() -> None:
    assert read_token_service(make_token(service_id="tenant-7")) == "tenant-7"
    with pytest.raises(TokenError, match="Token is malformed"):
        read_token_service("garbage!")
    with pytest.raises(TokenError, match="Token is malformed"):
        read_token_service(wrap("not.a.jwt"))
    with pytest.raises(TokenError, match="Token is malformed"):
        read_token_service(wrap(hs256_by_hand(claims(iss=None), KEY)))


def test_wrong_key() -> None:
    with pytest.raises(TokenError, match="Token signature is invalid"):
        verify_token(make_token(), OTHER_KEY, now=NOW)


def test_empty_key_never_verifies() -> None:
    with pytest.raises(TokenError, match="Token signature is invalid"):
        verify_token(make_token(), "", now=NOW)


def test_forged_signature() -> None:
    data = envelope(make_token())
    header, payload, signature = data["signature"].split(".")
    forged_payload = json.loads(base64.urlsafe_b64decode(payload + "=="))
    forged_payload["role"] = "admin"
    data["signature"] = f"{header}.{b64url(forged_payload)}.{signature}"
    with pytest.raises(TokenError, match="Token signature is invalid"):
        verify_token(b64(data), KEY, now=NOW)


def test_tampered_signature_bytes() -> None:
    data = envelope(make_token())
    head, _, sig = data["signature"].rpartition(".")
    data["signature"] = f"{head}.{'A' if sig[0] != 'A' else 'B'}{sig[1:]}"
    with pytest.raises(TokenError, match="Token signature is invalid"):
        verify_token(b64(data), KEY, now=NOW)


def test_expired() -> None:
    token = make_token(lifetime=10)
    verify_token(token, KEY, now=NOW + 9)
    with pytest.raises(TokenError, match="Token has expired"):
        verify_token(token, KEY, now=NOW + 10)
    with pytest.raises(TokenError, match="Token has expired"):
        verify_token(token, KEY, now=NOW + 3600)


def test_issued_in_the_future() -> None:
    with pytest.raises(TokenError, match="Token is not yet valid"):
        verify_token(make_token(now=NOW + 3600), KEY, now=NOW)


def test_alg_none_refused() -> None:
    unsigned = f"{b64url({'alg': 'none', 'typ': 'JWT'})}.{b64url(claims())}."
    with pytest.raises(TokenError, match="Token algorithm is not accepted"):
        verify_token(wrap(unsigned), KEY, now=NOW)
    unsigned_capital = f"{b64url({'alg': 'None', 'typ': 'JWT'})}.{b64url(claims())}."
    with pytest.raises(TokenError, match="Token algorithm is not accepted"):
        verify_token(wrap(unsigned_capital), KEY, now=NOW)


def test_rs256_header_refused() -> None:
    # Same HMAC bytes, header claiming RS256: the classic key-confusion shape.
    token = wrap(hs256_by_hand(claims(), PUBLIC_KEY, alg="RS256"))
    with pytest.raises(TokenError, match="Token algorithm is not accepted"):
        verify_token(token, PUBLIC_KEY, now=NOW)


def test_hs384_refused() -> None:
    token = wrap(jwt.encode(claims(), KEY + "z" * 20, algorithm="HS384"))
    with pytest.raises(TokenError, match="Token algorithm is not accepted"):
        verify_token(token, KEY + "z" * 20, now=NOW)


def test_public_key_as_hmac_secret_fails() -> None:
    # PyJWT refuses to sign with a PEM key as HMAC secret, so sign by hand.
    token = wrap(hs256_by_hand(claims(), PUBLIC_KEY))
    with pytest.raises(TokenError, match="Token signature is invalid"):
        verify_token(token, KEY, now=NOW)
    # Even against the public key itself: PyJWT refuses PEM as an HMAC key; no exception escapes.
    with pytest.raises(TokenError):
        verify_token(token, PUBLIC_KEY, now=NOW)


@pytest.mark.parametrize("claim", ["iss", "exp", "iat", "jti"])
def test_missing_required_claim(claim: str) -> None:
    token = wrap(hs256_by_hand(claims(**{claim: None}), KEY))
    with pytest.raises(TokenError, match=f"Token is missing the '{claim}' claim"):
        verify_token(token, KEY, now=NOW)


@pytest.mark.parametrize("claim", ["room", "user", "role"])
def test_missing_grant_claim(claim: str) -> None:
    token = wrap(hs256_by_hand(claims(**{claim: None}), KEY))
    with pytest.raises(TokenError, match=f"Token is missing the '{claim}' claim"):
        verify_token(token, KEY, now=NOW)


@pytest.mark.parametrize(
    ("claim", "value"),
    [("room", ""), ("user", 42), ("role", "r" * 257), ("iss", ["x"]), ("user", "a\nb")],
)
def test_invalid_claim_values(claim: str, value: Any) -> None:
    token = wrap(hs256_by_hand(claims(**{claim: value}), KEY))
    with pytest.raises(TokenError, match=f"Token claim '{claim}' is invalid"):
        verify_token(token, KEY, now=NOW)


@pytest.mark.parametrize(("claim", "value"), [("exp", "soon"), ("iat", True), ("exp", 1e400)])
def test_invalid_times(claim: str, value: Any) -> None:
    payload = claims(**{claim: value})
    # json.dumps writes 1e400 as Infinity, which JSON parsers accept in Python.
    token = wrap(hs256_by_hand(payload, KEY))
    with pytest.raises(TokenError):
        verify_token(token, KEY, now=NOW)


def test_token_id_must_match_jti() -> None:
    token = wrap(hs256_by_hand(claims(), KEY), token_id="b" * 32)
    with pytest.raises(TokenError, match="Token id does not match"):
        verify_token(token, KEY, now=NOW)


def test_hand_signed_token_accepted() -> None:
    # Control for the tests above: the hand-made HS256 token is otherwise valid.
    result = verify_token(wrap(hs256_by_hand(claims(), KEY)), KEY, now=NOW)
    assert result.token_id == "a" * 32


@pytest.mark.parametrize(
    "token",
    [
        "",
        "%%%not base64%%%",
        "YWJj",  # base64 of "abc": not JSON
        b64(b"\xff\xfe"),  # not UTF-8
        b64([1, 2, 3]),  # JSON but not an object
        b64("a string"),
        b64({"tokenId": "x"}),  # no signature
        b64({"signature": 5}),
        b64({"signature": ""}),
        wrap("only.two"),
        wrap("a.b.c"),
        wrap("\ud800.x.y"),
    ],
)
def test_garbage_is_malformed(token: str) -> None:
    with pytest.raises(TokenError, match="Token is malformed"):
        verify_token(token, KEY, now=NOW)


def test_non_string_input() -> None:
    with pytest.raises(TokenError, match="Token is malformed"):
        verify_token(None, KEY, now=NOW)  # type: ignore[arg-type]


def test_huge_input_refused_before_any_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    # Quick because nothing is parsed: the length is checked first (a spy on the decoder).
    decoded: list[object] = []
    b64decode = base64.b64decode

    def spy(data: Any, *args: Any, **kw: Any) -> bytes:
        decoded.append(data)
        return b64decode(data, *args, **kw)

    monkeypatch.setattr(base64, "b64decode", spy)
    huge = "A" * 1_000_000
    with pytest.raises(TokenError, match="Token is malformed"):
        verify_token(huge, KEY, now=NOW)
    with pytest.raises(TokenError, match="Token is malformed"):
        read_token_service(huge)
    assert decoded == []
    verify_token(make_token(), KEY, now=NOW)
    assert decoded  # the spy is on the path a token takes


def test_issue_token_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        make_token(key="")
    with pytest.raises(ValueError):
        make_token(lifetime=0)
    with pytest.raises(ValueError):
        make_token(user="")
    with pytest.raises(ValueError):
        make_token(room="r" * 300)


# -- reconnection tickets --

SECRET = b"ticket-secret-0123456789abcdef"
ROOM = {"service_id": "acme", "room_id": "room-1"}


def test_ticket_roundtrip() -> None:
    ticket = issue_ticket("participant-1", SECRET, 600, now=NOW, **ROOM)
    result = verify_ticket(ticket, SECRET, now=NOW + 1)
    assert isinstance(result, TicketClaims)
    assert result.participant_id == "participant-1"
    assert result.not_after == NOW + 600
    assert (result.service_id, result.room_id) == ("acme", "room-1")
    data = json.loads(base64.b64decode(ticket))
    assert set(data) == {
        "participantId",
        "ticketId",
        "notBefore",
        "notAfter",
        "serviceId",
        "roomId",
        "signature",
    }
    assert data["notBefore"] == int(NOW * 1000)
    assert data["notAfter"] == int((NOW + 600) * 1000)
    assert data["ticketId"] == result.ticket_id
    assert (data["serviceId"], data["roomId"]) == ("acme", "room-1")
    signed = [
        "participant-1",
        data["ticketId"],
        data["notBefore"],
        data["notAfter"],
        "acme",
        "room-1",
    ]
    message = json.dumps(signed).encode()
    assert data["signature"] == hmac.new(SECRET, message, hashlib.sha256).hexdigest()


def test_ticket_ids_are_unique() -> None:
    first = verify_ticket(issue_ticket("p", SECRET, 60, now=NOW, **ROOM), SECRET, now=NOW)
    second = verify_ticket(issue_ticket("p", SECRET, 60, now=NOW, **ROOM), SECRET, now=NOW)
    assert first.ticket_id != second.ticket_id


def test_ticket_wrong_secret() -> None:
    ticket = issue_ticket("p", SECRET, 600, now=NOW, **ROOM)
    with pytest.raises(TokenError, match="Ticket signature is invalid"):
        verify_ticket(ticket, b"another-secret", now=NOW)


def test_ticket_tampered() -> None:
    data = json.loads(base64.b64decode(issue_ticket("p", SECRET, 600, now=NOW, **ROOM)))
    data["notAfter"] += 10_000_000
    with pytest.raises(TokenError, match="Ticket signature is invalid"):
        verify_ticket(b64(data), SECRET, now=NOW)
    data = json.loads(base64.b64decode(issue_ticket("p", SECRET, 600, now=NOW, **ROOM)))
    data["participantId"] = "q"
    with pytest.raises(TokenError, match="Ticket signature is invalid"):
        verify_ticket(b64(data), SECRET, now=NOW)
    # The room a ticket names cannot be changed: a relogin goes where the ticket says.
    for field in ("roomId", "serviceId"):
        data = json.loads(base64.b64decode(issue_ticket("p", SECRET, 600, now=NOW, **ROOM)))
        data[field] = "other"
        with pytest.raises(TokenError, match="Ticket signature is invalid"):
            verify_ticket(b64(data), SECRET, now=NOW)


def test_ticket_expired_and_not_yet_valid() -> None:
    ticket = issue_ticket("p", SECRET, 600, now=NOW, **ROOM)
    verify_ticket(ticket, SECRET, now=NOW + 600)
    with pytest.raises(TokenError, match="Ticket has expired"):
        verify_ticket(ticket, SECRET, now=NOW + 601)
    with pytest.raises(TokenError, match="Ticket is not yet valid"):
        verify_ticket(ticket, SECRET, now=NOW - 1)


def test_ticket_default_clock() -> None:
    assert verify_ticket(issue_ticket("p", SECRET, 60, **ROOM), SECRET).participant_id == "p"


@pytest.mark.parametrize(
    "ticket",
    [
        "",
        "@@@",
        "YWJj",
        b64([1]),
        b64({"participantId": "p"}),
        b64(
            {
                "participantId": "p",
                "ticketId": "t",
                "notBefore": "0",
                "notAfter": 1,
                "signature": "0" * 64,
            }
        ),
        b64(
            {
                "participantId": "p",
                "ticketId": "t",
                "notBefore": True,
                "notAfter": 1,
                "signature": "0" * 64,
            }
        ),
        b64(
            {
                "participantId": "p",
                "ticketId": "t",
                "notBefore": 0,
                "notAfter": 1,
                "signature": "é" * 64,
            }
        ),
        # An OWT-shaped ticket without the room it belongs to.
        b64(
            {
                "participantId": "p",
                "ticketId": "t",
                "notBefore": 0,
                "notAfter": 1,
                "signature": "0" * 64,
            }
        ),
        b64(
            {
                "participantId": "p",
                "ticketId": "t",
                "notBefore": 0,
                "notAfter": 1,
                "serviceId": "acme",
                "roomId": 7,
                "signature": "0" * 64,
            }
        ),
        "A" * 1_000_000,
    ],
)
def test_ticket_garbage(ticket: str) -> None:
    with pytest.raises(TokenError, match="Ticket is malformed"):
        verify_ticket(ticket, SECRET, now=NOW)


def test_issue_ticket_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        issue_ticket("p", b"", 60, **ROOM)
    with pytest.raises(ValueError):
        issue_ticket("", SECRET, 60, **ROOM)
    with pytest.raises(ValueError):
        issue_ticket("p", SECRET, 60, service_id="acme", room_id="")

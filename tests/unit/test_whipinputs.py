"""WHIP/WHEP request parts: bearer tokens, trickle-ICE fragments, If-Match, answers."""

from __future__ import annotations

import base64
import json

import jwt
import pytest

from tessera.conference.tokens import read_token_service, verify_token
from tessera.portal.whipinputs import (
    WhipInputError,
    bearer_token,
    check_if_match,
    ice_server_links,
    ice_ufrag,
    is_ice_restart,
    parse_sdpfrag,
    refused_mids,
)

KEY = "s" * 32
CLAIMS = {
    "iss": "svc1",
    "room": "town",
    "user": "obs",
    "role": "presenter",
    "iat": 1_000,
    "exp": 2_000,
    "jti": "abc123",
}


@pytest.mark.parametrize(
    ("header", "words"),
    [
        (None, "required"),
        ("", "required"),
        ("Basic dXNlcjpwYXNz", "Bearer"),
        ("Bearer", "Bearer"),
        ("Bearer " + "x" * 9000, "malformed"),
    ],
)
def test_a_missing_or_foreign_authorization_is_401(header: str | None, words: str) -> None:
    with pytest.raises(WhipInputError) as caught:
        bearer_token(header)
    assert caught.value.status == 401
    assert words in caught.value.message


def test_a_tessera_token_passes_as_it_is() -> None:
    assert bearer_token("Bearer  eyJ0b2tlbklkIjoiYSJ9 ") == "eyJ0b2tlbklkIjoiYSJ9"
    assert bearer_token("bearer abc") == "abc"


def test_a_service_signed_jwt_gets_the_envelope_a_token_is_verified_in() -> None:
    signed = jwt.encode(CLAIMS, KEY, algorithm="HS256")
    token = bearer_token(f"Bearer {signed}")
    envelope = json.loads(base64.b64decode(token))
    assert envelope == {"tokenId": "abc123", "host": "", "secure": False, "signature": signed}
    assert read_token_service(token) == "svc1"
    claims = verify_token(token, KEY, now=1_500)
    assert (claims.room, claims.user, claims.role) == ("town", "obs", "presenter")


def test_a_jwt_without_jti_or_of_garbage_is_refused() -> None:
    no_id = jwt.encode({k: v for k, v in CLAIMS.items() if k != "jti"}, KEY, algorithm="HS256")
    with pytest.raises(WhipInputError, match="jti"):
        bearer_token(f"Bearer {no_id}")
    with pytest.raises(WhipInputError, match="malformed"):
        bearer_token("Bearer aaa.bbb.ccc")


def test_an_sdpfrag_gives_credentials_and_candidates_by_mid() -> None:
    fragment = parse_sdpfrag(
        "a=ice-ufrag:EsAw\r\n"
        "a=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\n"
        "m=audio 9 RTP/AVP 0\r\n"
        "a=mid:0\r\n"
        "a=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0\r\n"
        "a=end-of-candidates\r\n"
    )
    assert (fragment.ufrag, fragment.pwd) == ("EsAw", "P2uYro0UCOQ4zxjKXaWCBui1")
    assert fragment.candidates == [
        ("0", "1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0"),
        ("0", ""),
    ]


@pytest.mark.parametrize(
    ("text", "status", "words"),
    [
        ("garbage", 400, "line 1"),
        ("a=candidate:1 1 udp\r\n", 400, "not an ICE candidate"),
        ("a=ice-ufrag:\r\n", 400, "ice-ufrag"),
        ("a=ice-pwd:has space\r\n", 400, "ice-pwd"),
        ("a=x\r\n" * 5000, 413, "longer"),
        ("a=candidate:1 1 udp 1 192.0.2.1 9 typ host\r\n" * 65, 400, "more than 64"),
    ],
)
def test_a_bad_sdpfrag_names_its_problem(text: str, status: int, words: str) -> None:
    with pytest.raises(WhipInputError) as caught:
        parse_sdpfrag(text)
    assert (caught.value.status, words in caught.value.message) == (status, True)


def test_ice_restart_is_if_match_star_or_new_credentials() -> None:
    same = parse_sdpfrag("a=ice-ufrag:old\r\na=ice-pwd:pwdpwdpwdpwdpwdpwdpwdpwd\r\n")
    assert not is_ice_restart(same, None, "old")
    assert not is_ice_restart(same, '"etag"', "old")
    assert is_ice_restart(same, "*", "old")
    assert is_ice_restart(same, None, "other")
    assert not is_ice_restart(parse_sdpfrag(""), None, "old")


def test_if_match() -> None:
    check_if_match(None, '"a"')
    check_if_match('"a"', '"a"')
    check_if_match('"b", "a"', '"a"')
    check_if_match("*", '"a"')
    with pytest.raises(WhipInputError) as caught:
        check_if_match('"b"', '"a"')
    assert caught.value.status == 412


def test_links_and_ufrag() -> None:
    assert ice_server_links(["stun:stun.example:3478"]) == [
        '<stun:stun.example:3478>; rel="ice-server"'
    ]
    assert ice_ufrag("v=0\r\nm=audio 9 x 0\r\na=ice-ufrag:abcd\r\n") == "abcd"
    assert ice_ufrag("v=0\r\n") is None


def test_refused_mids_are_inactive_port_zero_or_absent() -> None:
    answer = (
        "v=0\r\n"
        "m=audio 4000 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=recvonly\r\n"
        "m=video 4000 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=inactive\r\n"
        "m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\n"
    )
    assert refused_mids(answer, ["0"]) == []
    assert refused_mids(answer, ["0", "1", "2", "3"]) == ["1", "2", "3"]

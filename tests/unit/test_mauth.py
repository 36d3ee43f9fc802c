"""MAuth request signatures: parsing, OWT-compatible signing, clock window, replay cache."""

from __future__ import annotations

import base64

import pytest

from tessera.portal.mauth import (
    AuthError,
    MAuthHeader,
    NonceCache,
    parse_mauth,
    sign,
    verify_mauth,
)

KEY = "example-service-key-0123456789abcdef"
NOW = 1406079112038
# Computed with Node's crypto exactly as OWT's mauthParser.calculateClientSignature does.
OWT_SIGNATURE = (
    "MzA3OGQyMDM2ZTJiNTYyODliZTVmNjAyYTM2ZWZmMGM2NWZlYmE5ZTE4MGE4YjZiYmEzZjY1ZWEzNDc3NGYwYQ=="
)
OWT_USERNAME = "Wm/Dqw=="  # base64("Zoë"), as nuve.js sends it
OWT_SIGNATURE_WITH_USER = (
    "NWYzNjU0YWI5YTdhOTk5MWFiMGUzMDBhZWY5MDIwMDVlNTM3N2QyMmE3ODA5NWEwNjBmNTBlZGU5ZDQ4NmVjNA=="
)


def header(**fields: str) -> str:
    """An Authorization header built the way OWT's icsREST.js builds it."""
    values = {
        "mauth_signature_method": "HMAC_SHA256",
        "mauth_serviceid": "svc1",
        "mauth_cnonce": "87428",
        "mauth_timestamp": str(NOW),
        "mauth_signature": OWT_SIGNATURE,
    }
    values.update(fields)
    text = "MAuth realm=http://marte3.dit.upm.es"
    for name, value in values.items():
        text += f",{name}={value}"
    return text


# -- sign ---------------------------------------------------------------------


def test_sign_matches_owt_clients() -> None:
    assert sign(KEY, NOW, "87428") == OWT_SIGNATURE
    assert sign(KEY, str(NOW), "87428") == OWT_SIGNATURE


def test_sign_with_username_and_role_matches_owt_clients() -> None:
    assert sign(KEY, NOW, "87428", OWT_USERNAME, "presenter") == OWT_SIGNATURE_WITH_USER


def test_sign_ignores_username_without_role() -> None:
    # OWT appends ",username,role" only when both are present.
    assert sign(KEY, NOW, "87428", OWT_USERNAME, None) == OWT_SIGNATURE


def test_signature_is_base64_of_hex_digest() -> None:
    decoded = base64.b64decode(sign(KEY, 1, "x")).decode()
    assert len(decoded) == 64
    int(decoded, 16)


# -- parse_mauth --------------------------------------------------------------


def test_parse_owt_header() -> None:
    parsed = parse_mauth(header())
    assert parsed == MAuthHeader(
        service_id="svc1",
        cnonce="87428",
        timestamp=NOW,
        signature=OWT_SIGNATURE,
        realm="http://marte3.dit.upm.es",
    )
    assert parsed.user is None


def test_parse_with_username_and_role() -> None:
    parsed = parse_mauth(header(mauth_username=OWT_USERNAME, mauth_role="presenter"))
    assert parsed.username == OWT_USERNAME
    assert parsed.user == "Zoë"
    assert parsed.role == "presenter"


def test_parse_tolerates_spaces_quotes_and_case() -> None:
    text = (
        'mauth realm="http://x", mauth_signature_method="HMAC_SHA256", '
        'mauth_serviceid="svc1",  mauth_cnonce=abc , mauth_timestamp=5, '
        f'mauth_signature="{OWT_SIGNATURE}", mauth_future=1'
    )
    parsed = parse_mauth(text)
    assert (parsed.service_id, parsed.cnonce, parsed.timestamp) == ("svc1", "abc", 5)
    assert parsed.signature == OWT_SIGNATURE
    assert parsed.realm == "http://x"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Bearer abc", "not of the MAuth scheme"),
        ("MAuth", "not of the MAuth scheme"),
        (header().replace(",mauth_cnonce=87428", ""), "mauth_cnonce is missing"),
        (header().replace(",mauth_serviceid=svc1", ""), "mauth_serviceid is missing"),
        (header(mauth_serviceid=""), "mauth_serviceid is missing"),
        (header().replace(f",mauth_signature={OWT_SIGNATURE}", ""), "mauth_signature is missing"),
        (header(mauth_signature_method="HMAC_SHA1"), "not supported"),
        (header(mauth_timestamp="soon"), "mauth_timestamp must be milliseconds"),
        (header(mauth_timestamp="-5"), "mauth_timestamp must be milliseconds"),
        (header(mauth_timestamp="01"), "mauth_timestamp must be milliseconds"),
        (header(mauth_timestamp="1" * 17), "mauth_timestamp must be milliseconds"),
        (header(mauth_signature="!!!"), "mauth_signature is not base64"),
        (header(mauth_cnonce="a b"), "mauth_cnonce must be printable ASCII"),
        (header(mauth_cnonce="x" * 300), "mauth_cnonce is too long"),
        (header(mauth_username=OWT_USERNAME), "must be given together"),
        (header(mauth_role="presenter"), "must be given together"),
        (header(mauth_username="%%%", mauth_role="r"), "mauth_username"),
        (header() + ",mauth_cnonce=2", "mauth_cnonce is given more than once"),
        (header() + ",garbage", "has no value"),
        (header() + ",x" * 3000, "too long"),
    ],
)
def test_parse_refuses(text: str, message: str) -> None:
    with pytest.raises(AuthError, match=message):
        parse_mauth(text)


# -- verify_mauth -------------------------------------------------------------


def test_verify_accepts_owt_signature() -> None:
    verify_mauth(parse_mauth(header()), KEY, NOW)
    with_user = header(
        mauth_username=OWT_USERNAME,
        mauth_role="presenter",
        mauth_signature=OWT_SIGNATURE_WITH_USER,
    )
    verify_mauth(parse_mauth(with_user), KEY, NOW + 1000)


def test_verify_refuses_wrong_key_and_tampering() -> None:
    with pytest.raises(AuthError, match="does not match"):
        verify_mauth(parse_mauth(header()), KEY + "x", NOW)
    with pytest.raises(AuthError, match="does not match"):
        verify_mauth(parse_mauth(header(mauth_cnonce="87429")), KEY, NOW)
    # Signed without user/role, sent with them: the role cannot be smuggled in.
    tampered = header(mauth_username=OWT_USERNAME, mauth_role="presenter")
    with pytest.raises(AuthError, match="does not match"):
        verify_mauth(parse_mauth(tampered), KEY, NOW)
    with pytest.raises(AuthError, match="no key"):
        verify_mauth(parse_mauth(header()), "", NOW)


def test_verify_clock_window() -> None:
    parsed = parse_mauth(header())
    verify_mauth(parsed, KEY, NOW + 300_000)
    verify_mauth(parsed, KEY, NOW - 300_000)
    with pytest.raises(AuthError, match="old"):
        verify_mauth(parsed, KEY, NOW + 300_001)
    with pytest.raises(AuthError, match="in the future"):
        verify_mauth(parsed, KEY, NOW - 300_001)
    verify_mauth(parsed, KEY, NOW + 500_000, max_skew_ms=600_000)


def test_bad_signature_is_reported_before_clock() -> None:
    parsed = parse_mauth(header())
    with pytest.raises(AuthError, match="does not match"):
        verify_mauth(parsed, "other-key", NOW + 10_000_000)


# -- NonceCache ---------------------------------------------------------------


def test_nonce_cache_refuses_replay() -> None:
    cache = NonceCache(max_skew_ms=1000)
    cache.check("svc", "n1", 5000, now_ms=5000)
    with pytest.raises(AuthError, match="replayed"):
        cache.check("svc", "n1", 5000, now_ms=5500)
    # Another nonce, another timestamp or another service is another request.
    cache.check("svc", "n2", 5000, now_ms=5500)
    cache.check("svc", "n1", 5001, now_ms=5500)
    cache.check("other", "n1", 5000, now_ms=5500)
    assert len(cache) == 4


def test_nonce_cache_forgets_entries_outside_the_window() -> None:
    cache = NonceCache(max_skew_ms=1000)
    cache.check("svc", "n1", 5000, now_ms=5000)
    cache.check("svc", "n2", 5800, now_ms=5800)
    with pytest.raises(AuthError):
        cache.check("svc", "n1", 5000, now_ms=6000)  # still inside: now - ts == window
    cache.forget_expired(6001)
    assert len(cache) == 1  # n1 expired, n2 kept until 6800
    cache.forget_expired(6801)
    assert len(cache) == 0


def test_nonce_cache_remembers_future_timestamps_long_enough() -> None:
    cache = NonceCache(max_skew_ms=1000)
    cache.check("svc", "n", 10_900, now_ms=10_000)  # 0.9 s ahead: accepted until 11_900
    with pytest.raises(AuthError, match="replayed"):
        cache.check("svc", "n", 10_900, now_ms=11_800)


def test_nonce_cache_is_bounded_and_fails_closed() -> None:
    cache = NonceCache(max_skew_ms=1000, max_entries=2)
    cache.check("svc", "a", 0, now_ms=0)
    cache.check("svc", "b", 0, now_ms=0)
    with pytest.raises(AuthError, match="too many"):
        cache.check("svc", "c", 0, now_ms=0)
    with pytest.raises(AuthError, match="replayed"):
        cache.check("svc", "a", 0, now_ms=0)
    cache.check("svc", "c", 2000, now_ms=2000)  # the old ones have expired by now
    assert len(cache) == 1


def test_nonce_cache_rejects_bad_settings() -> None:
    with pytest.raises(ValueError):
        NonceCache(max_skew_ms=0)
    with pytest.raises(ValueError):
        NonceCache(max_entries=0)

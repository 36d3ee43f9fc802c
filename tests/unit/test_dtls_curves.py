"""Which peer certificates aiortc's DTLS accepts: the curves of its ClientHello's groups."""

from __future__ import annotations

import datetime
import struct

import pytest
from aiortc import RTCCertificate
from aiortc.rtcdtlstransport import SRTP_PROFILES
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from OpenSSL import SSL

from tessera.media.aiortcext import DTLS_PEER_CURVES, refused_curve

# TLS supported_groups code points (RFC 8422, RFC 7919) of the curves an ECDSA key can be on.
ECDSA_GROUPS = {0x15: "secp224r1", 0x17: "secp256r1", 0x18: "secp384r1", 0x19: "secp521r1"}
SUPPORTED_GROUPS = 10


def self_signed(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "peer")])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


@pytest.mark.parametrize(
    ("curve", "refused"),
    [
        (ec.SECP224R1(), "secp224r1"),  # FFmpeg's own with GnuTLS
        (ec.SECP256K1(), "secp256k1"),
        (ec.SECP256R1(), None),  # browsers', aiortc's
        (ec.SECP384R1(), None),
    ],
)
def test_a_key_off_the_groups_is_refused_by_its_curve(
    curve: ec.EllipticCurve, refused: str | None
) -> None:
    assert refused_curve(self_signed(ec.generate_private_key(curve))) == refused


def test_an_rsa_key_is_not_refused_for_a_curve() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert refused_curve(self_signed(key)) is None


def client_hello_groups() -> list[int]:
    """The supported_groups aiortc's DTLS context sends in its ClientHello."""
    context = RTCCertificate.generateCertificate()._create_ssl_context(SRTP_PROFILES)
    connection = SSL.Connection(context, None)
    connection.set_connect_state()
    with pytest.raises(SSL.WantReadError):
        connection.do_handshake()
    record = connection.bio_read(65536)
    # DTLS record header (13 bytes), handshake header (12), version (2), random (32).
    assert record[0] == 22 and record[13] == 1, "not a ClientHello"
    body = record[25:]
    at = 2 + 32
    at += 1 + body[at]  # session id
    at += 1 + body[at]  # cookie
    at += 2 + struct.unpack_from(">H", body, at)[0]  # cipher suites
    at += 1 + body[at]  # compression methods
    end = at + 2 + struct.unpack_from(">H", body, at)[0]
    at += 2
    while at < end:
        kind, length = struct.unpack_from(">HH", body, at)
        if kind == SUPPORTED_GROUPS:
            count = struct.unpack_from(">H", body, at + 4)[0] // 2
            return list(struct.unpack_from(f">{count}H", body, at + 6))
        at += 4 + length
    raise AssertionError("no supported_groups extension")


def test_the_accepted_curves_are_the_client_hello_groups() -> None:
    groups = client_hello_groups()
    curves = tuple(ECDSA_GROUPS[g] for g in groups if g in ECDSA_GROUPS)
    assert sorted(curves) == sorted(DTLS_PEER_CURVES)

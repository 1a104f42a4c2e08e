"""Certificates, CSR checks, key files and join tokens."""

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from edgecommon import pki, tokens
from edgecommon.errors import CredentialError, CsrRejected, TokenError
from edgecommon.identity import Identity, Kind

NOW = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)
NODE = Identity(Kind.NODE, "node-1", "site-a")


@pytest.fixture(scope="module")
def ca() -> tuple[pki.PrivateKey, x509.Certificate]:
    return pki.create_ca("edge", NOW, dt.timedelta(days=10))


def csr_with(key: object, cn: str, uris: list[str]) -> bytes:
    from cryptography.hazmat.primitives import serialization

    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    )
    if uris:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris]),
            critical=False,
        )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)  # type: ignore[arg-type]


def test_signed_certificate_carries_exactly_the_allowed_identity(ca) -> None:
    ca_key, ca_cert = ca
    key = pki.generate_key()
    csr = pki.check_csr(pki.build_csr(key, NODE, "edge"), NODE, "edge")
    cert = pki.sign_csr(ca_key, ca_cert, csr, NODE, "edge", NOW, dt.timedelta(hours=72))
    assert pki.identity_of(cert, "edge") == NODE
    assert cert.issuer == ca_cert.subject
    assert cert.not_valid_after_utc == NOW + dt.timedelta(hours=72)
    assert pki.key_matches(key, cert)
    ca_cert.public_key().verify(  # type: ignore[union-attr]
        cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm)
    )


def test_certificate_never_outlives_its_ca(ca) -> None:
    ca_key, ca_cert = ca
    key = pki.generate_key()
    cert = pki.issue_for_key(ca_key, ca_cert, key, NODE, "edge", NOW, dt.timedelta(days=365))
    assert cert.not_valid_after_utc == ca_cert.not_valid_after_utc


@pytest.mark.parametrize(
    ("cn", "uris", "words"),
    [
        ("node-2", ["spiffe://edge/node/site-a/node-1"], "allows only CN=node-1"),
        ("node-1", ["spiffe://edge/node/site-a/node-2"], "allows only"),
        ("node-1", ["spiffe://edge/node/site-b/node-1"], "allows only"),
        ("node-1", ["spiffe://edge/operator/node-1"], "allows only"),
        ("node-1", [], "has no SAN"),
        ("node-1", ["spiffe://edge/node/site-a/node-1", "spiffe://edge/hub"], "allows only"),
    ],
)
def test_inv_pki_01_csr_for_another_identity_is_rejected(
    cn: str, uris: list[str], words: str
) -> None:
    with pytest.raises(CsrRejected, match=words):
        pki.check_csr(csr_with(pki.generate_key(), cn, uris), NODE, "edge")


def test_weak_keys_are_rejected() -> None:
    uri = [NODE.uri("edge")]
    weak_rsa = rsa.generate_private_key(65537, 1024)
    with pytest.raises(CsrRejected, match="RSA-1024 is too weak"):
        pki.check_csr(csr_with(weak_rsa, "node-1", uri), NODE, "edge")
    odd_curve = ec.generate_private_key(ec.SECP256K1())
    with pytest.raises(CsrRejected, match="secp256k1 is not accepted"):
        pki.check_csr(csr_with(odd_curve, "node-1", uri), NODE, "edge")


def test_garbage_csr_is_rejected() -> None:
    with pytest.raises(CsrRejected, match="not a PEM certificate request"):
        pki.check_csr(b"hello", NODE, "edge")


def test_key_files_are_written_0600_and_loaded_back(tmp_path: Path) -> None:
    key = pki.generate_key()
    path = tmp_path / "k" / "node.key"
    pki.write_private_key(path, key)
    assert path.stat().st_mode & 0o777 == 0o600
    assert pki.load_private_key(path).private_numbers() == key.private_numbers()


def test_loose_key_permissions_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    pki.write_private_key(path, pki.generate_key())
    path.chmod(0o644)
    with pytest.raises(CredentialError, match=f"chmod 600 {path}"):
        pki.load_private_key(path)


@pytest.mark.parametrize(
    ("content", "loader", "words"),
    [
        (b"garbage", pki.load_private_key, "is not a readable PEM private key"),
        (b"garbage", pki.load_certificate, "holds no certificate|is not valid PEM"),
        (
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            pki.load_certificate,
            "is not valid PEM",
        ),
    ],
)
def test_corrupt_files_are_named(tmp_path: Path, content: bytes, loader, words: str) -> None:
    path = tmp_path / "file.pem"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(CredentialError, match=words) as err:
        loader(path)
    assert str(path) in str(err.value)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(CredentialError, match="does not exist"):
        pki.load_certificate(tmp_path / "nope.crt")


def test_token_round_trips_and_hides_only_a_hash(ca) -> None:
    _, ca_cert = ca
    join = tokens.new_token(NODE, "edge", ca_cert)
    parsed = tokens.parse_token(join.encode())
    assert parsed == join
    assert tokens.secret_matches(join.secret, tokens.secret_hash(join.secret))
    assert not tokens.secret_matches(join.secret + "x", tokens.secret_hash(join.secret))
    assert join.secret not in tokens.secret_hash(join.secret)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "malformed"),
        ("edge1.a.b.c", "malformed"),
        ("edge2.a.b.c.d", "malformed"),
        ("edge1.a.b.!!!.d", "subject part is corrupt"),
    ],
)
def test_malformed_tokens_are_refused(text: str, words: str) -> None:
    with pytest.raises(TokenError, match=words):
        tokens.parse_token(text)


def test_token_with_corrupt_ca_is_refused(ca) -> None:
    _, ca_cert = ca
    text = tokens.new_token(NODE, "edge", ca_cert).encode()
    with pytest.raises(TokenError, match="CA part is corrupt"):
        tokens.parse_token(text[:-20])

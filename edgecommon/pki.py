"""Keys, certificates and CSRs for the fleet's own CA.

Private keys are generated where they are used and written once, mode 0600, by
`write_private_key`; nothing here turns key material into text except to write that
file (INV-PKI-01). Every loader names the file it failed on.
"""

import datetime as dt
import ipaddress
import os
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edgecommon.errors import CredentialError, CsrRejected
from edgecommon.identity import Identity, Kind, parse_uri

PrivateKey = ec.EllipticCurvePrivateKey
ACCEPTED_CURVES = ("secp256r1", "secp384r1")
MIN_RSA_BITS = 2048
CLOCK_SKEW = dt.timedelta(minutes=5)
_CA_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)
_LEAF_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=True,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)


def generate_key() -> PrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def serial_hex(cert: x509.Certificate) -> str:
    return format(cert.serial_number, "x")


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _base_builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: object,
    now: dt.datetime,
    lifetime: dt.timedelta,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + lifetime)
    )


def create_ca(
    trust_domain: str, now: dt.datetime, lifetime: dt.timedelta
) -> tuple[PrivateKey, x509.Certificate]:
    key = generate_key()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "AutonomyOps Edge"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{trust_domain} CA {now:%Y-%m-%dT%H%M%S}"),
        ]
    )
    cert = (
        _base_builder(name, name, key.public_key(), now, lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_CA_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _leaf(
    ca_key: PrivateKey,
    ca_cert: x509.Certificate,
    public_key: object,
    identity: Identity,
    trust_domain: str,
    extra_sans: list[x509.GeneralName],
    now: dt.datetime,
    lifetime: dt.timedelta,
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity.name)])
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(identity.uri(trust_domain))]
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if identity.kind is not Kind.OPERATOR:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    not_after = min(now + lifetime, ca_cert.not_valid_after_utc)
    return (
        _base_builder(subject, ca_cert.subject, public_key, now, not_after - now)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_LEAF_USAGE, critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans + extra_sans), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )


def host_names(names: list[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for name in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            out.append(x509.DNSName(name))
    return out


def issue_hub_certificate(
    ca_key: PrivateKey,
    ca_cert: x509.Certificate,
    key: PrivateKey,
    trust_domain: str,
    server_names: list[str],
    now: dt.datetime,
    lifetime: dt.timedelta,
) -> x509.Certificate:
    hub = Identity(Kind.HUB, "hub")
    return _leaf(
        ca_key,
        ca_cert,
        key.public_key(),
        hub,
        trust_domain,
        host_names(server_names),
        now,
        lifetime,
    )


def issue_for_key(
    ca_key: PrivateKey,
    ca_cert: x509.Certificate,
    key: PrivateKey,
    identity: Identity,
    trust_domain: str,
    now: dt.datetime,
    lifetime: dt.timedelta,
) -> x509.Certificate:
    """Sign a certificate for a key generated on this host (operator bootstrap, tests)."""
    return _leaf(ca_key, ca_cert, key.public_key(), identity, trust_domain, [], now, lifetime)


def build_csr(key: PrivateKey, identity: Identity, trust_domain: str) -> bytes:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity.name)]))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(identity.uri(trust_domain))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def check_csr(
    csr_pem: bytes, allowed: Identity, trust_domain: str
) -> x509.CertificateSigningRequest:
    """The parsed CSR if it asks for exactly `allowed` with an acceptable key, else CsrRejected."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as exc:
        raise CsrRejected(f"the CSR is not a PEM certificate request ({exc})") from None
    if not csr.is_signature_valid:
        raise CsrRejected("the CSR's signature does not match its public key")
    _check_key_strength(csr.public_key())
    cns = [a.value for a in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if len(csr.subject) != 1 or cns != [allowed.name]:
        raise CsrRejected(
            f"the CSR's subject is {csr.subject.rfc4514_string()!r} but the token allows only "
            f"CN={allowed.name}"
        )
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise CsrRejected(f"the CSR has no SAN; it must name {allowed.uri(trust_domain)}") from None
    names = list(san)
    wanted = x509.UniformResourceIdentifier(allowed.uri(trust_domain))
    if names != [wanted]:
        asked = ", ".join(str(getattr(n, "value", n)) for n in names)
        raise CsrRejected(
            f"the CSR asks for {asked} but the token allows only {allowed.uri(trust_domain)}"
        )
    return csr


def _check_key_strength(key: object) -> None:
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in ACCEPTED_CURVES:
            raise CsrRejected(f"EC curve {key.curve.name} is not accepted; use P-256 or P-384")
        return
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise CsrRejected(f"RSA-{key.key_size} is too weak; use P-256 or RSA-{MIN_RSA_BITS}+")
        return
    raise CsrRejected(f"key type {type(key).__name__} is not accepted; use P-256")


def sign_csr(
    ca_key: PrivateKey,
    ca_cert: x509.Certificate,
    csr: x509.CertificateSigningRequest,
    identity: Identity,
    trust_domain: str,
    now: dt.datetime,
    lifetime: dt.timedelta,
) -> x509.Certificate:
    return _leaf(ca_key, ca_cert, csr.public_key(), identity, trust_domain, [], now, lifetime)


def identity_of(cert: x509.Certificate, trust_domain: str) -> Identity | None:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    found = {
        parse_uri(u, trust_domain) for u in san.get_values_for_type(x509.UniformResourceIdentifier)
    }
    found.discard(None)
    return found.pop() if len(found) == 1 else None


# --- files -----------------------------------------------------------------------------


def atomic_write(path: Path, data: bytes, mode: int) -> None:
    """Write `data` to `path` durably: temp file with `mode`, fsync, rename, fsync dir."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_private_key(path: Path, key: PrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    atomic_write(path, data, 0o600)


def private_key_pem(path: Path) -> bytes:
    """The PEM bytes of a key file, for handing to grpc credentials (never for display)."""
    load_private_key(path)
    return path.read_bytes()


def write_certificates(path: Path, certs: list[x509.Certificate]) -> None:
    atomic_write(path, b"".join(pem(c) for c in certs), 0o644)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CredentialError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise CredentialError(f"{what} {path} cannot be read: {exc.strerror}") from None


def load_private_key(path: Path) -> PrivateKey:
    data = _read(path, "key file")
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise CredentialError(f"key file {path} has mode {mode:o}; run: chmod 600 {path}")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise CredentialError(
            f"key file {path} is not a readable PEM private key ({exc})"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CredentialError(f"key file {path} holds a {type(key).__name__}; expected an EC key")
    return key


def load_certificates(path: Path, what: str = "certificate file") -> list[x509.Certificate]:
    data = _read(path, what)
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise CredentialError(f"{what} {path} is not valid PEM ({exc})") from None
    if not certs:
        raise CredentialError(f"{what} {path} holds no certificate")
    return certs


def load_certificate(path: Path) -> x509.Certificate:
    return load_certificates(path)[0]


def key_matches(key: PrivateKey, cert: x509.Certificate) -> bool:
    return key.public_key().public_numbers() == cert.public_key().public_numbers()  # type: ignore[union-attr]


def public_key_equal(a: object, b: object) -> bool:
    def spki(key: object) -> bytes:
        return key.public_bytes(  # type: ignore[attr-defined,no-any-return]
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    return spki(a) == spki(b)


def signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    """Whether `ca` issued `cert` (names match and the signature verifies)."""
    if cert.issuer != ca.subject:
        return False
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def load_pem_certificate(data: bytes, source: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise CredentialError(
            f"{source} sent a certificate that is not valid PEM ({exc})"
        ) from None


def uris(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return list(san.get_values_for_type(x509.UniformResourceIdentifier))


def private_key_bytes(key: PrivateKey) -> bytes:
    """PEM of a key, only to hand to grpc credentials in this process (never to display)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )

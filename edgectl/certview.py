"""What `edgectl cert inspect` shows of a certificate: public facts only, never key material."""

from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from edgecommon import pki
from edgecommon.cli.output import iso


def key_type(cert: x509.Certificate) -> str:
    key = cert.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        return {"secp256r1": "EC P-256", "secp384r1": "EC P-384"}.get(
            key.curve.name, f"EC {key.curve.name}"
        )
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA-{key.key_size}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    return type(key).__name__


def sans(cert: x509.Certificate) -> list[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(getattr(name, "value", name)) for name in ext]


def describe(cert: x509.Certificate, now: float) -> dict[str, Any]:
    not_after = cert.not_valid_after_utc.timestamp()
    return {
        "subject": cert.subject.rfc4514_string(),
        "sans": sans(cert),
        "serial": pki.serial_hex(cert),
        "issuer": cert.issuer.rfc4514_string(),
        "not_before": iso(cert.not_valid_before_utc.timestamp()),
        "not_after": iso(not_after),
        "key_type": key_type(cert),
        "sha256_fingerprint": pki.fingerprint(cert),
        "days_left": round((not_after - now) / 86400, 2),
        "expired": not_after <= now,
    }

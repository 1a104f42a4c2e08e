"""Join tokens: single-use, expiring, stored by the hub only as a hash.

A token reads `edge1.<id>.<secret>.<subject>.<ca>`: the id finds the stored record, the
secret proves possession (the hub keeps only its SHA-256), <subject> tells the enrolling
side which identity to put in its CSR (the hub checks the CSR against its own record,
not against this text), and <ca> is the hub's CA certificate (DER, base64url) so the
agent pins it on first contact instead of trusting whatever answers.
"""

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from edgecommon.errors import TokenError
from edgecommon.identity import Identity, parse_uri

PREFIX = "edge1"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class JoinToken:
    token_id: str
    secret: str
    subject: Identity
    trust_domain: str
    ca: x509.Certificate

    def encode(self) -> str:
        der = self.ca.public_bytes(serialization.Encoding.DER)
        subject = _b64(self.subject.uri(self.trust_domain).encode())
        return f"{PREFIX}.{self.token_id}.{self.secret}.{subject}.{_b64(der)}"


def new_token(subject: Identity, trust_domain: str, ca: x509.Certificate) -> JoinToken:
    return JoinToken(secrets.token_hex(8), secrets.token_urlsafe(32), subject, trust_domain, ca)


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(secret_hash(secret), stored_hash)


def parse_token(text: str) -> JoinToken:
    parts = text.strip().split(".")
    if len(parts) != 5 or parts[0] != PREFIX:
        raise TokenError(
            "the join token is malformed: expected edge1.<id>.<secret>.<subject>.<ca> as "
            "printed by 'edgectl token create'"
        )
    _, token_id, secret, subject_text, ca_text = parts
    try:
        uri = _unb64(subject_text).decode()
    except (ValueError, UnicodeDecodeError):
        uri = ""
    trust_domain = uri.removeprefix("spiffe://").split("/", 1)[0]
    subject = parse_uri(uri, trust_domain) if trust_domain else None
    if subject is None:
        raise TokenError("the join token's subject part is corrupt; copy the whole token again")
    try:
        ca = x509.load_der_x509_certificate(_unb64(ca_text))
    except ValueError:
        raise TokenError(
            "the join token's CA part is corrupt; copy the whole token again"
        ) from None
    return JoinToken(token_id, secret, subject, trust_domain, ca)

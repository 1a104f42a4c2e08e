"""The node's own key, certificate and trust bundle, in its state directory.

    <state_dir>/pki/node.key   private key, 0600, generated here and never sent anywhere
    <state_dir>/pki/node.crt   certificate signed by the fleet CA
    <state_dir>/pki/ca.crt     trust bundle (the fleet CA certificates)

Enrollment and renewal write last-good-safe: a new key and certificate are first
written (fsynced) as node.key.new and node.crt.new, checked, then renamed over the old
pair; `recover` finishes or discards a swap a crash interrupted, so node.key always
belongs to node.crt and a bad answer never replaces a working key.
"""

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509

from edgecommon import pki
from edgecommon.errors import CredentialError
from edgecommon.identity import Identity, Kind

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CredentialPaths:
    key: Path
    cert: Path
    bundle: Path

    @classmethod
    def under(cls, state_dir: Path) -> "CredentialPaths":
        d = state_dir / "pki"
        return cls(d / "node.key", d / "node.crt", d / "ca.crt")

    def enrolled(self) -> bool:
        self.recover()
        return self.key.exists() and self.cert.exists() and self.bundle.exists()

    @property
    def next_key(self) -> Path:
        return self.key.with_name("node.key.new")

    @property
    def next_cert(self) -> Path:
        return self.cert.with_name("node.crt.new")

    @property
    def enrolled_with(self) -> Path:
        return self.key.with_name("enrolled-with")

    def promote(self) -> None:
        """Make the checked node.key.new/node.crt.new pair current (certificate first; a
        crash in between is finished by `recover`)."""
        os.replace(self.next_cert, self.cert)
        os.replace(self.next_key, self.key)

    def recover(self) -> None:
        """Finish a swap to node.key.new/node.crt.new that a crash interrupted, or discard it."""
        if not self.next_key.exists() and not self.next_cert.exists():
            return
        try:
            cert = pki.load_certificate(self.next_cert) if self.next_cert.exists() else None
            key = pki.load_private_key(self.next_key) if self.next_key.exists() else None
        except CredentialError as exc:
            log.warning("discarding an unfinished credential swap: %s", exc)
            cert = key = None
        if cert is not None and key is not None and pki.key_matches(key, cert):
            os.replace(self.next_cert, self.cert)
            os.replace(self.next_key, self.key)
            log.warning("completed an interrupted credential swap")
        elif (
            key is not None
            and self.cert.exists()
            and pki.key_matches(key, pki.load_certificate(self.cert))
        ):
            os.replace(self.next_key, self.key)  # crashed between the two renames
            log.warning("completed an interrupted credential swap")
        self.next_key.unlink(missing_ok=True)
        self.next_cert.unlink(missing_ok=True)


@dataclass(frozen=True)
class NodeCredentials:
    identity: Identity
    trust_domain: str
    key_pem: bytes
    cert: x509.Certificate
    bundle: list[x509.Certificate]

    @property
    def cert_pem(self) -> bytes:
        return pki.pem(self.cert)

    @property
    def bundle_pem(self) -> bytes:
        return b"".join(pki.pem(c) for c in self.bundle)


def trust_domain_of(cert: x509.Certificate) -> str:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
        if uri.startswith("spiffe://"):
            return uri.removeprefix("spiffe://").split("/", 1)[0]
    return ""


def load(paths: CredentialPaths) -> NodeCredentials:
    paths.recover()
    key = pki.load_private_key(paths.key)
    cert = pki.load_certificate(paths.cert)
    bundle = pki.load_certificates(paths.bundle, "trust bundle")
    if not pki.key_matches(key, cert):
        raise CredentialError(f"key file {paths.key} does not belong to certificate {paths.cert}")
    trust_domain = trust_domain_of(cert)
    identity = pki.identity_of(cert, trust_domain)
    if identity is None or identity.kind is not Kind.NODE:
        raise CredentialError(f"certificate {paths.cert} does not carry a node identity")
    return NodeCredentials(identity, trust_domain, pki.private_key_pem(paths.key), cert, bundle)


def check_answer(
    key: pki.PrivateKey, cert_pem: bytes, bundle_pem: bytes, identity: Identity | None
) -> tuple[x509.Certificate, list[x509.Certificate]]:
    """The hub's answer, parsed, if it is usable: a certificate for `key` (and `identity`,
    when renewing) signed by a CA in the bundle. Else CredentialError; nothing is written."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        bundle = x509.load_pem_x509_certificates(bundle_pem)
    except ValueError as exc:
        raise CredentialError(f"the hub's answer is not valid PEM ({exc}); not saving it") from None
    if not pki.key_matches(key, cert):
        raise CredentialError("the hub returned a certificate for another key; not saving it")
    if identity is not None and pki.identity_of(cert, trust_domain_of(cert)) != identity:
        raise CredentialError(f"the hub returned a certificate that does not name {identity}")
    if not any(pki.signed_by(cert, ca) for ca in bundle):
        raise CredentialError("the hub's certificate is not signed by a CA in its trust bundle")
    return cert, bundle


def save(paths: CredentialPaths, key: pki.PrivateKey, cert_pem: bytes, bundle_pem: bytes) -> None:
    """Store a freshly signed identity without ever leaving a key that does not match."""
    cert, bundle = check_answer(key, cert_pem, bundle_pem, None)
    paths.key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    pki.write_private_key(paths.next_key, key)
    pki.write_certificates(paths.next_cert, [cert])
    pki.write_certificates(paths.bundle, bundle)
    paths.promote()


def save_bundle(paths: CredentialPaths, bundle_pem: bytes, cert: x509.Certificate) -> None:
    """Replace the trust bundle if the new one still trusts the hub's issuer of `cert`."""
    try:
        bundle = x509.load_pem_x509_certificates(bundle_pem)
    except ValueError as exc:
        raise CredentialError(f"the hub's trust bundle is not valid PEM ({exc})") from None
    if not any(pki.signed_by(cert, ca) for ca in bundle):
        raise CredentialError("the hub's trust bundle does not hold this node's CA; not saving it")
    pki.write_certificates(paths.bundle, bundle)


def channel_credentials(creds: NodeCredentials) -> grpc.ChannelCredentials:
    """mTLS client credentials for talking to the hub as this node."""
    return grpc.ssl_channel_credentials(
        root_certificates=creds.bundle_pem,
        private_key=creds.key_pem,
        certificate_chain=creds.cert_pem,
    )

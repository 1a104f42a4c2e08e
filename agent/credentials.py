"""The node's own key, certificate and trust bundle, in its state directory.

    <state_dir>/pki/node.key   private key, 0600, generated here and never sent anywhere
    <state_dir>/pki/node.crt   certificate signed by the fleet CA
    <state_dir>/pki/ca.crt     trust bundle (the fleet CA certificates)

Enrollment writes the key last-good-safe: the new key goes to node.key only once the
hub has signed a certificate for it.
"""

import logging
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
        return self.key.exists() and self.cert.exists() and self.bundle.exists()


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


def save(paths: CredentialPaths, key: pki.PrivateKey, cert_pem: bytes, bundle_pem: bytes) -> None:
    """Store a freshly signed identity: bundle and certificate first, the key last."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    if not pki.key_matches(key, cert):
        raise CredentialError("the hub returned a certificate for another key; not saving it")
    bundle = x509.load_pem_x509_certificates(bundle_pem)
    paths.key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    pki.write_certificates(paths.bundle, bundle)
    pki.write_certificates(paths.cert, [cert])
    pki.write_private_key(paths.key, key)


def channel_credentials(creds: NodeCredentials) -> grpc.ChannelCredentials:
    """mTLS client credentials for talking to the hub as this node."""
    return grpc.ssl_channel_credentials(
        root_certificates=creds.bundle_pem,
        private_key=creds.key_pem,
        certificate_chain=creds.cert_pem,
    )

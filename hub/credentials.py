"""The hub's CA and server certificate: created on first start, loaded afterwards.

The CA key never leaves the hub's state directory (mode 0600). The server
certificate is re-issued when it is missing, close to expiry, or no longer names
every configured server name.
"""

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from edgecommon import pki
from edgecommon.clock import utc
from edgecommon.errors import CredentialError
from hub.config import HubConfig

log = logging.getLogger(__name__)
RENEW_SERVER_CERT_WITHIN = dt.timedelta(days=30)


@dataclass(frozen=True)
class HubCredentials:
    ca_key: pki.PrivateKey
    ca_cert: x509.Certificate
    server_key_pem: bytes
    server_cert: x509.Certificate
    trust_domain: str

    @property
    def ca_bundle_pem(self) -> bytes:
        return pki.pem(self.ca_cert)


@dataclass(frozen=True)
class CredentialPaths:
    ca_key: Path
    ca_cert: Path
    server_key: Path
    server_cert: Path

    @classmethod
    def under(cls, state_dir: Path) -> "CredentialPaths":
        pki_dir = state_dir / "pki"
        return cls(pki_dir / "ca.key", pki_dir / "ca.crt", pki_dir / "hub.key", pki_dir / "hub.crt")


def load_ca(paths: CredentialPaths) -> tuple[pki.PrivateKey, x509.Certificate]:
    key = pki.load_private_key(paths.ca_key)
    cert = pki.load_certificate(paths.ca_cert)
    if not pki.key_matches(key, cert):
        raise CredentialError(f"CA key {paths.ca_key} does not belong to {paths.ca_cert}")
    return key, cert


def load_or_create(config: HubConfig, now_unix: float) -> HubCredentials:
    paths = CredentialPaths.under(config.hub.state_dir)
    now = utc(now_unix)
    paths.ca_key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not paths.ca_key.exists() and not paths.ca_cert.exists():
        key, cert = pki.create_ca(
            config.hub.trust_domain, now, dt.timedelta(days=config.certs.ca_lifetime_days)
        )
        pki.write_private_key(paths.ca_key, key)
        pki.write_certificates(paths.ca_cert, [cert])
        log.info(
            "created the fleet CA %s (sha256 %s)",
            cert.subject.rfc4514_string(),
            pki.fingerprint(cert),
        )
    ca_key, ca_cert = load_ca(paths)
    server_cert = _current_server_cert(paths, ca_cert, config, now)
    if server_cert is None:
        server_key = pki.generate_key()
        server_cert = pki.issue_hub_certificate(
            ca_key,
            ca_cert,
            server_key,
            config.hub.trust_domain,
            config.hub.server_names,
            now,
            dt.timedelta(days=config.certs.hub_lifetime_days),
        )
        pki.write_private_key(paths.server_key, server_key)
        pki.write_certificates(paths.server_cert, [server_cert])
        log.info("issued the hub server certificate for %s", ", ".join(config.hub.server_names))
    return HubCredentials(
        ca_key,
        ca_cert,
        pki.private_key_pem(paths.server_key),
        server_cert,
        config.hub.trust_domain,
    )


def _current_server_cert(
    paths: CredentialPaths, ca_cert: x509.Certificate, config: HubConfig, now: dt.datetime
) -> x509.Certificate | None:
    if not paths.server_cert.exists() or not paths.server_key.exists():
        return None
    cert = pki.load_certificate(paths.server_cert)
    if not pki.key_matches(pki.load_private_key(paths.server_key), cert):
        raise CredentialError(f"hub key {paths.server_key} does not belong to {paths.server_cert}")
    wanted = {str(n.value) for n in pki.host_names(config.hub.server_names)}
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    present = {str(n.value) for n in san if not isinstance(n, x509.UniformResourceIdentifier)}
    if (
        cert.issuer != ca_cert.subject
        or cert.not_valid_after_utc - now < RENEW_SERVER_CERT_WITHIN
        or not wanted <= present
    ):
        return None
    return cert

"""The hub's CA, trust bundle and server certificate: created on first start, loaded afterwards.

    <state_dir>/pki/ca.key, ca.crt   the signing CA (key 0600, never leaves this directory)
    <state_dir>/pki/trust.crt        every CA the fleet trusts (old and new during a rollover);
                                     absent means just ca.crt
    <state_dir>/pki/hub.key, hub.crt the hub's server certificate

The server certificate is re-issued when it is missing, close to expiry, no longer names
every configured server name, or was signed by a CA that is no longer trusted.

CA rollover (`rotate_ca`) writes the new CA as ca.next.key/ca.next.crt, adds it to the
trust bundle, then renames it over ca.crt and ca.key; `finish_rotation` completes a
rollover a crash interrupted, so the hub never starts with a key that does not match
its certificate.
"""

import datetime as dt
import logging
import os
from dataclasses import dataclass, replace
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
    bundle: tuple[x509.Certificate, ...] = ()

    @property
    def trusted(self) -> tuple[x509.Certificate, ...]:
        return self.bundle or (self.ca_cert,)

    @property
    def ca_bundle_pem(self) -> bytes:
        return b"".join(pki.pem(c) for c in self.trusted)

    @property
    def serving_ca(self) -> x509.Certificate:
        """The CA that signed the hub's server certificate: join tokens pin this one."""
        for ca in self.trusted:
            if ca.subject == self.server_cert.issuer:
                return ca
        return self.ca_cert


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

    @property
    def trust(self) -> Path:
        return self.ca_cert.parent / "trust.crt"

    @property
    def next_key(self) -> Path:
        return self.ca_key.parent / "ca.next.key"

    @property
    def next_cert(self) -> Path:
        return self.ca_cert.parent / "ca.next.crt"


def load_ca(paths: CredentialPaths) -> tuple[pki.PrivateKey, x509.Certificate]:
    finish_rotation(paths)
    key = pki.load_private_key(paths.ca_key)
    cert = pki.load_certificate(paths.ca_cert)
    if not pki.key_matches(key, cert):
        raise CredentialError(f"CA key {paths.ca_key} does not belong to {paths.ca_cert}")
    return key, cert


def load_bundle(paths: CredentialPaths, ca_cert: x509.Certificate) -> tuple[x509.Certificate, ...]:
    if not paths.trust.exists():
        return (ca_cert,)
    bundle = pki.load_certificates(paths.trust, "trust bundle")
    if ca_cert not in bundle:
        raise CredentialError(
            f"trust bundle {paths.trust} does not contain the signing CA {paths.ca_cert}; "
            "restore it from a backup or remove it to trust only ca.crt"
        )
    return tuple(bundle)


def finish_rotation(paths: CredentialPaths) -> None:
    """Complete (or discard) a CA rollover that a crash interrupted."""
    if not paths.next_key.exists():
        return
    key = pki.load_private_key(paths.next_key)
    if paths.next_cert.exists():
        cert = pki.load_certificate(paths.next_cert)
        if not pki.key_matches(key, cert):
            raise CredentialError(f"{paths.next_key} does not belong to {paths.next_cert}")
        current = load_bundle(paths, pki.load_certificate(paths.ca_cert))
        if cert not in current:
            pki.write_certificates(paths.trust, [*current, cert])
        os.replace(paths.next_cert, paths.ca_cert)
    if pki.key_matches(key, pki.load_certificate(paths.ca_cert)):
        os.replace(paths.next_key, paths.ca_key)
        log.warning("completed an interrupted CA rollover")
    else:
        paths.next_key.unlink()
        log.warning("discarded an unfinished CA rollover (no certificate for the new key)")


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
    bundle = load_bundle(paths, ca_cert)
    server_cert = _current_server_cert(paths, bundle, config, now)
    creds = HubCredentials(ca_key, ca_cert, b"", ca_cert, config.hub.trust_domain, bundle)
    if server_cert is None:
        return issue_server_certificate(creds, config, now_unix)
    return replace(
        creds, server_key_pem=pki.private_key_pem(paths.server_key), server_cert=server_cert
    )


def issue_server_certificate(
    creds: HubCredentials, config: HubConfig, now_unix: float
) -> HubCredentials:
    """A new server key and certificate from the signing CA, written to the state dir."""
    paths = CredentialPaths.under(config.hub.state_dir)
    server_key = pki.generate_key()
    server_cert = pki.issue_hub_certificate(
        creds.ca_key,
        creds.ca_cert,
        server_key,
        config.hub.trust_domain,
        config.hub.server_names,
        utc(now_unix),
        dt.timedelta(days=config.certs.hub_lifetime_days),
    )
    pki.write_certificates(paths.server_cert, [server_cert])
    pki.write_private_key(paths.server_key, server_key)
    log.info("issued the hub server certificate for %s", ", ".join(config.hub.server_names))
    return replace(
        creds, server_key_pem=pki.private_key_pem(paths.server_key), server_cert=server_cert
    )


def rotate_ca(creds: HubCredentials, config: HubConfig, now_unix: float) -> HubCredentials:
    """A new signing CA, trusted next to the old ones; the server certificate stays as is
    (nodes learn the new CA before anything they must verify is signed by it)."""
    paths = CredentialPaths.under(config.hub.state_dir)
    key, cert = pki.create_ca(
        config.hub.trust_domain,
        utc(now_unix),
        dt.timedelta(days=config.certs.ca_lifetime_days),
    )
    pki.write_private_key(paths.next_key, key)
    pki.write_certificates(paths.next_cert, [cert])
    finish_rotation(paths)
    log.warning(
        "CA rollover: new signing CA %s (sha256 %s); trust bundle holds %d CAs",
        cert.subject.rfc4514_string(),
        pki.fingerprint(cert),
        len(creds.trusted) + 1,
    )
    return replace(creds, ca_key=key, ca_cert=cert, bundle=(*creds.trusted, cert))


def retire_old_cas(creds: HubCredentials, config: HubConfig, now_unix: float) -> HubCredentials:
    """Trust only the signing CA; re-issue the server certificate from it."""
    paths = CredentialPaths.under(config.hub.state_dir)
    pki.write_certificates(paths.trust, [creds.ca_cert])
    retired = replace(creds, bundle=(creds.ca_cert,))
    if creds.server_cert.issuer != creds.ca_cert.subject:
        retired = issue_server_certificate(retired, config, now_unix)
    log.warning("retired %d old CA(s); trusting only the signing CA", len(creds.trusted) - 1)
    return retired


def _current_server_cert(
    paths: CredentialPaths,
    bundle: tuple[x509.Certificate, ...],
    config: HubConfig,
    now: dt.datetime,
) -> x509.Certificate | None:
    if not paths.server_cert.exists() or not paths.server_key.exists():
        return None
    cert = pki.load_certificate(paths.server_cert)
    if not pki.key_matches(pki.load_private_key(paths.server_key), cert):
        log.warning("hub key %s does not belong to %s; re-issuing", paths.server_key, cert)
        return None
    wanted = {str(n.value) for n in pki.host_names(config.hub.server_names)}
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    present = {str(n.value) for n in san if not isinstance(n, x509.UniformResourceIdentifier)}
    if (
        all(cert.issuer != ca.subject for ca in bundle)
        or cert.not_valid_after_utc - now < RENEW_SERVER_CERT_WITHIN
        or not wanted <= present
    ):
        return None
    return cert

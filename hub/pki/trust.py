"""What the hub trusts right now: the CA bundle, the signing CA, revoked serials.

One `TrustStore` per hub. Rotating the CA or retiring old ones replaces its credentials
as a whole; the gRPC server reads them through `server_credentials`, whose fetchers
hand grpc the new configuration on the next handshake (existing connections keep
working and are re-checked per RPC by `PeerVerifier`).
"""

import logging
from collections.abc import Callable, Iterable

import grpc
from cryptography import x509

from edgecommon import pki
from edgecommon.clock import stamp
from hub.pki.credentials import HubCredentials
from hub.store.base import HubStore, RevocationRecord

log = logging.getLogger(__name__)


class TrustStore:
    def __init__(self, credentials: HubCredentials) -> None:
        self.credentials = credentials
        self.revoked: dict[str, RevocationRecord] = {}
        self.version = 0
        self._subjects = self._ca_subjects()

    async def load(self, store: HubStore) -> None:
        self.revoked = {r.serial: r for r in await store.list_revocations()}
        if self.revoked:
            log.info("%d revoked certificate(s) refused", len(self.revoked))

    def replace(self, credentials: HubCredentials) -> None:
        self.credentials = credentials
        self._subjects = self._ca_subjects()
        self.version += 1

    def add_revocations(self, records: Iterable[RevocationRecord]) -> None:
        for record in records:
            self.revoked[record.serial] = record

    def trusts_issuer(self, cert: x509.Certificate) -> bool:
        return cert.issuer in self._subjects

    def revocation(self, cert: x509.Certificate) -> RevocationRecord | None:
        return self.revoked.get(pki.serial_hex(cert))

    def revoked_message(self, record: RevocationRecord) -> str:
        return (
            f"certificate {record.serial} was revoked at {stamp(record.revoked_unix)} by "
            f"{record.revoked_by} ({record.reason}); re-enroll with a new join token"
        )

    def ca_of(self, cert: x509.Certificate) -> x509.Certificate | None:
        for ca in self.credentials.trusted:
            if ca.subject == cert.issuer:
                return ca
        return None

    def _ca_subjects(self) -> frozenset[x509.Name]:
        return frozenset(ca.subject for ca in self.credentials.trusted)

    def _configuration(self, client_auth: bool) -> grpc.ServerCertificateConfiguration:
        creds = self.credentials
        pair = [(creds.server_key_pem, pki.pem(creds.server_cert))]
        roots = creds.ca_bundle_pem if client_auth else None
        return grpc.ssl_server_certificate_configuration(pair, root_certificates=roots)

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """The hub as a client (to a leader's Peer service), with its current certificate."""
        creds = self.credentials
        return grpc.ssl_channel_credentials(
            root_certificates=creds.ca_bundle_pem,
            private_key=creds.server_key_pem,
            certificate_chain=pki.pem(creds.server_cert),
        )

    def server_credentials(self, client_auth: bool) -> grpc.ServerCredentials:
        """Credentials that pick up a new trust bundle or server certificate on the next
        handshake."""
        served = [self.version]

        def fetch() -> grpc.ServerCertificateConfiguration | None:
            if served[0] == self.version:
                return None
            served[0] = self.version
            return self._configuration(client_auth)

        fetcher: Callable[[], grpc.ServerCertificateConfiguration | None] = fetch
        return grpc.dynamic_ssl_server_credentials(
            self._configuration(client_auth),
            fetcher,
            require_client_authentication=client_auth,
        )

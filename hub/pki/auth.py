"""Who is calling: the peer's identity, from the TLS session only, checked on every RPC.

The handshake verified the chain when the connection opened; a connection can outlive
the certificate, its revocation and its CA, so expiry, revocation and the issuer's place
in the current trust bundle are checked again per call (see docs/architecture.md).
"""

from collections import OrderedDict

import grpc
from cryptography import x509

from edgecommon import pki
from edgecommon.clock import Clock
from edgecommon.errors import PermissionDenied, Unauthenticated
from edgecommon.identity import Identity, Kind
from hub.pki.trust import TrustStore

_CACHE_SIZE = 50_000


class PeerVerifier:
    def __init__(self, trust: TrustStore, trust_domain: str, clock: Clock) -> None:
        self.trust = trust
        self.trust_domain = trust_domain
        self.clock = clock
        self._parsed: OrderedDict[bytes, tuple[x509.Certificate, Identity | None]] = OrderedDict()

    def peer_certificate(
        self, context: grpc.aio.ServicerContext
    ) -> tuple[x509.Certificate, Identity]:
        auth = context.auth_context()
        pems = auth.get("x509_pem_cert")
        if not pems:
            raise Unauthenticated(
                "no client certificate: connect to the hub's mutual-TLS port with your credential "
                "(edgectl login, or the agent's enrolled certificate)"
            )
        cert, identity = self._parse(pems[0])
        now = self.clock.wall()
        if cert.not_valid_after_utc.timestamp() <= now:
            raise Unauthenticated(
                f"client certificate {pki.serial_hex(cert)} expired at "
                f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M:%SZ}; renew or re-enroll"
            )
        if not self.trust.trusts_issuer(cert) or identity is None:
            raise Unauthenticated(
                f"client certificate {pki.serial_hex(cert)} is not from a CA this hub trusts "
                "(a retired CA?) or carries no fleet identity; re-enroll with a new join token"
            )
        revoked = self.trust.revocation(cert)
        if revoked is not None:
            raise Unauthenticated(self.trust.revoked_message(revoked))
        return cert, identity

    def require(
        self, context: grpc.aio.ServicerContext, kind: Kind
    ) -> tuple[x509.Certificate, Identity]:
        cert, identity = self.peer_certificate(context)
        if identity.kind is not kind:
            raise PermissionDenied(
                f"{identity} may not call this; it needs a {kind.value} credential"
            )
        return cert, identity

    def _parse(self, pem_bytes: bytes) -> tuple[x509.Certificate, Identity | None]:
        hit = self._parsed.get(pem_bytes)
        if hit is not None:
            self._parsed.move_to_end(pem_bytes)
            return hit
        cert = x509.load_pem_x509_certificate(pem_bytes)
        entry = (cert, pki.identity_of(cert, self.trust_domain))
        self._parsed[pem_bytes] = entry
        if len(self._parsed) > _CACHE_SIZE:
            self._parsed.popitem(last=False)
        return entry

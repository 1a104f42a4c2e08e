"""The Certs service: node renewal and trust over the mTLS link, operator certificate calls."""

import logging

import grpc

from edgecommon import pki
from edgecommon.errors import Conflict, InvalidArgument, PermissionDenied
from edgecommon.identity import Kind
from edgecommon.pb import certs_pb2, certs_pb2_grpc
from edgecommon.rpc import handle_errors
from hub.pki.auth import PeerVerifier
from hub.pki.authority import CertAuthority
from hub.store.base import CertificateRecord, RevocationRecord

log = logging.getLogger("edge-hub.certs")


def certificate_info(
    c: CertificateRecord,
    revoked: RevocationRecord | None,
    current: bool,
    renewal_error: str = "",
) -> certs_pb2.CertificateInfo:
    info = certs_pb2.CertificateInfo(
        serial=c.serial,
        kind=c.kind,
        subject_id=c.subject_id,
        group=c.group,
        issued_unix=c.issued_unix,
        not_after_unix=c.not_after_unix,
        fingerprint=c.fingerprint,
        ca_fingerprint=c.ca_fingerprint,
        current=current,
        renewal_error=renewal_error,
    )
    if revoked is not None:
        info.revoked = True
        info.revoked_unix = revoked.revoked_unix
        info.revoke_reason = revoked.reason
        info.revoked_by = revoked.revoked_by
    return info


class CertsService(certs_pb2_grpc.CertsServicer):
    def __init__(self, authority: CertAuthority, verifier: PeerVerifier) -> None:
        self.authority = authority
        self.verifier = verifier

    @handle_errors
    async def Renew(
        self, request: certs_pb2.RenewRequest, context: grpc.aio.ServicerContext
    ) -> certs_pb2.RenewResponse:
        cert, identity = self.verifier.peer_certificate(context)
        if identity.kind is Kind.HUB:
            raise PermissionDenied("the hub's own certificate is not renewed over the link")
        if request.last_error:
            log.info("%s renews after a failure: %s", identity, request.last_error[:300])
        renewed = await self.authority.renew(cert, identity, request.csr_pem)
        return certs_pb2.RenewResponse(
            certificate_pem=pki.pem(renewed.certificate),
            ca_bundle_pem=renewed.bundle_pem,
            serial=pki.serial_hex(renewed.certificate),
            not_after_unix=renewed.certificate.not_valid_after_utc.timestamp(),
        )

    @handle_errors
    async def Trust(
        self, request: certs_pb2.TrustRequest, context: grpc.aio.ServicerContext
    ) -> certs_pb2.TrustAnswer:
        self.verifier.peer_certificate(context)
        creds = self.authority.trust.credentials
        return certs_pb2.TrustAnswer(
            ca_bundle_pem=creds.ca_bundle_pem,
            signing_ca_fingerprint=pki.fingerprint(creds.ca_cert),
        )

    @handle_errors
    async def ListCertificates(
        self, request: certs_pb2.ListCertificatesRequest, context: grpc.aio.ServicerContext
    ) -> certs_pb2.CertificateList:
        self.verifier.require(context, Kind.OPERATOR)
        if request.kind not in ("", "node", "operator"):
            raise InvalidArgument("--kind must be node or operator")
        if request.expiring_within_s < 0:
            raise InvalidArgument("--expiring-within must not be negative")
        now = self.authority.clock.wall()
        certificates, errors = await self.authority.listing()
        current = set(self.authority.current_serials().values())
        revoked = self.authority.trust.revoked
        answer = certs_pb2.CertificateList(hub_time_unix=now)
        for c in certificates:
            gone = revoked.get(c.serial)
            if request.kind and c.kind != request.kind:
                continue
            if request.expiring_within_s and (
                gone is not None or c.not_after_unix - now > request.expiring_within_s
            ):
                continue
            if c.not_after_unix <= now and not request.include_expired and gone is None:
                continue
            error = errors.get(c.subject_id, ("", 0.0))[0] if c.serial in current else ""
            answer.certificates.append(certificate_info(c, gone, c.serial in current, error))
        return answer

    @handle_errors
    async def RevokeCertificate(
        self, request: certs_pb2.RevokeRequest, context: grpc.aio.ServicerContext
    ) -> certs_pb2.RevokeAnswer:
        _, operator = self.verifier.require(context, Kind.OPERATOR)
        records, closed, told = await self.authority.revoke(
            request.node_id, request.operator, request.serial, request.reason, operator.name
        )
        certificates = {c.serial: c for c in await self.authority.store.list_certificates()}
        return certs_pb2.RevokeAnswer(
            revoked=[certificate_info(certificates[r.serial], r, False) for r in records],
            streams_closed=closed,
            agents_told=told,
        )

    async def _report(self, detail: str = "") -> certs_pb2.CaReport:
        creds = self.authority.trust.credentials
        by_ca = await self.authority.nodes_by_ca()
        online = {v.record.node_id for v in self.authority.registry.views() if v.connected}
        report = certs_pb2.CaReport(detail=detail)
        for ca in creds.trusted:
            fp = pki.fingerprint(ca)
            nodes = by_ca.get(fp, [])
            report.cas.append(
                certs_pb2.CaInfo(
                    fingerprint=fp,
                    subject=ca.subject.rfc4514_string(),
                    not_before_unix=ca.not_valid_before_utc.timestamp(),
                    not_after_unix=ca.not_valid_after_utc.timestamp(),
                    signing=ca == creds.ca_cert,
                    serving=ca.subject == creds.server_cert.issuer,
                    nodes=len(nodes),
                    online_nodes=sum(1 for n in nodes if n in online),
                    node_ids=nodes,
                )
            )
        return report

    @handle_errors
    async def CaStatus(
        self, request: certs_pb2.CaStatusRequest, context: grpc.aio.ServicerContext
    ) -> certs_pb2.CaReport:
        self.verifier.require(context, Kind.OPERATOR)
        return await self._report()

    @handle_errors
    async def RotateCa(
        self, request: certs_pb2.RotateCaRequest, context: grpc.aio.ServicerContext
    ) -> certs_pb2.CaReport:
        _, operator = self.verifier.require(context, Kind.OPERATOR)
        await self.authority.rotate()
        log.warning("CA rollover started by %s", operator.name)
        return await self._report(
            "new CA created; nodes receive the bundle and renew onto it; "
            "run 'edgectl ca retire-old' once every node is on it"
        )

    @handle_errors
    async def RetireOldCa(
        self, request: certs_pb2.RetireOldCaRequest, context: grpc.aio.ServicerContext
    ) -> certs_pb2.CaReport:
        cert, operator = self.verifier.require(context, Kind.OPERATOR)
        signing = self.authority.trust.credentials.ca_cert
        if cert.issuer != signing.subject and not request.force:
            raise Conflict(
                "your own operator certificate comes from an old CA: renew it first "
                "('edgectl cert rotate --operator') or pass --force"
            )
        cut = await self.authority.retire_old(request.force)
        log.warning("old CAs retired by %s%s", operator.name, " (forced)" if request.force else "")
        detail = "old CAs retired; the hub now trusts and serves only the signing CA"
        if cut:
            detail += f"; {len(cut)} node(s) still on an old CA must re-enroll: {', '.join(cut)}"
        return await self._report(detail)

"""The hub's certificate lifecycle: renewal, revocation, listing and CA rollover.

Decisions are pure functions (`revocation_targets`, `retire_refusal`, `node_ca_counts`,
`live_revocations`); `CertAuthority` applies them: it signs, persists, updates the trust
store, sends the revoked-serial list to every connected agent (their Peer services check
it on every call; agents that are away get it in `Registered`) and closes the streams of
revoked nodes.

Renewal signs exactly the identity of the calling certificate (INV-PKI-01): the CSR must
name it, use an accepted key type and a key different from the current one. A revoked,
expired or untrusted caller never gets here: `PeerVerifier` refuses it first.
"""

import asyncio
import datetime as dt
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from cryptography import x509

from edgecommon import pki
from edgecommon.clock import Clock, utc
from edgecommon.errors import Conflict, CsrRejected, InvalidArgument, NotFound, Unreachable
from edgecommon.group_commit import GroupCommit
from edgecommon.identity import Identity, Kind, name_problem
from edgecommon.pb import link_pb2
from edgecommon.reasons import check_reason
from edgecommon.scope import Scope, ScopeKind
from hub.config import HubConfig
from hub.fleet.registry import Registry
from hub.pki import credentials as hub_credentials
from hub.pki.trust import TrustStore
from hub.store.base import CertificateRecord, HubStore, RevocationRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Renewed:
    certificate: x509.Certificate
    bundle_pem: bytes


def revocation_targets(
    certificates: Iterable[CertificateRecord],
    revoked: Iterable[str],
    now_unix: float,
    *,
    node_id: str = "",
    operator: str = "",
    serial: str = "",
) -> list[CertificateRecord]:
    """The certificates a revoke request names: one serial, or every unexpired, unrevoked
    certificate of a node or operator. Exactly one selector must be given."""
    given = [v for v in (node_id, operator, serial) if v]
    if len(given) != 1:
        raise InvalidArgument("name exactly one of --node ID, --operator NAME or --serial S")
    done = set(revoked)
    if serial:
        found = [c for c in certificates if c.serial == serial.lower()]
        if not found:
            raise NotFound(f"no certificate with serial {serial}; 'edgectl cert list' shows them")
        if found[0].serial in done:
            raise Conflict(f"certificate {serial} is already revoked")
        return found
    kind, subject = ("node", node_id) if node_id else ("operator", operator)
    return [
        c
        for c in certificates
        if c.kind == kind
        and c.subject_id == subject
        and c.not_after_unix > now_unix
        and c.serial not in done
    ]


def live_revocations(
    revoked: Iterable[str], not_after: Mapping[str, float], now_unix: float
) -> list[str]:
    """The revoked serials agents must refuse: those whose certificate has not expired (an
    expired one is refused anyway). A serial of unknown expiry stays on the list."""
    return sorted(s for s in revoked if not_after.get(s, float("inf")) > now_unix)


def retire_refusal(dependent_online: Sequence[str], force: bool) -> str | None:
    """Why retiring the old CAs must wait, or None. Online nodes whose current certificate
    an old CA issued would be cut off at their next RPC."""
    if not dependent_online or force:
        return None
    shown = ", ".join(dependent_online[:10]) + (" ..." if len(dependent_online) > 10 else "")
    return (
        f"{len(dependent_online)} online node(s) still use a certificate from an old CA "
        f"({shown}); wait until 'edgectl ca status' shows them on the new CA, or pass --force "
        "to cut them off (they must then re-enroll)"
    )


def node_ca_counts(
    current_serials: dict[str, str], issuer_of: dict[str, str], fallback: str
) -> dict[str, list[str]]:
    """CA fingerprint -> node ids whose current certificate it issued. Certificates recorded
    before the hub tracked issuers count for `fallback` (the oldest trusted CA)."""
    out: dict[str, list[str]] = {}
    for node_id, serial in sorted(current_serials.items()):
        out.setdefault(issuer_of.get(serial) or fallback, []).append(node_id)
    return out


class CertAuthority:
    def __init__(
        self,
        store: HubStore,
        trust: TrustStore,
        registry: Registry,
        config: HubConfig,
        clock: Clock,
    ) -> None:
        self.store = store
        self.trust = trust
        self.registry = registry
        self.config = config
        self.clock = clock
        self.signed = 0
        self._rollover = asyncio.Lock()
        self._with_errors: set[str] = set()
        # Renewals that arrive together share one transaction (a fleet renewing at once
        # costs one fsync per batch, not one per node).
        self._records: GroupCommit[CertificateRecord, None] = GroupCommit(
            self._write_records, lambda: Unreachable("the hub is shutting down")
        )
        self._revoked_not_after: dict[str, float] = {}  # serial -> its certificate's expiry

    async def load(self) -> None:
        self._with_errors = set(await self.store.list_renewal_errors())
        self._revoked_not_after = {
            c.serial: c.not_after_unix
            for c in await self.store.list_certificates()
            if c.serial in self.trust.revoked
        }

    def revocations(self) -> link_pb2.Revocations:
        """The list every agent gets (`Registered`, and on every revoke)."""
        return link_pb2.Revocations(
            serials=live_revocations(self.trust.revoked, self._revoked_not_after, self.clock.wall())
        )

    @property
    def trust_domain(self) -> str:
        return self.trust.credentials.trust_domain

    async def renew(self, cert: x509.Certificate, identity: Identity, csr_pem: bytes) -> Renewed:
        try:
            csr = pki.check_csr(csr_pem, identity, self.trust_domain)
            if pki.public_key_equal(csr.public_key(), cert.public_key()):
                raise CsrRejected("a renewal must use a new key; this CSR reuses the current one")
        except CsrRejected as exc:
            await self.store.put_renewal_error(identity.name, str(exc), self.clock.wall())
            self._with_errors.add(identity.name)
            raise
        creds = self.trust.credentials
        now = self.clock.wall()
        hours = (
            self.config.certs.node_lifetime_h
            if identity.kind is Kind.NODE
            else self.config.certs.operator_lifetime_h
        )
        new = pki.sign_csr(
            creds.ca_key,
            creds.ca_cert,
            csr,
            identity,
            self.trust_domain,
            utc(now),
            dt.timedelta(hours=hours),
        )
        await self._record(
            CertificateRecord(
                serial=pki.serial_hex(new),
                kind=identity.kind.value,
                subject_id=identity.name,
                group=identity.group,
                not_after_unix=new.not_valid_after_utc.timestamp(),
                issued_unix=now,
                fingerprint=pki.fingerprint(new),
                ca_fingerprint=pki.fingerprint(creds.ca_cert),
            )
        )
        if identity.name in self._with_errors:
            await self.store.put_renewal_error(identity.name, "", now)
            self._with_errors.discard(identity.name)
        self.signed += 1
        log.info(
            "renewed %s: certificate %s replaces %s, valid until %s",
            identity,
            pki.serial_hex(new),
            pki.serial_hex(cert),
            f"{new.not_valid_after_utc:%Y-%m-%d %H:%M:%SZ}",
        )
        return Renewed(new, creds.ca_bundle_pem)

    async def _record(self, record: CertificateRecord) -> None:
        """Durably record a signed certificate before it is handed out."""
        await self._records.submit([record])

    async def _write_records(self, records: list[CertificateRecord]) -> list[None]:
        await self.store.record_certificates(records)
        return [None] * len(records)

    async def revoke(
        self, node_id: str, operator: str, serial: str, reason: str, revoked_by: str
    ) -> tuple[list[RevocationRecord], int, int]:
        """Returns the revocations, the streams closed and the agents sent the new list."""
        reason = check_reason(reason)
        for what, value in (("node id", node_id), ("operator", operator)):
            if value and (problem := name_problem(what, value)):
                raise InvalidArgument(problem)
        now = self.clock.wall()
        targets = revocation_targets(
            await self.store.list_certificates(),
            self.trust.revoked,
            now,
            node_id=node_id,
            operator=operator,
            serial=serial,
        )
        if not targets:
            who = f"node {node_id}" if node_id else f"operator {operator}"
            raise NotFound(f"{who} has no unexpired, unrevoked certificate")
        records = [
            RevocationRecord(c.serial, c.kind, c.subject_id, c.group, reason, revoked_by, now)
            for c in targets
        ]
        await self.store.add_revocations(records)
        self.trust.add_revocations(records)
        self._revoked_not_after.update((c.serial, c.not_after_unix) for c in targets)
        # Every agent, before any stream closes: peers must stop serving the certificate
        # even where the hub never sees it (agent-to-agent replication).
        told = len(
            self.registry.send(
                link_pb2.HubMessage(revocations=self.revocations()), Scope(ScopeKind.FLEET)
            )
        )
        closed = 0
        serials = {r.serial for r in records}
        for session in self.registry.live_sessions():
            view = self.registry.view(session.node_id)
            if view is not None and view.record.cert_serial in serials:
                session.close(f"certificate revoked: {reason}")
                closed += 1
        for record in records:
            log.warning(
                "revoked certificate %s of %s %s by %s: %s",
                record.serial,
                record.kind,
                record.subject_id,
                revoked_by,
                reason,
            )
        return records, closed, told

    async def listing(self) -> tuple[list[CertificateRecord], dict[str, tuple[str, float]]]:
        return await self.store.list_certificates(), await self.store.list_renewal_errors()

    def current_serials(self) -> dict[str, str]:
        return {v.record.node_id: v.record.cert_serial for v in self.registry.views()}

    async def nodes_by_ca(self) -> dict[str, list[str]]:
        issuer_of = {c.serial: c.ca_fingerprint for c in await self.store.list_certificates()}
        oldest = pki.fingerprint(self.trust.credentials.trusted[0])
        return node_ca_counts(self.current_serials(), issuer_of, oldest)

    async def rotate(self) -> None:
        async with self._rollover:
            creds = hub_credentials.rotate_ca(
                self.trust.credentials, self.config, self.clock.wall()
            )
            self.trust.replace(creds)

    async def retire_old(self, force: bool) -> list[str]:
        """Retire every CA but the signing one; returns the nodes cut off (with --force)."""
        async with self._rollover:
            creds = self.trust.credentials
            if len(creds.trusted) == 1:
                raise Conflict("there is no old CA to retire; the trust bundle holds one CA")
            signing = pki.fingerprint(creds.ca_cert)
            by_ca = await self.nodes_by_ca()
            dependent = sorted(n for ca, nodes in by_ca.items() if ca != signing for n in nodes)
            online = {v.record.node_id for v in self.registry.views() if v.connected}
            refusal = retire_refusal([n for n in dependent if n in online], force)
            if refusal:
                raise Conflict(refusal)
            retired = hub_credentials.retire_old_cas(creds, self.config, self.clock.wall())
            self.trust.replace(retired)
        for session in self.registry.live_sessions():
            if session.node_id in dependent:
                session.close("its certificate's CA was retired; re-enroll with a new join token")
        return dependent

"""Join tokens and enrollment: the hub signs exactly the identity a token allows.

A token is checked, the CSR is checked and signed, and only then is the token
redeemed, in the same store transaction that records the certificate and the node, so
a rejected request changes nothing and a token can never be redeemed twice.
"""

import datetime as dt
import logging
from dataclasses import dataclass

from cryptography import x509

from edgecommon import pki, tokens
from edgecommon.clock import Clock, stamp, utc
from edgecommon.errors import Conflict, InvalidArgument, TokenError
from edgecommon.identity import Identity, Kind, name_problem
from hub.config import HubConfig
from hub.pki.credentials import HubCredentials
from hub.pki.trust import TrustStore
from hub.store.base import CertificateRecord, HubStore, NodeRecord, TokenRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IssuedToken:
    token: str
    record: TokenRecord


@dataclass(frozen=True)
class Enrolled:
    certificate: x509.Certificate
    identity: Identity


def token_subject(node_id: str, group: str, operator: str) -> Identity:
    """The identity a token request names, or InvalidArgument saying what to fix."""
    if operator and (node_id or group):
        raise InvalidArgument("give either --operator, or --node with --group, not both")
    if operator:
        if problem := name_problem("operator", operator):
            raise InvalidArgument(problem)
        return Identity(Kind.OPERATOR, operator)
    if not node_id or not group:
        raise InvalidArgument("a node token needs both --node ID and --group G")
    for what, value in (("node id", node_id), ("group", group)):
        if problem := name_problem(what, value):
            raise InvalidArgument(problem)
    return Identity(Kind.NODE, node_id, group)


class Enrollment:
    def __init__(self, store: HubStore, trust: TrustStore, config: HubConfig, clock: Clock) -> None:
        self.store = store
        self.trust = trust
        self.config = config
        self.clock = clock

    @property
    def credentials(self) -> HubCredentials:
        return self.trust.credentials

    async def create_token(self, subject: Identity, ttl_s: float, created_by: str) -> IssuedToken:
        ttl = ttl_s or self.config.certs.token_ttl_default_s
        if not 0 < ttl <= self.config.certs.token_ttl_max_s:
            raise InvalidArgument(
                f"token lifetime {ttl:g}s is out of range; use more than 0 and at most "
                f"{self.config.certs.token_ttl_max_s:g}s ([certs].token_ttl_max_s)"
            )
        if subject.kind is Kind.NODE:
            existing = await self.store.get_node(subject.name)
            if existing is not None and existing.group != subject.group:
                raise Conflict(
                    f"node {subject.name} is enrolled in group {existing.group}, not "
                    f"{subject.group}; choose another node id"
                )
        creds = self.credentials
        join = tokens.new_token(subject, creds.trust_domain, creds.serving_ca)
        now = self.clock.wall()
        record = TokenRecord(
            token_id=join.token_id,
            secret_hash=tokens.secret_hash(join.secret),
            kind=subject.kind.value,
            subject_id=subject.name,
            group=subject.group,
            created_by=created_by,
            created_unix=now,
            expires_unix=now + ttl,
        )
        await self.store.add_token(record)
        log.info(
            "join token %s created by %s for %s, expires in %gs",
            join.token_id,
            created_by,
            subject,
            ttl,
        )
        return IssuedToken(join.encode(), record)

    async def check_token(self, token_text: str) -> TokenRecord:
        """The token's record if this hub would redeem it now, else TokenError."""
        join = tokens.parse_token(token_text)
        if join.ca not in self.credentials.trusted:
            raise TokenError("this join token was issued by another hub (its CA differs)")
        record = await self.store.get_token(join.token_id)
        if record is None or not tokens.secret_matches(join.secret, record.secret_hash):
            raise TokenError(f"join token {join.token_id} is unknown to this hub")
        if record.used_unix is not None:
            raise TokenError(
                f"join token {join.token_id} was already used at {stamp(record.used_unix)}; "
                "create a new one with 'edgectl token create'"
            )
        if record.expires_unix <= self.clock.wall():
            raise TokenError(
                f"join token {join.token_id} expired at {stamp(record.expires_unix)}; "
                "create a new one with 'edgectl token create'"
            )
        return record

    async def enroll(self, token_text: str, csr_pem: bytes, agent_version: str) -> Enrolled:
        record = await self.check_token(token_text)
        identity = Identity(Kind(record.kind), record.subject_id, record.group)
        td = self.credentials.trust_domain
        csr = pki.check_csr(csr_pem, identity, td)
        now = self.clock.wall()
        hours = (
            self.config.certs.node_lifetime_h
            if identity.kind is Kind.NODE
            else self.config.certs.operator_lifetime_h
        )
        cert = pki.sign_csr(
            self.credentials.ca_key,
            self.credentials.ca_cert,
            csr,
            identity,
            td,
            utc(now),
            dt.timedelta(hours=hours),
        )
        cert_record = CertificateRecord(
            serial=pki.serial_hex(cert),
            kind=identity.kind.value,
            subject_id=identity.name,
            group=identity.group,
            not_after_unix=cert.not_valid_after_utc.timestamp(),
            issued_unix=now,
            fingerprint=pki.fingerprint(cert),
            ca_fingerprint=pki.fingerprint(self.credentials.ca_cert),
        )
        node = None
        if identity.kind is Kind.NODE:
            previous = await self.store.get_node(identity.name)
            node = NodeRecord(
                node_id=identity.name,
                group=identity.group,
                labels=previous.labels if previous else {},
                agent_version=agent_version,
                hostname=previous.hostname if previous else "",
                cert_serial=cert_record.serial,
                cert_expires_unix=cert_record.not_after_unix,
                first_seen_unix=previous.first_seen_unix if previous else now,
                last_seen_unix=previous.last_seen_unix if previous else 0.0,
                state=previous.state if previous else "enrolled",
                state_since_unix=previous.state_since_unix if previous else now,
                state_reason=previous.state_reason if previous else "enrolled",
            )
        if not await self.store.redeem_token(record.token_id, now, cert_record, node):
            raise TokenError(f"join token {record.token_id} was used or expired just now")
        log.info("enrolled %s with certificate %s", identity, cert_record.serial)
        return Enrolled(cert, identity)

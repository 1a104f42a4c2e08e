"""The hub store's contract: one narrow async interface, one implementation per backend.

Records are plain frozen dataclasses; times are unix seconds (wall clock, for display
and audit; deadlines inside the hub use the monotonic clock).
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class TokenRecord:
    token_id: str
    secret_hash: str
    kind: str  # "node" | "operator"
    subject_id: str
    group: str
    created_by: str
    created_unix: float
    expires_unix: float
    used_unix: float | None = None


@dataclass(frozen=True)
class NodeRecord:
    node_id: str
    group: str
    labels: dict[str, str] = field(default_factory=dict)
    agent_version: str = ""
    hostname: str = ""
    cert_serial: str = ""
    cert_expires_unix: float = 0.0
    first_seen_unix: float = 0.0
    last_seen_unix: float = 0.0
    state: str = "enrolled"  # "enrolled" | "online" | "offline"
    state_since_unix: float = 0.0
    state_reason: str = ""


@dataclass(frozen=True)
class CertificateRecord:
    serial: str
    kind: str
    subject_id: str
    group: str
    not_after_unix: float
    issued_unix: float
    fingerprint: str
    ca_fingerprint: str = ""


@dataclass(frozen=True)
class RevocationRecord:
    serial: str
    kind: str
    subject_id: str
    group: str
    reason: str
    revoked_by: str
    revoked_unix: float


@dataclass(frozen=True)
class StopRecord:
    stop_id: str
    scope: str
    reason: str
    operator: str
    engaged_unix: float
    released_unix: float | None = None
    release_reason: str = ""
    release_operator: str = ""

    @property
    def active(self) -> bool:
        return self.released_unix is None


@dataclass(frozen=True)
class AckRecord:
    stop_id: str
    node_id: str
    acked_unix: float
    latency_s: float


@dataclass(frozen=True)
class LeaseRecord:
    group: str
    holder: str
    epoch: int
    expires_unix: float
    paused: bool


@dataclass(frozen=True)
class RoleRecord:
    name: str
    description: str
    permissions: tuple[str, ...]
    created_by: str
    created_unix: float


@dataclass(frozen=True)
class AssignmentRecord:
    operator: str
    role: str
    scope: str
    created_by: str
    created_unix: float


@dataclass(frozen=True)
class SyncSetRecord:
    group: str
    sync_set: tuple[str, ...]
    joining: tuple[str, ...]
    revision: int


class HubStore(Protocol):
    async def open(self) -> None:
        """Connect and apply pending schema migrations."""

    async def close(self) -> None: ...

    async def schema_version(self) -> int: ...

    async def add_token(self, token: TokenRecord) -> None: ...

    async def get_token(self, token_id: str) -> TokenRecord | None: ...

    async def redeem_token(
        self,
        token_id: str,
        now_unix: float,
        certificate: CertificateRecord,
        node: NodeRecord | None,
    ) -> bool:
        """In one transaction: mark the token used if it is unused and unexpired, record the
        certificate and upsert the node. False, with nothing changed, if the token was not
        redeemable (used or expired in the meantime)."""

    async def save_nodes(self, nodes: Sequence[NodeRecord]) -> None: ...

    async def get_node(self, node_id: str) -> NodeRecord | None: ...

    async def list_nodes(self, group: str = "") -> list[NodeRecord]: ...

    async def record_certificate(self, certificate: CertificateRecord) -> None:
        """Record a certificate signed outside enrollment (operator bootstrap)."""

    async def list_certificates(self) -> list[CertificateRecord]: ...

    async def record_certificates(self, certificates: Sequence[CertificateRecord]) -> None:
        """Record renewed certificates in one transaction (group commit)."""

    async def add_stop(self, stop: StopRecord) -> None:
        """Persist a new stop; durable when this returns."""

    async def release_stops(
        self, stop_ids: Sequence[str], now_unix: float, reason: str, operator: str
    ) -> None: ...

    async def list_stops(self) -> list[StopRecord]:
        """Every stop, active and released, oldest first."""

    async def save_acks(self, acks: Sequence[AckRecord]) -> None: ...

    async def list_acks(self) -> list[AckRecord]: ...

    async def get_setting(self, name: str) -> str | None: ...

    async def put_setting(self, name: str, value: str) -> None: ...

    async def save_lease(self, lease: LeaseRecord) -> None:
        """Persist a group's lease; durable when this returns. Epochs never go down."""

    async def list_leases(self) -> list[LeaseRecord]: ...

    async def list_roles(self) -> list[RoleRecord]:
        """Custom roles only; the built-in ones live in code."""

    async def put_role(self, role: RoleRecord) -> None: ...

    async def delete_role(self, name: str, *, with_assignments: bool) -> int:
        """Delete a role (and its assignments if asked); returns the assignments removed."""

    async def list_assignments(self) -> list[AssignmentRecord]: ...

    async def add_assignment(self, assignment: AssignmentRecord) -> bool:
        """False when the same operator, role and scope were already assigned."""

    async def remove_assignment(self, operator: str, role: str, scope: str) -> bool: ...

    async def add_revocations(self, revocations: Sequence[RevocationRecord]) -> None:
        """Persist revocations (idempotent per serial); durable when this returns."""

    async def list_revocations(self) -> list[RevocationRecord]: ...

    async def put_renewal_error(self, subject_id: str, error: str, at_unix: float) -> None:
        """Remember a subject's last renewal error; an empty error clears it."""

    async def list_renewal_errors(self) -> dict[str, tuple[str, float]]: ...

    async def save_sync_set(self, record: SyncSetRecord) -> None:
        """Persist a group's journal sync set; durable when this returns."""

    async def list_sync_sets(self) -> list[SyncSetRecord]: ...

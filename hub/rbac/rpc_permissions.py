"""Which permission each RPC needs and what it acts on: the one table the gate reads.

Every method of every service the hub serves appears here or in NODE_METHODS /
PUBLIC_SERVICES; a test enumerates the service descriptors so an RPC added without a
mapping fails the suite, and the gate refuses an unmapped operator RPC at run time.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edgecommon.audit_record import CERT_RENEW, ENROLL

PACKAGE = "autonomyops.edge.v1"

# Node RPCs: called with a node certificate (or, for Certs, an operator renewing its own)
# and checked by the service itself.
NODE_METHODS = frozenset(
    {
        *(f"/{PACKAGE}.Link/{m}" for m in ("Enroll", "Connect", "RenewLease", "ReleaseLease")),
        f"/{PACKAGE}.Certs/Renew",
        f"/{PACKAGE}.Certs/Trust",
    }
)


@dataclass(frozen=True)
class SecurityEvent:
    """A node RPC audited like an operator action (attempt, outcome). The subject comes
    from the join token the request carries, or from the caller's certificate."""

    action: str
    subject_from: str  # "token" | "peer"


SECURITY_EVENTS = {
    f"/{PACKAGE}.Link/Enroll": SecurityEvent(ENROLL, "token"),
    f"/{PACKAGE}.Certs/Renew": SecurityEvent(CERT_RENEW, "peer"),
}
PUBLIC_SERVICES = frozenset({"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"})


def _fleet(_: Any) -> str:
    return "fleet"


def _group_or_fleet(request: Any) -> str:
    return f"group:{request.group}" if request.group else "fleet"


def _node(request: Any) -> str:
    return f"node:{request.node_id}" if request.node_id else "fleet"


def _scope_field(request: Any) -> str:
    return str(request.scope) or "fleet"


@dataclass(frozen=True)
class Rule:
    """`permission` None: any authenticated operator may call it (WhoAmI).
    `mutates`: an action, audited before its effect and again with its outcome."""

    permission: str | None
    target: Callable[[Any], str] = _fleet
    mutates: bool = False
    label: Callable[[Any], str] | None = None  # audit target when more precise than the scope
    permission_of: Callable[[Any], str] | None = None

    def permission_for(self, request: Any) -> str | None:
        return self.permission_of(request) if self.permission_of else self.permission


def _token_permission(request: Any) -> str:
    return "operator.enroll" if request.operator else "token.create"


def _token_target(request: Any) -> str:
    return "fleet" if request.operator else f"group:{request.group}"


def _token_label(request: Any) -> str:
    return f"operator:{request.operator}" if request.operator else f"node:{request.node_id}"


def _revoke_label(request: Any) -> str:
    if request.node_id:
        return f"node:{request.node_id}"
    if request.operator:
        return f"operator:{request.operator}"
    return f"serial:{request.serial}"


def _retire_label(request: Any) -> str:
    return "ca:old (forced)" if request.force else "ca:old"


def _role_label(request: Any) -> str:
    return f"role:{request.name}"


def _assignment_label(request: Any) -> str:
    return f"operator:{request.operator}"


FLEET = {
    "CreateJoinToken": Rule(
        "token.create",
        _token_target,
        mutates=True,
        label=_token_label,
        permission_of=_token_permission,
    ),
    "FleetStatus": Rule("fleet.read", _group_or_fleet),
    "GetNode": Rule("fleet.read", _node),
    "WhoAmI": Rule(None),
    "EngageEstop": Rule("estop.engage", _scope_field, mutates=True),
    "ReleaseEstop": Rule("estop.release", _scope_field, mutates=True),
    "EstopStatus": Rule("estop.read"),
    "AutonomyStatus": Rule("autonomy.read", _node),
    "SetAutonomy": Rule("autonomy.set", mutates=True),
    "LeaderStatus": Rule("leader.read", _group_or_fleet),
    "ResignLeader": Rule("leader.resign", _group_or_fleet, mutates=True),
    "PauseGroup": Rule("leader.pause", _group_or_fleet, mutates=True),
}
RBAC = {
    "ListRoles": Rule("rbac.read"),
    "GetRole": Rule("rbac.read"),
    "CreateRole": Rule("rbac.admin", mutates=True, label=_role_label),
    "DeleteRole": Rule("rbac.admin", mutates=True, label=_role_label),
    "ListAssignments": Rule("rbac.read"),
    "Assign": Rule("rbac.admin", mutates=True, label=_assignment_label),
    "Unassign": Rule("rbac.admin", mutates=True, label=_assignment_label),
    "Check": Rule("rbac.read"),
    "RbacStatus": Rule("rbac.read"),
}
AUDIT = {
    "Query": Rule("audit.read"),
    "Export": Rule("audit.read"),
    "Verify": Rule("audit.read"),
    "Prune": Rule("audit.prune", mutates=True),
    "AuditStatus": Rule("audit.read"),
}

CERTS = {
    "ListCertificates": Rule("cert.read"),
    "RevokeCertificate": Rule("cert.revoke", _node, mutates=True, label=_revoke_label),
    "CaStatus": Rule("ca.read"),
    "RotateCa": Rule("ca.rotate", mutates=True, label=lambda _: "ca:new"),
    "RetireOldCa": Rule("ca.rotate", mutates=True, label=_retire_label),
}

REPLICATION = {
    "QuorumStatus": Rule("quorum.read", _group_or_fleet),
    "RestoreQuorum": Rule("quorum.restore", _group_or_fleet, mutates=True),
    "Divergence": Rule("replica.read", _group_or_fleet),
    "JournalLeader": Rule("journal.read", _group_or_fleet),
    "JournalAppend": Rule(
        "journal.append", _group_or_fleet, mutates=True, label=lambda r: f"journal-key:{r.key}"
    ),
}

OPERATOR_RULES: dict[str, Rule] = {
    f"/{PACKAGE}.{service}/{method}": rule
    for service, table in (
        ("Fleet", FLEET),
        ("Rbac", RBAC),
        ("Audit", AUDIT),
        ("Certs", CERTS),
        ("Replication", REPLICATION),
    )
    for method, rule in table.items()
}

"""Who may do what on the agent's local socket: the permission of every local RPC, the
roles a local caller holds, and the decision (pure).

The rule: a local caller is known only by what the kernel says about its connection
(SO_PEERCRED uid/gid/pid and SO_PEERGROUPS, read by agent/local/relay.py) and is allowed
exactly the union of its roles' permissions.

    node operator   root, the agent's own user, or a member of [local].operator_groups:
                    everything (local e-stop, certificate rotation, journal recovery,
                    another caller's permit)
    workload        a member of [local].workload_groups: ask for, watch and release its
                    own permits; read status
    journal writer  a member of [local].journal_append_groups: read and append to the
                    journal (and read status)

A caller in no role is refused everything. "Its own permit" means a permit granted to
the same uid. The socket's file mode is the first fence; this is the second, and the one
that tells roles apart. Every RPC of every local service is in LOCAL_RPCS; a test walks
the served service descriptors so an RPC without an entry fails the suite, and the gate
(agent/local/gate.py) refuses an unmapped RPC at run time.

This module must never read the request to decide who the caller is: a workload can write
anything into a request.
"""

from dataclasses import dataclass
from enum import StrEnum

PACKAGE = "autonomyops.edge.v1"


class Permission(StrEnum):
    STATUS_READ = "local.status.read"
    PERMIT = "local.permit"  # ask for, watch and release the caller's own permits
    PERMIT_ANY = "local.permit.any"  # watch or release another caller's permit
    JOURNAL_READ = "local.journal.read"
    JOURNAL_APPEND = "local.journal.append"
    JOURNAL_RECOVER = "local.journal.recover"
    ESTOP_ENGAGE = "local.estop.engage"
    ESTOP_RELEASE = "local.estop.release"
    CERT_ROTATE = "local.cert.rotate"


class Role(StrEnum):
    OPERATOR = "node operator"
    WORKLOAD = "workload"
    JOURNAL_WRITER = "journal writer"


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.OPERATOR: frozenset(Permission),
    Role.WORKLOAD: frozenset({Permission.STATUS_READ, Permission.PERMIT}),
    Role.JOURNAL_WRITER: frozenset(
        {Permission.STATUS_READ, Permission.JOURNAL_READ, Permission.JOURNAL_APPEND}
    ),
}
ROLE_KEYS = {
    Role.OPERATOR: "[local].operator_groups",
    Role.WORKLOAD: "[local].workload_groups",
    Role.JOURNAL_WRITER: "[local].journal_append_groups",
}

AGENT_LOCAL = {
    "Status": Permission.STATUS_READ,
    "GetEstop": Permission.STATUS_READ,
    "LeaderStatus": Permission.STATUS_READ,
    "WatchLeader": Permission.STATUS_READ,
    "RequestPermit": Permission.PERMIT,
    "WatchPermit": Permission.PERMIT,  # and PERMIT_ANY for another caller's permit
    "ReleasePermit": Permission.PERMIT,  # and PERMIT_ANY for another caller's permit
    "EngageLocalStop": Permission.ESTOP_ENGAGE,
    "ReleaseLocalStop": Permission.ESTOP_RELEASE,
    "RotateCertificate": Permission.CERT_ROTATE,
}
JOURNAL_LOCAL = {
    "ReplicaStatus": Permission.STATUS_READ,
    "Read": Permission.JOURNAL_READ,
    "Append": Permission.JOURNAL_APPEND,
    "AppendStream": Permission.JOURNAL_APPEND,
    "Recover": Permission.JOURNAL_RECOVER,
}
LOCAL_RPCS: dict[str, Permission] = {
    f"/{PACKAGE}.{service}/{method}": permission
    for service, table in (("AgentLocal", AGENT_LOCAL), ("JournalLocal", JOURNAL_LOCAL))
    for method, permission in table.items()
}


@dataclass(frozen=True)
class LocalCaller:
    """One connection to the local socket, as the kernel described its peer at connect."""

    uid: int
    gid: int
    pid: int
    groups: frozenset[int]  # supplementary groups
    user: str  # the uid's name, or "uid N" when it has none
    connection: int  # unique per accepted connection for the agent's lifetime

    def __str__(self) -> str:
        return f"{self.user} (uid {self.uid}, pid {self.pid})"

    @property
    def gids(self) -> frozenset[int]:
        return self.groups | {self.gid}


@dataclass(frozen=True)
class RoleGroups:
    """The groups configured for one role: as written (for messages) and as resolved."""

    names: tuple[str, ...]
    gids: frozenset[int]

    def describe(self) -> str:
        return ", ".join(self.names) if self.names else "none"


@dataclass(frozen=True)
class AccessPolicy:
    agent_uid: int
    agent_user: str
    operators: RoleGroups
    workloads: RoleGroups
    journal_writers: RoleGroups

    def groups_of(self, role: Role) -> RoleGroups:
        return {
            Role.OPERATOR: self.operators,
            Role.WORKLOAD: self.workloads,
            Role.JOURNAL_WRITER: self.journal_writers,
        }[role]


@dataclass(frozen=True)
class AccessDecision:
    allowed: bool
    detail: str  # for a denial: who, what, and which role/group would grant it


def roles_of(caller: LocalCaller, policy: AccessPolicy) -> frozenset[Role]:
    roles = set()
    if caller.uid in (0, policy.agent_uid) or caller.gids & policy.operators.gids:
        roles.add(Role.OPERATOR)
    if caller.gids & policy.workloads.gids:
        roles.add(Role.WORKLOAD)
    if caller.gids & policy.journal_writers.gids:
        roles.add(Role.JOURNAL_WRITER)
    return frozenset(roles)


def granted_by(permission: Permission, policy: AccessPolicy) -> str:
    """Who holds `permission`, in words: the roles and the groups (and config keys) behind them."""
    parts = []
    for role in Role:
        if permission not in ROLE_PERMISSIONS[role]:
            continue
        groups = policy.groups_of(role)
        who = f"groups {groups.describe()}" if groups.names else "no group"
        if role is Role.OPERATOR:
            who = f"root, {policy.agent_user} or {who}"
        parts.append(f"{role.value}s ({who}; {ROLE_KEYS[role]})")
    return " and ".join(parts)


def check(caller: LocalCaller, permission: Permission, policy: AccessPolicy) -> AccessDecision:
    """May `caller` use `permission`? The denial names the caller, the permission and who
    has it, so that the message alone tells an administrator what to change."""
    roles = roles_of(caller, policy)
    if any(permission in ROLE_PERMISSIONS[role] for role in roles):
        return AccessDecision(True, "")
    held = "it is a " + " and ".join(sorted(roles)) if roles else "it has no local role"
    return AccessDecision(
        False,
        f"{caller} may not use {permission.value} on this node's agent ({held}): "
        f"{permission.value} is granted to {granted_by(permission, policy)}",
    )


def owns(caller: LocalCaller, owner_uid: int | None) -> bool:
    """A permit is the caller's own when it was granted to the same uid."""
    return owner_uid is not None and owner_uid == caller.uid

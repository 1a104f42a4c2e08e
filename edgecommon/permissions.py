"""The permission catalogue, the built-in roles, and the checks of the names an operator types.

A permission is named after the action it allows (`estop.engage`). Roles are sets of
permissions; `viewer`, `operator` and `admin` are built in and cannot be changed.

The hub decides with these (hub/rbac/policy.py) and edgectl names them (`rbac permissions`,
`rbac check`), so they live here, where both may import them; the decision itself stays in
the hub. Pure data and pure functions: nothing here reads a file or the clock.
"""

import difflib
from types import MappingProxyType

from edgecommon.errors import InvalidArgument
from edgecommon.scope import Scope, ScopeKind, parse_scope

PERMISSIONS: MappingProxyType[str, str] = MappingProxyType(
    {
        "fleet.read": "see nodes, groups and their state",
        "token.create": "create join tokens for nodes",
        "operator.enroll": "create join tokens for new operators",
        "estop.read": "see emergency stops and who acknowledged them",
        "estop.engage": "engage an emergency stop",
        "estop.release": "release an emergency stop",
        "autonomy.read": "see the autonomy switch",
        "autonomy.set": "turn fleet autonomy on or off",
        "leader.read": "see group leaders, epochs and candidates",
        "leader.resign": "move a group's leadership to another member",
        "leader.pause": "pause or resume automatic failover of a group",
        "journal.read": "read a group's replicated journal",
        "journal.append": "append to a group's replicated journal",
        "quorum.read": "see quorum and sync replicas",
        "quorum.restore": "bring caught-up replicas back into the sync set",
        "replica.read": "see replica positions and divergence",
        "replica.recover": "rewind or resync a diverged replica",
        "cert.read": "see certificates and their expiry",
        "cert.issue": "issue node certificates or bundles",
        "cert.revoke": "revoke node or operator certificates",
        "ca.read": "see the CA and which nodes depend on it",
        "ca.rotate": "create a new CA or retire the old one",
        "rbac.read": "see roles and assignments and check decisions",
        "rbac.admin": "create and delete roles, assign and unassign them",
        "audit.read": "query, export and verify the audit log",
        "audit.prune": "delete old audit events",
    }
)

_READ = frozenset(p for p in PERMISSIONS if p.endswith(".read") and p != "audit.read")
_OPERATE = frozenset(
    {
        "token.create",
        "estop.engage",
        "estop.release",
        "autonomy.set",
        "leader.resign",
        "leader.pause",
        "journal.append",
        "quorum.restore",
        "replica.recover",
        "cert.issue",
    }
)
BUILTIN_ROLES: MappingProxyType[str, frozenset[str]] = MappingProxyType(
    {
        "viewer": _READ,
        "operator": _READ | _OPERATE,
        "admin": frozenset(PERMISSIONS),
    }
)
BUILTIN_DESCRIPTIONS: MappingProxyType[str, str] = MappingProxyType(
    {
        "viewer": "read-only: every *.read permission except the audit log",
        "operator": "viewer plus day-to-day actions: stops, autonomy, leadership, tokens",
        "admin": "every permission, including RBAC, audit, revocation and the CA",
    }
)


def require_permission(name: str) -> str:
    """`name` if it is a permission; otherwise InvalidArgument naming the closest one."""
    if name in PERMISSIONS:
        return name
    close = difflib.get_close_matches(name, PERMISSIONS, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise InvalidArgument(
        f"unknown permission {name!r}{hint}; 'edgectl rbac permissions' lists them"
    )


def assignment_scope(text: str) -> Scope:
    """Assignments are fleet-wide or for one group."""
    scope = parse_scope(text or "fleet")
    if scope.kind is ScopeKind.NODE:
        raise InvalidArgument(
            f"assignment scope {text!r}: roles are assigned fleet-wide or per group (group:G)"
        )
    return scope

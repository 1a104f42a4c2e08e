"""RBAC decisions: pure functions over a frozen policy.

Rule: an operator may do `permission` on a target only if one of their assignments names
a role holding that permission and the assignment's scope covers the target. A fleet
assignment covers everything; a `group:G` assignment covers group G and its nodes, never
the fleet as a whole. Nothing else allows: no assignment, no permission.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from edgecommon.errors import InvalidArgument
from edgecommon.identity import name_problem
from edgecommon.permissions import (
    BUILTIN_DESCRIPTIONS,
    BUILTIN_ROLES,
    assignment_scope,
    require_permission,
)
from edgecommon.scope import Scope, ScopeKind

FLEET = Scope(ScopeKind.FLEET)


@dataclass(frozen=True)
class Role:
    name: str
    permissions: frozenset[str]
    description: str = ""
    builtin: bool = False


@dataclass(frozen=True)
class Assignment:
    operator: str
    role: str
    scope: Scope = FLEET

    def __str__(self) -> str:
        return f"role {self.role} for {self.operator} on {self.scope}"


@dataclass(frozen=True)
class Target:
    """What a request acts on. For a node, `group` is the node's group when it is known."""

    scope: Scope
    group: str = ""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    operator: str
    permission: str
    target: Scope
    reason: str
    assignment: Assignment | None = None


def builtin_roles() -> dict[str, Role]:
    return {
        name: Role(name, perms, BUILTIN_DESCRIPTIONS[name], builtin=True)
        for name, perms in BUILTIN_ROLES.items()
    }


@dataclass(frozen=True)
class Policy:
    roles: Mapping[str, Role] = field(default_factory=lambda: MappingProxyType(builtin_roles()))
    assignments: tuple[Assignment, ...] = ()

    @classmethod
    def build(cls, custom: Iterable[Role], assignments: Iterable[Assignment]) -> "Policy":
        roles = builtin_roles()
        roles.update({r.name: r for r in custom})
        return cls(MappingProxyType(roles), tuple(sorted(assignments, key=_assignment_order)))


def _assignment_order(a: Assignment) -> tuple[str, int, str, str]:
    return (a.operator, 0 if a.scope.kind is ScopeKind.FLEET else 1, a.scope.name, a.role)


def covers(scope: Scope, target: Target) -> bool:
    if scope.kind is ScopeKind.FLEET:
        return True
    if scope.kind is ScopeKind.GROUP:
        if target.scope.kind is ScopeKind.GROUP:
            return target.scope.name == scope.name
        return target.scope.kind is ScopeKind.NODE and target.group == scope.name
    return False


def check(policy: Policy, operator: str, permission: str, target: Target) -> Decision:
    """Allow or deny, and say which assignment decided (or why none did)."""
    mine = [a for a in policy.assignments if a.operator == operator]
    granting = [
        a for a in mine if a.role in policy.roles and permission in policy.roles[a.role].permissions
    ]
    for a in granting:
        if covers(a.scope, target):
            return Decision(True, operator, permission, target.scope, f"allowed by {a}", a)
    if granting:
        where = ", ".join(str(a.scope) for a in granting)
        reason = f"{operator} holds {permission} only on {where}, not on {target.scope}"
    elif mine:
        held = ", ".join(f"{a.role} on {a.scope}" for a in mine)
        reason = f"{operator} has no role granting {permission} (has {held})"
    else:
        reason = f"{operator} has no role assignments"
    return Decision(False, operator, permission, target.scope, reason)


def require_role_name(name: str) -> str:
    if problem := name_problem("role", name):
        raise InvalidArgument(problem)
    return name


def new_role(name: str, permissions: Iterable[str], description: str = "") -> Role:
    """A custom role, validated: a free name, known permissions, at least one."""
    require_role_name(name)
    if name in BUILTIN_ROLES:
        raise InvalidArgument(f"role {name} is built in and cannot be redefined; pick another name")
    perms = frozenset(require_permission(p) for p in permissions)
    if not perms:
        raise InvalidArgument(f"role {name} needs at least one --permission")
    return Role(name, perms, description)


def new_assignment(policy: Policy, operator: str, role: str, scope_text: str) -> Assignment:
    if problem := name_problem("operator", operator):
        raise InvalidArgument(problem)
    if role not in policy.roles:
        raise InvalidArgument(f"unknown role {role!r}; 'edgectl rbac role list' shows the roles")
    return Assignment(operator, role, assignment_scope(scope_text))

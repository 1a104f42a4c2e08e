"""RBAC decisions (pure): the permission matrix of the built-in roles, scoping, reasons,
and a property test of the rule written in hub/rbac/policy.py."""

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgecommon.errors import InvalidArgument
from edgecommon.permissions import (
    BUILTIN_ROLES,
    PERMISSIONS,
    assignment_scope,
    require_permission,
)
from edgecommon.scope import Scope, ScopeKind
from hub.rbac.policy import (
    FLEET,
    Assignment,
    Policy,
    Target,
    check,
    covers,
    new_assignment,
    new_role,
)

GROUP_A = Scope(ScopeKind.GROUP, "site-a")
GROUP_B = Scope(ScopeKind.GROUP, "site-b")
TARGETS = [
    Target(FLEET),
    Target(GROUP_A),
    Target(GROUP_B),
    Target(Scope(ScopeKind.NODE, "n1"), "site-a"),
    Target(Scope(ScopeKind.NODE, "n2"), "site-b"),
    Target(Scope(ScopeKind.NODE, "ghost"), ""),
]


def test_builtin_roles_nest_viewer_in_operator_in_admin() -> None:
    assert BUILTIN_ROLES["viewer"] < BUILTIN_ROLES["operator"] < BUILTIN_ROLES["admin"]
    assert BUILTIN_ROLES["admin"] == frozenset(PERMISSIONS)
    assert all(p.endswith(".read") for p in BUILTIN_ROLES["viewer"])
    assert "audit.read" not in BUILTIN_ROLES["viewer"]
    assert {"rbac.admin", "cert.revoke", "audit.prune"}.isdisjoint(BUILTIN_ROLES["operator"])


@pytest.mark.parametrize(
    ("role", "permission", "target"),
    list(itertools.product(sorted(BUILTIN_ROLES), sorted(PERMISSIONS), range(len(TARGETS)))),
)
def test_permission_matrix_fleet_wide(role: str, permission: str, target: int) -> None:
    policy = Policy.build([], [Assignment("alice", role)])
    decision = check(policy, "alice", permission, TARGETS[target])
    assert decision.allowed == (permission in BUILTIN_ROLES[role])
    if decision.allowed:
        assert decision.assignment == Assignment("alice", role)


@pytest.mark.parametrize(
    ("role", "permission"), list(itertools.product(sorted(BUILTIN_ROLES), sorted(PERMISSIONS)))
)
def test_permission_matrix_group_scoped(role: str, permission: str) -> None:
    policy = Policy.build([], [Assignment("alice", role, GROUP_A)])
    held = permission in BUILTIN_ROLES[role]
    expected = {0: False, 1: held, 2: False, 3: held, 4: False, 5: False}
    for index, target in enumerate(TARGETS):
        assert check(policy, "alice", permission, target).allowed == expected[index], target


def test_no_assignment_denies_with_reason() -> None:
    decision = check(Policy(), "mallory", "estop.engage", Target(FLEET))
    assert not decision.allowed
    assert decision.reason == "mallory has no role assignments"


def test_denial_names_what_the_operator_holds() -> None:
    policy = Policy.build([], [Assignment("bob", "viewer"), Assignment("bob", "operator", GROUP_A)])
    wrong_perm = check(policy, "bob", "rbac.admin", Target(GROUP_A))
    assert "no role granting rbac.admin" in wrong_perm.reason
    assert "viewer on fleet" in wrong_perm.reason
    wrong_scope = check(policy, "bob", "estop.engage", Target(GROUP_B))
    assert wrong_scope.reason == "bob holds estop.engage only on group:site-a, not on group:site-b"


def test_fleet_assignment_decides_before_group_one() -> None:
    policy = Policy.build([], [Assignment("a", "operator", GROUP_A), Assignment("a", "operator")])
    assert check(policy, "a", "estop.engage", Target(GROUP_A)).assignment == Assignment(
        "a", "operator"
    )


def test_custom_role_and_validation() -> None:
    role = new_role("auditor", ["audit.read", "fleet.read"], "reads")
    policy = Policy.build([role], [Assignment("carol", "auditor")])
    assert check(policy, "carol", "audit.read", Target(FLEET)).allowed
    assert not check(policy, "carol", "estop.engage", Target(FLEET)).allowed
    with pytest.raises(InvalidArgument, match=r"did you mean estop\.engage"):
        new_role("x", ["estop.engag"])
    with pytest.raises(InvalidArgument, match="built in"):
        new_role("admin", ["fleet.read"])
    with pytest.raises(InvalidArgument, match="at least one"):
        new_role("empty", [])
    with pytest.raises(InvalidArgument, match="not a valid name"):
        new_role("Bad Name", ["fleet.read"])
    with pytest.raises(InvalidArgument, match="unknown permission"):
        require_permission("everything")


def test_assignment_validation() -> None:
    with pytest.raises(InvalidArgument, match="unknown role"):
        new_assignment(Policy(), "alice", "superuser", "fleet")
    with pytest.raises(InvalidArgument, match="fleet-wide or per group"):
        assignment_scope("node:n1")
    with pytest.raises(InvalidArgument, match="unknown scope"):
        assignment_scope("site-a")
    with pytest.raises(InvalidArgument, match="not a valid name"):
        new_assignment(Policy(), "Alice!", "viewer", "fleet")
    assert new_assignment(Policy(), "alice", "viewer", "").scope == FLEET


names = st.sampled_from(["alice", "bob", "carol"])
roles = st.sampled_from(sorted(BUILTIN_ROLES))
scopes = st.sampled_from([FLEET, GROUP_A, GROUP_B])
assignments = st.builds(Assignment, names, roles, scopes)


@given(
    st.lists(assignments, max_size=8),
    names,
    st.sampled_from(sorted(PERMISSIONS)),
    st.sampled_from(TARGETS),
)
def test_rule_allow_iff_a_granting_assignment_covers_the_target(
    given_assignments: list[Assignment], who: str, permission: str, target: Target
) -> None:
    policy = Policy.build([], given_assignments)
    decision = check(policy, who, permission, target)
    expected = any(
        a.operator == who and permission in BUILTIN_ROLES[a.role] and covers(a.scope, target)
        for a in given_assignments
    )
    assert decision.allowed == expected
    if decision.allowed:
        assert decision.assignment in given_assignments
        assert decision.assignment.operator == who
    else:
        assert decision.assignment is None
        assert decision.reason

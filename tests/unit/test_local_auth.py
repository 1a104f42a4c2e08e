"""Who may do what on the agent's local socket: the decision, exhaustively, and the
permission table against every served local RPC."""

import itertools
import re
from pathlib import Path

import pytest

from agent.config import AgentConfig, LocalSection
from agent.local import api as local_api
from agent.local.auth import (
    LOCAL_RPCS,
    AccessPolicy,
    LocalCaller,
    Permission,
    RoleGroups,
    check,
    owns,
)
from agent.local.gate import resolve_policy
from edgecommon import config as config_loader
from edgecommon.errors import ConfigError
from edgecommon.pb import agent_pb2, replication_pb2

AGENT_UID = 990
OPERATORS, WORKLOADS, WRITERS, OTHER = 1001, 1002, 1003, 1004
POLICY = AccessPolicy(
    agent_uid=AGENT_UID,
    agent_user="edge-agent",
    operators=RoleGroups(("edge-operators",), frozenset({OPERATORS})),
    workloads=RoleGroups(("edge-workloads",), frozenset({WORKLOADS})),
    journal_writers=RoleGroups(("edge-journal",), frozenset({WRITERS})),
)

# Written out independently of agent/local/auth.py: which role holds which permission.
EXPECTED = {
    "local.status.read": {"operator", "workload", "journal"},
    "local.permit": {"operator", "workload"},
    "local.permit.any": {"operator"},
    "local.journal.read": {"operator", "journal"},
    "local.journal.append": {"operator", "journal"},
    "local.journal.recover": {"operator"},
    "local.estop.engage": {"operator"},
    "local.estop.release": {"operator"},
    "local.cert.rotate": {"operator"},
}
GROUP_OF = {"operator": OPERATORS, "workload": WORKLOADS, "journal": WRITERS}


def caller(uid: int = 5000, gid: int = 5000, groups: frozenset[int] = frozenset()) -> LocalCaller:
    return LocalCaller(uid, gid, 4242, groups, "alice", 1)


def test_every_permission_is_in_the_expected_table() -> None:
    assert {p.value for p in Permission} == set(EXPECTED)


ROLE_SETS = [
    frozenset(c)
    for n in range(4)
    for c in itertools.combinations(("operator", "workload", "journal"), n)
]


@pytest.mark.parametrize("roles", ROLE_SETS, ids=lambda r: "+".join(sorted(r)) or "none")
@pytest.mark.parametrize("as_primary", [False, True], ids=["supplementary", "primary"])
def test_each_role_combination_gets_exactly_its_permissions(
    roles: frozenset[str], as_primary: bool
) -> None:
    gids = sorted(GROUP_OF[r] for r in roles)
    if as_primary and gids:
        who = caller(gid=gids[0], groups=frozenset(gids[1:]) | {OTHER})
    else:
        who = caller(groups=frozenset(gids) | {OTHER})
    for permission in Permission:
        decision = check(who, permission, POLICY)
        assert decision.allowed == bool(EXPECTED[permission.value] & roles), permission
        assert decision.allowed == (decision.detail == "")


@pytest.mark.parametrize("uid", [0, AGENT_UID], ids=["root", "agent-user"])
def test_root_and_the_agents_own_user_are_node_operators(uid: int) -> None:
    for permission in Permission:
        assert check(caller(uid=uid, gid=uid), permission, POLICY).allowed


@pytest.mark.parametrize("permission", list(Permission), ids=str)
def test_a_denial_names_the_caller_the_permission_and_who_grants_it(
    permission: Permission,
) -> None:
    decision = check(caller(), permission, POLICY)
    assert not decision.allowed
    assert decision.detail.startswith("alice (uid 5000, pid 4242) may not use " + permission)
    assert "it has no local role" in decision.detail
    assert "root, edge-agent or groups edge-operators; [local].operator_groups" in decision.detail
    grants = EXPECTED[permission.value]
    assert ("edge-workloads; [local].workload_groups" in decision.detail) == ("workload" in grants)
    assert ("edge-journal; [local].journal_append_groups" in decision.detail) == (
        "journal" in grants
    )


def test_a_denial_says_which_role_the_caller_has_and_when_no_group_grants_it() -> None:
    policy = AccessPolicy(
        0, "root", POLICY.operators, POLICY.workloads, RoleGroups((), frozenset())
    )
    decision = check(caller(groups=frozenset({WORKLOADS})), Permission.JOURNAL_APPEND, policy)
    assert "(it is a workload)" in decision.detail
    assert "journal writers (no group; [local].journal_append_groups)" in decision.detail


def test_a_permit_is_its_own_only_for_the_same_uid() -> None:
    assert owns(caller(uid=7), 7)
    assert not owns(caller(uid=7), 8)
    assert not owns(caller(uid=7), None)  # an in-process permit is no local caller's


def test_every_served_local_rpc_has_a_permission() -> None:
    """A local RPC added without a permission fails here (and is refused at run time)."""
    pool = {
        s.full_name: s
        for module in (agent_pb2, replication_pb2)
        for s in module.DESCRIPTOR.services_by_name.values()
    }
    source = Path(local_api.__file__).read_text()
    registered = set(re.findall(r"add_(\w+)Servicer_to_server", source))
    assert {f"autonomyops.edge.v1.{name}" for name in registered} == set(
        local_api.LOCAL_SERVICE_NAMES
    )
    served = {
        f"/{name}/{method.name}"
        for name in local_api.LOCAL_SERVICE_NAMES
        for method in pool[name].methods
    }
    missing = served - LOCAL_RPCS.keys()
    assert not missing, f"local RPCs without a permission: {sorted(missing)}"
    assert set(LOCAL_RPCS) == served, "LOCAL_RPCS names RPCs nobody serves"


def test_groups_resolve_by_name_or_number_and_a_missing_one_grants_nothing() -> None:
    section = LocalSection(
        operator_groups=["root", "47902"],
        workload_groups=["no-such-group-here"],
        journal_append_groups=[],
    )
    policy, problems = resolve_policy(section, agent_uid=990)
    assert policy.operators.gids == {0, 47902}
    assert policy.workloads.gids == frozenset()
    assert policy.workloads.names == ("no-such-group-here (no such group on this host)",)
    assert problems == [
        "[local].workload_groups: group 'no-such-group-here' does not exist on this host; "
        "it grants nothing"
    ]
    assert policy.agent_uid == 990


def test_bad_local_config_is_refused_with_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(
        "[local]\n"
        'operator_groups = ["ops team"]\n'
        'workload_groups = ["-x"]\n'
        "max_permits_per_caller = 0\n"
        "max_permits_total = 2000000\n"
        "max_connections_per_caller = 0\n"
    )
    with pytest.raises(ConfigError) as caught:
        config_loader.load(AgentConfig, path, {})
    text = "\n".join(caught.value.problems)
    for key in (
        "operator_groups",
        "workload_groups",
        "max_permits_per_caller",
        "max_permits_total",
        "max_connections_per_caller",
    ):
        assert f"[local].{key}" in text, key
    assert len(caught.value.problems) == 5


def test_per_caller_permit_cap_may_not_exceed_the_total(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text("[local]\nmax_permits_per_caller = 10\nmax_permits_total = 5\n")
    with pytest.raises(ConfigError, match="max_permits_per_caller must not exceed"):
        config_loader.load(AgentConfig, path, {})


def test_a_socket_path_too_long_for_the_private_sockets_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(f'[agent]\nsocket = "/run/{"x" * 90}.sock"\n')
    with pytest.raises(ConfigError, match="at most 86 characters"):
        config_loader.load(AgentConfig, path, {})


def test_the_default_groups_are_the_ones_systemd_makes_and_the_socket_admits() -> None:
    root = Path(__file__).resolve().parents[2] / "systemd"
    sysusers = (root / "sysusers.d" / "autonomyops-edge.conf").read_text().splitlines()
    made = {line.split()[1] for line in sysusers if line.startswith("g ")}
    defaults = LocalSection()
    assert set(defaults.operator_groups) <= made
    assert set(defaults.workload_groups) <= made
    tmpfiles = (root / "tmpfiles.d" / "autonomyops-edge.conf").read_text().splitlines()
    [socket_dir] = [line.split() for line in tmpfiles if " /run/edge-agent " in f" {line} "]
    # Workloads and operators connect through the socket directory's group.
    assert socket_dir[4] in defaults.workload_groups

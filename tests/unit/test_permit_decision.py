"""The permit decision and stop scopes, exhaustively."""

import itertools

import pytest

from agent.safety.permits import PermitTable, Reason, SafetyFacts, check_request, decide
from agent.safety.runner import HubContact, sync_problem
from edgecommon.errors import InvalidArgument
from edgecommon.scope import Scope, ScopeKind, parse_scope


@pytest.mark.parametrize(
    ("stopped", "fleet", "node"), list(itertools.product([False, True], repeat=3))
)
def test_permit_is_granted_only_when_nothing_says_no(stopped: bool, fleet: bool, node: bool):
    facts = SafetyFacts(("fleet: drill",) if stopped else (), fleet, "f", node, "n")
    decision = decide(facts)
    assert decision.granted == (not stopped and fleet and node)
    if stopped:
        assert decision.reason is Reason.ESTOP
    elif not (fleet and node):
        assert decision.reason is Reason.AUTONOMY_DISABLED
    else:
        assert decision.reason is Reason.GRANTED


@pytest.mark.parametrize(
    ("stopped", "syncing", "fleet", "node"), list(itertools.product([False, True], repeat=4))
)
def test_inv_boot_01_a_syncing_agent_never_grants(
    stopped: bool, syncing: bool, fleet: bool, node: bool
) -> None:
    facts = SafetyFacts(
        ("fleet: drill",) if stopped else (), fleet, "f", node, "n", "waiting" if syncing else ""
    )
    decision = decide(facts)
    assert decision.granted == (not stopped and not syncing and fleet and node)
    if stopped:
        assert decision.reason is Reason.ESTOP
    elif syncing:
        assert decision.reason is Reason.SYNCING


TIMES = (0.0, 0.5, 1.0, 1.5, 10.0, 100.0)


@pytest.mark.parametrize("policy", ["continue", "stop"])
def test_inv_boot_01_sync_rule_exhaustive(policy: str) -> None:
    """Acting is allowed only after hearing the hub (and, with `stop`, not while cut off past
    the hub-loss timeout), or after the startup timeout without any answer from the hub,
    with `continue`."""
    startup, hub_loss = 1.0, 10.0
    for heard, up, since, cut, answer in itertools.product(
        (False, True), (False, True), TIMES, TIMES, TIMES
    ):
        contact = HubContact(heard, up, since, cut, answer)
        problem = sync_problem(contact, policy, startup, hub_loss)
        if heard:
            expected_ok = up or policy == "continue" or cut <= hub_loss
        else:
            # The hub counts as unreachable only while it has not answered at all.
            expected_ok = policy == "continue" and min(since, answer) >= startup
        assert (problem == "") == expected_ok, (contact, problem)
        assert "\n" not in problem


def test_denial_names_where_it_came_from() -> None:
    fleet_off = decide(SafetyFacts((), False, "configmap:/etc/a.yaml", True, "n"))
    assert "fleet-wide (configmap:/etc/a.yaml)" in fleet_off.detail
    node_off = decide(SafetyFacts((), True, "f", False, "default (error reading config)"))
    assert "on this node (default (error reading config))" in node_off.detail


@pytest.mark.parametrize(
    ("action", "units"), [("", 1), ("a b", 1), ("x" * 129, 1), ("ok", -1), ("ok", 1_000_001)]
)
def test_bad_permit_requests_are_refused(action: str, units: int) -> None:
    with pytest.raises(InvalidArgument):
        check_request(action, units)


def test_zero_units_means_one() -> None:
    assert check_request("move_arm", 0) == 1


def test_revoking_tells_every_holder() -> None:
    table = PermitTable()
    held = [table.grant(f"a{i}", 1, "w", 0.0) for i in range(3)]
    why = decide(SafetyFacts(("fleet: x",), True, "", True, ""))
    assert len(table.revoke_all(why)) == 3
    assert len(table) == 0
    assert all(p.revoked.is_set() and p.revoke_reason == why for p in held)


@pytest.mark.parametrize(
    ("text", "scope"),
    [
        ("fleet", Scope(ScopeKind.FLEET)),
        ("group:site-a", Scope(ScopeKind.GROUP, "site-a")),
        ("node:n1", Scope(ScopeKind.NODE, "n1")),
    ],
)
def test_scopes_parse_and_print_back(text: str, scope: Scope) -> None:
    assert parse_scope(text) == scope
    assert str(scope) == text


@pytest.mark.parametrize("text", ["", "all", "group:", "node:", "site:a", "group:A", "fleet:x"])
def test_unknown_scopes_are_refused(text: str) -> None:
    with pytest.raises(InvalidArgument, match="scope"):
        parse_scope(text)


def test_scope_applies_exactly_to_its_targets() -> None:
    nodes = [("n1", "a"), ("n2", "a"), ("n3", "b")]
    for text, expected in [
        ("fleet", {"n1", "n2", "n3"}),
        ("group:a", {"n1", "n2"}),
        ("node:n3", {"n3"}),
        ("group:c", set()),
    ]:
        scope = parse_scope(text)
        assert {n for n, g in nodes if scope.applies_to(n, g)} == expected

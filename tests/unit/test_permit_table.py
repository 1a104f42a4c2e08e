"""The permit table is bounded per local user and in total, and forgets a connection's
permits when it closes: checked over random histories."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.safety.permits import Decision, PermitLimits, PermitOwner, PermitTable, Reason
from edgecommon.errors import Overloaded

LIMITS = PermitLimits(per_caller=3, total=5)
UIDS = (1000, 1001, 1002)
CONNECTIONS = (1, 2, 3, 4)


def owner(uid: int, connection: int) -> PermitOwner:
    return PermitOwner(uid, f"user{uid}", connection)


def test_a_grant_beyond_the_per_caller_cap_names_the_cap_and_holds_nothing() -> None:
    table = PermitTable(LIMITS)
    for _ in range(3):
        table.grant("a", 1, "w", 0.0, owner=owner(1000, 1))
    with pytest.raises(Overloaded) as caught:
        table.grant("a", 1, "w", 0.0, owner=owner(1000, 2))
    assert "[local].max_permits_per_caller = 3" in str(caught.value)
    assert "user1000 (uid 1000) already holds 3 permits" in str(caught.value)
    assert len(table) == 3
    table.grant("a", 1, "w", 0.0, owner=owner(1001, 3))  # another user is not affected


def test_a_grant_beyond_the_total_cap_names_the_cap() -> None:
    table = PermitTable(LIMITS)
    for uid in (1000, 1000, 1001, 1001, 1002):
        table.grant("a", 1, "w", 0.0, owner=owner(uid, 1))
    with pytest.raises(Overloaded, match=r"\[local\].max_permits_total = 5"):
        table.grant("a", 1, "w", 0.0, owner=owner(1002, 1))
    with pytest.raises(Overloaded, match="max_permits_total"):
        table.grant("a", 1, "w", 0.0)  # in-process grants count toward the total too


def test_a_closed_connection_revokes_only_its_own_permits_and_says_why() -> None:
    table = PermitTable(LIMITS)
    mine = [table.grant("a", 1, "w", 0.0, owner=owner(1000, 1)) for _ in range(2)]
    other = table.grant("a", 1, "w", 0.0, owner=owner(1000, 2))
    unowned = table.grant("a", 1, "w", 0.0)
    gone = table.release_connection(1)
    assert gone == mine
    assert all(p.revoked.is_set() and p.revoke_reason is not None for p in mine)
    assert all(p.revoke_reason.reason is Reason.HOLDER_GONE for p in mine)  # type: ignore[union-attr]
    assert table.get(other.permit_id) is other
    assert table.get(unowned.permit_id) is unowned
    assert table.held_by(1000) == 1


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("grant"), st.sampled_from(UIDS), st.sampled_from(CONNECTIONS)),
        st.tuples(st.just("release"), st.integers(0, 20), st.just(0)),
        st.tuples(st.just("close"), st.sampled_from(CONNECTIONS), st.just(0)),
        st.tuples(st.just("revoke"), st.booleans(), st.just(0)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(OPS)
def test_the_caps_hold_and_counts_stay_exact_over_any_history(ops: list[tuple]) -> None:
    table = PermitTable(LIMITS)
    granted = []
    model: dict[str, tuple[int, int]] = {}  # permit id -> (uid, connection), what should be held
    for op, a, b in ops:
        if op == "grant":
            per_uid = sum(1 for uid, _ in model.values() if uid == a)
            if per_uid >= LIMITS.per_caller or len(model) >= LIMITS.total:
                with pytest.raises(Overloaded):
                    table.grant("a", 1, "w", 0.0, epoch=b % 2, owner=owner(a, b))
                continue
            permit = table.grant("a", 1, "w", 0.0, epoch=b % 2, owner=owner(a, b))
            granted.append(permit)
            model[permit.permit_id] = (a, b)
        elif op == "release" and granted:
            permit = granted[a % len(granted)]
            assert table.release(permit.permit_id) == (permit.permit_id in model)
            model.pop(permit.permit_id, None)
        elif op == "close":
            table.release_connection(a)
            model = {k: v for k, v in model.items() if v[1] != a}
        elif op == "revoke":
            table.revoke_all(Decision(False, Reason.ESTOP, "x"), leader_only=a)
            model = {k: v for k, v in model.items() if a and not table_epoch(granted, k)}
        assert len(table) == len(model) <= LIMITS.total
        for uid in UIDS:
            held = sum(1 for u, _ in model.values() if u == uid)
            assert table.held_by(uid) == held <= LIMITS.per_caller
        assert {p.permit_id for p in granted if table.get(p.permit_id)} == set(model)


def table_epoch(granted: list, permit_id: str) -> int:
    return next(p.epoch for p in granted if p.permit_id == permit_id)

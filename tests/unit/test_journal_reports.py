"""The hub's screening of journal reports (pure): what is impossible is refused, an honest
node is never refused, and one key cannot make every candidate look behind."""

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from hub.journal.quorum import GroupFacts, MemberFacts, ineligible_because, unhealthy_because
from hub.journal.reports import Position, Refusal, adoptable_commit, judge

BIG = 2**62


def test_a_commit_index_beyond_the_own_journal_is_refused() -> None:
    verdict = judge(Position(3, epoch=2, commit_index=3), Position(3, epoch=2, commit_index=BIG))
    assert verdict is not None
    assert verdict.refusal is Refusal.COMMIT_BEYOND_JOURNAL
    assert str(BIG) in verdict.detail
    assert judge(None, Position(0, epoch=2, commit_index=BIG)) is not None  # first report too


def test_a_replica_reported_durable_beyond_the_leaders_journal_is_refused() -> None:
    verdict = judge(None, Position(5, epoch=1, commit_index=5, replicas=(("b", 5), ("c", 6))))
    assert verdict is not None
    assert verdict.refusal is Refusal.REPLICA_BEYOND_JOURNAL
    assert "replica c" in verdict.detail


def test_a_journal_moves_back_only_with_a_recorded_rewind() -> None:
    before = Position(10, rewinds=1)
    back = judge(before, Position(7, rewinds=1))
    assert back is not None
    assert back.refusal is Refusal.JOURNAL_BACKWARDS
    assert "from 10 to 7" in back.detail
    assert judge(before, Position(7, rewinds=2)) is None  # rewound (recorded in journal.db)
    assert judge(before, Position(12, rewinds=1)) is None
    assert judge(before, Position(7, rewinds=0)) is not None  # a count going back is no record


def test_a_commit_index_moves_back_only_with_a_new_epoch() -> None:
    before = Position(10, epoch=4, commit_index=9)
    within = judge(before, Position(10, epoch=4, commit_index=8))
    assert within is not None
    assert within.refusal is Refusal.COMMIT_BACKWARDS
    assert judge(before, Position(10, epoch=5, commit_index=8)) is None
    assert judge(before, Position(10)) is None  # no longer leading: reports no commit index


@st.composite
def honest_histories(draw):  # type: ignore[no-untyped-def]
    """Reports of one honest node over time: it appends or pulls; as a replica it sometimes
    rewinds (and records it); it leads now and then, its commit index within its journal
    and never back within an epoch, its view of replicas never ahead of itself."""
    reports, last, rewinds, epoch, commit = [], 0, 0, 0, 0
    for op in draw(st.lists(st.sampled_from(("grow", "rewind", "lead", "follow")), max_size=30)):
        if op == "grow":
            last += draw(st.integers(0, 50))
            if epoch:
                commit = draw(st.integers(commit, last))
        elif op == "rewind" and last and not epoch:
            last -= draw(st.integers(1, last))
            rewinds += 1
        elif op == "lead":
            epoch += draw(st.integers(1, 3))
            commit = (
                last  # a new leadership counts its whole journal (agent/journal/replication.py)
            )
        elif op == "follow":
            epoch, commit = 0, 0
        replicas = tuple((f"r{i}", draw(st.integers(0, last))) for i in range(2)) if epoch else ()
        reports.append(Position(last, rewinds, epoch, commit, replicas))
    return reports


@settings(max_examples=500, deadline=None)
@given(honest_histories())
def test_an_honest_node_is_never_refused(history) -> None:  # type: ignore[no-untyped-def]
    before = None
    for report in history:
        assert judge(before, report) is None, (before, report)
        before = report


def test_exhaustive_small_reports_refused_exactly_when_impossible() -> None:
    values = range(4)
    for last, commit, replica, prev_last, rewound in itertools.product(
        values, values, values, values, (False, True)
    ):
        before = Position(prev_last, rewinds=1)
        now = Position(last, 1 + rewound, 1, commit, (("b", replica),))
        impossible = commit > last or replica > last or (last < prev_last and not rewound)
        assert (judge(before, now) is not None) == impossible


@settings(max_examples=500, deadline=None)
@given(
    st.integers(0, 2**64 - 1),
    st.lists(st.integers(0, 10_000), min_size=1, max_size=4),
    st.integers(1, 3),
)
def test_inv_repl_01_one_leader_key_cannot_stop_failover(claimed, holders, min_sync) -> None:  # type: ignore[no-untyped-def]
    """Whatever commit index a leader claims, the hub adopts at most what a sync member
    holds: the member holding the most stays eligible once the leader is gone."""
    adopted = adoptable_commit(claimed, min_sync, holders)
    assert adopted <= claimed
    assert adopted <= max(holders)
    names = [f"n{i}" for i in range(len(holders))]
    g = GroupFacts(
        "g",
        "",
        2,
        adopted,
        tuple(MemberFacts(n, True, last) for n, last in zip(names, holders, strict=True)),
        tuple(names),
        (),
        min_sync,
    )
    best = names[holders.index(max(holders))]
    assert ineligible_because(g, best) is None


def test_async_mode_and_an_empty_sync_set_take_the_leaders_word() -> None:
    assert adoptable_commit(9, 0, [3]) == 9
    assert adoptable_commit(9, 1, []) == 9
    assert adoptable_commit(9, 1, [3, 12]) == 9
    assert adoptable_commit(9, 1, [3, 5]) == 5


def test_a_bad_peer_may_not_take_over_and_is_not_healthy() -> None:
    m = MemberFacts("b", True, 5, last_pull_mono=1.0, lag_entries=0, refused="commit index ...")
    g = GroupFacts("g", "a", 1, 5, (MemberFacts("a", True, 5), m), ("b",))
    assert "bad peer" in (ineligible_because(g, "b") or "")
    assert "bad peer" in (unhealthy_because(g, m, 1.0) or "")

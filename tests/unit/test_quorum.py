"""Quorum decisions (pure): sync set planning, restore, eligibility, and INV-REPL-01 over
random histories of appends, pulls, crashes, restores and failovers."""

import itertools

from hypothesis import example, given, settings
from hypothesis import strategies as st

from agent.journal.sync_rule import (
    SyncView,
    append_refusal,
    confirmed_members,
    missing,
    must_confirm,
)
from hub.journal.quorum import (
    GroupFacts,
    MemberFacts,
    confirm,
    evaluate_quorum,
    ineligible_because,
    plan_restore,
    plan_sync_set,
    with_sync,
)
from hub.journal.reports import adoptable_commit

NODES = ("a", "b", "c", "d")
NOW = 100.0


def member(node: str, online: bool = True, pulled: float | None = NOW, lag: int = 0, **kw):  # type: ignore[no-untyped-def]
    return MemberFacts(node, online, last_pull_mono=pulled, lag_entries=lag, **kw)


def facts(members, sync=(), joining=(), min_sync=1, strict=True, leader="a", commit=0):  # type: ignore[no-untyped-def]
    return GroupFacts("g", leader, 3, commit, tuple(members), sync, joining, min_sync, strict)


KINDS = {
    "healthy": {},
    "offline": {"online": False},
    "silent": {"pulled": NOW - 10},
    "behind": {"lag": 5000},
    "diverged": {"diverged_at": 7},
}


def all_groups():  # type: ignore[no-untyped-def]
    """Every combination of replica conditions and sync-set membership for 3 replicas."""
    for kinds in itertools.product(KINDS, repeat=3):
        members = [member("a")] + [
            member(n, **KINDS[k]) for n, k in zip(NODES[1:], kinds, strict=True)
        ]
        for roles in itertools.product(("sync", "joining", "async"), repeat=3):
            sync = tuple(n for n, r in zip(NODES[1:], roles, strict=True) if r == "sync")
            joining = tuple(n for n, r in zip(NODES[1:], roles, strict=True) if r == "joining")
            for min_sync, strict in itertools.product((0, 1, 2), (True, False)):
                yield facts(members, sync, joining, min_sync, strict), kinds


def test_exhaustive_sync_set_rules() -> None:
    for g, kinds in all_groups():
        state = dict(zip(NODES[1:], kinds, strict=True))
        planned = plan_sync_set(g, NOW)
        together = planned.sync_set + planned.joining
        assert "a" not in together
        assert len(set(together)) == len(together)
        assert planned.sync_set == tuple(n for n in g.sync_set if n in planned.sync_set)
        if g.min_sync and g.strict:
            assert set(g.sync_set) <= set(planned.sync_set)  # a lost member keeps its place
        for n in set(together) - set(g.sync_set + g.joining):
            assert state[n] == "healthy"  # only healthy, caught-up replicas are added
        restore = plan_restore(g, NOW)
        if not restore.blocked:
            kept = restore.result.sync_set + restore.result.joining
            assert all(state[n] in ("healthy", "behind") for n in kept)  # lag is not loss
            assert all(state[n] == "healthy" for n in restore.added)
            assert len(kept) >= g.min_sync
            assert set(restore.result.sync_set) <= set(g.sync_set)
        else:
            assert restore.result.sync_set == g.sync_set
        report = evaluate_quorum(g, NOW)
        if report.met and g.min_sync:
            members = g.sync_set + g.joining
            assert len(members) >= g.min_sync
            assert all(state[n] in ("healthy", "behind") for n in members)
        for n in NODES[1:]:
            if ineligible_because(g, n) is None:
                assert state[n] != "diverged"
                if g.min_sync and g.sync_set:
                    assert n in g.sync_set


def test_confirm_moves_only_confirmed_joining_members() -> None:
    g = facts([member("a"), member("b"), member("c")], sync=("b",), joining=("c", "d"))
    moved = confirm(g, ("c", "x"))
    assert moved.sync_set == ("b", "c")
    assert moved.joining == ("d",)


def test_restore_says_what_blocks_it() -> None:
    g = facts(
        [member("a"), member("b", online=False), member("c", lag=5000), member("d", online=False)],
        sync=("b",),
    )
    plan = plan_restore(g, NOW)
    assert plan.blocked
    assert "b: offline" in plan.detail
    assert "c: 5000 entries behind" in plan.detail


def test_a_node_behind_the_commit_index_is_not_eligible() -> None:
    g = facts([member("a"), member("b", last_index=4)], sync=("b",), commit=9)
    why = ineligible_because(g, "b")
    assert why is not None
    assert "4, 9 are committed" in why


def test_the_holder_of_the_latest_epoch_stays_eligible_outside_the_sync_set() -> None:
    """Its lease lapsed while its only sync replica is down: it alone may take it back."""
    members = [member("a", last_index=9), member("b", online=False, last_index=9), member("c")]
    lapsed = GroupFacts("g", "", 3, 9, tuple(members), ("b",), epoch_holder="a")
    assert ineligible_because(lapsed, "a") is None
    assert "not in the sync set" in (ineligible_because(lapsed, "c") or "")
    unknown = GroupFacts("g", "", 3, 9, tuple(members), ("b",))
    assert "not in the sync set" in (ineligible_because(unknown, "a") or "")
    # Still refused when it lacks committed entries (its state was lost) or diverged.
    wiped = GroupFacts("g", "", 3, 9, (member("a", last_index=2),), ("b",), epoch_holder="a")
    assert "2, 9 are committed" in (ineligible_because(wiped, "a") or "")
    bent = GroupFacts("g", "", 3, 9, (member("a", diverged_at=4),), ("b",), epoch_holder="a")
    assert "diverged" in (ineligible_because(bent, "a") or "")


OPS = ("append", "pull", "step", "failover", "lapse", "crash", "revive", "restore", "tick")
MODEL_NODES = ("a", "b", "c")


@settings(max_examples=1500, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(OPS), st.sampled_from(MODEL_NODES)), max_size=40),
    st.sampled_from((1, 2)),
)
# The hub learns positions and the commit index late: only the sync set protects this one.
@example(
    [
        ("pull", "b"),
        ("step", "a"),
        ("pull", "b"),
        ("step", "a"),
        ("append", "a"),
        ("pull", "b"),
        ("failover", "c"),
    ],
    1,
)
# An entry confirmed only by a joining member while the sync set is still empty.
@example(
    [("pull", "c"), ("step", "a"), ("append", "a"), ("pull", "c"), ("failover", "a")],
    1,
)
def test_inv_repl_01_no_failover_loses_an_acknowledged_entry(ops, min_sync) -> None:  # type: ignore[no-untyped-def]
    length = dict.fromkeys(MODEL_NODES, 0)
    online = dict.fromkeys(MODEL_NODES, True)
    pulled: dict[str, float] = {}
    leader, epoch, now = "a", 1, 0.0
    sync: tuple[str, ...] = ()
    joining: tuple[str, ...] = ()
    commit = acked = base = 0  # base: the leader's last entry when its leadership began
    pending: list[tuple[int, tuple[str, ...]]] = []
    # What the hub knows comes in heartbeats: positions and the commit index lag behind.
    seen = dict(length)
    hub_commit = 0
    in_use = False

    def group(current: str | None = None) -> GroupFacts:
        """What the hub knows; `current` is who holds a valid lease (the leader by default,
        "" when its lease lapsed)."""
        ms = [
            MemberFacts(
                n,
                online[n],
                seen[n],
                pulled.get(n),
                max(0, seen[leader] - seen[n]),
                None,
            )
            for n in MODEL_NODES
        ]
        return GroupFacts(
            "g",
            leader if current is None else current,
            epoch,
            hub_commit,
            tuple(ms),
            sync,
            joining,
            min_sync,
            True,
            journal_in_use=in_use,
            epoch_holder=leader,
        )

    def leader_view() -> SyncView:
        ages = {n: now - t for n, t in pulled.items()}
        return SyncView(leader, "g", epoch, epoch, sync + joining, min_sync, True, ages, 3.0)

    for op, node in ops:
        now += 2.0 if op == "tick" else 0.1
        if op == "append" and leader and online[leader]:
            v = leader_view()
            if append_refusal(v) is None:
                length[leader] += 1
                pending.append((length[leader], must_confirm(v)))
        elif op == "pull" and leader and online[node] and online[leader] and node != leader:
            length[node] = length[leader]
            pulled[node] = now
        elif op == "step" and leader and online[leader]:
            seen = dict(length)
            # The hub adopts the commit index only as far as another holder reports holding.
            holders_seen = [seen[n] for n in sync + joining if n != leader]
            hub_commit = max(hub_commit, adoptable_commit(commit, min_sync, holders_seen))
            in_use = in_use or any(seen.values())
            g = group()
            # The leader confirms members only once an entry of its own leadership committed.
            confirmed = confirmed_members(sync + joining, commit, length) if commit > base else ()
            s = plan_sync_set(with_sync(g, confirm(g, confirmed)), now)
            sync, joining = s.sync_set, s.joining
        elif op == "restore" and leader:
            r = plan_restore(group(), now)
            if not r.blocked:
                sync, joining = r.result.sync_set, r.result.joining
        elif op == "crash":
            online[node] = False
            pulled.pop(node, None)
        elif op == "revive":
            online[node] = True
        elif op in ("failover", "lapse") and leader:
            # failover: the leader is gone. lapse: its lease ran out while it stayed up (a
            # stall); any eligible node may win, itself included.
            if op == "failover":
                online[leader] = False
            pending.clear()
            # Survivors report before the lease can expire (the hub's timing rule).
            seen.update({n: length[n] for n in MODEL_NODES if online[n]})
            in_use = in_use or any(seen.values())
            g = group(current="")
            eligible = [n for n in MODEL_NODES if online[n] and ineligible_because(g, n) is None]
            if not eligible:
                continue
            # Positions the hub sees are stale: any eligible node may win, not only the longest.
            leader = node if node in eligible else eligible[0]
            holders = [n for n in MODEL_NODES if online[n] and length[n] >= acked]
            # The one documented exception (hub/journal/quorum.py): the leader and every holder fail
            # within a heartbeat of the journal's first commit, before the hub heard of it.
            if in_use or holders:
                assert length[leader] >= acked, (leader, length, acked, sync)
            epoch += 1
            base = length[leader]
            commit = max(commit, base)
            pulled.clear()
            for n in MODEL_NODES:
                length[n] = min(length[n], length[leader])  # rewound: never acknowledged
        still = []
        for index, must in pending:
            if missing(index, must, length):
                still.append((index, must))
            else:
                acked = max(acked, index)
                commit = max(commit, index)
        pending = still

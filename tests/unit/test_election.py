"""The lease decision: who may lead, and INV-LEASE-01 over random histories."""

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from hub.election import (
    Candidate,
    GroupState,
    Lease,
    Switchover,
    Verdict,
    best_candidate,
    decide,
    released,
)

TTL = 10.0
MARGIN = 0.5
NODES = ("n1", "n2", "n3")
NO_LEASE = Lease("", 0, 0.0)


def members(**overrides: dict) -> tuple[Candidate, ...]:
    return tuple(
        Candidate(n, **{"online": True, "stopped": False, "healthy": True, **overrides.get(n, {})})
        for n in NODES
    )


def test_first_leader_is_the_best_candidate() -> None:
    state = GroupState(NO_LEASE, members())
    assert decide(state, "n2", 0, 0.0, TTL).verdict is Verdict.DENIED
    granted = decide(state, "n1", 0, 0.0, TTL)
    assert granted.verdict is Verdict.GRANTED
    assert granted.lease == Lease("n1", 1, TTL)


@given(
    flags=st.lists(
        st.tuples(st.booleans(), st.booleans(), st.booleans(), st.integers(0, 3)),
        min_size=3,
        max_size=3,
    )
)
def test_best_candidate_is_eligible_furthest_then_smallest_id(flags) -> None:
    candidates = tuple(
        Candidate(n, online, stopped, healthy, pos)
        for n, (online, stopped, healthy, pos) in zip(NODES, flags, strict=True)
    )
    best = best_candidate(candidates)
    eligible = [c for c in candidates if c.online and not c.stopped and c.healthy]
    if not eligible:
        assert best is None
        return
    assert best in eligible
    assert all(
        (best.position, -ord(best.node_id[-1])) >= (c.position, -ord(c.node_id[-1]))
        for c in eligible
    )


def test_holder_renews_and_others_are_told_who_leads() -> None:
    state = GroupState(Lease("n1", 4, 10.0), members())
    assert decide(state, "n1", 4, 5.0, TTL).lease == Lease("n1", 4, 15.0)
    denied = decide(state, "n2", 0, 5.0, TTL)
    assert denied.verdict is Verdict.DENIED
    assert "n1 leads at epoch 4" in denied.reason


def test_expired_lease_goes_to_the_best_candidate_with_the_next_epoch() -> None:
    state = GroupState(Lease("n1", 4, 10.0), members(n1={"online": False}))
    assert decide(state, "n1", 4, 10.0, TTL).verdict is Verdict.DENIED
    granted = decide(state, "n2", 0, 10.0, TTL)
    assert granted.lease == Lease("n2", 5, 20.0)


def test_paused_group_does_not_fail_over_but_the_holder_renews() -> None:
    state = GroupState(Lease("n1", 4, 10.0), members(), paused=True)
    assert decide(state, "n1", 4, 9.0, TTL).verdict is Verdict.RENEWED
    assert "paused" in decide(state, "n2", 0, 11.0, TTL).reason


def test_switchover_tells_the_holder_to_step_down_then_grants_the_target() -> None:
    state = GroupState(Lease("n1", 4, 10.0), members(), switchover=Switchover("n3"))
    assert decide(state, "n1", 4, 5.0, TTL).verdict is Verdict.STEP_DOWN
    assert decide(state, "n3", 0, 5.0, TTL).verdict is Verdict.DENIED
    after = GroupState(released(state.lease), members(), switchover=Switchover("n3", True))
    assert decide(after, "n2", 0, 5.0, TTL).verdict is Verdict.DENIED
    assert decide(after, "n3", 0, 5.0, TTL).lease == Lease("n3", 5, 15.0)


def test_ineligible_nodes_are_never_granted() -> None:
    for node, flags in itertools.product(
        NODES, ({"online": False}, {"stopped": True}, {"healthy": False})
    ):
        state = GroupState(NO_LEASE, members(**{node: flags}))
        assert decide(state, node, 0, 0.0, TTL).verdict is Verdict.DENIED


requests = st.lists(
    st.tuples(
        st.sampled_from(NODES),  # who asks
        st.floats(0.0, 6.0),  # hub time passing before the request arrives
        st.floats(0.0, 2.0),  # how long the request was in flight
        st.sampled_from(["renew", "renew", "renew", "crash", "flap", "switchover", "release"]),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(history=requests)
def test_inv_lease_01_no_two_nodes_believe_they_lead_at_once(history) -> None:
    """Model agents that believe in a lease until send_time + ttl - margin (their clock
    runs like the hub's here) and check that beliefs never overlap and epochs only grow."""
    lease, now = NO_LEASE, 0.0
    online = dict.fromkeys(NODES, True)
    switchover: Switchover | None = None
    beliefs: list[tuple[str, int, float, float]] = []  # node, epoch, from, until
    last_epoch = 0
    for node, gap, flight, event in history:
        now += gap
        if event == "crash":
            online[node] = False
            continue
        if event == "flap":
            online[node] = True
            continue
        if event == "switchover":
            target = [n for n in NODES if n != lease.holder and online[n]]
            switchover = Switchover(target[0]) if target and lease.valid(now) else None
            continue
        if event == "release" and lease.holder == node and switchover is not None:
            # The holder confirmed it stepped down: it stopped believing when it sent this.
            beliefs = [
                (n, e, f, min(u, now - flight) if n == node else u) for n, e, f, u in beliefs
            ]
            lease = released(lease)
            continue
        if not online[node]:
            continue
        state = GroupState(
            lease, tuple(Candidate(n, online[n], False, True) for n in NODES), switchover=switchover
        )
        decision = decide(state, node, 0, now, TTL)
        sent = now - flight
        if decision.verdict in (Verdict.GRANTED, Verdict.RENEWED):
            assert decision.lease.epoch >= last_epoch
            if decision.verdict is Verdict.GRANTED:
                assert decision.lease.epoch == last_epoch + 1
                switchover = None
            last_epoch = decision.lease.epoch
            beliefs.append((node, decision.lease.epoch, now, sent + TTL - MARGIN))
        lease = decision.lease
    for (n1, e1, f1, u1), (n2, e2, f2, u2) in itertools.combinations(beliefs, 2):
        if n1 != n2 and f1 < u1 and f2 < u2:
            assert u1 <= f2 or u2 <= f1, f"{n1}@{e1} [{f1},{u1}) overlaps {n2}@{e2} [{f2},{u2})"
        if n1 == n2 and e1 != e2:
            continue
        if n1 != n2:
            assert e1 != e2

"""The lease decision: who may lead, and INV-LEASE-01 over random histories.

The models below play agents the way agent/leases/keeper.py behaves: one call at a time, an
answer taken up only within the call's deadline, belief until send time + ttl - margin,
each request saying how long it still believes and whether its previous answer was late.
"""

import heapq
import itertools
import math
from dataclasses import dataclass, field

from hypothesis import example, given, settings
from hypothesis import strategies as st

from hub.leases.election import (
    Candidate,
    Decision,
    GroupState,
    Lease,
    Request,
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


def ask(node: str, epoch: int, arrived: float, **more: float | None) -> Request:
    return Request(node, epoch, arrived, **more)  # type: ignore[arg-type]


def members(**overrides: dict) -> tuple[Candidate, ...]:
    return tuple(
        Candidate(n, **{"online": True, "stopped": False, "healthy": True, **overrides.get(n, {})})
        for n in NODES
    )


def test_first_leader_is_the_best_candidate() -> None:
    state = GroupState(NO_LEASE, members())
    assert decide(state, ask("n2", 0, 0.0), 0.0, TTL).verdict is Verdict.DENIED
    granted = decide(state, ask("n1", 0, 0.0), 0.0, TTL)
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
    assert decide(state, ask("n1", 4, 5.0), 5.0, TTL).lease == Lease("n1", 4, 15.0)
    denied = decide(state, ask("n2", 0, 5.0), 5.0, TTL)
    assert denied.verdict is Verdict.DENIED
    assert "n1 leads at epoch 4" in denied.reason


def test_expired_lease_goes_to_the_best_candidate_with_the_next_epoch() -> None:
    state = GroupState(Lease("n1", 4, 10.0), members(n1={"online": False}))
    assert decide(state, ask("n1", 4, 10.0), 10.0, TTL).verdict is Verdict.DENIED
    granted = decide(state, ask("n2", 0, 10.0), 10.0, TTL)
    assert granted.lease == Lease("n2", 5, 20.0)


def test_paused_group_does_not_fail_over_but_the_holder_renews() -> None:
    state = GroupState(Lease("n1", 4, 10.0), members(), paused=True)
    assert decide(state, ask("n1", 4, 9.0), 9.0, TTL).verdict is Verdict.RENEWED
    assert "paused" in decide(state, ask("n2", 0, 11.0), 11.0, TTL).reason


def test_switchover_tells_the_holder_to_step_down_then_grants_the_target() -> None:
    state = GroupState(Lease("n1", 4, 10.0), members(), switchover=Switchover("n3"))
    assert decide(state, ask("n1", 4, 5.0), 5.0, TTL).verdict is Verdict.STEP_DOWN
    assert decide(state, ask("n3", 0, 5.0), 5.0, TTL).verdict is Verdict.DENIED
    after = GroupState(released(state.lease), members(), switchover=Switchover("n3", True))
    assert decide(after, ask("n2", 0, 5.0), 5.0, TTL).verdict is Verdict.DENIED
    assert decide(after, ask("n3", 0, 5.0), 5.0, TTL).lease == Lease("n3", 5, 15.0)


def test_ineligible_nodes_are_never_granted() -> None:
    for node, flags in itertools.product(
        NODES, ({"online": False}, {"stopped": True}, {"healthy": False})
    ):
        state = GroupState(NO_LEASE, members(**{node: flags}))
        assert decide(state, ask(node, 0, 0.0), 0.0, TTL).verdict is Verdict.DENIED


def test_a_holder_whose_last_answer_came_late_is_not_renewed_and_keeps_only_its_belief() -> None:
    state = GroupState(Lease("n1", 4, 14.0), members(n1={"renewal_block": "late"}))
    decision = decide(state, ask("n1", 4, 5.0, believed_for=3.0), 5.0, TTL)
    assert decision.verdict is Verdict.LATE
    assert decision.lease == Lease("n1", 4, 8.0)
    # A holder that believes in nothing any more leaves the lease free at once.
    gone = decide(state, ask("n1", 0, 5.0, believed_for=0.0), 5.0, TTL)
    assert gone.verdict is Verdict.LATE
    assert not gone.lease.valid(5.0)
    # One that does not say how long it believes (an older agent) keeps it to its expiry.
    assert decide(state, ask("n1", 4, 5.0), 5.0, TTL).lease == state.lease


def test_a_renewal_past_its_deadline_is_not_counted_and_the_lease_is_kept_as_believed() -> None:
    state = GroupState(Lease("n1", 4, 14.0), members())
    decision = decide(state, ask("n1", 4, 5.0, believed_for=6.0, deadline=6.0), 6.0, TTL)
    assert decision.verdict is Verdict.LATE
    assert decision.lease == Lease("n1", 4, 11.0)
    assert "deadline" in decision.reason
    free = GroupState(NO_LEASE, members())
    denied = decide(free, ask("n1", 0, 5.0, deadline=5.5), 6.0, TTL)
    assert denied.verdict is Verdict.DENIED
    assert denied.lease == NO_LEASE


def test_a_late_member_is_not_granted_and_the_next_best_is() -> None:
    state = GroupState(Lease("n1", 4, 8.0), members(n1={"renewal_block": "late"}))
    assert decide(state, ask("n1", 0, 9.0), 9.0, TTL).verdict is Verdict.DENIED
    assert decide(state, ask("n2", 0, 9.0), 9.0, TTL).lease == Lease("n2", 5, 19.0)
    assert best_candidate(state.candidates).node_id == "n2"


leases = st.builds(Lease, st.sampled_from(("", *NODES)), st.integers(0, 3), st.floats(0.0, 20.0))
candidate_sets = st.tuples(
    *(
        st.builds(
            Candidate,
            st.just(n),
            st.booleans(),
            st.booleans(),
            st.booleans(),
            st.integers(0, 2),
            st.sampled_from(("", "behind")),
            st.sampled_from(("", "late")),
        )
        for n in NODES
    )
)
group_states = st.builds(
    GroupState,
    leases,
    candidate_sets,
    st.booleans(),
    st.none() | st.builds(Switchover, st.sampled_from(NODES), st.booleans()),
)
requests_at = st.builds(
    Request,
    st.sampled_from(NODES),
    st.integers(0, 3),
    st.floats(0.0, 20.0),
    st.none() | st.floats(0.0, 15.0),
    st.floats(0.0, 25.0) | st.just(math.inf),
)


@settings(max_examples=3000, deadline=None)
@given(state=group_states, request=requests_at, wait=st.floats(0.0, 5.0))
def test_a_renewal_decided_after_its_senders_deadline_never_extends_or_grants_a_lease(
    state, request, wait
) -> None:
    now = max(request.arrived + wait, request.deadline)
    decision = decide(state, request, now, TTL)
    assert decision.verdict not in (Verdict.RENEWED, Verdict.GRANTED)
    assert (decision.lease.holder, decision.lease.epoch) == (state.lease.holder, state.lease.epoch)
    assert decision.lease.expires <= state.lease.expires


@settings(max_examples=3000, deadline=None)
@given(state=group_states, request=requests_at, wait=st.floats(0.0, 5.0))
def test_no_decision_ends_a_lease_before_its_holder_stops_believing_in_it(
    state, request, wait
) -> None:
    """INV-LEASE-01 for the early end: the hub may keep a holder's lease only as long as
    the holder says it believes, never shorter; and a renewal it does not count extends
    nothing."""
    now = request.arrived + wait
    decision = decide(state, request, now, TTL)
    lease = state.lease
    if decision.lease.epoch == lease.epoch and decision.lease.holder == lease.holder:
        assert decision.lease.expires >= min(lease.expires, request.believes_until(lease))
    else:  # a grant: only of a free lease, with the next epoch
        assert decision.verdict is Verdict.GRANTED
        assert not lease.valid(now)
        assert decision.lease.epoch == lease.epoch + 1
    if decision.verdict in (Verdict.LATE, Verdict.STEP_DOWN, Verdict.DENIED):
        assert decision.lease.expires <= lease.expires


TTL_S, MARGIN_S, BUDGET_S, INTERVAL_S = 10.0, 0.5, 1.0, 2.0


@dataclass
class Agent:
    """A lease keeper as agent/leases/keeper.py runs it (its clock runs at the hub's rate)."""

    node: str
    epoch: int = 0
    until: float = 0.0  # believes in `epoch` until then
    since: float = 0.0  # ... since then
    late: bool = False  # its previous call got no answer within its deadline
    free_at: float = 0.0  # its previous call ended: it sends nothing before that
    stepped_down: int = 0  # told to step down from this epoch, release not sent yet
    beliefs: list[tuple[str, int, float, float]] = field(default_factory=list)

    def request(self, sent: float, arrived: float) -> Request:
        believing = self.until > sent
        return Request(
            self.node,
            self.epoch if believing else 0,
            arrived,
            self.until - sent if believing else 0.0,
            arrived + BUDGET_S,  # grpc's deadline, counted from arrival
        )

    def stop_believing(self, at: float) -> None:
        if self.until > self.since:
            self.beliefs.append((self.node, self.epoch, self.since, min(self.until, at)))
        self.until = min(self.until, at)

    def answered(self, decision: Decision, sent: float, decided: float, at: float) -> None:
        """Take up `decision` (answered at `at`), believing from `decided` on to be safe."""
        self.late = False
        if decision.verdict in (Verdict.RENEWED, Verdict.GRANTED):
            if decision.lease.epoch != self.epoch or self.until <= at:
                self.stop_believing(at)
                self.since = decided
            self.epoch = decision.lease.epoch
            self.until = sent + TTL_S - MARGIN_S
        elif decision.verdict is Verdict.STEP_DOWN:
            self.stop_believing(at)
            self.stepped_down = self.epoch
        elif decision.verdict is Verdict.DENIED:
            self.stop_believing(at)


history = st.lists(
    st.tuples(
        st.sampled_from(NODES),  # who
        st.floats(0.0, 4.0),  # hub time passing before the hub decides
        st.floats(0.0, 0.5),  # how long the request waited at the hub (lock, store)
        st.floats(0.0, 1.5),  # flight to the hub
        st.floats(0.0, 1.5),  # flight of the answer back
        st.sampled_from(["renew", "renew", "renew", "crash", "flap", "switchover", "release"]),
    ),
    max_size=80,
)


@settings(max_examples=500, deadline=None)
@given(events=history)
# A holder whose answer came late is kept exactly as long as it believes (until 9.5, cut
# to 4.0 + 5.6 = 9.6): n2 is refused at 9.45 and granted at 9.75, never before.
@example(
    [
        ("n1", 0.0, 0.0, 0.0, 0.0, "renew"),
        ("n1", 2.0, 0.0, 0.6, 0.6, "renew"),
        ("n1", 2.0, 0.0, 0.1, 0.1, "renew"),
        ("n2", 5.45, 0.0, 0.0, 0.0, "renew"),
        ("n2", 0.3, 0.0, 0.0, 0.0, "renew"),
    ]
)
def test_inv_lease_01_no_two_nodes_believe_they_lead_at_once(events) -> None:
    """Agents that send one call at a time, take up answers only within the deadline and
    say how long they still believe; the hub decides, cuts and grants. Beliefs never
    overlap and epochs only grow."""
    lease, now = NO_LEASE, 0.0
    agents = {n: Agent(n) for n in NODES}
    online = dict.fromkeys(NODES, True)
    late: set[str] = set()
    switchover: Switchover | None = None
    last_epoch = 0
    done: list[tuple[str, int, float, float]] = []
    for node, gap, waited, flight_in, flight_out, event in events:
        now += gap
        agent = agents[node]
        if event == "crash":
            online[node] = False
            agent.stop_believing(now)
            done += agent.beliefs
            agents[node] = Agent(node, free_at=now)
            continue
        if event == "flap":
            online[node] = True
            continue
        if event == "switchover":
            target = [n for n in NODES if n != lease.holder and online[n]]
            switchover = Switchover(target[0]) if target and lease.valid(now) else None
            continue
        if event == "release":
            # Sent only after a step-down was taken up; it believes nothing by then.
            if agent.stepped_down and agent.stepped_down == lease.epoch and now >= agent.free_at:
                if lease.holder == node:
                    lease = released(lease)
                    if switchover is not None:
                        switchover = Switchover(switchover.target, released=True)
                agent.stepped_down = 0
            continue
        arrived = now - waited
        sent = arrived - flight_in
        if not online[node] or sent < agent.free_at:
            continue  # down, or its previous call has not ended yet: it sends nothing
        request = agent.request(sent, arrived)
        (late.add if agent.late else late.discard)(node)
        candidates = tuple(
            Candidate(n, online[n], False, True, renewal_block="late" if n in late else "")
            for n in NODES
        )
        decision = decide(GroupState(lease, candidates, switchover=switchover), request, now, TTL_S)
        if decision.verdict is Verdict.GRANTED:
            assert decision.lease.epoch == last_epoch + 1
            last_epoch = decision.lease.epoch
            switchover = None
        lease = decision.lease
        answered_at = now + flight_out
        agent.free_at = min(answered_at, sent + BUDGET_S)
        if answered_at <= sent + BUDGET_S:
            agent.answered(decision, sent, now, answered_at)
        else:
            agent.late = True
    for agent in agents.values():
        agent.stop_believing(math.inf)
        done += agent.beliefs
    for (n1, e1, f1, u1), (n2, e2, f2, u2) in itertools.combinations(done, 2):
        if n1 != n2 and f1 < u1 and f2 < u2:
            assert u1 <= f2 or u2 <= f1, f"{n1}@{e1} [{f1},{u1}) overlaps {n2}@{e2} [{f2},{u2})"
            assert e1 != e2


@settings(max_examples=200, deadline=None)
@given(
    slow_from=st.floats(0.0, 10.0),
    slow_each_way=st.floats(0.55, 0.95),
    fast_each_way=st.tuples(*(st.floats(0.0, 0.05) for _ in NODES)),
    phases=st.tuples(*(st.floats(0.0, INTERVAL_S) for _ in NODES)),
)
def test_a_slow_leader_link_never_leaves_the_group_leaderless_beyond_ttl_plus_one_interval(
    slow_from, slow_each_way, fast_each_way, phases
) -> None:
    """n1 leads; from `slow_from` on its link is slow both ways (round trip over the
    renewal deadline, each request reaching the hub in time). Renewing on the agents'
    cadence, the group never goes without an acting leader for longer than ttl + one
    renewal interval, and at the end the hub names a node that believes it leads."""
    agents = {n: Agent(n) for n in NODES}
    late: set[str] = set()
    lease = NO_LEASE
    end = slow_from + 6 * TTL_S

    def one_way(node: str, at: float) -> float:
        if node == "n1" and at >= slow_from:
            return slow_each_way
        return fast_each_way[NODES.index(node)]

    queue: list[tuple[float, int, str, str, float]] = []
    for i, node in enumerate(NODES):
        heapq.heappush(queue, (phases[i], i, "send", node, phases[i]))
    seq = len(NODES)
    while queue:
        at, _, what, node, sent = heapq.heappop(queue)
        if at > end:
            break
        agent = agents[node]
        if what == "send":
            seq += 1
            heapq.heappush(queue, (at + one_way(node, at), seq, "arrive", node, at))
            continue
        # Arrived at the hub: decide now, answer back.
        request = agent.request(sent, at)
        (late.add if agent.late else late.discard)(node)
        candidates = tuple(
            Candidate(n, True, False, True, renewal_block="late" if n in late else "")
            for n in NODES
        )
        decision = decide(GroupState(lease, candidates), request, at, TTL_S)
        lease = decision.lease
        answered_at = at + one_way(node, at)
        ended = min(answered_at, sent + BUDGET_S)
        if answered_at <= sent + BUDGET_S:
            agent.answered(decision, sent, answered_at, answered_at)
        else:
            agent.late = True
        seq += 1
        nxt = max(sent + INTERVAL_S, ended)
        heapq.heappush(queue, (nxt, seq, "send", node, nxt))
    believing = [a for a in agents.values() if a.until > end]
    for agent in agents.values():
        agent.stop_believing(end)
    beliefs = sorted(b for a in agents.values() for b in a.beliefs)
    beliefs.sort(key=lambda b: b[2])
    assert beliefs, "nobody ever led"
    longest, reached = 0.0, beliefs[0][2]
    for _, _, since, until in beliefs:
        longest = max(longest, since - reached)
        reached = max(reached, until)
    longest = max(longest, end - reached)
    assert longest <= TTL_S + INTERVAL_S, f"leaderless for {longest:.2f}s"
    if lease.valid(end):
        assert [a.node for a in believing] == [lease.holder]

"""Leader leases: the pure decision of who leads a group, and for which epoch.

Safety rule (INV-LEASE-01): per group at most one node holds the lease for a given epoch,
and epochs only grow. The hub grants a lease until `receive_time + ttl` by its own
clock; the agent believes in it only until `send_time + ttl - margin` by its clock, and
send_time <= receive_time, so the holder always stops believing before the hub could give
the lease to anyone else. A new epoch is granted only once the previous lease has expired
(by the hub's clock) or its holder has confirmed it stepped down.

Whom to grant (`best_candidate`): online, not stopped, healthy, furthest replicated
position, then the smallest node id. `decide` answers one node's renewal request.
"""

from dataclasses import dataclass, replace
from enum import StrEnum


class Verdict(StrEnum):
    RENEWED = "renewed"  # the holder keeps the lease, new expiry
    GRANTED = "granted"  # a new epoch for the requester
    DENIED = "denied"  # not you (the answer says who leads, if anyone)
    STEP_DOWN = "step_down"  # you hold it, but a switchover asks you to let go


@dataclass(frozen=True)
class Lease:
    holder: str  # "" when nobody holds it
    epoch: int
    expires: float  # hub clock; meaningless when holder is ""

    def valid(self, now: float) -> bool:
        return bool(self.holder) and now < self.expires


@dataclass(frozen=True)
class Candidate:
    node_id: str
    online: bool
    stopped: bool
    healthy: bool
    position: int = 0
    journal_block: str = ""  # why its journal may lack committed entries (INV-REPL-01)

    def ineligible_because(self) -> str | None:
        if not self.online:
            return "offline"
        if self.stopped:
            return "emergency stop latched"
        if not self.healthy:
            return "unhealthy"
        if self.journal_block:
            return self.journal_block
        return None


@dataclass(frozen=True)
class Switchover:
    target: str
    released: bool = False  # the old holder confirmed it stepped down


@dataclass(frozen=True)
class GroupState:
    lease: Lease
    candidates: tuple[Candidate, ...]
    paused: bool = False
    switchover: Switchover | None = None

    def candidate(self, node_id: str) -> Candidate | None:
        return next((c for c in self.candidates if c.node_id == node_id), None)


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    lease: Lease  # the lease after this decision
    reason: str


def best_candidate(candidates: tuple[Candidate, ...]) -> Candidate | None:
    eligible = [c for c in candidates if c.ineligible_because() is None]
    return min(eligible, key=lambda c: (-c.position, c.node_id), default=None)


def decide(state: GroupState, requester: str, epoch: int, now: float, ttl: float) -> Decision:
    """Answer `requester`, which believes it holds `epoch` (0: it believes nothing).

    A holder that lost track of its epoch (a restart) simply renews: nobody else can hold
    that epoch, and it learns the epoch from the answer."""
    lease = state.lease
    if lease.valid(now) and lease.holder == requester:
        if state.switchover is not None and state.switchover.target != requester:
            return Decision(Verdict.STEP_DOWN, lease, f"switchover to {state.switchover.target}")
        return Decision(Verdict.RENEWED, replace(lease, expires=now + ttl), "renewed")
    if lease.valid(now):
        return Decision(Verdict.DENIED, lease, f"{lease.holder} leads at epoch {lease.epoch}")
    # Nobody holds a valid lease: the previous one expired or was released.
    me = state.candidate(requester)
    if me is None:
        return Decision(Verdict.DENIED, lease, "not a member of this group")
    if state.switchover is not None:
        if requester != state.switchover.target:
            return Decision(Verdict.DENIED, lease, f"switchover to {state.switchover.target}")
        if why := me.ineligible_because():
            return Decision(Verdict.DENIED, lease, f"switchover target is {why}")
        return _grant(lease, requester, now, ttl, "switchover")
    if state.paused:
        return Decision(Verdict.DENIED, lease, "group is paused: no automatic failover")
    if why := me.ineligible_because():
        return Decision(Verdict.DENIED, lease, f"not eligible: {why}")
    best = best_candidate(state.candidates)
    if best is None or best.node_id != requester:
        return Decision(
            Verdict.DENIED, lease, f"{best.node_id if best else 'nobody'} is the better candidate"
        )
    return _grant(lease, requester, now, ttl, "failover" if lease.holder else "first leader")


def _grant(lease: Lease, requester: str, now: float, ttl: float, why: str) -> Decision:
    granted = Lease(requester, lease.epoch + 1, now + ttl)
    return Decision(Verdict.GRANTED, granted, why)


def released(lease: Lease) -> Lease:
    """The lease after its holder confirmed it stepped down: free at once, same epoch."""
    return Lease("", lease.epoch, 0.0)

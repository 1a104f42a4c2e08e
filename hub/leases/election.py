"""Leader leases: the pure decision of who leads a group, and for which epoch.

Safety rule (INV-LEASE-01): per group at most one node holds the lease for a given epoch,
and epochs only grow. The hub grants a lease until `receive_time + ttl` by its own
clock; the agent believes in it only until `send_time + ttl - margin` by its clock, and
send_time <= receive_time, so the holder always stops believing before the hub could give
the lease to anyone else. A new epoch is granted only once the previous lease has expired
(by the hub's clock) or its holder has confirmed it stepped down. The hub may also end a
holder's lease early, but never before the holder's own stated belief ends: a request
says how much longer its sender believes (`believed_for`, from when it was sent, so at
most that long after it arrived), and every earlier answer to that sender was taken up or
given up before it sent this one.

Counting rule (what a renewal means, the same on both sides): the agent takes up an
answer only if it arrives within the call's deadline. So the hub counts a renewal only if
it decides it before that deadline (grpc propagates it; measured from arrival it is never
earlier than the sender's), and only from a member whose answers reach it in time (its
previous call was answered within its deadline; `Candidate.renewal_block` otherwise). A
holder whose renewal is not counted gets LATE: nothing is extended and its lease is kept
only as long as it still believes in it, so the hub never names a leader that stopped
acting for longer than the leader itself needs to notice; a late member is not granted.

Whom to grant (`best_candidate`): online, not stopped, healthy, answered in time,
furthest replicated position, then the smallest node id. `decide` answers one node's
renewal request.
"""

import math
from dataclasses import dataclass, replace
from enum import StrEnum


class Verdict(StrEnum):
    RENEWED = "renewed"  # the holder keeps the lease, new expiry
    GRANTED = "granted"  # a new epoch for the requester
    DENIED = "denied"  # not you (the answer says who leads, if anyone)
    STEP_DOWN = "step_down"  # you hold it, but a switchover asks you to let go
    LATE = "late"  # you hold it, but this renewal does not count: nothing is extended


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
    renewal_block: str = ""  # why answers to its renewals would not reach it in time

    def ineligible_because(self) -> str | None:
        if not self.online:
            return "offline"
        if self.stopped:
            return "emergency stop latched"
        if not self.healthy:
            return "unhealthy"
        if self.renewal_block:
            return self.renewal_block
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
class Request:
    """One RenewLease as the hub received it; times are the hub's monotonic clock."""

    node: str
    epoch: int  # the epoch the sender believes it holds (0: none)
    arrived: float
    believed_for: float | None = None  # how much longer it believes in `epoch`; None: unsaid
    deadline: float = math.inf  # after this the sender takes up no answer

    def believes_until(self, lease: Lease) -> float:
        """When the sender surely stops believing in `lease`: it sent this request before
        it arrived and its clock runs at the hub's rate. A sender that believes in another
        epoch (or none) believes nothing of this one."""
        if self.epoch != lease.epoch:
            return self.arrived
        if self.believed_for is None:
            return math.inf
        return self.arrived + max(0.0, self.believed_for)


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    lease: Lease  # the lease after this decision
    reason: str


def best_candidate(candidates: tuple[Candidate, ...]) -> Candidate | None:
    eligible = [c for c in candidates if c.ineligible_because() is None]
    return min(eligible, key=lambda c: (-c.position, c.node_id), default=None)


def decide(state: GroupState, request: Request, now: float, ttl: float) -> Decision:
    """Answer `request` at hub time `now`.

    A holder that lost track of its epoch (a restart) simply renews: nobody else can hold
    that epoch, and it learns the epoch from the answer."""
    lease, requester = state.lease, request.node
    me = state.candidate(requester)
    if lease.valid(now) and lease.holder == requester:
        if state.switchover is not None and state.switchover.target != requester:
            return Decision(
                Verdict.STEP_DOWN,
                _as_believed(lease, request),
                f"switchover to {state.switchover.target}",
            )
        if why := _not_counted(request, me, now):
            return Decision(
                Verdict.LATE, _as_believed(lease, request), f"renewal not counted: {why}"
            )
        # Never shorter than before: a holder that missed this answer still believes the
        # last one (which the hub gave under a longer ttl before a restart).
        return Decision(
            Verdict.RENEWED, replace(lease, expires=max(lease.expires, now + ttl)), "renewed"
        )
    if lease.valid(now):
        return Decision(Verdict.DENIED, lease, f"{lease.holder} leads at epoch {lease.epoch}")
    # Nobody holds a valid lease: the previous one expired or was released.
    if me is None:
        return Decision(Verdict.DENIED, lease, "not a member of this group")
    if now >= request.deadline:
        return Decision(Verdict.DENIED, lease, f"not granted: {_PAST_DEADLINE}")
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


_PAST_DEADLINE = "the hub got to it only after its sender's deadline"


def _not_counted(request: Request, me: Candidate | None, now: float) -> str:
    """Why the holder's renewal does not count ("" when it does)."""
    if now >= request.deadline:
        return _PAST_DEADLINE
    return me.renewal_block if me is not None else ""


def _as_believed(lease: Lease, request: Request) -> Lease:
    """The holder's lease when this request does not renew it: kept no longer than its
    holder still believes in it, and never shorter (INV-LEASE-01)."""
    return replace(lease, expires=min(lease.expires, request.believes_until(lease)))


def _grant(lease: Lease, requester: str, now: float, ttl: float, why: str) -> Decision:
    granted = Lease(requester, lease.epoch + 1, now + ttl)
    return Decision(Verdict.GRANTED, granted, why)


def released(lease: Lease) -> Lease:
    """The lease after its holder confirmed it stepped down: free at once, same epoch."""
    return Lease("", lease.epoch, 0.0)

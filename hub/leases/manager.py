"""Leader leases per group on the hub: answer renewals, persist, run switchovers.

Every member of a group calls RenewLease on a short cadence; `election.decide` answers,
and a lease that changed is written to the store before the answer leaves (expiry as
wall-clock time, so a restarted hub keeps the same deadline). Decisions for one group
are serialized. Deadlines inside the hub use the monotonic clock.

What a renewal means is the same on both sides (see `election`): the servicer passes the
call's deadline, the request says how long its sender still believes and whether its
previous answer came late; a member whose answers come late is not a candidate until one
comes in time (`late`, in memory: a restarted hub learns it again from the next request).

A switchover (`resign`) marks the target, nudges the holder to renew at once (it is told
to step down, stops acting, and confirms with ReleaseLease), then nudges the target, which
is granted the next epoch. The time between the release and the grant is the leaderless
window the command reports.
"""

import asyncio
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from edgecommon.cadence import wait_until
from edgecommon.clock import Clock
from edgecommon.errors import Conflict, InvalidArgument, NotFound
from edgecommon.pb import fleet_pb2, link_pb2
from edgecommon.scope import Scope, ScopeKind
from hub.config import LeaseSection
from hub.fleet.registry import Registry
from hub.leases.election import (
    Candidate,
    GroupState,
    Lease,
    Request,
    Switchover,
    Verdict,
    best_candidate,
    decide,
    released,
)
from hub.stops.estop import EstopManager
from hub.store.base import HubStore, LeaseRecord

CATCH_UP_CHECK_S = 0.1
log = logging.getLogger("edge-hub.leases")
NO_LEASE = Lease("", 0, 0.0)
# A member is healthy while its heartbeats arrive: a node that died is not a candidate
# long before the registry calls it offline.
HEALTHY_HEARTBEAT_PERIODS = 2.5
LATE_BLOCK = "its lease answers reach it after its deadline"


class JournalFacts(Protocol):
    """What the election needs from the replicated journal (hub.journal.replication)."""

    def eligibility(self, group: str) -> dict[str, tuple[int, str | None]]:
        """Per member: its journal position and why it may not take over (None: it may)."""

    def handover_risk(self, group: str, holder: str, target: str) -> tuple[int, str]: ...

    def catching_up(self, group: str, node: str) -> bool:
        """A sync replica whose last reported position is behind the commit index: the
        hub's view lags its acknowledgements by up to a heartbeat."""


@dataclass
class GroupLease:
    group: str
    lease: Lease = NO_LEASE
    paused: bool = False
    switchover: Switchover | None = None
    released_mono: float | None = None
    granted_mono: float | None = None
    # Who was granted the current epoch; kept when the lease expires or is released
    # (the journal's eligibility rule asks, hub/journal/quorum.py).
    epoch_holder: str = ""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class LeaseState(StrEnum):
    LED = "led"  # a member holds a valid lease
    SWITCHING = "switching"  # a switchover is moving the lease
    LEADERLESS = "leaderless"


@dataclass(frozen=True)
class GroupLeaseStatistics:
    group: str
    state: LeaseState
    leader: str
    epoch: int
    paused: bool


@dataclass(frozen=True)
class LeaseStatistics:
    led: int  # groups with a leader
    leaderless: int
    paused: int  # groups whose automatic failover is paused
    late_members: int  # members whose lease answers reach them after their deadline
    renewals: int  # RenewLease calls decided since the hub started
    verdicts: dict[Verdict, int]  # answers given, per verdict
    releases: int  # leaders that stepped down (ReleaseLease)
    switchovers: int  # `leader resign` runs started (not dry runs)
    switchovers_done: int
    switchovers_failed: int  # the target did not take over in time
    groups: tuple[GroupLeaseStatistics, ...]


class LeaseTable:
    """Each group's lease as the hub holds it. LeaseManager alone decides and changes it;
    the journal's quorum (hub.journal.replication) reads who leads at which epoch. The election in
    turn asks the quorum who may take over, so the table is an object of its own, built
    (and loaded from the store) before both."""

    def __init__(self, store: HubStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self.groups: dict[str, GroupLease] = {}

    async def load(self) -> None:
        wall, mono = self.clock.wall(), self.clock.monotonic()
        for rec in await self.store.list_leases():
            expires = mono + (rec.expires_unix - wall) if rec.holder else 0.0
            self.groups[rec.group] = GroupLease(
                rec.group,
                Lease(rec.holder, rec.epoch, expires),
                rec.paused,
                epoch_holder=rec.holder,
            )

    def group(self, group: str) -> GroupLease:
        return self.groups.setdefault(group, GroupLease(group))

    def leader(self, group: str, now: float) -> tuple[str, int]:
        """Who holds the group's lease at `now` (monotonic; "" when nobody validly does),
        and the group's epoch."""
        g = self.groups.get(group)
        if g is None:
            return "", 0
        return (g.lease.holder if g.lease.valid(now) else ""), g.lease.epoch

    def epoch_holder(self, group: str) -> str:
        """Who was granted the group's latest epoch, also once that lease expired or was
        released ("" when not known)."""
        g = self.groups.get(group)
        return g.epoch_holder if g is not None else ""


class LeaseManager:
    def __init__(
        self,
        store: HubStore,
        registry: Registry,
        estops: EstopManager,
        table: LeaseTable,
        journal: JournalFacts,
        clock: Clock,
        config: LeaseSection,
    ) -> None:
        self.store = store
        self.registry = registry
        self.estops = estops
        self.table = table
        self.journal = journal
        self.clock = clock
        self.config = config
        self.renewals = 0
        self.heartbeat_s = registry.config.heartbeat_interval_s
        # Members whose last renewal said its previous answer missed its deadline.
        self.late: set[str] = set()
        # Counted for statistics(), since the hub started.
        self._verdicts: Counter[Verdict] = Counter()
        self._releases = self._switchovers = self._switchovers_done = 0
        self._switchovers_failed = 0

    @property
    def groups(self) -> dict[str, GroupLease]:
        return self.table.groups

    def _group(self, group: str) -> GroupLease:
        return self.table.group(group)

    def candidates(self, group: str) -> tuple[Candidate, ...]:
        out = []
        journal = self.journal.eligibility(group)
        for view in self.registry.views(group):
            node = view.record.node_id
            beat = self.registry.heartbeat_of(node)
            stopped = self.estops.covers(node, group) or bool(beat and beat.local_stop_ids)
            age = self.registry.heartbeat_age(node)
            healthy = age is not None and age <= HEALTHY_HEARTBEAT_PERIODS * self.heartbeat_s
            position, block = journal.get(node, (0, None))
            late = LATE_BLOCK if node in self.late else ""
            out.append(
                Candidate(node, view.connected, stopped, healthy, position, block or "", late)
            )
        return tuple(out)

    async def _persist(self, g: GroupLease) -> None:
        lease = g.lease
        expires_unix = (
            self.clock.wall() + (lease.expires - self.clock.monotonic()) if lease.holder else 0.0
        )
        await self.store.save_lease(
            LeaseRecord(g.group, lease.holder, lease.epoch, expires_unix, g.paused)
        )

    def _answer(self, verdict: str, g: GroupLease, reason: str) -> link_pb2.LeaseAnswer:
        now = self.clock.monotonic()
        holder = g.lease.holder if g.lease.valid(now) else ""
        c = self.config
        return link_pb2.LeaseAnswer(
            verdict=verdict,
            epoch=g.lease.epoch,
            leader=holder,
            ttl_s=c.ttl_s,
            renew_interval_s=c.renew_interval_s,
            renew_deadline_s=c.renew_deadline_s,
            margin_s=c.margin_s,
            reason=reason,
        )

    async def renew(
        self,
        node_id: str,
        group: str,
        epoch: int,
        *,
        believed_for: float | None = None,
        previous_late: bool = False,
        deadline: float = math.inf,
    ) -> link_pb2.LeaseAnswer:
        """Answer one RenewLease. `deadline` (hub clock) is the caller's: past it, the
        caller takes up no answer, so nothing decided after it may extend a lease."""
        request = Request(node_id, epoch, self.clock.monotonic(), believed_for, deadline)
        self._note_lateness(group, node_id, previous_late)
        g = self._group(group)
        async with g.lock:
            self.renewals += 1
            now = self.clock.monotonic()
            state = GroupState(g.lease, self.candidates(group), g.paused, g.switchover)
            decision = decide(state, request, now, self.config.ttl_s)
            if decision.lease != g.lease:
                previous, g.lease = g.lease, decision.lease
                try:
                    await self._persist(g)
                except BaseException:
                    # Cancelled at the caller's deadline, or the store failed: the caller
                    # gets no answer, so the lease stays as it was. (A write that finished
                    # anyway is safe after a restart too: an extension only keeps the lease
                    # longer, and a cut never ends it before its holder stops believing.)
                    g.lease = previous
                    raise
            if decision.verdict is Verdict.GRANTED:
                g.granted_mono = now
                g.epoch_holder = node_id
                g.switchover = None
                g.changed.set()
                log.warning(
                    "group %s: %s leads at epoch %d (%s)",
                    group,
                    node_id,
                    g.lease.epoch,
                    decision.reason,
                )
            elif decision.verdict is Verdict.LATE and decision.lease != state.lease:
                log.warning(
                    "group %s: %s's %s; its lease at epoch %d is kept %.1fs more, as long as "
                    "it still believes in it",
                    group,
                    node_id,
                    decision.reason,
                    g.lease.epoch,
                    max(0.0, g.lease.expires - now),
                )
            self._verdicts[decision.verdict] += 1
            return self._answer(decision.verdict.value, g, decision.reason)

    def _note_lateness(self, group: str, node_id: str, late: bool) -> None:
        if late == (node_id in self.late):
            return
        if late:
            self.late.add(node_id)
            log.warning(
                "group %s: %s gave up waiting for its last lease answer: it is not renewed "
                "or granted until an answer reaches it in time",
                group,
                node_id,
            )
        else:
            self.late.discard(node_id)
            log.warning("group %s: %s gets its lease answers in time again", group, node_id)

    async def release(self, node_id: str, group: str, epoch: int) -> link_pb2.LeaseAnswer:
        g = self._group(group)
        async with g.lock:
            if g.lease.holder != node_id or g.lease.epoch != epoch:
                return self._answer("denied", g, "you do not hold this lease")
            g.lease = released(g.lease)
            await self._persist(g)
            g.released_mono = self.clock.monotonic()
            self._releases += 1
            g.changed.set()
            log.warning("group %s: %s stepped down from epoch %d", group, node_id, epoch)
            if g.switchover is not None:
                g.switchover = Switchover(g.switchover.target, released=True)
                self._nudge(g.switchover.target, "switchover: the lease is yours to take")
            return self._answer("released", g, "stepped down")

    def _nudge(self, node_id: str, reason: str) -> None:
        self.registry.send(
            link_pb2.HubMessage(lease_nudge=link_pb2.LeaseNudge(reason=reason)),
            Scope(ScopeKind.NODE, node_id),
        )

    def _known_group(self, group: str) -> GroupLease:
        if not self.registry.views(group):
            raise NotFound(f"group {group!r} has no enrolled nodes")
        return self._group(group)

    def statistics(self) -> LeaseStatistics:
        now = self.clock.monotonic()
        groups = tuple(
            GroupLeaseStatistics(
                group=name,
                state=_state(g, now),
                leader=g.lease.holder if g.lease.valid(now) else "",
                epoch=g.lease.epoch,
                paused=g.paused,
            )
            for name, g in sorted(self.groups.items())
        )
        led = sum(1 for g in groups if g.leader)
        return LeaseStatistics(
            led=led,
            leaderless=len(groups) - led,
            paused=sum(1 for g in groups if g.paused),
            late_members=len(self.late),
            renewals=self.renewals,
            verdicts={verdict: self._verdicts[verdict] for verdict in Verdict},
            releases=self._releases,
            switchovers=self._switchovers,
            switchovers_done=self._switchovers_done,
            switchovers_failed=self._switchovers_failed,
            groups=groups,
        )

    def report(self, group: str = "") -> fleet_pb2.LeaderReport:
        names = [group] if group else sorted(self.registry.groups())
        if group:
            self._known_group(group)
        now = self.clock.monotonic()
        out = []
        for name in names:
            g = self._group(name)
            valid = g.lease.valid(now)
            out.append(
                fleet_pb2.GroupLeadership(
                    group=name,
                    leader=g.lease.holder if valid else "",
                    epoch=g.lease.epoch,
                    time_left_s=max(0.0, g.lease.expires - now) if valid else 0.0,
                    paused=g.paused,
                    switchover_to=g.switchover.target if g.switchover else "",
                    candidates=[
                        fleet_pb2.LeaderCandidate(
                            node_id=c.node_id,
                            eligible=c.ineligible_because() is None,
                            why_not=c.ineligible_because() or "",
                            position=c.position,
                            state="leader" if valid and c.node_id == g.lease.holder else "replica",
                        )
                        for c in self.candidates(name)
                    ],
                )
            )
        return fleet_pb2.LeaderReport(groups=out)

    async def pause(self, group: str, paused: bool) -> None:
        g = self._known_group(group)
        async with g.lock:
            g.paused = paused
            await self._persist(g)
        log.warning("group %s: automatic failover %s", group, "paused" if paused else "resumed")

    async def _await_catch_up(self, group: str, to: str, deadline: float) -> None:
        """Give a sync replica that holds every committed entry, but has not said so in a
        heartbeat yet, until the deadline to say so; `_plan` then decides."""
        checks = math.ceil(max(0.0, deadline - self.clock.monotonic()) / CATCH_UP_CHECK_S)
        for _ in range(checks):
            if not self.journal.catching_up(group, to):
                return
            await asyncio.sleep(CATCH_UP_CHECK_S)

    def _plan(self, group: str, to: str) -> tuple[GroupLease, str, str]:
        g = self._known_group(group)
        if g.paused:
            raise Conflict(
                f"group {group} is paused: 'edgectl leader resume --group {group}' first"
            )
        if not g.lease.valid(self.clock.monotonic()):
            raise Conflict(f"group {group} has no leader to resign")
        holder = g.lease.holder
        candidates = {c.node_id: c for c in self.candidates(group)}
        if to:
            if to not in candidates:
                raise InvalidArgument(f"node {to!r} is not a member of group {group}")
            if to == holder:
                raise InvalidArgument(f"{to} already leads group {group}")
            if why := candidates[to].ineligible_because():
                raise Conflict(f"{to} cannot take over: {why}")
            return g, holder, to
        best = best_candidate(tuple(c for n, c in candidates.items() if n != holder))
        if best is None:
            raise Conflict(f"no other eligible member in group {group} to take over")
        return g, holder, best.node_id

    async def resign(
        self, group: str, to: str, timeout_s: float, dry_run: bool
    ) -> fleet_pb2.ResignReport:
        deadline = self.clock.monotonic() + timeout_s
        if to:
            await self._await_catch_up(group, to, deadline)
        g, holder, target = self._plan(group, to)
        report = fleet_pb2.ResignReport(
            group=group,
            from_leader=holder,
            to=target,
            old_epoch=g.lease.epoch,
            dry_run=dry_run,
        )
        report.target_lag, report.at_risk = self.journal.handover_risk(group, holder, target)
        if dry_run:
            report.detail = f"would move leadership of {group} from {holder} to {target}"
            return report
        old_epoch = g.lease.epoch
        g.switchover = Switchover(target)
        self._switchovers += 1
        g.released_mono = None
        self._nudge(holder, f"switchover to {target}")
        if await wait_until(
            lambda: g.lease.holder == target and g.lease.epoch > old_epoch,
            g.changed,
            deadline,
            self.clock,
        ):
            report.done = True
            self._switchovers_done += 1
            report.new_epoch = g.lease.epoch
            start = g.released_mono if g.released_mono is not None else g.granted_mono
            report.leaderless_s = max(0.0, (g.granted_mono or 0.0) - (start or 0.0))
            report.detail = f"{target} leads {group} at epoch {g.lease.epoch}"
            return report
        g.switchover = None
        self._switchovers_failed += 1
        report.detail = f"{target} did not take over within {timeout_s:g}s; " + (
            "the lease is free and goes to the best candidate"
            if not g.lease.holder
            else f"{holder} still leads"
        )
        return report


def _state(g: GroupLease, now: float) -> LeaseState:
    if g.switchover is not None:
        return LeaseState.SWITCHING
    return LeaseState.LED if g.lease.valid(now) else LeaseState.LEADERLESS

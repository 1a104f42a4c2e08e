"""The journal's quorum on the hub: gather facts, decide (hub.journal.quorum), persist,
tell members.

Facts come from heartbeats (each node's position and divergence; the leader's view of
each replica and which sync members hold every committed entry) and from the lease.
Every journal report is screened as it arrives (`observe`, rules in hub.journal.reports):
an impossible one is refused, never adopted, and its node is reported as a bad peer (one
log line per node and reason, counted in `statistics()`, shown by `replica divergence`).
A replica's position counts only up to what the leader reported durable, and a leader's
commit index only up to what another sync member reports holding (`adoptable_commit`).
On a cadence, per group: the leader's confirmations move joining members into the sync
set, `plan_sync_set` keeps it filled, a changed set is written to the store before any
member hears of it, and every session of the group that has not seen the current plan
gets it on its stream.
"""

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field

from edgecommon.cadence import wait_for_event
from edgecommon.clock import Clock
from edgecommon.errors import NotFound
from edgecommon.pb import link_pb2, replication_pb2
from edgecommon.scope import Scope, ScopeKind
from hub.config import ReplicationSection
from hub.fleet.registry import NodeView, Registry, Session
from hub.journal.quorum import (
    GroupFacts,
    MemberFacts,
    QuorumReport,
    SyncSet,
    confirm,
    evaluate_quorum,
    ineligible_because,
    plan_restore,
    plan_sync_set,
    with_sync,
)
from hub.journal.reports import Position, Refusal, adoptable_commit, judge
from hub.leases.manager import LeaseTable
from hub.store.base import HubStore, SyncSetRecord

log = logging.getLogger("edge-hub.replication")


@dataclass
class GroupSync:
    sync: SyncSet = field(default_factory=lambda: SyncSet((), ()))
    revision: int = 0
    plan: link_pb2.ReplicationPlan | None = None
    commit_index: int = 0  # the highest any leader of the group reported
    in_use: bool = False  # some member reported a journal entry
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass(frozen=True)
class Heard:
    """The last journal report the hub accepted from a node."""

    session_id: int
    report: link_pb2.JournalReport
    mono: float  # when it arrived (hub clock)


@dataclass(frozen=True)
class ReplicationStatistics:
    groups: int  # groups with a sync set or a plan
    groups_in_use: int  # groups whose journal holds entries
    bad_peers: int  # nodes whose latest journal report was refused
    reports_accepted: int  # journal reports adopted since the hub started
    reports_refused: int
    refusals: dict[Refusal, int]  # refused reports, per reason
    sync_set_changes: int  # sync sets written since the hub started (automatic or restore)


class ReplicationManager:
    def __init__(
        self,
        store: HubStore,
        registry: Registry,
        leases: LeaseTable,
        clock: Clock,
        config: ReplicationSection,
    ) -> None:
        self.store = store
        self.registry = registry
        self.leases = leases
        self.clock = clock
        self.config = config
        self.groups: dict[str, GroupSync] = {}
        self._sent: dict[str, tuple[int, int]] = {}  # node -> (session id, revision)
        self.wake = asyncio.Event()
        self._heard: dict[str, Heard] = {}
        self._refused: dict[str, str] = {}  # node -> why its latest report was refused
        self._logged: dict[str, set[Refusal]] = {}  # reasons logged since its last good report
        self.refusals: Counter[Refusal] = Counter()
        # Counted for statistics(), since the hub started.
        self._accepted = self._sync_set_changes = 0

    async def load(self) -> None:
        for rec in await self.store.list_sync_sets():
            self.groups[rec.group] = GroupSync(SyncSet(rec.sync_set, rec.joining), rec.revision)

    def _group(self, group: str) -> GroupSync:
        return self.groups.setdefault(group, GroupSync())

    def min_sync(self, group: str, size: int) -> int:
        if group in self.config.group_min_sync:
            return int(self.config.group_min_sync[group])
        if self.config.min_sync_replicas >= 0:
            return self.config.min_sync_replicas
        return 1 if size >= 2 else 0

    def statistics(self) -> ReplicationStatistics:
        return ReplicationStatistics(
            groups=len(self.groups),
            groups_in_use=sum(1 for g in self.groups.values() if g.in_use),
            bad_peers=len(self._refused),
            reports_accepted=self._accepted,
            reports_refused=sum(self.refusals.values()),
            refusals={reason: self.refusals[reason] for reason in Refusal},
            sync_set_changes=self._sync_set_changes,
        )

    # --- facts -------------------------------------------------------------------------

    def observe(self, session: Session, beat: link_pb2.Heartbeat) -> None:
        """Screen the journal report in a heartbeat on the node's current session: adopt it
        if it can be true, else keep the last accepted one and report a bad peer."""
        if not beat.HasField("journal"):
            return
        node, report = session.node_id, beat.journal
        heard = self._heard.get(node)
        impossible = judge(Position.of(heard.report) if heard else None, Position.of(report))
        if impossible is None:
            self._heard[node] = Heard(session.session_id, report, self.clock.monotonic())
            self._accepted += 1
            self._logged.pop(node, None)
            if self._refused.pop(node, None) is not None:
                log.warning("node %s reports possible journal positions again", node)
            return
        self.refusals[impossible.refusal] += 1
        self._refused[node] = impossible.detail
        logged = self._logged.setdefault(node, set())
        if impossible.refusal not in logged:
            logged.add(impossible.refusal)
            log.error(
                "bad peer %s (group %s): journal report refused (%s): %s; it may not take "
                "over until it reports possible positions",
                node,
                session.group,
                impossible.refusal.value,
                impossible.detail,
            )

    def _journal(self, node: str) -> tuple[link_pb2.JournalReport | None, float]:
        """The node's accepted report on its current session and its age, or (None, 0)."""
        heard = self._heard.get(node)
        session = self.registry.session(node)
        if heard is None or session is None or session.session_id != heard.session_id:
            return None, 0.0
        return heard.report, self.clock.monotonic() - heard.mono

    def _last_journal(self, node: str) -> link_pb2.JournalReport | None:
        """What the node last reported of its journal (accepted), online or not."""
        heard = self._heard.get(node)
        return heard.report if heard is not None else None

    def facts(self, group: str, views: list[NodeView] | None = None) -> GroupFacts:
        now = self.clock.monotonic()
        leader, epoch = self.leases.leader(group, now)
        lj, lage = self._journal(leader) if leader else (None, 0.0)
        current = lj if lj is not None and lj.epoch == epoch else None
        seen = {r.node_id: r for r in current.replicas} if current is not None else {}
        members = []
        views = self.registry.views(group) if views is None else views
        for view in views:
            node = view.record.node_id
            j = self._last_journal(node)
            r = seen.get(node)
            last = j.last_index if j else 0
            if current is not None and node != leader:
                last = min(last, current.last_index)  # never beyond what the leader holds
            members.append(
                MemberFacts(
                    node_id=node,
                    online=view.connected,
                    last_index=last,
                    last_pull_mono=now - lage - r.last_pull_age_s if r else None,
                    lag_entries=r.lag_entries if r else None,
                    lag_s=r.lag_s if r else None,
                    diverged_at=j.diverged_at if j else 0,
                    refused=self._refused.get(node, ""),
                )
            )
        g = self._group(group)
        min_sync = self.min_sync(group, len(views))
        if current is not None:
            holders = set(g.sync.sync_set + g.sync.joining) - {leader}
            positions = [m.last_index for m in members if m.node_id in holders]
            g.commit_index = max(
                g.commit_index, adoptable_commit(current.commit_index, min_sync, positions)
            )
        g.in_use = g.in_use or g.commit_index > 0 or any(m.last_index > 0 for m in members)
        c = self.config
        return GroupFacts(
            group=group,
            leader=leader,
            epoch=epoch,
            commit_index=g.commit_index,
            members=tuple(members),
            sync_set=g.sync.sync_set,
            joining=g.sync.joining,
            min_sync=min_sync,
            strict=c.strict,
            replica_timeout_s=c.replica_timeout_s,
            restore_max_lag_entries=c.restore_max_lag_entries,
            max_async_lag_entries=c.max_async_lag_entries,
            journal_in_use=g.in_use,
            epoch_holder=self.leases.epoch_holder(group),
        )

    # --- the cadence -------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            await wait_for_event(self.wake, self.config.plan_interval_s)
            self.wake.clear()
            by_group: dict[str, list[NodeView]] = {}
            for view in self.registry.views():
                by_group.setdefault(view.record.group, []).append(view)
            for group, views in sorted(by_group.items()):
                await self.step(group, views)

    async def step(self, group: str, views: list[NodeView] | None = None) -> None:
        g = self._group(group)
        async with g.lock:
            facts = self.facts(group, views)
            lj, _ = self._journal(facts.leader) if facts.leader else (None, 0.0)
            sync = g.sync
            current = g.plan is not None and lj is not None and lj.plan_revision == g.plan.revision
            if current and lj is not None and lj.epoch == facts.epoch and lj.sync_confirmed:
                sync = confirm(facts, tuple(lj.sync_confirmed))
            sync = plan_sync_set(with_sync(facts, sync), self.clock.monotonic())
            await self._save(group, g, sync, "automatic")
            self._publish(group, g, facts)

    async def _save(self, group: str, g: GroupSync, sync: SyncSet, why: str) -> None:
        if sync == g.sync:
            return
        revision = g.revision + 1
        await self.store.save_sync_set(SyncSetRecord(group, sync.sync_set, sync.joining, revision))
        log.warning(
            "group %s: sync set %s, joining %s (%s; was %s / %s)",
            group,
            ",".join(sync.sync_set) or "-",
            ",".join(sync.joining) or "-",
            why,
            ",".join(g.sync.sync_set) or "-",
            ",".join(g.sync.joining) or "-",
        )
        g.sync, g.revision = sync, revision
        self._sync_set_changes += 1

    def _publish(self, group: str, g: GroupSync, facts: GroupFacts) -> None:
        lj, _ = self._journal(facts.leader) if facts.leader else (None, 0.0)
        plan = link_pb2.ReplicationPlan(
            group=group,
            leader=facts.leader,
            leader_peer_address=lj.peer_address if lj is not None else "",
            epoch=facts.epoch if facts.leader else 0,
            sync_set=g.sync.sync_set,
            joining=g.sync.joining,
            min_sync=facts.min_sync,
            strict=facts.strict,
        )
        if g.plan is None or _without_revision(g.plan) != plan:
            g.revision += 1
            plan.revision = g.revision
            g.plan = plan
        revision = g.revision

        def lacks_it(session: Session) -> bool:
            """Whether the session was not sent this revision yet (it is, right after)."""
            stamp = (session.session_id, revision)
            if self._sent.get(session.node_id) == stamp:
                return False
            self._sent[session.node_id] = stamp
            return True

        # Each session of the group gets each revision once: a new session (a reconnect)
        # gets the current plan although the node had it before.
        message = link_pb2.ReplicationPlan()
        message.CopyFrom(g.plan)
        self.registry.send(
            link_pb2.HubMessage(replication=message), Scope(ScopeKind.GROUP, group), only=lacks_it
        )

    # --- what the election asks ----------------------------------------------------------

    def eligibility(self, group: str) -> dict[str, tuple[int, str | None]]:
        """Per member: its journal position and why it may not take over (None: it may)."""
        facts = self.facts(group)
        return {
            m.node_id: (m.last_index, ineligible_because(facts, m.node_id)) for m in facts.members
        }

    def catching_up(self, group: str, node: str) -> bool:
        facts = self.facts(group)
        m = facts.member(node)
        return (
            m is not None
            and m.online
            and node in facts.sync_set
            and m.last_index < facts.commit_index
        )

    def handover_risk(self, group: str, holder: str, target: str) -> tuple[int, str]:
        facts = self.facts(group)
        lead, tgt = facts.member(holder), facts.member(target)
        lag = max(0, (lead.last_index if lead else 0) - (tgt.last_index if tgt else 0))
        if not facts.journal_in_use:
            return 0, "nothing: the group's journal holds no entries"
        if facts.min_sync == 0:
            return lag, f"async mode: up to {lag} entries not yet on {target} may be lost"
        if target in facts.sync_set:
            return lag, f"nothing: {target} is a sync replica holding every committed entry"
        return lag, f"{target} is not a sync replica: entries it lacks would be lost"

    # --- operators -----------------------------------------------------------------------

    def _known(self, group: str) -> None:
        if not group:
            raise NotFound("--group is required")
        if not self.registry.views(group):
            raise NotFound(f"group {group!r} has no enrolled nodes")

    def report(self, group: str) -> replication_pb2.QuorumReport:
        self._known(group)
        return report_pb(
            evaluate_quorum(self.facts(group), self.clock.monotonic()), self.facts(group)
        )

    async def restore(self, group: str, dry_run: bool) -> replication_pb2.QuorumReport:
        self._known(group)
        g = self._group(group)
        async with g.lock:
            facts = self.facts(group)
            plan = plan_restore(facts, self.clock.monotonic())
            if not dry_run and not plan.blocked:
                await self._save(group, g, plan.result, "restore")
                self._publish(group, g, self.facts(group))
        answer = self.report(group)
        answer.restore = ("would: " if dry_run and not plan.blocked else "") + plan.detail
        answer.added.extend(plan.added)
        answer.removed.extend(plan.removed)
        return answer

    def divergence(self, group: str) -> replication_pb2.DivergenceReport:
        if group:
            self._known(group)
        out = replication_pb2.DivergenceReport()
        for view in self.registry.views(group):
            node = view.record.node_id
            j = self._last_journal(node)
            refused = self._refused.get(node, "")
            if j is None:
                out.replicas.append(
                    replication_pb2.ReplicaState(
                        node_id=node,
                        group=view.record.group,
                        role="unknown",
                        online=view.connected,
                        refused_report=refused,
                    )
                )
                continue
            out.replicas.append(
                replication_pb2.ReplicaState(
                    node_id=node,
                    group=view.record.group,
                    role=j.role,
                    last_index=j.last_index,
                    diverged_at=j.diverged_at,
                    bad_peer=j.bad_peer,
                    online=view.connected,
                    refused_report=refused,
                )
            )
            if j.diverged_at:
                out.nodes.append(
                    replication_pb2.DivergentNode(
                        node_id=node,
                        group=view.record.group,
                        diverged_at=j.diverged_at,
                        last_index=j.last_index,
                        detail=j.detail,
                    )
                )
        return out

    def leader_info(self, group: str) -> replication_pb2.JournalLeaderInfo:
        self._known(group)
        g = self._group(group)
        facts = self.facts(group)
        address = g.plan.leader_peer_address if g.plan and g.plan.leader == facts.leader else ""
        return replication_pb2.JournalLeaderInfo(
            group=group, leader=facts.leader, peer_address=address, epoch=facts.epoch
        )


def _without_revision(plan: link_pb2.ReplicationPlan) -> link_pb2.ReplicationPlan:
    copy = link_pb2.ReplicationPlan()
    copy.CopyFrom(plan)
    copy.revision = 0
    return copy


def report_pb(r: QuorumReport, facts: GroupFacts) -> replication_pb2.QuorumReport:
    return replication_pb2.QuorumReport(
        group=r.group,
        leader=r.leader,
        epoch=r.epoch,
        min_sync=r.min_sync,
        strict=r.strict,
        met=r.met,
        reason=r.reason,
        members=[
            replication_pb2.QuorumMember(
                node_id=m.node_id,
                role=m.role,
                online=m.online,
                healthy=m.healthy,
                last_index=m.last_index,
                lag_entries=m.lag_entries or 0,
                lag_s=m.lag_s or 0.0,
                why=m.why,
                eligible=m.eligible,
            )
            for m in r.members
        ],
        sync_set=list(r.sync_set) + list(r.joining),
        commit_index=r.commit_index,
        max_async_lag_entries=facts.max_async_lag_entries if r.min_sync == 0 else 0,
    )

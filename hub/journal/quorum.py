"""Quorum of a group's journal, decided purely: health, sync set, restore, eligibility.

Safety rule (INV-REPL-01): the leader acknowledges an entry as committed only once every
member of the sync set and every joining member it knows of holds it durably; a joining
member becomes a sync member only once the leader reported it holds every committed
entry. So every sync member holds every acknowledged entry, and only sync members (when
there are any) may take over: `ineligible_because` answers that for the election.

The sync set changes three ways, all here: `plan_sync_set` (automatic: drop the new
leader, drop nodes that left, fill empty places with healthy, caught-up replicas; in
strict mode a lost member keeps its place, so appends stop instead of silently losing
the guarantee), `confirm` (joining -> sync on the leader's word) and `plan_restore` (the
operator's `edgectl quorum restore`: lost members make way for caught-up replicas).

A member whose last journal report the hub refused as impossible (hub.journal.reports) is a
bad peer: neither healthy nor eligible until a report of it is accepted again.
"""

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class MemberFacts:
    node_id: str
    online: bool
    last_index: int = 0
    last_pull_mono: float | None = None  # when the leader last saw it pull (hub clock)
    lag_entries: int | None = None  # as the leader sees it
    lag_s: float | None = None
    diverged_at: int = 0
    refused: str = ""  # why the hub refused its last journal report ("": none refused)


@dataclass(frozen=True)
class GroupFacts:
    group: str
    leader: str  # "" when nobody holds the lease
    epoch: int
    commit_index: int  # the highest the leader reported
    members: tuple[MemberFacts, ...]
    sync_set: tuple[str, ...] = ()
    joining: tuple[str, ...] = ()
    min_sync: int = 1
    strict: bool = True
    replica_timeout_s: float = 3.0
    restore_max_lag_entries: int = 1000
    max_async_lag_entries: int = 1000
    journal_in_use: bool = True  # the hub has heard of an entry in this group's journal
    # Who was granted the group's latest epoch, also once that lease expired or was
    # released ("": not known, e.g. after a release and a hub restart).
    epoch_holder: str = ""

    def member(self, node_id: str) -> MemberFacts | None:
        return next((m for m in self.members if m.node_id == node_id), None)

    def replicas(self) -> tuple[MemberFacts, ...]:
        return tuple(m for m in self.members if m.node_id != self.leader)


@dataclass(frozen=True)
class MemberState:
    node_id: str
    role: str  # "leader" | "sync" | "joining" | "async"
    online: bool
    healthy: bool
    last_index: int
    lag_entries: int | None
    lag_s: float | None
    why: str  # why not healthy, or a note
    eligible: bool


@dataclass(frozen=True)
class QuorumReport:
    group: str
    leader: str
    epoch: int
    min_sync: int
    strict: bool
    met: bool
    reason: str
    members: tuple[MemberState, ...]
    sync_set: tuple[str, ...]
    joining: tuple[str, ...]
    commit_index: int


@dataclass(frozen=True)
class SyncSet:
    sync_set: tuple[str, ...]
    joining: tuple[str, ...]


@dataclass(frozen=True)
class RestorePlan:
    result: SyncSet
    added: tuple[str, ...]
    removed: tuple[str, ...]
    detail: str
    blocked: bool


def unhealthy_because(g: GroupFacts, m: MemberFacts, now: float) -> str | None:
    """Why replica `m` cannot serve as a sync replica now, or None."""
    if not m.online:
        return "offline"
    if m.refused:
        return bad_peer(m)
    if m.diverged_at:
        return f"journal diverged at entry {m.diverged_at}"
    if not g.leader:
        return None
    if m.last_pull_mono is None:
        return f"has not pulled from leader {g.leader}"
    age = now - m.last_pull_mono
    if age > g.replica_timeout_s:
        return f"last pull {age:.1f}s ago (limit {g.replica_timeout_s:g}s)"
    return None


def bad_peer(m: MemberFacts) -> str:
    return f"bad peer: the hub refused its journal report ({m.refused})"


def caught_up(g: GroupFacts, m: MemberFacts) -> bool:
    return m.lag_entries is not None and m.lag_entries <= g.restore_max_lag_entries


def _role(g: GroupFacts, node: str) -> str:
    if node == g.leader:
        return "leader"
    if node in g.sync_set:
        return "sync"
    return "joining" if node in g.joining else "async"


def ineligible_because(g: GroupFacts, node: str) -> str | None:
    """Why `node` may not take over without risking committed entries (INV-REPL-01)."""
    m = g.member(node)
    if m is None:
        return "not a member of the group"
    if m.refused:
        return bad_peer(m)
    if m.diverged_at:
        return f"journal diverged at entry {m.diverged_at}"
    if not g.journal_in_use:
        return None
    # While the sync set is still forming, the joining members are the ones the leader
    # waits for: an entry acknowledged then is on them, maybe on nobody else. The holder of
    # the latest epoch is not waited for, yet it holds every committed entry: it held them
    # when it took over (it was eligible) and appended every one committed since. Without
    # this, a leader whose lease lapsed while a sync replica was down could never take it
    # back, and the group would stay leaderless until that replica returned.
    holders = g.sync_set or g.joining
    if g.min_sync > 0 and holders and node not in holders and node != g.epoch_holder:
        which = ", ".join(g.sync_set) if g.sync_set else f"forming: {', '.join(holders)} joining"
        return f"not in the sync set ({which}): may lack committed entries"
    if m.last_index < g.commit_index:
        return f"holds entries up to {m.last_index}, {g.commit_index} are committed"
    return None


def evaluate_quorum(g: GroupFacts, now: float) -> QuorumReport:
    states = []
    for m in g.members:
        why = None if m.node_id == g.leader else unhealthy_because(g, m, now)
        block = ineligible_because(g, m.node_id)
        states.append(
            MemberState(
                node_id=m.node_id,
                role=_role(g, m.node_id),
                online=m.online,
                healthy=m.online and why is None,
                last_index=m.last_index,
                lag_entries=None if m.node_id == g.leader else m.lag_entries,
                lag_s=None if m.node_id == g.leader else m.lag_s,
                why=why or ("" if m.node_id == g.leader or block is None else block),
                eligible=m.node_id != g.leader and block is None and m.online,
            )
        )
    met, reason = _verdict(g, {s.node_id: s for s in states})
    return QuorumReport(
        g.group,
        g.leader,
        g.epoch,
        g.min_sync,
        g.strict,
        met,
        reason,
        tuple(states),
        g.sync_set,
        g.joining,
        g.commit_index,
    )


def _verdict(g: GroupFacts, states: dict[str, MemberState]) -> tuple[bool, str]:
    if not g.leader:
        return False, "no leader: nobody holds the group's lease"
    replicas = [s for s in states.values() if s.node_id != g.leader]
    if g.min_sync == 0:
        lags = [s.lag_entries for s in replicas if s.healthy and s.lag_entries is not None]
        if not replicas:
            return True, "async mode, single node: nothing to replicate to"
        if not lags:
            return False, "async mode: no replica is pulling; a failover would lose entries"
        best = min(lags)
        ok = best <= g.max_async_lag_entries
        return ok, (
            f"async mode: a failover may lose the {best} entries the best replica lacks "
            f"(bound {g.max_async_lag_entries})"
        )
    if len(replicas) < g.min_sync:
        return False, (f"the group has {len(replicas)} replicas; min_sync_replicas is {g.min_sync}")
    members = [states[n] for n in g.sync_set + g.joining if n in states]
    lost = [s for s in members if not s.healthy]
    if lost:
        names = ", ".join(f"{s.node_id} ({s.why})" for s in lost)
        effect = (
            "strict mode refuses appends"
            if g.strict
            else "appends continue without it (degraded: a failover may lose entries)"
        )
        return False, f"sync replica {names} lost: {effect}; 'edgectl quorum restore' replaces it"
    if len(members) < g.min_sync:
        return False, (
            f"the sync set has {len(members)} of {g.min_sync} required replicas and no healthy, "
            "caught-up replica to add"
        )
    joining = [s.node_id for s in members if s.role == "joining"]
    note = f"; joining: {', '.join(joining)}" if joining else ""
    return True, f"{len(members)} of {g.min_sync} sync replicas healthy{note}"


def _fill(g: GroupFacts, keep: list[str], now: float) -> list[str]:
    taken = set(keep)
    pool = sorted(
        (
            m
            for m in g.replicas()
            if m.node_id not in taken
            and unhealthy_because(g, m, now) is None
            and caught_up(g, m)
            and g.leader
        ),
        key=lambda m: (m.lag_entries or 0, m.node_id),
    )
    return [m.node_id for m in pool[: max(0, g.min_sync - len(keep))]]


def plan_sync_set(g: GroupFacts, now: float) -> SyncSet:
    """The sync set without an operator: see the module docstring."""
    if not g.leader:
        return SyncSet(g.sync_set, g.joining)
    replicas = {m.node_id for m in g.replicas()}
    sync = [n for n in g.sync_set if n in replicas]
    joining = [n for n in g.joining if n in replicas]
    if not g.strict:
        healthy = {m.node_id for m in g.replicas() if unhealthy_because(g, m, now) is None}
        sync = [n for n in sync if n in healthy]
        joining = [n for n in joining if n in healthy]
    if g.min_sync == 0:
        return SyncSet((), ())
    joining += _fill(g, sync + joining, now)
    return SyncSet(tuple(sync), tuple(joining))


def confirm(g: GroupFacts, confirmed: tuple[str, ...]) -> SyncSet:
    """Joining members the leader confirmed hold every committed entry become sync members."""
    moved = [n for n in g.joining if n in confirmed]
    return SyncSet(g.sync_set + tuple(moved), tuple(n for n in g.joining if n not in confirmed))


def plan_restore(g: GroupFacts, now: float) -> RestorePlan:
    unchanged = SyncSet(g.sync_set, g.joining)
    if not g.leader:
        return RestorePlan(unchanged, (), (), "no leader: nothing to restore for", True)
    if g.min_sync == 0:
        return RestorePlan(unchanged, (), (), "async mode (min_sync_replicas = 0)", True)
    current = g.sync_set + g.joining
    lost = [n for n in current if (m := g.member(n)) is None or unhealthy_because(g, m, now)]
    keep = [n for n in current if n not in lost]
    added = _fill(g, keep, now)
    if len(keep) + len(added) < g.min_sync:
        whys = [
            f"{m.node_id}: {unhealthy_because(g, m, now) or _lag_text(g, m)}"
            for m in g.replicas()
            if m.node_id not in keep
        ]
        return RestorePlan(
            unchanged,
            (),
            (),
            f"cannot restore: {g.min_sync - len(keep)} more sync replica(s) needed and none "
            f"is healthy and caught up ({'; '.join(whys) or 'no other replicas'})",
            True,
        )
    if not lost and not added:
        return RestorePlan(unchanged, (), (), "nothing to restore: the sync set is complete", False)
    result = SyncSet(
        tuple(n for n in g.sync_set if n in keep),
        tuple(n for n in g.joining if n in keep) + tuple(added),
    )
    detail = "; ".join(
        part
        for part in (
            f"removed lost {', '.join(lost)}" if lost else "",
            f"added {', '.join(added)} (joining until the leader confirms it holds every "
            "committed entry)"
            if added
            else "",
        )
        if part
    )
    return RestorePlan(result, tuple(added), tuple(lost), detail, False)


def _lag_text(g: GroupFacts, m: MemberFacts) -> str:
    if m.lag_entries is None:
        return "lag unknown"
    return f"{m.lag_entries} entries behind (restore takes at most {g.restore_max_lag_entries})"


def with_sync(g: GroupFacts, s: SyncSet) -> GroupFacts:
    return replace(g, sync_set=s.sync_set, joining=s.joining)

"""The journal's replication state on one node: the hub's plan, and the leader's side.

The hub tells every member who leads the journal, at which peer address, and whom the
leader must wait for (the sync set and joining members). As leader this node appends,
counts replicas' pulls as their durable positions, and acknowledges an entry as committed
only by `sync_rule` (INV-REPL-01). It reports its position (and, as leader, its view of
each replica and which sync members hold every committed entry) in heartbeats. The
replica's side (pulling, divergence, recovery) is in agent/journal/replica.py.

A pull counts only up to what this leader sent on that pull stream (`sync_rule.acknowledged`;
the leader names each stream with a random token only the replica it answered learns),
and only from a member of the current plan whose certificate is not revoked: a process
holding a replica's key that claims entries it was never sent confirms nothing.
"""

import asyncio
import contextlib
import logging
import secrets
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from agent.config import ReplicationSection
from agent.journal.store import Entry, JournalStore
from agent.journal.sync_rule import (
    SyncView,
    acknowledged,
    append_refusal,
    confirmed_members,
    covered_after,
    missing,
    must_confirm,
)
from agent.link.hub_messages import Handler, Reply
from agent.pki.revocations import RevokedSerials
from edgecommon.cadence import wait_for_event
from edgecommon.clock import Clock
from edgecommon.errors import Conflict, InvalidArgument
from edgecommon.identity import Identity
from edgecommon.pb import link_pb2, replication_pb2

log = logging.getLogger("edge-agent.journal")
MAX_KEY_BYTES = 256
STREAMS_PER_NODE = 4  # pull streams remembered per replica (a reconnecting one keeps its own)


class NotLeader(Conflict):
    """This node does not lead its group's journal."""


class QuorumLost(Conflict):
    """The leader cannot promise what a sync append promises."""


class Leadership(Protocol):
    epoch: int
    leader: str

    def is_leader(self) -> bool: ...


class JournalRole(StrEnum):
    LEADER = "leader"
    REPLICA = "replica"
    DIVERGED = "diverged"  # stopped pulling: its journal and the leader's disagree
    IDLE = "idle"  # no leader known


@dataclass(frozen=True)
class ReplicationStatistics:
    role: JournalRole
    plan_revision: int  # of the hub's replication plan last received
    leader: str
    sync_members: int  # the plan's sync set and joining members
    min_sync: int
    commit_index: int  # as leader (0 otherwise)
    replicas: int  # as leader: replicas whose pulls it counts
    pull_streams: int  # as leader: replicas' pull streams it remembers
    waiting_appends: int  # as leader: appends waiting for sync replicas
    diverged_at: int
    bad_peer: str


@dataclass(frozen=True)
class Plan:
    group: str = ""
    leader: str = ""
    leader_address: str = ""
    epoch: int = 0
    sync_set: tuple[str, ...] = ()
    joining: tuple[str, ...] = ()
    min_sync: int = 0
    strict: bool = True
    revision: int = 0

    @classmethod
    def from_pb(cls, p: link_pb2.ReplicationPlan) -> "Plan":
        return cls(
            p.group,
            p.leader,
            p.leader_peer_address,
            p.epoch,
            tuple(p.sync_set),
            tuple(p.joining),
            p.min_sync,
            p.strict,
            p.revision,
        )

    @property
    def members(self) -> tuple[str, ...]:
        return self.sync_set + self.joining


@dataclass(frozen=True)
class Progress:
    durable: int  # acknowledged: what counts toward commits (sync_rule.acknowledged)
    seen_mono: float
    waiting: bool = False  # a pull is open at the leader right now (long poll)
    serial: str = ""  # the certificate that acknowledged it


@dataclass
class PullStream:
    """One replica's pull stream at this leader: what was sent on it, in order."""

    node: str
    covered: int
    used_mono: float


@dataclass(frozen=True)
class PullAck:
    index: int  # how much of the claim counts
    token: bytes  # the stream, named in the answer
    connected: bool  # entries sent in the answer extend the stream


@dataclass(frozen=True)
class AppendOutcome:
    entry: Entry
    confirmed_by: tuple[str, ...]
    mode: str


def check_entry(key: str, value: bytes, max_payload: int) -> None:
    if not key:
        raise InvalidArgument("the journal key is empty: give a KEY such as 'plan/step'")
    if len(key.encode()) > MAX_KEY_BYTES:
        raise InvalidArgument(f"the journal key is longer than {MAX_KEY_BYTES} bytes")
    if len(value) > max_payload:
        raise InvalidArgument(
            f"the value is {len(value)} bytes; the limit is {max_payload} "
            "([replication].max_payload_bytes)"
        )


def entry_pb(e: Entry) -> replication_pb2.Entry:
    return replication_pb2.Entry(
        index=e.index,
        epoch=e.epoch,
        prev_hash=e.prev_hash,
        hash=e.hash,
        key=e.key,
        payload=e.payload,
        appended_unix=e.appended_unix,
    )


def append_result(outcome: AppendOutcome, leader: str) -> replication_pb2.AppendResult:
    """The answer to a committed append, the same wherever it was asked for: the local API
    (agent/journal/api.py) and the hub's forwarded appends (agent/journal/peer.py)."""
    e = outcome.entry
    return replication_pb2.AppendResult(
        index=e.index,
        epoch=e.epoch,
        hash=e.hash,
        committed=True,
        confirmed_by=outcome.confirmed_by,
        leader=leader,
        mode=outcome.mode,
    )


def entry_of(m: replication_pb2.Entry) -> Entry:
    return Entry(m.index, m.epoch, m.prev_hash, m.hash, m.key, m.payload, m.appended_unix)


class Replication:
    def __init__(
        self,
        store: JournalStore,
        config: ReplicationSection,
        me: Identity,
        leadership: Leadership,
        clock: Clock,
        revoked: RevokedSerials,
        peer_address: str,
    ) -> None:
        self.store = store
        self.config = config
        self.me = me
        self.leadership = leadership
        self.clock = clock
        # The hub's revoked serials; acknowledgements made with one stop counting.
        self.revoked = revoked
        self.revoked.listeners.append(self._revoked)
        self.plan = Plan(group=me.group)
        self.plan_changed = asyncio.Event()
        self.progress: dict[str, Progress] = {}
        self.commit_index = 0
        # Where this node's Peer service is reached (reported to the hub, which tells the
        # replicas when this node leads).
        self.peer_address = peer_address
        self.diverged_at = 0
        self.detail = ""
        self.bad_peer = ""
        self.leader_last_index = 0
        self.journal_lock = asyncio.Lock()  # replica writes vs recovery
        # Appends waiting for sync replicas: (index, whom, resolved when all of them hold it).
        self._waiters: list[tuple[int, tuple[str, ...], asyncio.Future[None]]] = []
        self._led_epoch = 0
        self._base = 0  # the last index when this leadership began
        self._streams: dict[bytes, PullStream] = {}

    def statistics(self) -> ReplicationStatistics:
        # Read without `leading()`: a snapshot must not start a new leadership's counting.
        lead = self.leadership
        leading = lead.is_leader()
        current = leading and lead.epoch == self._led_epoch
        if leading:
            role = JournalRole.LEADER
        elif self.diverged_at:
            role = JournalRole.DIVERGED
        else:
            role = JournalRole.REPLICA if self.plan.leader else JournalRole.IDLE
        return ReplicationStatistics(
            role=role,
            plan_revision=self.plan.revision,
            leader=self.plan.leader,
            sync_members=len(self.plan.members),
            min_sync=self.plan.min_sync,
            commit_index=self.commit_index if current else 0,
            replicas=len(self.progress) if current else 0,
            pull_streams=len(self._streams) if current else 0,
            waiting_appends=sum(1 for _, _, done in self._waiters if not done.done()),
            diverged_at=self.diverged_at,
            bad_peer=self.bad_peer,
        )

    # --- the plan ---------------------------------------------------------------------

    def set_plan(self, message: link_pb2.ReplicationPlan) -> None:
        plan = Plan.from_pb(message)
        if plan != self.plan:
            log.info(
                "journal plan r%d: leader %s at %s (epoch %d), sync %s, joining %s, min_sync %d%s",
                plan.revision,
                plan.leader or "none",
                plan.leader_address or "-",
                plan.epoch,
                ",".join(plan.sync_set) or "-",
                ",".join(plan.joining) or "-",
                plan.min_sync,
                "" if plan.strict else " (not strict)",
            )
        self.plan = plan
        self.plan_changed.set()
        self._advance()

    def hub_handlers(self) -> dict[str, Handler]:
        return {"replication": self._on_plan}

    async def _on_plan(self, plan: link_pb2.ReplicationPlan, reply: Reply) -> None:
        self.set_plan(plan)

    async def wait_plan(self, timeout_s: float) -> None:
        self.plan_changed.clear()
        await wait_for_event(self.plan_changed, timeout_s)

    # --- the leader's side -------------------------------------------------------------

    def leading(self) -> bool:
        if not self.leadership.is_leader():
            return False
        epoch = self.leadership.epoch
        if epoch != self._led_epoch:
            # New leadership: what replicas told an earlier leadership no longer counts.
            self._led_epoch = epoch
            self.progress.clear()
            self._streams.clear()
            self.commit_index = self._base = self.store.last.index
        return True

    @property
    def role(self) -> str:
        if self.leading():
            return "leader"
        if self.diverged_at:
            return "diverged"
        return "replica" if self.plan.leader else "idle"

    def view(self) -> SyncView:
        now = self.clock.monotonic()
        return SyncView(
            me=self.me.name,
            group=self.me.group,
            epoch=self.leadership.epoch,
            plan_epoch=self.plan.epoch if self.plan.leader == self.me.name else -1,
            members=self.plan.members,
            min_sync=self.plan.min_sync,
            strict=self.plan.strict,
            seen_age_s={n: self._age(p, now) for n, p in self.progress.items()},
            timeout_s=self.config.replica_timeout_s,
        )

    @staticmethod
    def _age(p: Progress, now: float) -> float:
        return 0.0 if p.waiting else now - p.seen_mono

    def pull_open(self, node: str, is_open: bool) -> None:
        """A replica's long poll began or ended: while it waits here it is heard from."""
        p = self.progress.get(node)
        if p is not None:
            self.progress[node] = Progress(p.durable, self.clock.monotonic(), is_open, p.serial)

    def durable(self) -> dict[str, int]:
        """What counts toward commits: members of the current plan, certificates not revoked."""
        members = set(self.plan.members)
        return {
            n: p.durable
            for n, p in self.progress.items()
            if n in members and p.serial not in self.revoked
        }

    def note_pull(
        self, node: str, after_index: int, serial: str = "", token: bytes = b""
    ) -> PullAck:
        """A replica, with certificate `serial`, pulled after `after_index` (it says it holds
        that durably) on pull stream `token` (b"": a new stream). Counts what is possible."""
        now = self.clock.monotonic()
        stream = self._streams.pop(token, None) if token else None
        if stream is None or stream.node != node:
            # A token is a secret between the leader and the replica it answered (TLS):
            # unguessable, hence not from the injected (seeded) random source.
            token, stream = secrets.token_bytes(16), PullStream(node, 0, now)
        stream.used_mono = now
        self._streams[token] = stream  # the most recently used last
        self._forget_streams(node)
        index = acknowledged(after_index, self._base, stream.covered)
        self.progress[node] = Progress(index, now, serial=serial)
        self._progressed()
        return PullAck(index, token, index == after_index)

    def sent(self, token: bytes, claim: int, through: int) -> None:
        """The answer to `claim` on stream `token` carried entries up to `through`."""
        stream = self._streams.get(token)
        if stream is not None:
            stream.covered = covered_after(claim, self._base, stream.covered, through)

    def _forget_streams(self, node: str) -> None:
        mine = [t for t, s in self._streams.items() if s.node == node]  # oldest use first
        for token in mine[:-STREAMS_PER_NODE]:
            del self._streams[token]

    def _revoked(self, serials: frozenset[str]) -> None:
        """Acknowledgements made with a revoked certificate no longer count."""
        gone = [n for n, p in self.progress.items() if p.serial in serials]
        for node in gone:
            del self.progress[node]
            self._streams = {t: s for t, s in self._streams.items() if s.node != node}
            log.warning(
                "replica %s's certificate was revoked: its acknowledgements no longer count", node
            )

    def _progressed(self) -> None:
        self._advance()
        if self._waiters:
            durable = self.durable()
            still = []
            for waiter in self._waiters:
                index, must, done = waiter
                if done.done():
                    continue
                if missing(index, must, durable):
                    still.append(waiter)
                else:
                    done.set_result(None)
            self._waiters = still

    def _advance(self) -> None:
        if not self.leading():
            return
        view = self.view()
        must = must_confirm(view)
        durable = self.durable()
        reach = min((durable.get(m, 0) for m in must), default=self.store.last.index)
        self.commit_index = max(self.commit_index, min(reach, self.store.last.index))

    def not_leader(self) -> NotLeader:
        plan, g = self.plan, self.me.group
        if plan.leader and plan.leader != self.me.name:
            where = f"the leader is {plan.leader} at {plan.leader_address or 'an unknown address'}"
        else:
            where = "no leader is known right now"
        return NotLeader(
            f"not_leader: {self.me.name} is a replica of group {g}; {where} "
            f"(append there, or 'edgectl journal append --group {g}')"
        )

    async def append(self, key: str, value: bytes) -> AppendOutcome:
        check_entry(key, value, self.config.max_payload_bytes)
        if not self.leading():
            raise self.not_leader()
        epoch = self.leadership.epoch
        if self.store.last.epoch > epoch:
            raise Conflict(
                f"this node's journal holds entries of epoch {self.store.last.epoch}, newer than "
                f"its lease epoch {epoch}: it has diverged; see 'edgectl replica divergence'"
            )
        view = self.view()
        if why := append_refusal(view):
            raise QuorumLost(why)
        must = must_confirm(view)
        entry = await self.store.append(key, value, epoch)
        await self._wait_confirmed(entry, must)
        self.commit_index = max(self.commit_index, entry.index)
        return AppendOutcome(entry, must, "sync" if view.min_sync else "async")

    async def _wait_confirmed(self, entry: Entry, must: tuple[str, ...]) -> None:
        deadline = self.clock.monotonic() + self.config.commit_timeout_s
        if not missing(entry.index, must, self.durable()):
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((entry.index, must, done))
        try:
            await self._until_confirmed(entry, must, done, deadline)
        finally:
            done.cancel()

    async def _until_confirmed(
        self, entry: Entry, must: tuple[str, ...], done: asyncio.Future[None], deadline: float
    ) -> None:
        while not done.done() and (lacking := missing(entry.index, must, self.durable())):
            who = ", ".join(lacking)
            if not self.leadership.is_leader():
                raise Conflict(
                    f"entry {entry.index} is durable on {self.me.name} but leadership was lost "
                    f"before {who} confirmed it: not acknowledged as committed"
                )
            left = deadline - self.clock.monotonic()
            if left <= 0:
                raise QuorumLost(
                    f"entry {entry.index} is durable on the leader but sync replica {who} did "
                    f"not confirm it within {self.config.commit_timeout_s:g}s: not acknowledged "
                    "as committed"
                )
            # Woken by the pull that completes it; every 0.5 s to check leadership.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(left, 0.5)):
                    await asyncio.shield(done)

    # --- reports -----------------------------------------------------------------------

    async def _lag_s(self, durable: int) -> float:
        if durable >= self.store.last.index:
            return 0.0
        first_missing = await self.store.appended_unix(durable + 1)
        return max(0.0, self.clock.wall() - first_missing) if first_missing else 0.0

    async def replica_views(self) -> list[link_pb2.ReplicaView]:
        if not self.leading():
            return []
        now, last = self.clock.monotonic(), self.store.last.index
        return [
            link_pb2.ReplicaView(
                node_id=node,
                durable_index=p.durable,
                lag_entries=max(0, last - p.durable),
                lag_s=await self._lag_s(p.durable),
                last_pull_age_s=self._age(p, now),
            )
            for node, p in sorted(self.progress.items())
        ]

    async def journal_report(self) -> link_pb2.JournalReport:
        last = self.store.last
        leading = self.leading()
        confirmed: tuple[str, ...] = ()
        # Only once an entry of this leadership is committed: before that, a member's count
        # may rest on what the leadership began with, never sent to it on its stream.
        if (
            leading
            and self.plan.leader == self.me.name
            and self.plan.epoch == self._led_epoch
            and self.commit_index > self._base
        ):
            confirmed = confirmed_members(self.plan.members, self.commit_index, self.durable())
        return link_pb2.JournalReport(
            role=self.role,
            last_index=last.index,
            last_epoch=last.epoch,
            commit_index=self.commit_index if leading else 0,
            epoch=self.leadership.epoch if leading else 0,
            diverged_at=self.diverged_at,
            detail=self.detail,
            replicas=await self.replica_views(),
            sync_confirmed=confirmed,
            bad_peer=self.bad_peer,
            peer_address=self.peer_address,
            plan_revision=self.plan.revision,
            rewinds=self.store.rewinds,
        )

    async def add_to_heartbeat(self, beat: link_pb2.Heartbeat) -> None:
        beat.journal.CopyFrom(await self.journal_report())

    async def status(self) -> replication_pb2.ReplicaReport:
        last = self.store.last
        members = set(self.plan.members)
        return replication_pb2.ReplicaReport(
            node_id=self.me.name,
            group=self.me.group,
            role=self.role,
            last_index=last.index,
            last_epoch=last.epoch,
            last_hash=last.hash,
            commit_index=self.commit_index if self.leading() else 0,
            leader=self.plan.leader,
            leader_address=self.plan.leader_address,
            peer_address=self.peer_address,
            diverged_at=self.diverged_at,
            detail=self.detail,
            replicas=[
                replication_pb2.ReplicaProgress(
                    node_id=v.node_id,
                    durable_index=v.durable_index,
                    lag_entries=v.lag_entries,
                    lag_s=v.lag_s,
                    last_pull_age_s=v.last_pull_age_s,
                    in_sync_set=v.node_id in members,
                )
                for v in await self.replica_views()
            ],
            sync_set=self.plan.members,
            min_sync=self.plan.min_sync,
            strict=self.plan.strict,
            bad_peer=self.bad_peer,
            leader_last_index=self.leader_last_index,
        )

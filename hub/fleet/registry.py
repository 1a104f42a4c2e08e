"""The node registry: who is connected, what they last reported, and when they went away.

Live state (sessions, last heartbeat, metrics) is kept in memory and written to the
store in batches (every [link].flush_interval_s, at once on connect and disconnect), so
a thousand heartbeats a second cost one transaction every few seconds. The offline
decision is the pure function `overdue`.

It is also the hub's one sender to agents: every manager that tells agents something
(stops, the fleet switch, lease nudges, journal plans, revocations) calls `send` with a
scope, and only `send` (and the Link servicer, which drains it onto the stream) touches a
session's outbox.
"""

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from cryptography import x509

from edgecommon import pki
from edgecommon.cadence import wait_for_event
from edgecommon.clock import Clock
from edgecommon.group_commit import WriteBehind
from edgecommon.identity import Identity
from edgecommon.pb import link_pb2
from edgecommon.scope import Scope, ScopeKind
from hub.config import LinkSection
from hub.store.base import HubStore, NodeRecord

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Session:
    """One open Connect stream. The outbox carries messages to the agent; None ends it."""

    session_id: int
    node_id: str
    group: str
    connected_mono: float
    last_heartbeat_mono: float
    outbox: asyncio.Queue[link_pb2.HubMessage | None] = field(default_factory=asyncio.Queue)
    close_reason: str = ""
    refused: str = ""  # why a message the agent sent was refused (the stream then ends)

    def close(self, reason: str) -> None:
        if not self.close_reason:
            self.close_reason = reason
            self.outbox.put_nowait(None)


@dataclass(frozen=True)
class RegistryStatistics:
    nodes: int  # enrolled
    online: int
    sessions: int  # open Connect streams
    attached: int  # streams registered since the hub started
    replaced: int  # sessions closed by a newer stream of the same node
    timed_out: int  # sessions ended for lack of heartbeats
    heartbeats: int
    unsaved: int  # nodes whose live state waits for the next flush
    flushes: int


@dataclass(frozen=True)
class NodeView:
    record: NodeRecord
    heartbeat: link_pb2.Heartbeat | None
    connected: bool


def overdue(last_heartbeat: dict[str, float], now: float, window_s: float) -> list[str]:
    """Nodes whose last heartbeat is more than `window_s` old at `now` (monotonic)."""
    return sorted(node for node, seen in last_heartbeat.items() if now - seen > window_s)


class Registry:
    def __init__(self, store: HubStore, clock: Clock, config: LinkSection) -> None:
        self.store = store
        self.clock = clock
        self.config = config
        self._records: dict[str, NodeRecord] = {}
        self._sessions: dict[str, Session] = {}
        # The same sessions by group: a plan for one group is not a walk over the fleet.
        self._by_group: dict[str, dict[str, Session]] = {}
        self._heartbeats: dict[str, link_pb2.Heartbeat] = {}
        # Node records changed since the last flush, written by `run` in batches.
        self._unsaved: WriteBehind[str] = WriteBehind(self._save)
        self._wake = asyncio.Event()
        self._next_session = 0
        # Counted for statistics(), since the hub started.
        self._attached = self._replaced = self._timed_out = self._heartbeat_count = 0
        self._flushes = 0

    async def load(self) -> None:
        now = self.clock.wall()
        for record in await self.store.list_nodes():
            if record.state == "online":
                record = replace(
                    record, state="offline", state_since_unix=now, state_reason="hub restarted"
                )
                self._unsaved.note(record.node_id)
            self._records[record.node_id] = record
        await self.flush()

    def statistics(self) -> RegistryStatistics:
        return RegistryStatistics(
            nodes=len(self._records),
            online=sum(1 for r in self._records.values() if r.state == "online"),
            sessions=len(self._sessions),
            attached=self._attached,
            replaced=self._replaced,
            timed_out=self._timed_out,
            heartbeats=self._heartbeat_count,
            unsaved=len(self._unsaved),
            flushes=self._flushes,
        )

    def attach(
        self, identity: Identity, cert: x509.Certificate, register: link_pb2.Register
    ) -> Session:
        now, mono = self.clock.wall(), self.clock.monotonic()
        previous = self._sessions.get(identity.name)
        if previous is not None:
            previous.close("replaced by a newer connection from the same node")
            self._replaced += 1
        self._attached += 1
        self._next_session += 1
        session = Session(self._next_session, identity.name, identity.group, mono, mono)
        self._add(session)
        old = self._records.get(identity.name)
        self._records[identity.name] = NodeRecord(
            node_id=identity.name,
            group=identity.group,
            labels=dict(register.labels),
            agent_version=register.agent_version,
            hostname=register.hostname,
            cert_serial=pki.serial_hex(cert),
            cert_expires_unix=cert.not_valid_after_utc.timestamp(),
            first_seen_unix=old.first_seen_unix if old and old.first_seen_unix else now,
            last_seen_unix=now,
            state="online",
            state_since_unix=now,
            state_reason="connected",
        )
        self._heartbeats.pop(identity.name, None)
        self._mark(identity.name, urgent=True)
        if old is None or old.state != "online":
            log.info("%s is online (agent %s)", identity, register.agent_version)
        return session

    def _add(self, session: Session) -> None:
        previous = self._sessions.get(session.node_id)
        if previous is not None:  # replaced (its group may differ: a node re-enrolled)
            self._remove(previous)
        self._sessions[session.node_id] = session
        self._by_group.setdefault(session.group, {})[session.node_id] = session

    def _remove(self, session: Session) -> None:
        del self._sessions[session.node_id]
        members = self._by_group[session.group]
        del members[session.node_id]
        if not members:
            del self._by_group[session.group]

    def send(
        self,
        message: link_pb2.HubMessage,
        scope: Scope,
        *,
        only: Callable[[Session], bool] | None = None,
    ) -> tuple[str, ...]:
        """Queue `message` for every connected node in `scope` (and, given `only`, for
        which it says yes); the node ids it was queued for, sorted."""
        if scope.kind is ScopeKind.FLEET:
            sessions: Iterable[Session] = self._sessions.values()
        elif scope.kind is ScopeKind.GROUP:
            sessions = self._by_group.get(scope.name, {}).values()
        else:
            one = self._sessions.get(scope.name)
            sessions = () if one is None else (one,)
        queued = []
        for session in sessions:
            if only is None or only(session):
                session.outbox.put_nowait(message)
                queued.append(session.node_id)
        return tuple(sorted(queued))

    def heartbeat(self, session: Session, beat: link_pb2.Heartbeat) -> bool:
        """Take a heartbeat; False when it came on a session that is no longer the node's
        current one (and was ignored)."""
        if self._sessions.get(session.node_id) is not session:
            return False
        session.last_heartbeat_mono = self.clock.monotonic()
        self._heartbeats[session.node_id] = beat
        self._heartbeat_count += 1
        record = self._records[session.node_id]
        self._records[session.node_id] = replace(
            record,
            last_seen_unix=self.clock.wall(),
            agent_version=beat.agent_version or record.agent_version,
        )
        self._mark(session.node_id, urgent=False)
        return True

    def detach(self, session: Session, reason: str) -> None:
        if self._sessions.get(session.node_id) is not session:
            return
        self._remove(session)
        self._go_offline(session.node_id, session.close_reason or reason)

    def _go_offline(self, node_id: str, reason: str) -> None:
        record = self._records[node_id]
        if record.state == "offline":
            return
        self._records[node_id] = replace(
            record, state="offline", state_since_unix=self.clock.wall(), state_reason=reason
        )
        self._mark(node_id, urgent=True)
        log.info("node %s (group %s) is offline: %s", node_id, record.group, reason)

    def _mark(self, node_id: str, *, urgent: bool) -> None:
        self._unsaved.note(node_id)
        if urgent:
            self._wake.set()

    def sweep(self) -> None:
        window = self.config.offline_after_s
        seen = {n: s.last_heartbeat_mono for n, s in self._sessions.items()}
        for node_id in overdue(seen, self.clock.monotonic(), window):
            session = self._sessions[node_id]
            self._remove(session)
            session.close(f"no heartbeat for more than {window:g}s")
            self._timed_out += 1
            self._go_offline(node_id, session.close_reason)

    async def flush(self) -> None:
        await self._unsaved.flush()

    async def _save(self, node_ids: list[str]) -> None:
        await self.store.save_nodes([self._records[n] for n in sorted(node_ids)])
        self._flushes += 1

    async def run(self) -> None:
        """Sweep for silent nodes and flush live state, on a cadence, early when woken."""
        cadence = min(self.config.flush_interval_s, self.config.heartbeat_interval_s)
        flush_every = self.config.flush_interval_s
        last_flush = self.clock.monotonic()
        while True:
            urgent = await wait_for_event(self._wake, cadence)
            self._wake.clear()
            self.sweep()
            if urgent or self.clock.monotonic() - last_flush >= flush_every:
                await self.flush()
                last_flush = self.clock.monotonic()

    def heartbeat_age(self, node_id: str) -> float | None:
        """Seconds since the node's last heartbeat on its current stream, None if offline."""
        session = self._sessions.get(node_id)
        return self.clock.monotonic() - session.last_heartbeat_mono if session else None

    def session(self, node_id: str) -> Session | None:
        """The node's current session, None when it is offline."""
        return self._sessions.get(node_id)

    def live_sessions(self) -> list[Session]:
        return list(self._sessions.values())

    def heartbeat_of(self, node_id: str) -> link_pb2.Heartbeat | None:
        return self._heartbeats.get(node_id) if node_id in self._sessions else None

    def views(self, group: str = "") -> list[NodeView]:
        return [
            self._view(record)
            for record in sorted(self._records.values(), key=lambda r: (r.group, r.node_id))
            if not group or record.group == group
        ]

    def groups(self) -> set[str]:
        """Every group with an enrolled node."""
        return {record.group for record in self._records.values()}

    def view(self, node_id: str) -> NodeView | None:
        record = self._records.get(node_id)
        return self._view(record) if record else None

    def _view(self, record: NodeRecord) -> NodeView:
        return NodeView(
            record, self._heartbeats.get(record.node_id), record.node_id in self._sessions
        )

    def close_all(self, reason: str, sessions: Iterable[Session] | None = None) -> None:
        for session in list(sessions or self._sessions.values()):
            session.close(reason)

    def enrolled(self, record: NodeRecord) -> None:
        """A node (re-)enrolled: take the record the enrollment stored."""
        current = self._records.get(record.node_id)
        if current is None or current.state != "online":
            self._records[record.node_id] = record

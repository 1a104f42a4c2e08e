"""Emergency stops on the hub: persist first, then fan out; track who acknowledged.

Engaging writes the stop to the store before anything is sent, so a hub crash right
after `engage` answered cannot forget it: agents that reconnect get it in their first
message. Each agent acknowledges only after latching it on disk. Acknowledgements are
kept in memory for `status` at once and written to the store in batches.

Releases are explicit: a stop leaves an agent's latch only when a release for that
exact stop reaches it (INV-ESTOP-01). An agent that reconnects reports the hub stops it
holds; those released meanwhile are released to it by id.
"""

import asyncio
import logging
import secrets
from collections import defaultdict
from dataclasses import dataclass

from edgecommon.cadence import wait_for_event, wait_until
from edgecommon.clock import Clock
from edgecommon.errors import Conflict, NotFound
from edgecommon.group_commit import WriteBehind
from edgecommon.pb import fleet_pb2, link_pb2
from edgecommon.reasons import check_reason
from edgecommon.scope import Scope, ScopeKind, parse_scope
from hub.fleet.registry import Registry
from hub.store.base import AckRecord, HubStore, StopRecord

log = logging.getLogger("edge-hub.estop")
ACK_FLUSH_S = 0.2


@dataclass(frozen=True)
class Ack:
    acked_unix: float
    latency_s: float


@dataclass(frozen=True)
class EstopStatistics:
    active: int  # stops engaged and not released
    known: int  # every stop in the store, released ones too
    engaged: int  # since the hub started
    released: int  # stops released since the hub started
    acks: int  # acknowledgements received since the hub started (first per node and stop)
    acks_unsaved: int  # waiting for the next batch write
    pending: int  # connected nodes in scope of an active stop that have not acknowledged it
    max_ack_latency_s: float  # the slowest acknowledgement of an active stop (0: none)


def command(stop: StopRecord) -> link_pb2.EstopCommand:
    return link_pb2.EstopCommand(
        stop_id=stop.stop_id,
        scope=stop.scope,
        reason=stop.reason,
        operator=stop.operator,
        engaged_unix=stop.engaged_unix,
    )


def release_command(stop: StopRecord) -> link_pb2.EstopRelease:
    return link_pb2.EstopRelease(
        stop_id=stop.stop_id, reason=stop.release_reason, operator=stop.release_operator
    )


class EstopManager:
    def __init__(self, store: HubStore, registry: Registry, clock: Clock) -> None:
        self.store = store
        self.registry = registry
        self.clock = clock
        self.stops: dict[str, StopRecord] = {}
        self.acks: dict[str, dict[str, Ack]] = defaultdict(dict)
        self._sent_mono: dict[tuple[str, str], float] = {}
        # Acknowledgements not yet in the store, written by `run` in batches.
        self._unsaved: WriteBehind[tuple[str, str]] = WriteBehind(self._save_acks)
        self._wake = asyncio.Event()
        self.ack_event = asyncio.Event()
        # Counted for statistics(), since the hub started.
        self._engaged = self._released = self._acks_received = 0

    async def load(self) -> None:
        self.stops = {s.stop_id: s for s in await self.store.list_stops()}
        for ack in await self.store.list_acks():
            self.acks[ack.stop_id][ack.node_id] = Ack(ack.acked_unix, ack.latency_s)

    def active(self) -> list[StopRecord]:
        return [s for s in self.stops.values() if s.active]

    def _check_target(self, scope: Scope) -> None:
        views = self.registry.views()
        if scope.kind is ScopeKind.GROUP and not any(v.record.group == scope.name for v in views):
            raise NotFound(
                f"group {scope.name} has no enrolled nodes; check 'edgectl fleet status'"
            )
        if scope.kind is ScopeKind.NODE and self.registry.view(scope.name) is None:
            raise NotFound(f"node {scope.name} is not enrolled; check 'edgectl fleet status'")

    async def engage(self, scope_text: str, reason: str, operator: str) -> StopRecord:
        scope = parse_scope(scope_text)
        reason = check_reason(reason)
        self._check_target(scope)
        stop = StopRecord(
            stop_id=f"stop-{secrets.token_hex(6)}",
            scope=str(scope),
            reason=reason,
            operator=operator,
            engaged_unix=self.clock.wall(),
        )
        await self.store.add_stop(stop)
        self.stops[stop.stop_id] = stop
        self._engaged += 1
        sent = self._send(scope, link_pb2.HubMessage(estop=command(stop)), stop.stop_id)
        log.warning(
            "EMERGENCY STOP %s engaged on %s by %s: %s; sent to %d connected nodes",
            stop.stop_id,
            stop.scope,
            operator,
            reason,
            sent,
        )
        return stop

    async def release(self, scope_text: str, reason: str, operator: str) -> list[StopRecord]:
        scope = parse_scope(scope_text)
        reason = check_reason(reason)
        matching = [s for s in self.active() if s.scope == str(scope)]
        if not matching:
            active = ", ".join(sorted({s.scope for s in self.active()})) or "none"
            raise Conflict(f"scope {scope} is not stopped (active stops: {active})")
        now = self.clock.wall()
        ids = [s.stop_id for s in matching]
        await self.store.release_stops(ids, now, reason, operator)
        released = []
        for stop in matching:
            done = StopRecord(
                stop.stop_id,
                stop.scope,
                stop.reason,
                stop.operator,
                stop.engaged_unix,
                now,
                reason,
                operator,
            )
            self.stops[stop.stop_id] = done
            self._released += 1
            released.append(done)
            self._send(scope, link_pb2.HubMessage(estop_release=release_command(done)), None)
        log.warning(
            "emergency stop on %s released by %s: %s (%s)", scope, operator, reason, ", ".join(ids)
        )
        return released

    def _send(self, scope: Scope, message: link_pb2.HubMessage, stop_id: str | None) -> int:
        mono = self.clock.monotonic()
        sent = self.registry.send(message, scope)
        if stop_id is not None:
            for node_id in sent:
                self._sent_mono[(stop_id, node_id)] = mono
        return len(sent)

    def covers(self, node_id: str, group: str) -> bool:
        """Whether an active hub stop applies to the node."""
        return any(parse_scope(s.scope).applies_to(node_id, group) for s in self.active())

    def for_node(
        self, node_id: str, group: str, latched_ids: list[str]
    ) -> tuple[list[link_pb2.EstopCommand], list[link_pb2.EstopRelease]]:
        """What a (re)connecting node must apply first: stops that apply, releases it missed."""
        mono = self.clock.monotonic()
        stops = []
        for stop in self.active():
            if parse_scope(stop.scope).applies_to(node_id, group):
                stops.append(command(stop))
                self._sent_mono.setdefault((stop.stop_id, node_id), mono)
        releases = [
            release_command(self.stops[i])
            for i in latched_ids
            if i in self.stops and not self.stops[i].active
        ]
        unknown = [i for i in latched_ids if i not in self.stops]
        if unknown:
            log.error(
                "node %s holds stops this hub does not know (%s): they stay latched "
                "until released on the node",
                node_id,
                ", ".join(unknown),
            )
        return stops, releases

    def acknowledged(self, node_id: str, ack: link_pb2.EstopAck) -> None:
        if ack.released or ack.stop_id not in self.stops:
            return
        if node_id in self.acks[ack.stop_id]:
            return
        now = self.clock.wall()
        sent = self._sent_mono.pop((ack.stop_id, node_id), None)
        latency = (
            self.clock.monotonic() - sent
            if sent is not None
            else max(0.0, now - self.stops[ack.stop_id].engaged_unix)
        )
        self.acks[ack.stop_id][node_id] = Ack(now, latency)
        self._unsaved.note((ack.stop_id, node_id))
        self._acks_received += 1
        self._wake.set()
        self.ack_event.set()

    async def run(self) -> None:
        """Write acknowledgements to the store in batches."""
        while True:
            await wait_for_event(self._wake, 5.0)
            self._wake.clear()
            await asyncio.sleep(ACK_FLUSH_S)
            await self._unsaved.flush()

    async def flush(self) -> None:
        await self._unsaved.flush()

    async def _save_acks(self, keys: list[tuple[str, str]]) -> None:
        await self.store.save_acks(
            [
                AckRecord(s, n, self.acks[s][n].acked_unix, self.acks[s][n].latency_s)
                for s, n in keys
            ]
        )

    def statistics(self) -> EstopStatistics:
        active = self.active()
        latencies = [
            ack.latency_s for stop in active for ack in self.acks.get(stop.stop_id, {}).values()
        ]
        return EstopStatistics(
            active=len(active),
            known=len(self.stops),
            engaged=self._engaged,
            released=self._released,
            acks=self._acks_received,
            acks_unsaved=len(self._unsaved),
            pending=self.pending(),
            max_ack_latency_s=max(latencies, default=0.0),
        )

    def pending(self, stop_id: str = "") -> int:
        """Connected nodes in scope of the stop (or of every active stop) that have not
        acknowledged it yet."""
        stops = [self.stops[stop_id]] if stop_id in self.stops else self.active()
        count = 0
        for stop in stops:
            scope, acks = parse_scope(stop.scope), self.acks.get(stop.stop_id, {})
            count += sum(
                1
                for s in self.registry.live_sessions()
                if scope.applies_to(s.node_id, s.group) and s.node_id not in acks
            )
        return count

    async def wait_acknowledged(self, stop_id: str, wait_s: float) -> None:
        """Return once no connected node in scope is pending, or after wait_s."""
        if stop_id and stop_id not in self.stops:
            raise NotFound(f"no stop {stop_id!r}; 'edgectl estop status' lists active stops")
        deadline = self.clock.monotonic() + wait_s
        # Rechecked every second too: a node that disconnects is no longer pending.
        await wait_until(
            lambda: not self.pending(stop_id), self.ack_event, deadline, self.clock, 1.0
        )

    def report(self, stop_id: str = "") -> fleet_pb2.EstopReport:
        if stop_id:
            if stop_id not in self.stops:
                raise NotFound(f"no stop {stop_id!r}; 'edgectl estop status' lists active stops")
            stops = [self.stops[stop_id]]
        else:
            stops = self.active()
        return fleet_pb2.EstopReport(
            stops=[self._stop_message(s) for s in stops], hub_time_unix=self.clock.wall()
        )

    def _stop_message(self, stop: StopRecord) -> fleet_pb2.Estop:
        scope = parse_scope(stop.scope)
        nodes = []
        acks = self.acks.get(stop.stop_id, {})
        for view in self.registry.views():
            record = view.record
            if not scope.applies_to(record.node_id, record.group):
                continue
            ack = acks.get(record.node_id)
            if ack is not None:
                state = "acknowledged"
            elif view.connected:
                state = "pending"
            else:
                state = "unreachable"
            nodes.append(
                fleet_pb2.EstopNode(
                    node_id=record.node_id,
                    group=record.group,
                    state=state,
                    ack_latency_s=ack.latency_s if ack else 0.0,
                    acked_unix=ack.acked_unix if ack else 0,
                )
            )
        return fleet_pb2.Estop(
            stop_id=stop.stop_id,
            scope=stop.scope,
            reason=stop.reason,
            operator=stop.operator,
            engaged_unix=stop.engaged_unix,
            active=stop.active,
            released_unix=stop.released_unix or 0.0,
            release_reason=stop.release_reason,
            release_operator=stop.release_operator,
            nodes=nodes,
        )

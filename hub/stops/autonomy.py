"""The fleet autonomy switch: the hub's YAML file, re-read every tick, pushed to agents.

The file is the single source of truth (see edgecommon.autonomy_file for its source
strings and the fail-closed rule). Each change of (value, source) gets the next
revision, persisted so revisions keep growing across hub restarts; agents acknowledge
the revision they applied, which is how the hub knows when a change took effect
fleet-wide.
"""

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from edgecommon.autonomy_file import SwitchFile, SwitchReading, write_switch
from edgecommon.cadence import wait_for_event, wait_until
from edgecommon.clock import Clock, stamp
from edgecommon.errors import NotFound
from edgecommon.pb import fleet_pb2, link_pb2
from edgecommon.reasons import check_reason
from edgecommon.scope import Scope, ScopeKind
from hub.config import AutonomySection
from hub.fleet.registry import Registry
from hub.store.base import HubStore

log = logging.getLogger("edge-hub.autonomy")
REVISION_SETTING = "fleet_switch_revision"
FLEET = Scope(ScopeKind.FLEET)


@dataclass(frozen=True)
class Applied:
    revision: int
    after_s: float


@dataclass(frozen=True)
class FleetSwitchStatistics:
    enabled: bool
    source: str  # where the value came from (edgecommon.autonomy_file)
    error: str  # why the file could not be used, if it could not
    revision: int
    changes: int  # revisions this hub process made (file edits, `autonomy enable|disable`)
    applied: int  # connected nodes that acknowledged the current revision
    pending: int  # connected nodes that have not yet


class FleetSwitch:
    def __init__(
        self, store: HubStore, registry: Registry, clock: Clock, config: AutonomySection
    ) -> None:
        self.store = store
        self.registry = registry
        self.clock = clock
        self.config = config
        self.file = SwitchFile(config.file, config.default_enabled)
        self.reading = SwitchReading(False, "default (not read yet)")
        self.revision = 0
        self.changed_unix = 0.0
        self._changed_mono = clock.monotonic()
        self.applied: dict[str, Applied] = {}
        self._wake = asyncio.Event()
        self.ack_event = asyncio.Event()
        self._changes = 0  # for statistics(), since the hub started

    async def load(self) -> None:
        stored = await self.store.get_setting(REVISION_SETTING)
        self.revision = int(stored.split(" ", 1)[0]) if stored else 0
        previous = stored.split(" ", 1)[1] if stored and " " in stored else ""
        self.reading = self.file.read()
        if previous != self._fingerprint(self.reading):
            await self._bump()
        self.changed_unix = self.clock.wall()

    @staticmethod
    def _fingerprint(reading: SwitchReading) -> str:
        return f"{int(reading.enabled)} {reading.source}"

    async def _bump(self) -> None:
        self.revision += 1
        self._changes += 1
        await self.store.put_setting(
            REVISION_SETTING, f"{self.revision} {self._fingerprint(self.reading)}"
        )
        self.changed_unix = self.clock.wall()
        self._changed_mono = self.clock.monotonic()
        if self.reading.error:
            log.error("fleet autonomy switch %s: %s", self.file.path, self.reading.error)
        log.warning(
            "fleet autonomy switch is %s (%s), revision %d",
            "ON" if self.reading.enabled else "OFF",
            self.reading.source,
            self.revision,
        )

    def message(self) -> link_pb2.FleetSwitch:
        return link_pb2.FleetSwitch(
            enabled=self.reading.enabled, source=self.reading.source, revision=self.revision
        )

    async def tick(self) -> None:
        reading = self.file.read()
        if self._fingerprint(reading) == self._fingerprint(self.reading):
            self.reading = reading
            return
        self.reading = reading
        await self._bump()
        self.registry.send(link_pb2.HubMessage(fleet_switch=self.message()), FLEET)

    async def run(self) -> None:
        while True:
            await wait_for_event(self._wake, self.config.check_interval_s)
            self._wake.clear()
            await self.tick()

    def acknowledged(self, node_id: str, revision: int) -> None:
        current = self.applied.get(node_id)
        if current is not None and current.revision >= revision:
            return
        after = self.clock.monotonic() - self._changed_mono if revision == self.revision else 0.0
        self.applied[node_id] = Applied(revision, max(0.0, after))
        self.ack_event.set()

    async def set(self, enabled: bool, reason: str, operator: str, wait_s: float) -> None:
        """Write the switch file, apply it now, and wait up to wait_s for online nodes."""
        await asyncio.to_thread(
            write_switch,
            self.file.path,
            enabled,
            check_reason(reason),
            operator,
            stamp(self.clock.wall()),
        )
        await self.tick()
        deadline = self.clock.monotonic() + max(0.0, wait_s)
        await wait_until(lambda: not self.pending(), self.ack_event, deadline, self.clock)

    def statistics(self) -> FleetSwitchStatistics:
        pending = len(self.pending())
        return FleetSwitchStatistics(
            enabled=self.reading.enabled,
            source=self.reading.source,
            error=self.reading.error,
            revision=self.revision,
            changes=self._changes,
            applied=len(self.registry.live_sessions()) - pending,
            pending=pending,
        )

    def pending(self) -> list[str]:
        return [
            s.node_id
            for s in self.registry.live_sessions()
            if self.applied.get(s.node_id, Applied(0, 0)).revision < self.revision
        ]

    def report(
        self, node_id: str = "", stopped: Callable[[str, str], bool] | None = None
    ) -> fleet_pb2.AutonomyReport:
        """The switch and each node's state; `stopped(node, group)` says whether a hub stop
        covers a node (local stops come from its heartbeat)."""
        views = self.registry.views()
        if node_id:
            views = [v for v in views if v.record.node_id == node_id]
            if not views:
                raise NotFound(f"node {node_id!r} is not enrolled")
        nodes = []
        for view in views:
            beat = self.registry.heartbeat_of(view.record.node_id)
            applied = self.applied.get(view.record.node_id)
            current = bool(view.connected and applied and applied.revision >= self.revision)
            # A node that applied the current revision is known to combine it with its own
            # switch; otherwise its last heartbeat is the best knowledge.
            effective = (
                self.reading.enabled and bool(beat and beat.node_switch_enabled)
                if current
                else bool(beat and beat.autonomy_effective)
            )
            nodes.append(
                fleet_pb2.NodeAutonomy(
                    node_id=view.record.node_id,
                    group=view.record.group,
                    state=view.record.state,
                    effective=effective,
                    node_switch_enabled=bool(beat and beat.node_switch_enabled),
                    node_switch_source=beat.node_switch_source if beat else "",
                    fleet_switch_revision=beat.fleet_switch_revision if beat else 0,
                    applied=current,
                    applied_after_s=applied.after_s if applied else 0.0,
                    stopped=bool(beat and beat.local_stop_ids)
                    or bool(stopped and stopped(view.record.node_id, view.record.group)),
                )
            )
        return fleet_pb2.AutonomyReport(
            autonomy_enabled=self.reading.enabled,
            source=self.reading.source,
            revision=self.revision,
            error=self.reading.error,
            file=str(self.file.path),
            nodes=nodes,
            changed_unix=self.changed_unix,
        )

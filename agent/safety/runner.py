"""The node's safety state: the emergency-stop latch, the autonomy switches and the permits.

Every change goes through here: a stop is latched durably before anyone is told it is
latched, and each change re-evaluates the permit decision and revokes held permits the
moment it turns to no. A cadence loop (at most [safety].tick_s apart) re-reads the node
switch file and watches for hub loss.

Before the agent has ever heard the fleet switch from the hub it fails closed: autonomy
is off with source 'default (not yet received from hub)'.

After every start it also waits to hear the hub (INV-BOOT-01): what it stored may be stale
(a stop engaged or the switch turned off while it was down), so it denies with reason
`syncing` until a registration has applied the hub's current stops and switch. Only when
the hub stays unreachable for [link].startup_sync_timeout_s and [safety].on_hub_loss is
`continue` does it act on its stored state alone; with `stop` it never does, and a
disconnect longer than [safety].hub_loss_timeout_s puts it back to waiting.
"""

import asyncio
import logging
import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from agent.config import SafetySection
from agent.link.hub_messages import Handler, Reply
from agent.safety.permits import (
    Decision,
    HeldPermit,
    PermitOwner,
    PermitStatistics,
    PermitTable,
    Reason,
    SafetyFacts,
    check_request,
    decide,
)
from agent.state_db import AgentStateDB, LatchedStop, StoredSwitch
from edgecommon.autonomy_file import SwitchFile, SwitchReading
from edgecommon.clock import Clock
from edgecommon.errors import Conflict
from edgecommon.pb import agent_pb2, link_pb2

log = logging.getLogger("edge-agent.safety")


class Leadership(Protocol):
    """What permits need to know about the group lease (agent.leases.keeper.LeaseKeeper)."""

    epoch: int
    leader: str

    def is_leader(self) -> bool: ...


NOT_RECEIVED = StoredSwitch(False, "default (not yet received from hub)", 0)
LOCAL_SOURCES = ("local", "hub_loss")


@dataclass(frozen=True)
class HubContact:
    """What the agent knows about hearing the hub, as one snapshot (times in seconds)."""

    heard: bool  # a registration applied the hub's stops and switch since the start
    link_up: bool
    since_start_s: float
    cut_off_s: float  # since the link was last up (or since the start)
    since_answer_s: float  # since the hub last answered anything, even "back off" (or start)


def sync_problem(
    contact: HubContact, on_hub_loss: str, startup_sync_timeout_s: float, hub_loss_timeout_s: float
) -> str:
    """Why permits must wait for the hub (INV-BOOT-01), or "" when the agent may act.

    Rule: never act on stored state alone unless the hub has been heard since the start, or
    it stayed unreachable for the startup sync timeout and on_hub_loss is `continue`. A hub
    that answers (say, asks the agent to back off while the fleet reconnects) is reachable:
    the timeout counts from its last answer. With `stop`, a disconnect longer than the
    hub-loss timeout counts as not heard again."""
    if contact.heard:
        long_cut = not contact.link_up and contact.cut_off_s > hub_loss_timeout_s
        if on_hub_loss == "stop" and long_cut:
            return (
                f"cut off from the hub for more than {hub_loss_timeout_s:g}s (on_hub_loss = "
                "stop): waiting to hear its current stops and switch"
            )
        return ""
    unreachable_s = min(contact.since_start_s, contact.since_answer_s)
    if on_hub_loss == "continue" and unreachable_s >= startup_sync_timeout_s:
        return ""
    # No running time in the text: the decision is logged each time it changes.
    return "has not heard the hub's current stops and switch since it started" + (
        f" (acts on its stored state after {startup_sync_timeout_s:g}s without the hub)"
        if on_hub_loss == "continue"
        else " (on_hub_loss = stop: waits for the hub)"
    )


STOP_SOURCES = ("hub", *LOCAL_SOURCES)


@dataclass(frozen=True)
class SafetyStatistics:
    decision: Reason  # what a permit request is answered now (granted, or why not)
    hub_heard: bool  # the hub's stops and switch applied since the start (INV-BOOT-01)
    link_up: bool
    acting_alone: bool  # acting on stored state: hub not heard, on_hub_loss = continue
    autonomy_effective: bool
    stops: dict[str, int]  # latched now, per source: hub, local, hub_loss
    latched: int  # stops latched since the agent started
    released: int
    requests: dict[Reason, int]  # permit requests answered since the start, per answer
    permits: PermitStatistics


def stop_message(stop: LatchedStop) -> agent_pb2.LatchedStop:
    return agent_pb2.LatchedStop(
        stop_id=stop.stop_id,
        scope=stop.scope,
        reason=stop.reason,
        operator=stop.operator,
        source=stop.source,
        engaged_unix=stop.engaged_unix,
        latched_unix=stop.latched_unix,
    )


class Safety:
    def __init__(
        self,
        db: AgentStateDB,
        switch_file: SwitchFile,
        clock: Clock,
        config: SafetySection,
        permits: PermitTable,
        startup_sync_timeout_s: float,
        leadership: Callable[[], Leadership | None],
    ) -> None:
        self.db = db
        self.switch_file = switch_file
        self.clock = clock
        self.config = config
        self.permits = permits
        self.stops: dict[str, LatchedStop] = {}
        self.fleet = NOT_RECEIVED
        self.node: SwitchReading = switch_file.read()
        self.startup_sync_timeout_s = startup_sync_timeout_s
        self._link_up = False
        self._started_mono = clock.monotonic()
        self._last_link_mono = self._started_mono
        self._last_answer_mono = self._started_mono
        self._heard_hub = False
        self._acting_alone = False
        self._last_decision: Decision | None = None
        # The group lease as this node sees it; None until the node is enrolled (the lease
        # keeper exists only then: agent.enrolled).
        self.leadership = leadership
        # Counted for statistics(), since the agent started.
        self._latched = self._released = 0
        self._answers: Counter[Reason] = Counter()

    async def load(self) -> None:
        self.stops = {s.stop_id: s for s in await self.db.stops()}
        self.fleet = await self.db.fleet_switch() or NOT_RECEIVED
        if self.stops:
            log.warning(
                "emergency stop latched since before restart: %s",
                "; ".join(f"{s.scope} ({s.reason})" for s in self.stops.values()),
            )
        self.enforce()

    # --- decisions -------------------------------------------------------------------

    def contact(self) -> HubContact:
        now = self.clock.monotonic()
        return HubContact(
            heard=self._heard_hub,
            link_up=self._link_up,
            since_start_s=now - self._started_mono,
            cut_off_s=now - self._last_link_mono,
            since_answer_s=now - self._last_answer_mono,
        )

    def hub_answered(self) -> None:
        """The hub answered without registering the link (it asked to back off)."""
        self._last_answer_mono = self.clock.monotonic()

    def syncing(self) -> str:
        return sync_problem(
            self.contact(),
            self.config.on_hub_loss,
            self.startup_sync_timeout_s,
            self.config.hub_loss_timeout_s,
        )

    def facts(self) -> SafetyFacts:
        return SafetyFacts(
            stop_reasons=tuple(f"{s.scope}: {s.reason}" for s in self.stops.values()),
            fleet_enabled=self.fleet.enabled,
            fleet_source=self.fleet.source,
            node_enabled=self.node.enabled,
            node_source=self.node.source,
            syncing=self.syncing(),
        )

    def decision(self) -> Decision:
        return decide(self.facts())

    def request(
        self,
        action: str,
        units: int,
        holder: str,
        dry_run: bool,
        leader_only: bool = False,
        owner: PermitOwner | None = None,
    ) -> tuple[Decision, HeldPermit | None]:
        units = check_request(action, units)
        decision = self.decision()
        epoch = 0
        if decision.granted and leader_only:
            lead = self.leadership()
            if lead is None or not lead.is_leader():
                who = lead.leader if lead is not None and lead.leader else "nobody"
                return self._answered(
                    Decision(False, Reason.NOT_LEADER, f"not the group's leader ({who} is)")
                ), None
            epoch = lead.epoch
        if not decision.granted or dry_run:
            return self._answered(decision), None
        held = self.permits.grant(action, units, holder, self.clock.wall(), epoch, owner)
        return self._answered(decision), held

    def _answered(self, decision: Decision) -> Decision:
        self._answers[decision.reason] += 1
        return decision

    def stepped_down(self, why: str) -> None:
        """Leadership ended: leader-only permits end with it."""
        revoked = self.permits.revoke_all(
            Decision(False, Reason.NOT_LEADER, f"leadership ended: {why}"), leader_only=True
        )
        if revoked:
            log.warning("revoked %d leader-only permits: %s", len(revoked), why)

    def enforce(self) -> None:
        """Revoke every held permit if the decision is now no; log each change once."""
        decision = self.decision()
        if decision != self._last_decision:
            if decision.granted:
                log.info("permits: granting again")
            else:
                log.warning("permits: denying (%s: %s)", decision.reason.value, decision.detail)
            self._last_decision = decision
        if not decision.granted and len(self.permits):
            revoked = self.permits.revoke_all(decision)
            log.warning("revoked %d held permits: %s", len(revoked), decision.detail)

    # --- the latch ---------------------------------------------------------------------

    async def latch(self, stop: LatchedStop) -> LatchedStop:
        """Make `stop` durable, then apply it. Latching the same stop twice is a no-op."""
        existing = self.stops.get(stop.stop_id)
        if existing is not None:
            return existing
        await self.db.latch(stop)
        self.stops[stop.stop_id] = stop
        self._latched += 1
        log.warning(
            "EMERGENCY STOP latched: %s by %s: %s (%s)",
            stop.scope,
            stop.operator or "-",
            stop.reason,
            stop.source,
        )
        self.enforce()
        return stop

    async def latch_from_hub(self, command: link_pb2.EstopCommand) -> LatchedStop:
        return await self.latch(
            LatchedStop(
                command.stop_id,
                command.scope,
                command.reason,
                command.operator,
                "hub",
                command.engaged_unix,
                self.clock.wall(),
            )
        )

    async def release(self, stop_id: str, why: str) -> bool:
        if stop_id not in self.stops:
            return False
        await self.db.unlatch(stop_id)
        stop = self.stops.pop(stop_id)
        self._released += 1
        log.warning("emergency stop released: %s (%s)", stop.scope, why)
        self.enforce()
        return True

    def hub_stop_ids(self) -> list[str]:
        return sorted(s.stop_id for s in self.stops.values() if s.source == "hub")

    def local_stop_ids(self) -> list[str]:
        return sorted(s.stop_id for s in self.stops.values() if s.source in LOCAL_SOURCES)

    async def engage_local(self, reason: str, operator: str) -> LatchedStop:
        now = self.clock.wall()
        return await self.latch(
            LatchedStop(
                f"local-{secrets.token_hex(6)}", "node:local", reason, operator, "local", now, now
            )
        )

    async def release_local(self, reason: str) -> list[str]:
        ids = self.local_stop_ids()
        if not ids:
            raise Conflict(
                "no local stop is latched on this node; hub stops are released with "
                "'edgectl estop release --scope ...'"
            )
        for stop_id in ids:
            await self.release(stop_id, f"local release: {reason}")
        return ids

    # --- what the hub sends, and the heartbeat -----------------------------------------

    def hub_handlers(self) -> dict[str, Handler]:
        return {
            "estop": self._on_estop,
            "estop_release": self._on_estop_release,
            "fleet_switch": self._on_fleet_switch,
        }

    async def _on_estop(self, command: link_pb2.EstopCommand, reply: Reply) -> None:
        """Acknowledged only once latched on disk."""
        stop = await self.latch_from_hub(command)
        reply(
            link_pb2.AgentMessage(
                estop_ack=link_pb2.EstopAck(stop_id=stop.stop_id, latched_unix=stop.latched_unix)
            )
        )

    async def _on_estop_release(self, release: link_pb2.EstopRelease, reply: Reply) -> None:
        await self.release(
            release.stop_id, f"released by {release.operator or 'hub'}: {release.reason}"
        )
        reply(
            link_pb2.AgentMessage(
                estop_ack=link_pb2.EstopAck(
                    stop_id=release.stop_id, released=True, latched_unix=self.clock.wall()
                )
            )
        )

    async def _on_fleet_switch(self, switch: link_pb2.FleetSwitch, reply: Reply) -> None:
        await self.set_fleet_switch(switch)
        reply(
            link_pb2.AgentMessage(
                fleet_switch_ack=link_pb2.FleetSwitchAck(revision=switch.revision)
            )
        )

    async def add_to_heartbeat(self, beat: link_pb2.Heartbeat) -> None:
        facts = self.facts()
        beat.autonomy_effective = facts.autonomy_effective
        beat.node_switch_enabled = facts.node_enabled
        beat.node_switch_source = facts.node_source
        beat.fleet_switch_revision = self.fleet.revision
        beat.local_stop_ids.extend(self.local_stop_ids())
        beat.held_permits = len(self.permits)

    # --- switches and the hub link --------------------------------------------------------

    async def set_fleet_switch(self, switch: link_pb2.FleetSwitch) -> None:
        stored = StoredSwitch(switch.enabled, switch.source, switch.revision)
        if stored == self.fleet:
            return
        await self.db.save_fleet_switch(stored)
        if stored.enabled != self.fleet.enabled:
            log.warning(
                "fleet autonomy switch is now %s (%s, revision %d)",
                "ON" if stored.enabled else "OFF",
                stored.source,
                stored.revision,
            )
        self.fleet = stored
        self.enforce()

    def link_changed(self, up: bool) -> None:
        """The hub link came up (registered: the hub's stops, releases and switch are
        applied) or went down. The hub-loss clock starts when a link that was up goes down
        (or at start), not at every failed reconnect attempt."""
        if up or self._link_up:
            self._last_link_mono = self.clock.monotonic()
        if up:
            self._last_answer_mono = self._last_link_mono
        self._link_up = up
        if up and not self._heard_hub:
            self._heard_hub = True
            log.info("hub heard: its current stops and switch are applied")
        self.enforce()

    async def tick(self) -> None:
        reading = self.switch_file.read()
        if reading != self.node:
            if reading.error:
                log.error("node autonomy switch %s: %s", self.switch_file.path, reading.error)
            log.info(
                "node autonomy switch: %s (%s)", "on" if reading.enabled else "off", reading.source
            )
            self.node = reading
        await self._check_hub_loss()
        self._note_acting_alone()
        self.enforce()

    def _note_acting_alone(self) -> None:
        alone = not self._heard_hub and not self.syncing()
        if alone and not self._acting_alone:
            log.warning(
                "hub not heard within %gs of start: acting on local state (on_hub_loss = "
                "continue): %d stops latched, fleet switch %s (%s)",
                self.startup_sync_timeout_s,
                len(self.stops),
                "on" if self.fleet.enabled else "off",
                self.fleet.source,
            )
        self._acting_alone = alone

    async def _check_hub_loss(self) -> None:
        if self.config.on_hub_loss != "stop" or self._link_up:
            return
        cut_off = self.clock.monotonic() - self._last_link_mono
        if cut_off <= self.config.hub_loss_timeout_s:
            return
        if any(s.source == "hub_loss" for s in self.stops.values()):
            return
        now = self.clock.wall()
        await self.latch(
            LatchedStop(
                f"hub-loss-{secrets.token_hex(6)}",
                "node:local",
                f"cut off from the hub for more than {self.config.hub_loss_timeout_s:g}s "
                "(on_hub_loss = stop)",
                "",
                "hub_loss",
                now,
                now,
            )
        )

    async def run(self) -> None:
        while True:
            await self.tick()
            await asyncio.sleep(self.config.tick_s)

    def state(self) -> agent_pb2.EstopState:
        facts = self.facts()
        return agent_pb2.EstopState(
            stopped=bool(self.stops),
            stops=[stop_message(s) for s in self.stops.values()],
            autonomy_effective=facts.autonomy_effective,
            fleet_switch_enabled=self.fleet.enabled,
            fleet_switch_source=self.fleet.source,
            node_switch_enabled=self.node.enabled,
            node_switch_source=self.node.source,
            node_switch_file=str(self.switch_file.path),
            held_permits=len(self.permits),
            syncing=bool(facts.syncing),
            sync_detail=facts.syncing or self._sync_source(),
        )

    def statistics(self) -> SafetyStatistics:
        facts = self.facts()
        sources = Counter(s.source for s in self.stops.values())
        return SafetyStatistics(
            decision=decide(facts).reason,
            hub_heard=self._heard_hub,
            link_up=self._link_up,
            acting_alone=not self._heard_hub and not facts.syncing,
            autonomy_effective=facts.autonomy_effective,
            stops={source: sources[source] for source in STOP_SOURCES},
            latched=self._latched,
            released=self._released,
            requests={r: self._answers[r] for r in Reason if r is not Reason.HOLDER_GONE},
            permits=self.permits.statistics(),
        )

    def _sync_source(self) -> str:
        if self._heard_hub:
            return "hub heard since start"
        return "acting on local state: hub not heard since start"

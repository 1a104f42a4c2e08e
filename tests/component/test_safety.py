"""The agent's safety state (agent/safety/runner.py) on a real agent.db in tmp_path, with the fake
clock: waiting to hear the hub after a start, hub loss, the emergency-stop latch across a
restart, the fleet and node switches, leader-only permits. What it answers is what a
workload asking for a permit would get."""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.config import SafetySection
from agent.enrolled import Enrolled
from agent.safety.permits import HeldPermit, PermitTable, Reason
from agent.safety.runner import Safety
from agent.state_db import AgentStateDB, StoredSwitch
from edgecommon.autonomy_file import SwitchFile, write_switch
from edgecommon.pb import link_pb2
from tests.fakes import FakeClock, eventually, running

STARTUP_SYNC_S = 10.0
HUB_LOSS_S = 10.0
TICK_S = 1.0


@dataclass
class Lease:
    """What the lease keeper tells permits (agent.leases.keeper.LeaseKeeper)."""

    epoch: int
    leader: str
    mine: bool

    def is_leader(self) -> bool:
        return self.mine


def build(
    db: AgentStateDB,
    clock: FakeClock,
    switch_file: Path,
    *,
    on_hub_loss: str = "continue",
    leadership: Lease | None = None,
) -> Safety:
    """The component as the agent assembles it (agent/assemble.py): the one place to follow
    its constructor. Permits ask `leadership` who leads; without one, the node is not
    enrolled yet and has no lease keeper, as at the agent's start (agent.enrolled)."""
    config = SafetySection(
        node_switch_file=switch_file,
        tick_s=TICK_S,
        on_hub_loss=on_hub_loss,
        hub_loss_timeout_s=HUB_LOSS_S,
    )
    return Safety(
        db,
        SwitchFile(config.node_switch_file, config.switch_default),
        clock,
        config,
        PermitTable(),
        STARTUP_SYNC_S,
        Enrolled(None).leadership if leadership is None else lambda: leadership,
    )


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[AgentStateDB]:
    state = AgentStateDB(tmp_path / "agent.db")
    await state.open()
    try:
        yield state
    finally:
        await state.close()


@pytest.fixture
def switch_file(tmp_path: Path) -> Path:
    return tmp_path / "autonomy.yaml"


async def hub_heard(safety: Safety, enabled: bool = True) -> None:
    """A registration applied the hub's switch and the link is up (as agent.link.hub_link does)."""
    await safety.set_fleet_switch(link_pb2.FleetSwitch(enabled=enabled, source="hub", revision=1))
    safety.link_changed(up=True)


def permit(safety: Safety, leader_only: bool = False) -> HeldPermit:
    decision, held = safety.request("arm.move", 1, "picker", False, leader_only=leader_only)
    assert decision.granted, decision
    assert held is not None
    return held


def reason(safety: Safety) -> Reason:
    return safety.decision().reason


def command(stop_id: str) -> link_pb2.EstopCommand:
    return link_pb2.EstopCommand(
        stop_id=stop_id, scope="fleet", reason="drill", operator="alice", engaged_unix=1.0
    )


async def test_inv_boot_01_no_permit_is_granted_until_the_hub_has_been_heard(
    db: AgentStateDB, clock: FakeClock, switch_file: Path
) -> None:
    await db.save_fleet_switch(StoredSwitch(True, "hub", 4))  # stored before the restart
    safety = build(db, clock, switch_file)
    await safety.load()
    decision, held = safety.request("arm.move", 1, "picker", False)
    assert (decision.reason, held) == (Reason.SYNCING, None)
    assert safety.state().syncing
    await hub_heard(safety)
    assert permit(safety)


async def test_inv_boot_01_on_hub_loss_continue_acts_on_stored_state_after_the_sync_timeout(
    db: AgentStateDB, clock: FakeClock, switch_file: Path
) -> None:
    await db.save_fleet_switch(StoredSwitch(True, "hub", 4))
    safety = build(db, clock, switch_file, on_hub_loss="continue")
    await safety.load()
    await clock.advance(STARTUP_SYNC_S - 0.1)
    assert reason(safety) is Reason.SYNCING
    await clock.advance(0.1)
    assert reason(safety) is Reason.GRANTED
    assert safety.state().sync_detail == "acting on local state: hub not heard since start"


async def test_inv_boot_01_on_hub_loss_stop_waits_for_the_hub_however_long_it_takes(
    db: AgentStateDB, clock: FakeClock, switch_file: Path
) -> None:
    await db.save_fleet_switch(StoredSwitch(True, "hub", 4))
    safety = build(db, clock, switch_file, on_hub_loss="stop")
    await safety.load()
    await clock.advance(3600.0)
    assert reason(safety) is Reason.SYNCING
    assert "(on_hub_loss = stop: waits for the hub)" in safety.decision().detail


async def test_inv_boot_01_a_hub_asking_to_back_off_is_reachable_so_the_timeout_starts_again(
    db: AgentStateDB, clock: FakeClock, switch_file: Path
) -> None:
    await db.save_fleet_switch(StoredSwitch(True, "hub", 4))
    safety = build(db, clock, switch_file, on_hub_loss="continue")
    await safety.load()
    await clock.advance(8.0)
    safety.hub_answered()  # a Backoff: the hub is there, only busy
    await clock.advance(8.0)
    assert reason(safety) is Reason.SYNCING
    await clock.advance(2.0)
    assert reason(safety) is Reason.GRANTED


async def test_cut_off_from_the_hub_longer_than_the_offline_window_latches_a_local_stop(
    db: AgentStateDB, clock: FakeClock, switch_file: Path
) -> None:
    safety = build(db, clock, switch_file, on_hub_loss="stop")
    await safety.load()
    await hub_heard(safety)
    held = permit(safety)
    async with running(safety.run()):
        safety.link_changed(up=False)
        await clock.advance(HUB_LOSS_S - TICK_S)
        assert not held.revoked.is_set()
        assert safety.stops == {}
        await clock.advance(2 * TICK_S)
        await eventually("the hub-loss stop is latched", lambda: bool(safety.stops))
    (stop,) = await db.stops()
    assert stop.source == "hub_loss"
    assert held.revoked.is_set()
    assert held.revoke_reason is not None
    assert held.revoke_reason.reason is Reason.ESTOP
    # The hub coming back does not release it (INV-ESTOP-01): only an explicit release does.
    safety.link_changed(up=True)
    assert reason(safety) is Reason.ESTOP
    await safety.release_local("hub is back, site checked")
    assert reason(safety) is Reason.GRANTED


async def test_with_on_hub_loss_continue_a_long_cut_latches_nothing(
    db: AgentStateDB, clock: FakeClock, switch_file: Path
) -> None:
    safety = build(db, clock, switch_file, on_hub_loss="continue")
    await safety.load()
    await hub_heard(safety)
    held = permit(safety)
    async with running(safety.run()):
        safety.link_changed(up=False)
        await clock.advance(10 * HUB_LOSS_S)
    assert safety.stops == {}
    assert not held.revoked.is_set()
    assert reason(safety) is Reason.GRANTED


async def test_inv_estop_01_a_latched_stop_survives_a_restart_and_denies_until_released(
    tmp_path: Path, db: AgentStateDB, clock: FakeClock, switch_file: Path
) -> None:
    safety = build(db, clock, switch_file)
    await safety.load()
    await hub_heard(safety)
    held = permit(safety)
    await safety.latch_from_hub(command("stop-1"))
    assert held.revoked.is_set()
    await db.close()

    reopened = AgentStateDB(tmp_path / "agent.db")
    await reopened.open()
    try:
        restarted = build(reopened, clock, switch_file)
        await restarted.load()
        await hub_heard(restarted)
        assert reason(restarted) is Reason.ESTOP
        assert restarted.hub_stop_ids() == ["stop-1"]  # what the next registration reports
        assert await restarted.release("stop-1", "released by bob: all clear")
        assert reason(restarted) is Reason.GRANTED
        assert await reopened.stops() == []
    finally:
        await reopened.close()


async def test_the_same_stop_latched_twice_is_kept_once_as_first_latched(
    db: AgentStateDB, clock: FakeClock, switch_file: Path
) -> None:
    safety = build(db, clock, switch_file)
    await safety.load()
    first = await safety.latch_from_hub(command("stop-1"))
    await clock.advance(5.0)
    again = await safety.latch_from_hub(command("stop-1"))
    assert again == first
    assert await db.stops() == [first]


async def test_the_fleet_switch_off_revokes_permits_and_is_kept_across_a_restart(
    db: AgentStateDB, clock: FakeClock, switch_file: Path
) -> None:
    safety = build(db, clock, switch_file)
    await safety.load()
    await hub_heard(safety)
    held = permit(safety)
    off = link_pb2.FleetSwitch(enabled=False, source="operator bob", revision=2)
    await safety.set_fleet_switch(off)
    assert held.revoked.is_set()
    assert safety.decision().detail == "autonomy disabled fleet-wide (operator bob)"
    restarted = build(db, clock, switch_file)
    await restarted.load()
    assert (restarted.fleet.enabled, restarted.fleet.revision) == (False, 2)


async def test_the_node_switch_file_is_read_again_on_the_safety_cadence(
    db: AgentStateDB, clock: FakeClock, switch_file: Path
) -> None:
    safety = build(db, clock, switch_file)
    await safety.load()
    await hub_heard(safety)
    held = permit(safety)
    async with running(safety.run()):
        await clock.settle()
        write_switch(switch_file, False, "maintenance", "carol", "2026-09-21 00:00:00Z")
        assert not held.revoked.is_set()  # not before the next tick
        await clock.advance(TICK_S)
        assert held.revoked.is_set()
        node_off = f"autonomy disabled on this node (configmap:{switch_file})"
        assert safety.decision().detail == node_off
        write_switch(switch_file, True, "maintenance done", "carol", "2026-09-21 01:00:00Z")
        await clock.advance(TICK_S)
        assert reason(safety) is Reason.GRANTED


async def test_leader_only_permits_need_the_lease_and_end_with_it(
    db: AgentStateDB, clock: FakeClock, switch_file: Path
) -> None:
    lease = Lease(7, "node-b", mine=False)
    safety = build(db, clock, switch_file, leadership=lease)
    await safety.load()
    await hub_heard(safety)
    decision, held = safety.request("valve.open", 1, "ctl", False, leader_only=True)
    assert (decision.reason, decision.detail, held) == (
        Reason.NOT_LEADER,
        "not the group's leader (node-b is)",
        None,
    )
    lease.epoch, lease.leader, lease.mine = 8, "node-a", True  # this node won the lease
    fenced = permit(safety, leader_only=True)
    plain = permit(safety)
    assert fenced.epoch == 8
    safety.stepped_down("lease expired")
    assert fenced.revoked.is_set()
    assert not plain.revoked.is_set()

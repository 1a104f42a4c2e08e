"""The hub's leader leases (hub/leases/manager.py) on a real SQLite store and a real registry, with
the fake clock: grants, renewals, expiry after the ttl, fencing epochs, switchover, pause,
and who may take over (stops, late answers, the journal's word)."""

from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pytest

from edgecommon.errors import Conflict
from edgecommon.pb import fleet_pb2, link_pb2
from hub.assemble import FleetState, fleet_state
from hub.config import HubConfig, LeaseSection
from hub.fleet.registry import Session
from hub.leases.manager import LeaseManager
from hub.store.base import HubStore, SyncSetRecord
from hub.store.sqlite import SqliteStore
from tests.fakes import FailingStore, FakeClock, connect, heartbeat, received, running

TTL_S = 30.0
GROUP = "site-a"
CONFIG = HubConfig(lease=LeaseSection(ttl_s=TTL_S))


async def build(store: HubStore, clock: FakeClock) -> FleetState:
    """The component as the hub assembles it (hub/assemble.py), loaded from `store`: the
    lease manager with the real registry, stops and journal quorum it asks. The one place
    to follow its constructor."""
    return await fleet_state(CONFIG, clock, cast(SqliteStore, store))


@dataclass
class Group:
    """Members a and b of site-a, connected and heartbeating."""

    fleet: FleetState
    sessions: dict[str, Session]

    @property
    def leases(self) -> LeaseManager:
        return self.fleet.leases

    def beat(self, *nodes: str, **fields: object) -> None:
        """Heartbeats from `nodes` (default: every member) arrive now."""
        for node in nodes or tuple(self.sessions):
            beat = link_pb2.Heartbeat(**fields)  # type: ignore[arg-type]
            heartbeat(
                self.fleet.registry, self.fleet.replication.observe, self.sessions[node], beat
            )


async def group(store: HubStore, clock: FakeClock) -> Group:
    fleet = await build(store, clock)
    sessions = {node: connect(fleet.registry, node, GROUP) for node in ("a", "b")}
    g = Group(fleet, sessions)
    g.beat()
    return g


def leadership(leases: LeaseManager) -> fleet_pb2.GroupLeadership:
    (report,) = leases.report(GROUP).groups
    return report


async def test_the_best_candidate_is_granted_the_first_epoch_and_it_is_stored(
    hub_store: SqliteStore, clock: FakeClock
) -> None:
    g = await group(hub_store, clock)
    leases = g.leases
    denied = await leases.renew("b", GROUP, 0)
    assert (denied.verdict, denied.reason) == ("denied", "a is the better candidate")
    granted = await leases.renew("a", GROUP, 0)
    assert (granted.verdict, granted.epoch, granted.leader) == ("granted", 1, "a")
    assert granted.ttl_s == TTL_S
    (stored,) = await hub_store.list_leases()
    assert (stored.holder, stored.epoch) == ("a", 1)
    assert stored.expires_unix == pytest.approx(clock.wall() + TTL_S)


async def test_inv_lease_01_a_lease_expires_after_its_ttl_and_the_next_epoch_goes_to_another(
    hub_store: SqliteStore, clock: FakeClock
) -> None:
    g = await group(hub_store, clock)
    leases = g.leases
    await leases.renew("a", GROUP, 0)
    await clock.advance(TTL_S - 0.1)  # a is silent from here on; b heartbeats
    g.beat("b")
    early = await leases.renew("b", GROUP, 0)
    assert (early.verdict, early.leader, early.reason) == ("denied", "a", "a leads at epoch 1")
    await clock.advance(0.1)
    g.beat("b")
    taken = await leases.renew("b", GROUP, 0)
    assert (taken.verdict, taken.epoch, taken.leader) == ("granted", 2, "b")
    stale = await leases.renew("a", GROUP, 1)
    assert (stale.verdict, stale.epoch, stale.leader) == ("denied", 2, "b")
    assert (leadership(leases).leader, leadership(leases).epoch) == ("b", 2)


async def test_a_holder_that_renews_in_time_keeps_its_lease_and_its_epoch(
    hub_store: SqliteStore, clock: FakeClock
) -> None:
    g = await group(hub_store, clock)
    leases = g.leases
    await leases.renew("a", GROUP, 0)
    for _ in range(5):
        await clock.advance(TTL_S * 0.6)
        g.beat()
        assert (await leases.renew("b", GROUP, 0)).verdict == "denied"
        renewed = await leases.renew("a", GROUP, 1)
        assert (renewed.verdict, renewed.epoch) == ("renewed", 1)
    assert leadership(leases).time_left_s == pytest.approx(TTL_S)


async def test_a_lease_keeps_its_deadline_across_a_hub_restart(
    tmp_path: Path, hub_store: SqliteStore, clock: FakeClock
) -> None:
    g = await group(hub_store, clock)
    leases = g.leases
    await leases.renew("a", GROUP, 0)
    await g.fleet.registry.flush()
    await hub_store.close()
    await clock.advance(10.0)  # the hub is down for 10 s

    store = SqliteStore(tmp_path / "hub.db")
    await store.open()
    try:
        restarted = await build(store, clock)
        assert leadership(restarted.leases).leader == "a"
        assert leadership(restarted.leases).time_left_s == pytest.approx(TTL_S - 10.0)
        b = Group(restarted, {"b": connect(restarted.registry, "b", GROUP)})
        await clock.advance(TTL_S - 10.0 - 0.1)
        b.beat()
        assert (await restarted.leases.renew("b", GROUP, 0)).verdict == "denied"
        await clock.advance(0.1)
        b.beat()
        taken = await restarted.leases.renew("b", GROUP, 0)
        assert (taken.verdict, taken.epoch) == ("granted", 2)
    finally:
        await store.close()


async def test_a_member_under_an_emergency_stop_is_not_granted(
    hub_store: SqliteStore, clock: FakeClock
) -> None:
    g = await group(hub_store, clock)
    leases = g.leases
    await g.fleet.estops.engage("node:a", "jammed arm", "alice")
    stopped = await leases.renew("a", GROUP, 0)
    assert (stopped.verdict, stopped.reason) == ("denied", "not eligible: emergency stop latched")
    assert (await leases.renew("b", GROUP, 0)).verdict == "granted"


async def test_a_member_reporting_a_local_stop_is_not_granted(
    hub_store: SqliteStore, clock: FakeClock
) -> None:
    g = await group(hub_store, clock)
    leases = g.leases
    g.beat("a", local_stop_ids=["local-1"])
    assert (await leases.renew("a", GROUP, 0)).reason == "not eligible: emergency stop latched"
    assert (await leases.renew("b", GROUP, 0)).verdict == "granted"


async def test_inv_repl_01_a_member_whose_journal_may_lack_committed_entries_is_not_granted(
    hub_store: SqliteStore, clock: FakeClock
) -> None:
    # The hub holds b as the group's only sync replica (stored before it started) and both
    # members report journal entries: the journal's quorum (hub.journal.replication) says a may
    # lack committed entries, and the election takes its word.
    await hub_store.save_sync_set(SyncSetRecord(GROUP, ("b",), (), 1))
    g = await group(hub_store, clock)
    g.beat(journal=link_pb2.JournalReport(role="replica", last_index=7, last_epoch=1))
    leases = g.leases
    why = "not in the sync set (b): may lack committed entries"
    refused = await leases.renew("a", GROUP, 0)
    assert (refused.verdict, refused.reason) == ("denied", f"not eligible: {why}")
    assert (await leases.renew("b", GROUP, 0)).verdict == "granted"
    candidates = {c.node_id: c for c in leadership(leases).candidates}
    assert (candidates["a"].eligible, candidates["a"].why_not) == (False, why)
    assert candidates["b"].eligible
    assert (candidates["a"].position, candidates["b"].position) == (7, 7)


async def test_a_member_whose_answers_come_late_is_granted_only_once_one_comes_in_time(
    hub_store: SqliteStore, clock: FakeClock
) -> None:
    g = await group(hub_store, clock)
    leases = g.leases
    late = await leases.renew("a", GROUP, 0, previous_late=True)
    assert late.reason == "not eligible: its lease answers reach it after its deadline"
    assert (await leases.renew("a", GROUP, 0, previous_late=False)).verdict == "granted"


async def test_inv_lease_01_a_release_with_a_stale_epoch_or_from_another_node_is_refused(
    hub_store: SqliteStore, clock: FakeClock
) -> None:
    g = await group(hub_store, clock)
    leases = g.leases
    await leases.renew("a", GROUP, 0)
    for node, epoch in (("a", 0), ("a", 2), ("b", 1)):
        refused = await leases.release(node, GROUP, epoch)
        assert (refused.verdict, refused.reason) == ("denied", "you do not hold this lease")
    assert (leadership(leases).leader, leadership(leases).epoch) == ("a", 1)
    assert (await leases.release("a", GROUP, 1)).verdict == "released"
    # A confirmed step-down frees the lease at once (no wait for the ttl), and whoever
    # takes it next, even the same node, holds a new epoch.
    again = await leases.renew("a", GROUP, 0)
    assert (again.verdict, again.epoch) == ("granted", 2)


async def test_a_switchover_moves_the_lease_to_its_target_at_the_next_epoch(
    hub_store: SqliteStore, clock: FakeClock
) -> None:
    g = await group(hub_store, clock)
    leases = g.leases
    await leases.renew("a", GROUP, 0)
    async with running(leases.resign(GROUP, "b", 10.0, dry_run=False)) as resigning:
        await clock.settle()
        (nudge,) = received(g.sessions["a"])
        assert nudge.lease_nudge.reason == "switchover to b"
        assert (await leases.renew("a", GROUP, 1)).verdict == "step_down"
        assert (await leases.release("a", GROUP, 1)).verdict == "released"
        (nudge,) = received(g.sessions["b"])
        assert nudge.lease_nudge.reason == "switchover: the lease is yours to take"
        await clock.advance(0.5)
        g.beat()
        granted = await leases.renew("b", GROUP, 0)
        assert (granted.verdict, granted.epoch) == ("granted", 2)
        await clock.settle()
        assert resigning.done()
        report = resigning.result()
    assert (report.done, report.from_leader, report.to) == (True, "a", "b")
    assert (report.old_epoch, report.new_epoch) == (1, 2)
    assert report.leaderless_s == pytest.approx(0.5)


async def test_a_switchover_its_target_does_not_take_ends_after_its_timeout(
    hub_store: SqliteStore, clock: FakeClock
) -> None:
    g = await group(hub_store, clock)
    leases = g.leases
    await leases.renew("a", GROUP, 0)
    async with running(leases.resign(GROUP, "b", 5.0, dry_run=False)) as resigning:
        await clock.advance(4.9)
        assert not resigning.done()
        await clock.advance(0.1)
        assert resigning.done()
        report = resigning.result()
    assert not report.done
    assert report.detail == "b did not take over within 5s; a still leads"
    assert leadership(leases).switchover_to == ""
    assert (await leases.renew("a", GROUP, 1)).verdict == "renewed"


async def test_a_dry_run_switchover_changes_nothing_and_nudges_nobody(
    hub_store: SqliteStore, clock: FakeClock
) -> None:
    g = await group(hub_store, clock)
    leases = g.leases
    await leases.renew("a", GROUP, 0)
    report = await leases.resign(GROUP, "", 5.0, dry_run=True)
    assert (report.to, report.done, report.detail) == (
        "b",
        False,
        "would move leadership of site-a from a to b",
    )
    assert received(g.sessions["a"]) == received(g.sessions["b"]) == []
    assert (await leases.renew("a", GROUP, 1)).verdict == "renewed"


async def test_a_paused_group_gets_no_automatic_failover_until_resumed(
    hub_store: SqliteStore, clock: FakeClock
) -> None:
    g = await group(hub_store, clock)
    leases = g.leases
    await leases.renew("a", GROUP, 0)
    await leases.pause(GROUP, True)
    assert (await hub_store.list_leases())[0].paused
    with pytest.raises(Conflict, match="group site-a is paused"):
        await leases.resign(GROUP, "b", 5.0, dry_run=False)
    await clock.advance(TTL_S)
    g.beat("b")
    paused = await leases.renew("b", GROUP, 0)
    assert (paused.verdict, paused.reason) == ("denied", "group is paused: no automatic failover")
    await leases.pause(GROUP, False)
    assert (await leases.renew("b", GROUP, 0)).verdict == "granted"


async def test_a_lease_the_store_could_not_write_is_not_granted(
    hub_store: SqliteStore, clock: FakeClock
) -> None:
    failing = FailingStore(hub_store)
    g = await group(cast(HubStore, failing), clock)
    leases = g.leases
    failing.failing["save_lease"] = OSError("disk full")
    with pytest.raises(OSError, match="disk full"):
        await leases.renew("a", GROUP, 0)
    assert (leadership(leases).leader, leadership(leases).epoch) == ("", 0)
    del failing.failing["save_lease"]
    assert (await leases.renew("a", GROUP, 0)).epoch == 1

"""The journal's quorum on the hub (hub/journal/replication.py) with the real lease manager,
registry and SQLite store, and the fake clock: sync-set plans reaching the members, the leader's
confirmation, failover only to a member holding every committed entry, quorum restore."""

from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pytest

from edgecommon.errors import Conflict
from edgecommon.pb import link_pb2
from hub.assemble import FleetState, fleet_state
from hub.config import HubConfig, ReplicationSection
from hub.fleet.registry import Session
from hub.store.base import HubStore
from hub.store.sqlite import SqliteStore
from tests.fakes import FakeClock, connect, eventually, heartbeat, received, running

GROUP = "site-a"
LEADER_ADDRESS = "10.0.0.1:7450"
CONFIG = HubConfig()
TTL_S = CONFIG.lease.ttl_s


async def build(store: HubStore, clock: FakeClock) -> FleetState:
    """The components as the hub assembles them (hub/assemble.py), loaded from `store`: the
    journal's quorum answers the election's eligibility questions and reads who leads from
    the lease table both share. The one place to follow their constructors."""
    return await fleet_state(CONFIG, clock, cast(SqliteStore, store))


@dataclass
class Group:
    """a, b and c of site-a, connected; a leads at epoch 1 and all hold entries 1..10."""

    hub: FleetState
    sessions: dict[str, Session]

    def beat(self, node: str, report: link_pb2.JournalReport) -> None:
        """A heartbeat carrying `report` from `node`, taken as the Link servicer takes it:
        the registry, then the journal's quorum screens it."""
        beat = link_pb2.Heartbeat(journal=report)
        heartbeat(self.hub.registry, self.hub.replication.observe, self.sessions[node], beat)

    def replica_beats(self, *nodes: str, last_index: int = 10) -> None:
        for node in nodes:
            self.beat(
                node, link_pb2.JournalReport(role="replica", last_index=last_index, last_epoch=1)
            )

    def leader_beat(self, confirmed: tuple[str, ...] = (), plan_revision: int = 0) -> None:
        """a reports its journal and its view of b and c, both caught up and pulling."""
        report = link_pb2.JournalReport(
            role="leader",
            last_index=10,
            last_epoch=1,
            epoch=1,
            commit_index=10,
            peer_address=LEADER_ADDRESS,
            replicas=[
                link_pb2.ReplicaView(node_id=n, durable_index=10, last_pull_age_s=0.1)
                for n in ("b", "c")
            ],
            sync_confirmed=confirmed,
            plan_revision=plan_revision,
        )
        self.beat("a", report)

    def plans(self, node: str) -> list[link_pb2.ReplicationPlan]:
        return [m.replication for m in received(self.sessions[node])]


async def group(store: HubStore, clock: FakeClock) -> Group:
    fleet = await build(store, clock)
    g = Group(fleet, {node: connect(fleet.registry, node, GROUP) for node in ("a", "b", "c")})
    g.replica_beats("b", "c")
    g.leader_beat()
    assert (await g.hub.leases.renew("a", GROUP, 0)).epoch == 1
    return g


async def formed(store: HubStore, clock: FakeClock) -> Group:
    """The group once the leader confirmed b holds every committed entry: b is the sync
    replica (min_sync_replicas is 1 for a group of three)."""
    g = await group(store, clock)
    await g.hub.replication.step(GROUP)
    (plan,) = g.plans("a")
    g.leader_beat(confirmed=("b",), plan_revision=plan.revision)
    await g.hub.replication.step(GROUP)
    for node in g.sessions:
        g.plans(node)
    return g


async def test_every_member_gets_the_plan_naming_the_leader_and_the_joining_replica(
    hub_store: SqliteStore, clock: FakeClock
) -> None:
    g = await group(hub_store, clock)
    await g.hub.replication.step(GROUP)
    for node in ("a", "b", "c"):
        (plan,) = g.plans(node)
        assert (plan.leader, plan.epoch, plan.leader_peer_address) == ("a", 1, LEADER_ADDRESS)
        assert (list(plan.sync_set), list(plan.joining), plan.min_sync) == ([], ["b"], 1)
    (stored,) = await hub_store.list_sync_sets()
    assert (stored.sync_set, stored.joining) == ((), ("b",))


async def test_a_plan_goes_to_each_session_once_and_again_to_a_node_that_reconnects(
    hub_store: SqliteStore, clock: FakeClock
) -> None:
    g = await group(hub_store, clock)
    await g.hub.replication.step(GROUP)
    (first,) = g.plans("c")
    await g.hub.replication.step(GROUP)
    assert g.plans("c") == []
    g.sessions["c"] = connect(g.hub.registry, "c", GROUP)
    await g.hub.replication.step(GROUP)
    assert g.plans("c") == [first]


async def test_the_leaders_confirmation_moves_a_joining_replica_into_the_sync_set(
    hub_store: SqliteStore, clock: FakeClock
) -> None:
    g = await group(hub_store, clock)
    await g.hub.replication.step(GROUP)
    (plan,) = g.plans("a")
    assert list(g.plans("b")[0].joining) == ["b"]
    g.leader_beat(confirmed=("b",), plan_revision=plan.revision - 1)  # an older plan's word
    await g.hub.replication.step(GROUP)
    assert g.plans("a") == g.plans("b") == []
    g.leader_beat(confirmed=("b",), plan_revision=plan.revision)
    await g.hub.replication.step(GROUP)
    (confirmed,) = g.plans("b")
    assert (list(confirmed.sync_set), list(confirmed.joining)) == (["b"], [])
    (stored,) = await hub_store.list_sync_sets()
    assert (stored.sync_set, stored.joining) == (("b",), ())


async def test_plans_go_out_on_the_planning_cadence(
    hub_store: SqliteStore, clock: FakeClock
) -> None:
    g = await group(hub_store, clock)
    got: list[link_pb2.ReplicationPlan] = []

    def plan_reached_c() -> bool:
        got.extend(g.plans("c"))
        return bool(got)

    async with running(g.hub.replication.run()):
        await clock.settle()
        assert g.plans("c") == []
        await clock.advance(ReplicationSection().plan_interval_s)
        await eventually("the plan reaches c", plan_reached_c)
    assert list(got[0].joining) == ["b"]


async def test_inv_repl_01_after_the_leader_dies_only_the_sync_replica_is_granted_the_lease(
    hub_store: SqliteStore, clock: FakeClock
) -> None:
    g = await formed(hub_store, clock)
    await clock.advance(TTL_S)  # a is gone; b and c go on heartbeating
    g.replica_beats("b", "c")
    refused = await g.hub.leases.renew("c", GROUP, 0)
    assert (refused.verdict, refused.reason) == (
        "denied",
        "not eligible: not in the sync set (b): may lack committed entries",
    )
    granted = await g.hub.leases.renew("b", GROUP, 0)
    assert (granted.verdict, granted.epoch) == ("granted", 2)


async def test_inv_repl_01_a_leader_whose_lease_lapsed_while_its_sync_replica_is_down_gets_it_back(
    hub_store: SqliteStore, clock: FakeClock
) -> None:
    """The holder of the latest epoch holds every committed entry: a stall past its ttl
    while b (the only sync replica) is down must not leave the group leaderless."""
    g = await formed(hub_store, clock)
    g.hub.registry.detach(g.sessions["b"], "stream closed")
    await clock.advance(TTL_S)  # a stalled past its lease; it and c heartbeat again
    g.leader_beat()
    g.replica_beats("c")
    refused = await g.hub.leases.renew("c", GROUP, 0)
    assert refused.reason == "not eligible: not in the sync set (b): may lack committed entries"
    back = await g.hub.leases.renew("a", GROUP, 0)
    assert (back.verdict, back.epoch, back.leader) == ("granted", 2, "a")


async def test_inv_repl_01_a_replica_behind_the_commit_index_may_not_take_over(
    hub_store: SqliteStore, clock: FakeClock
) -> None:
    g = await formed(hub_store, clock)
    g.replica_beats("b", last_index=11)  # b's report now says more than the leader holds
    g.replica_beats("c", last_index=12)
    eligibility = g.hub.replication.eligibility(GROUP)
    assert eligibility["b"] == (10, None)  # counted only up to what the leader holds
    with pytest.raises(Conflict, match="c cannot take over: not in the sync set"):
        await g.hub.leases.resign(GROUP, "c", 1.0, dry_run=True)
    report = await g.hub.leases.resign(GROUP, "b", 1.0, dry_run=True)
    assert report.at_risk == "nothing: b is a sync replica holding every committed entry"


async def test_a_lost_sync_replica_is_reported_and_restore_replaces_it(
    hub_store: SqliteStore, clock: FakeClock
) -> None:
    g = await formed(hub_store, clock)
    g.hub.registry.detach(g.sessions["b"], "stream closed")
    report = g.hub.replication.report(GROUP)
    assert not report.met
    assert report.reason.startswith("sync replica b (offline) lost: strict mode refuses appends")

    dry = await g.hub.replication.restore(GROUP, dry_run=True)
    assert dry.restore.startswith("would: removed lost b; added c")
    assert g.plans("c") == []
    (stored,) = await hub_store.list_sync_sets()
    assert stored.sync_set == ("b",)

    done = await g.hub.replication.restore(GROUP, dry_run=False)
    assert (list(done.added), list(done.removed)) == (["c"], ["b"])
    (plan,) = g.plans("c")
    assert (list(plan.sync_set), list(plan.joining)) == ([], ["c"])
    (stored,) = await hub_store.list_sync_sets()
    assert (stored.sync_set, stored.joining) == ((), ("c",))


async def test_restore_refuses_when_no_replica_is_caught_up_and_healthy(
    hub_store: SqliteStore, clock: FakeClock
) -> None:
    g = await formed(hub_store, clock)
    g.hub.registry.detach(g.sessions["b"], "stream closed")
    await clock.advance(5.0)  # c's last pull, as the leader last reported it, is now too old
    answer = await g.hub.replication.restore(GROUP, dry_run=False)
    assert answer.restore.startswith("cannot restore: 1 more sync replica(s) needed")
    assert "c: last pull 5.1s ago (limit 3s)" in answer.restore
    (stored,) = await hub_store.list_sync_sets()
    assert stored.sync_set == ("b",)


async def test_the_sync_set_survives_a_hub_restart(
    tmp_path: Path, hub_store: SqliteStore, clock: FakeClock
) -> None:
    g = await formed(hub_store, clock)
    await g.hub.registry.flush()
    await hub_store.close()
    store = SqliteStore(tmp_path / "hub.db")
    await store.open()
    try:
        restarted = await build(store, clock)
        assert list(restarted.replication.report(GROUP).sync_set) == ["b"]
    finally:
        await store.close()

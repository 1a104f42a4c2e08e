"""The hub components' statistics() snapshots move as the components work: real components
on a real SQLite store in a temporary directory, a fake clock, no processes."""

import datetime as dt
import logging
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from edgecommon import pki
from edgecommon.autonomy_file import write_switch
from edgecommon.boundary import BadRequest, RequestBoundary, decode
from edgecommon.errors import PermissionDenied, Unauthenticated
from edgecommon.identity import Identity, Kind
from edgecommon.pb import fleet_pb2, link_pb2
from edgecommon.statistics import plain
from hub.assemble import fleet_state
from hub.audit.emitter import AuditEmitter
from hub.audit.file_log import FileAuditLog
from hub.config import AutonomySection, HubConfig
from hub.fleet.admission import TokenBucket
from hub.fleet.registry import Registry, Session
from hub.journal.replication import ReplicationManager
from hub.journal.reports import Refusal
from hub.leases.election import Verdict
from hub.leases.manager import LeaseManager, LeaseState
from hub.rbac.gate import Gate, GateCall
from hub.rbac.source import RbacSource
from hub.stops.autonomy import FleetSwitch
from hub.stops.estop import EstopManager
from hub.store.base import AssignmentRecord
from hub.store.sqlite import SqliteStore
from tests.audit_support import FakeClock
from tests.fakes import heartbeat

NOW = dt.datetime.now(dt.UTC)
CA_KEY, CA = pki.create_ca("edge", NOW, dt.timedelta(days=1))


@dataclass
class Hub:
    store: SqliteStore
    clock: FakeClock
    config: HubConfig
    registry: Registry
    estops: EstopManager
    fleet_switch: FleetSwitch
    leases: LeaseManager
    replication: ReplicationManager


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    store = SqliteStore(tmp_path / "hub.db")
    await store.open()
    clock = FakeClock()
    config = HubConfig(autonomy=AutonomySection(file=tmp_path / "autonomy.yaml"))
    try:
        fleet = await fleet_state(config, clock, store)  # as hub/assemble.py builds them
        yield Hub(
            store,
            clock,
            config,
            fleet.registry,
            fleet.estops,
            fleet.fleet_switch,
            fleet.leases,
            fleet.replication,
        )
    finally:
        await store.close()


def attach(registry: Registry, node: str, group: str = "g") -> Session:
    identity = Identity(Kind.NODE, node, group)
    cert = pki.issue_for_key(
        CA_KEY, CA, pki.generate_key(), identity, "edge", NOW, dt.timedelta(hours=1)
    )
    return registry.attach(identity, cert, link_pb2.Register(agent_version="test"))


async def test_registry_counts_streams_heartbeats_timeouts_and_flushes(hub: Hub) -> None:
    registry = hub.registry
    first = attach(registry, "a")
    attach(registry, "a")  # the same node again: the first session is replaced
    stats = registry.statistics()
    assert (stats.nodes, stats.online, stats.sessions) == (1, 1, 1)
    assert (stats.attached, stats.replaced, stats.unsaved) == (2, 1, 1)
    registry.heartbeat(first, link_pb2.Heartbeat(seq=1))  # a replaced session is not heard
    session = registry.session("a")
    assert session is not None
    registry.heartbeat(session, link_pb2.Heartbeat(seq=1))
    assert registry.statistics().heartbeats == 1
    await registry.flush()
    assert (registry.statistics().flushes, registry.statistics().unsaved) == (1, 0)
    hub.clock.now += hub.config.link.offline_after_s + 1
    registry.sweep()
    stats = registry.statistics()
    assert (stats.online, stats.sessions, stats.timed_out, stats.unsaved) == (0, 0, 1, 1)


async def test_engaging_a_stop_counts_it_and_acknowledgements_clear_what_is_pending(
    hub: Hub,
) -> None:
    attach(hub.registry, "a")
    attach(hub.registry, "b")
    assert hub.estops.statistics().active == 0
    stop = await hub.estops.engage("fleet", "test stop", "ops")
    stats = hub.estops.statistics()
    assert (stats.active, stats.known, stats.engaged, stats.pending, stats.acks) == (
        1,
        1,
        1,
        2,
        0,
    )
    hub.clock.now += 0.25
    hub.estops.acknowledged("a", link_pb2.EstopAck(stop_id=stop.stop_id))
    hub.estops.acknowledged("a", link_pb2.EstopAck(stop_id=stop.stop_id))  # counted once
    stats = hub.estops.statistics()
    assert (stats.acks, stats.acks_unsaved, stats.pending) == (1, 1, 1)
    assert stats.max_ack_latency_s == pytest.approx(0.25)
    await hub.estops.flush()
    assert hub.estops.statistics().acks_unsaved == 0
    await hub.estops.release("fleet", "all clear", "ops")
    stats = hub.estops.statistics()
    assert (stats.active, stats.known, stats.released, stats.pending) == (0, 1, 1, 0)
    assert stats.max_ack_latency_s == 0.0


async def test_the_fleet_switch_counts_changes_and_who_applied_the_current_revision(
    hub: Hub,
) -> None:
    switch = hub.fleet_switch  # loaded: its first reading is a change
    first = switch.statistics()
    assert (first.enabled, first.changes) == (True, 1)
    assert first.source.startswith("default")
    write_switch(hub.config.autonomy.file, False, "maintenance", "ops", "2025-01-01T00:00:00Z")
    attach(hub.registry, "a")
    await switch.tick()
    stats = switch.statistics()
    assert (stats.enabled, stats.revision, stats.changes) == (False, first.revision + 1, 2)
    assert (stats.applied, stats.pending, stats.error) == (0, 1, "")
    switch.acknowledged("a", stats.revision)
    assert (switch.statistics().applied, switch.statistics().pending) == (1, 0)


async def test_leases_count_verdicts_releases_and_switchovers_per_group(hub: Hub) -> None:
    leases = hub.leases
    attach(hub.registry, "a")
    attach(hub.registry, "b")
    assert leases.statistics().groups == ()
    granted = await leases.renew("a", "g", 0)
    assert granted.verdict == "granted"
    await leases.renew("a", "g", granted.epoch)
    await leases.renew("b", "g", 0)
    stats = leases.statistics()
    assert stats.renewals == 3
    assert (stats.verdicts[Verdict.GRANTED], stats.verdicts[Verdict.RENEWED]) == (1, 1)
    assert stats.verdicts[Verdict.DENIED] == 1
    assert (stats.led, stats.leaderless) == (1, 0)
    assert [(g.group, g.state, g.leader, g.epoch) for g in stats.groups] == [
        ("g", LeaseState.LED, "a", granted.epoch)
    ]
    # A switchover that nobody completes within its (zero) timeout fails.
    report = await leases.resign("g", "b", 0.0, dry_run=False)
    assert not report.done
    stats = leases.statistics()
    assert (stats.switchovers, stats.switchovers_done, stats.switchovers_failed) == (1, 0, 1)
    await leases.renew("b", "g", 0, previous_late=True)
    assert leases.statistics().late_members == 1
    await leases.release("a", "g", granted.epoch)
    await leases.pause("g", True)
    stats = leases.statistics()
    assert (stats.releases, stats.led, stats.leaderless, stats.paused) == (1, 0, 1, 1)
    assert stats.groups[0].state is LeaseState.LEADERLESS
    assert plain(stats)["verdicts"] == {
        "renewed": 1,
        "granted": 1,
        "denied": 2,
        "step_down": 0,
        "late": 0,
    }


async def test_replication_counts_accepted_and_refused_reports_and_sync_set_changes(
    hub: Hub,
) -> None:
    manager = hub.replication
    a, b = attach(hub.registry, "a"), attach(hub.registry, "b")

    def beat(session: Session, **journal: object) -> None:
        """A heartbeat as the Link servicer takes it: the registry, then the quorum."""
        report = link_pb2.JournalReport(**journal)  # type: ignore[arg-type]
        heartbeat(hub.registry, manager.observe, session, link_pb2.Heartbeat(journal=report))

    lease = await hub.leases.renew("a", "g", 0)
    seen_b = link_pb2.ReplicaView(node_id="b", durable_index=3, last_pull_age_s=0.1)
    beat(a, role="leader", last_index=3, epoch=lease.epoch, commit_index=3, replicas=[seen_b])
    beat(b, role="replica", last_index=3)
    stats = manager.statistics()
    assert (stats.reports_accepted, stats.reports_refused, stats.sync_set_changes) == (2, 0, 0)
    await manager.step("g")  # b joins the sync set
    stats = manager.statistics()
    assert (stats.groups, stats.groups_in_use, stats.sync_set_changes) == (1, 1, 1)
    beat(b, role="replica", last_index=1)  # backwards without a rewind: refused
    stats = manager.statistics()
    assert (stats.reports_accepted, stats.reports_refused, stats.bad_peers) == (2, 1, 1)
    assert stats.refusals[Refusal.JOURNAL_BACKWARDS] == 1


async def test_the_gate_counts_allowed_denied_and_unauthenticated_requests(
    hub: Hub, tmp_path: Path
) -> None:
    await hub.store.add_assignment(AssignmentRecord("ops", "admin", "fleet", "test", 0.0))
    rbac = RbacSource(hub.store, None, hub.clock)
    await rbac.load()
    audit = AuditEmitter(None, FileAuditLog(tmp_path / "audit", hub.clock), logging.getLogger())
    await audit.open()
    try:
        gate = Gate(rbac, hub.registry, audit, random.Random(1), hub.clock, enforce=True)
        call = GateCall(operator="ops", permission="fleet.read", target="fleet", action="read")
        await gate.admit(call)
        with pytest.raises(PermissionDenied):
            await gate.admit(replace(call, operator="stranger"))
        for _ in range(3):
            await gate.unauthenticated("10.0.0.1", "", "read", Unauthenticated("no cert"))
        stats = gate.statistics()
        assert (stats.enforcing, stats.allowed, stats.denied, stats.bypassed) == (
            True,
            1,
            4,
            0,
        )
        assert (stats.unauthenticated.denied, stats.unauthenticated.recorded) == (3, 1)
        assert stats.unauthenticated.windows == 1
        await gate.flush()  # the window's count is recorded
        assert gate.statistics().unauthenticated.recorded == 2
    finally:
        await audit.close()


def test_the_request_boundary_counts_refusals_and_what_it_did_not_log() -> None:
    boundary = RequestBoundary(logging.getLogger("test.boundary"), FakeClock())
    for _ in range(3):
        try:
            decode(fleet_pb2.GetNodeRequest.FromString, b"\xff\xff")
        except BadRequest as exc:
            boundary.refusals.refused_request("/m", exc.kind, str(exc), "peer")
    stats = boundary.statistics()
    assert (stats.refused, stats.refusal_keys, stats.not_logged) == (3, 1, 2)


def test_the_admission_bucket_level_is_read_without_taking_a_token() -> None:
    bucket = TokenBucket.full(10.0, 2.0, now=0.0)
    rng = random.Random(1)
    assert bucket.take(0.0, rng).admitted
    assert bucket.level(0.0) == 1.0
    assert bucket.level(0.0) == 1.0  # reading it took nothing
    assert bucket.level(0.05) == pytest.approx(1.5)
    assert bucket.level(10.0) == 2.0  # never more than the burst

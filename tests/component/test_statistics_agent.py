"""The agent components' statistics() snapshots move as the components work: real
components on real SQLite files in a temporary directory, a fake clock where the component
takes one, real gRPC over real sockets where it talks to something."""

import asyncio
import contextlib
import datetime as dt
import json
import random
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import grpc
import pytest

from agent.assemble import NodeParts, build_local, build_node
from agent.config import AgentConfig, AgentSection, LocalSection, ReplicationSection, SafetySection
from agent.enrolled import Enrolled
from agent.journal.peer import CertificateRevoked, PeerService, ServedCertificate
from agent.journal.replica import ReplicaLoop
from agent.journal.replication import JournalRole, Replication
from agent.journal.store import JournalStore
from agent.leases.keeper import LeadershipState, LeaseKeeper
from agent.link.status import AGENT_SECTIONS, HubState, LinkStatus
from agent.local.api import LocalServer, NodeFacts, start_local_server
from agent.pki import credentials
from agent.pki.credentials import CredentialPaths, NodeCredentials
from agent.pki.renewal import RenewalState, Renewer
from agent.pki.revocations import RevokedSerials
from agent.safety.permits import PermitLimits, PermitOwner, PermitTable, Reason
from agent.safety.runner import Safety
from agent.state_db import AgentStateDB
from edgecommon import pki
from edgecommon.autonomy_file import SwitchFile
from edgecommon.errors import EdgeError, Overloaded
from edgecommon.identity import Identity, Kind
from edgecommon.pb import agent_pb2, agent_pb2_grpc, link_pb2, link_pb2_grpc
from edgecommon.statistics import plain
from tests.audit_support import FakeClock
from tests.procs import free_port, short_tmpdir

TRUST = "edge"
NO_PEER = ""  # the Peer address a journal reports: these report to no hub
NOW = dt.datetime.now(dt.UTC)
CA_KEY, CA = pki.create_ca(TRUST, NOW, dt.timedelta(days=1))


def node_credentials(name: str = "node-a", group: str = "site-a") -> NodeCredentials:
    key = pki.generate_key()
    identity = Identity(Kind.NODE, name, group)
    cert = pki.issue_for_key(CA_KEY, CA, key, identity, TRUST, NOW, dt.timedelta(days=1))
    return NodeCredentials(identity, TRUST, pki.private_key_bytes(key), cert, [CA])


@contextlib.asynccontextmanager
async def enrolled_node(
    state_dir: Path, clock: FakeClock, journal: JournalStore
) -> AsyncIterator[NodeParts]:
    """An enrolled node's parts as agent/assemble.py builds them (its certificate saved in
    `state_dir`), not running."""
    key = pki.generate_key()
    identity = Identity(Kind.NODE, "node-a", "site-a")
    cert = pki.issue_for_key(CA_KEY, CA, key, identity, TRUST, NOW, dt.timedelta(days=1))
    credentials.save(CredentialPaths.under(state_dir), key, pki.pem(cert), pki.pem(CA))
    db = AgentStateDB(state_dir / "agent.db")
    await db.open()
    try:
        config = AgentConfig(
            agent=AgentSection(hub="127.0.0.1:1", state_dir=state_dir),
            safety=SafetySection(node_switch_file=state_dir / "autonomy.yaml"),
        )
        local = await build_local(config, clock, db, journal)
        creds = local.enrolled.credentials()
        if creds is None:
            raise RuntimeError(f"no node certificate in {state_dir}")
        node = build_node(config, clock, random.Random(1), local, journal, creds)
        try:
            yield node
        finally:
            await node.peer_server.stop(None)  # bound by the assembly, never started here
    finally:
        await db.close()


@dataclass
class Leading:
    """Leadership as the journal asks about it: this node leads at `epoch` while `leads`."""

    epoch: int = 1
    leader: str = "node-a"
    leads: bool = True

    def is_leader(self) -> bool:
        return self.leads


@pytest.fixture
async def safety(tmp_path: Path) -> AsyncIterator[Safety]:
    db = AgentStateDB(tmp_path / "agent.db")
    await db.open()
    permits = PermitTable(PermitLimits(per_caller=1, total=8))
    switch = SwitchFile(tmp_path / "node-switch.yaml", True)
    try:
        # Not enrolled: no lease keeper to ask who leads (agent.enrolled).
        s = Safety(
            db, switch, FakeClock(), SafetySection(), permits, 30.0, Enrolled(None).leadership
        )
        await s.load()
        yield s
    finally:
        await db.close()


@pytest.fixture
async def journal(tmp_path: Path) -> AsyncIterator[JournalStore]:
    store = JournalStore(tmp_path / "journal.db", FakeClock().wall)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def test_safety_counts_answers_latches_and_releases(safety: Safety) -> None:
    stats = safety.statistics()
    assert (stats.decision, stats.hub_heard, stats.link_up) == (Reason.SYNCING, False, False)
    safety.request("move", 1, "w", dry_run=False)
    safety.link_changed(up=True)
    assert safety.statistics().decision is Reason.AUTONOMY_DISABLED  # fleet switch unknown
    await safety.set_fleet_switch(link_pb2.FleetSwitch(enabled=True, source="file", revision=1))
    owner = PermitOwner(1000, "w", 7)
    safety.request("move", 1, "w", dry_run=False, owner=owner)
    safety.request("move", 1, "w", dry_run=True)
    stats = safety.statistics()
    assert (stats.decision, stats.hub_heard, stats.link_up, stats.autonomy_effective) == (
        Reason.GRANTED,
        True,
        True,
        True,
    )
    assert stats.requests[Reason.SYNCING] == 1
    assert stats.requests[Reason.GRANTED] == 2
    assert (stats.permits.held, stats.permits.granted, stats.permits.holders) == (1, 1, 1)
    await safety.engage_local("test", "ops")
    stats = safety.statistics()
    assert (stats.decision, stats.latched, stats.stops) == (
        Reason.ESTOP,
        1,
        {"hub": 0, "local": 1, "hub_loss": 0},
    )
    assert (stats.permits.held, stats.permits.revoked[Reason.ESTOP]) == (0, 1)
    await safety.release_local("done")
    stats = safety.statistics()
    assert (stats.latched, stats.released, stats.stops["local"]) == (1, 1, 0)
    assert plain(stats)["requests"] == {
        "granted": 2,
        "estop": 0,
        "syncing": 1,
        "autonomy_disabled": 0,
        "not_leader": 0,
    }


def test_the_permit_table_counts_grants_releases_refusals_and_revocations() -> None:
    table = PermitTable(PermitLimits(per_caller=1, total=8))
    first = table.grant("a", 1, "w", 0.0, owner=PermitOwner(1000, "w", 1))
    with pytest.raises(Overloaded):
        table.grant("a", 1, "w", 0.0, owner=PermitOwner(1000, "w", 2))
    table.grant("a", 1, "x", 0.0, owner=PermitOwner(1001, "x", 3))
    assert table.release(first.permit_id)
    assert not table.release(first.permit_id)  # once
    table.release_connection(3)
    stats = table.statistics()
    assert (stats.held, stats.holders, stats.granted, stats.released) == (0, 0, 2, 1)
    assert stats.refused_over_limit == 1
    assert stats.revoked[Reason.HOLDER_GONE] == 1
    assert Reason.GRANTED not in stats.revoked


async def test_the_hub_link_counts_disconnects_and_backoffs(
    tmp_path: Path, journal: JournalStore
) -> None:
    """The link's counters live in its LinkStatus (what `edgectl status` showed already):
    each state the link enters is counted there, the snapshot reads them."""
    clock = FakeClock()
    async with enrolled_node(tmp_path, clock, journal) as node:
        link, status = node.link, node.link.status
        assert link.statistics().state is HubState.NOT_ENROLLED
        for state in (HubState.CONNECTING, HubState.BACKOFF, HubState.CONNECTING):
            status.enter(state, "refused")
        clock.now += 5
        status.connects += 1  # what a registered stream adds
        status.enter(HubState.CONNECTED)
        status.enter(HubState.CONNECTED)  # no change, nothing counted
        status.enter(HubState.BACKOFF, "hub went away")
        stats = link.statistics()
        assert (stats.state, stats.connects, stats.disconnects, stats.backoffs) == (
            HubState.BACKOFF,
            1,
            1,
            2,
        )
        assert (stats.last_error, stats.since_unix, stats.outbox) == ("hub went away", clock.now, 0)


@dataclass
class ScriptedLink(link_pb2_grpc.LinkServicer):
    """Answers renewals with the verdicts given, in order, then "denied"; takes releases."""

    verdicts: list[str]
    released: list[int] = field(default_factory=list)

    async def RenewLease(
        self, request: link_pb2.RenewLeaseRequest, context: grpc.aio.ServicerContext
    ) -> link_pb2.LeaseAnswer:
        verdict = self.verdicts.pop(0) if self.verdicts else "denied"
        return link_pb2.LeaseAnswer(
            verdict=verdict,
            epoch=4,
            leader="node-a" if verdict in ("granted", "renewed") else "node-b",
            ttl_s=10.0,
            renew_interval_s=2.0,
            renew_deadline_s=1.0,
            margin_s=0.5,
            reason=verdict,
        )

    async def ReleaseLease(
        self, request: link_pb2.ReleaseLeaseRequest, context: grpc.aio.ServicerContext
    ) -> link_pb2.LeaseAnswer:
        self.released.append(request.epoch)
        return link_pb2.LeaseAnswer(verdict="released")


async def test_the_lease_keeper_counts_answers_failures_terms_and_step_downs() -> None:
    creds = node_credentials()
    hub_key = pki.generate_key()
    hub_cert = pki.issue_hub_certificate(
        CA_KEY, CA, hub_key, TRUST, ["127.0.0.1"], NOW, dt.timedelta(days=1)
    )
    port = free_port()
    clock = FakeClock()
    config = AgentConfig(agent=AgentSection(hub=f"127.0.0.1:{port}"))
    keeper = LeaseKeeper(config, creds, clock, lambda why: None)
    assert keeper.statistics().state is LeadershipState.LEADERLESS
    channel = keeper._channel()
    stub = link_pb2_grpc.LinkStub(channel)
    try:
        await keeper._renew(stub, clock.monotonic())  # nobody listens yet
        link = ScriptedLink(["granted", "renewed", "step_down"])
        server = grpc.aio.server()
        link_pb2_grpc.add_LinkServicer_to_server(link, server)
        server.add_secure_port(
            f"127.0.0.1:{port}",
            grpc.ssl_server_credentials(
                [(pki.private_key_bytes(hub_key), pki.pem(hub_cert))],
                root_certificates=pki.pem(CA),
                require_client_auth=True,
            ),
        )
        await server.start()
        try:
            await channel.close()
            channel = keeper._channel()  # a fresh channel: no reconnect backoff to sit out
            stub = link_pb2_grpc.LinkStub(channel)
            for _ in range(2):
                await keeper._renew(stub, clock.monotonic())
                keeper._notice()
            stats = keeper.statistics()
            assert (stats.state, stats.epoch, stats.leader, stats.terms) == (
                LeadershipState.LEADER,
                4,
                "node-a",
                1,
            )
            assert (stats.renewals, stats.failures, stats.time_left_s) == (2, 1, 9.5)
            await keeper._renew(stub, clock.monotonic())
            keeper._notice()
            assert link.released == [4]
            await keeper._renew(stub, clock.monotonic())
            stats = keeper.statistics()
            assert (stats.state, stats.leader, stats.step_downs, stats.renewals) == (
                LeadershipState.REPLICA,
                "node-b",
                1,
                4,
            )
        finally:
            await server.stop(0)
    finally:
        await channel.close()


async def test_the_journal_and_its_replication_count_what_the_leader_does(
    journal: JournalStore,
) -> None:
    me = Identity(Kind.NODE, "node-a", "site-a")
    leading = Leading(leads=False)
    rep = Replication(
        journal, ReplicationSection(), me, leading, FakeClock(), RevokedSerials(), NO_PEER
    )
    assert rep.statistics().role is JournalRole.IDLE
    leading.leads = True
    plan = link_pb2.ReplicationPlan(
        group="site-a", leader="node-a", epoch=1, revision=3, min_sync=0, joining=["node-b"]
    )
    rep.set_plan(plan)
    await rep.append("k", b"v1")
    await rep.append("k", b"v2")
    rep.note_pull("node-b", 1)
    stats = rep.statistics()
    assert (stats.role, stats.plan_revision, stats.leader, stats.sync_members) == (
        JournalRole.LEADER,
        3,
        "node-a",
        1,
    )
    assert (stats.commit_index, stats.replicas, stats.pull_streams) == (2, 1, 1)
    j = journal.statistics()
    assert (j.last_index, j.last_epoch, j.batches, j.led_epochs) == (2, 1, 2, 1)
    leading.leads = False
    stats = rep.statistics()
    assert (stats.role, stats.commit_index, stats.replicas) == (JournalRole.REPLICA, 0, 0)


async def test_the_replica_loop_reports_the_stream_it_follows(
    journal: JournalStore, tmp_path: Path
) -> None:
    me = Identity(Kind.NODE, "node-b", "site-a")
    rep = Replication(
        journal,
        ReplicationSection(),
        me,
        Leading(leads=False),
        FakeClock(),
        RevokedSerials(),
        NO_PEER,
    )
    loop = ReplicaLoop(rep, node_credentials("node-b"), tmp_path / "forensics")
    assert loop.statistics().following == ""
    await journal.save_pull_stream("node-a", 2, b"token")
    running = asyncio.create_task(loop.run())
    try:
        for _ in range(500):  # the loop reads the saved stream from journal.db first
            if loop.statistics().following:
                break
            await asyncio.sleep(0.01)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    stats = loop.statistics()
    assert stats.following == "node-a"
    assert (stats.stream_epoch, stats.recovering, stats.resent, stats.pull_problem) == (
        2,
        False,
        0,
        "",
    )


async def test_the_peer_service_counts_calls_ended_by_a_revocation(
    journal: JournalStore,
) -> None:
    me = Identity(Kind.NODE, "node-a", "site-a")
    revoked = RevokedSerials()
    rep = Replication(journal, ReplicationSection(), me, Leading(), FakeClock(), revoked, NO_PEER)
    service = PeerService(rep, ServedCertificate(node_credentials()), FakeClock())
    await revoked.replace(["0a", "0b"])
    with pytest.raises(CertificateRevoked):
        service._still_valid("0a")
    service._still_valid("0c")
    stats = service.statistics()
    assert (stats.refused_revoked, stats.ended_by_revocation, stats.revoked_serials) == (0, 1, 2)


async def test_renewal_counts_a_failed_attempt(tmp_path: Path) -> None:
    config = AgentConfig(agent=AgentSection(hub=f"127.0.0.1:{free_port()}"))
    creds = node_credentials()
    clock = FakeClock(NOW.timestamp())
    renewer = Renewer(config, CredentialPaths.under(tmp_path), creds, clock, random.Random(1), [])
    stats = renewer.statistics()
    assert (stats.state, stats.renewals, stats.failures) == (RenewalState.SCHEDULED, 0, 0)
    assert stats.expires_in_s == pytest.approx(86400, abs=5)
    running = asyncio.create_task(renewer.run())
    try:
        with pytest.raises(EdgeError):
            async with asyncio.timeout(30):
                await renewer.rotate_now()
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    stats = renewer.statistics()
    assert (stats.state, stats.failures, stats.renewals) == (RenewalState.RETRYING, 1, 0)


@pytest.fixture
async def local(safety: Safety) -> AsyncIterator[tuple[LocalServer, NodeFacts]]:
    root = short_tmpdir()
    # Not enrolled: no link, no journal yet.
    facts = NodeFacts(LinkStatus(FakeClock(), "127.0.0.1:1"), root, 0.0, safety, Enrolled(None))
    facts.board.attach("safety", safety)
    server = await start_local_server(root / "agent.sock", 0o660, facts, LocalSection())
    try:
        yield server, facts
    finally:
        await server.stop(0)
        shutil.rmtree(root, ignore_errors=True)


def channel(path: Path) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel("unix:" + quote(str(path), safe="/"))


async def test_local_status_carries_every_section_and_the_local_servers_counters(
    local: tuple[LocalServer, NodeFacts],
) -> None:
    server, facts = local
    async with channel(server.relay.public) as ch:
        stub = agent_pb2_grpc.AgentLocalStub(ch)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.RequestPermit(agent_pb2.PermitRequest(action="bad\naction"), timeout=5)
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        answer = await stub.Status(agent_pb2.StatusRequest(), timeout=5)
    sections = json.loads(answer.statistics_json)
    assert tuple(sections) == AGENT_SECTIONS
    assert sections["link"] is None  # not enrolled: no link yet
    assert sections["safety"]["decision"] == "syncing"
    assert sections["local_gate"] == {"allowed": 1, "denied": 0, "quiet_callers": 0}
    assert sections["local_relay"]["accepted"] == 1
    assert sections["local_relay"]["open"] == 1
    assert sections["local_boundary"]["refused"] == 1
    # A call that bypasses the relay has no identity: the gate denies it.
    async with channel(server.relay.grpc_path) as ch:
        with pytest.raises(grpc.aio.AioRpcError):
            await agent_pb2_grpc.AgentLocalStub(ch).Status(agent_pb2.StatusRequest(), timeout=5)
    assert facts.board.snapshot()["local_gate"]["denied"] == 1

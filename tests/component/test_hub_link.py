"""The agent's stream to the hub (agent/link/hub_link.py) against a scripted Link servicer over real
mTLS on loopback, with the real Safety on a real agent.db.

The agent's parts are built as the agent builds them (agent/assemble.py): the link hands
each hub message to the table of handlers the subsystems registered. The servicer plays the
hub's side of the wire: it answers each registration as the test scripts it, pushes what
the test sends, and records what the agent says. So what is
checked is the wire contract: what the agent registers with, what it applies (on disk)
before it acknowledges, what its heartbeats say, and how it comes back after an ending.
Real time with short intervals: a gRPC stream does not run on a fake clock.
"""

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import grpc
import pytest

from agent.assemble import LocalParts, NodeParts, build_local, build_node
from agent.config import AgentConfig, AgentSection, LinkSection, SafetySection
from agent.journal.store import JournalStore
from agent.link.hub_link import HubLink
from agent.link.status import HubState
from agent.pki import credentials
from agent.pki.credentials import NodeCredentials
from agent.safety.permits import Reason
from agent.safety.runner import Safety
from agent.state_db import AgentStateDB, LatchedStop
from edgecommon import pki
from edgecommon.clock import SystemClock
from edgecommon.identity import Identity, Kind
from edgecommon.pb import link_pb2, link_pb2_grpc
from tests.fakes import eventually, running, seeded
from tests.procs import free_port

TRUST = "edge"
WAIT_S = 10.0  # real seconds any one wait may take before the test fails
QUIET_HEARTBEATS_S = 60.0  # a heartbeat interval that keeps heartbeats out of the way


async def build(
    config: AgentConfig, db: AgentStateDB, journal: JournalStore
) -> tuple[LocalParts, NodeParts]:
    """The agent's parts as agent/assemble.py builds them, from an enrolled node's state
    directory: the link with the table of hub message handlers and the heartbeat parts of
    safety, the lease keeper, the journal and the revoked serials. The one place to follow
    their constructors."""
    clock = SystemClock()
    local = await build_local(config, clock, db, journal)
    creds = local.enrolled.credentials()
    if creds is None:
        raise RuntimeError(f"no node certificate in {config.agent.state_dir}")
    return local, build_node(config, clock, seeded(), local, journal, creds)


@dataclass(frozen=True)
class Pki:
    hub_key: bytes
    hub_cert: bytes
    ca: bytes
    node: NodeCredentials
    node_key: pki.PrivateKey


@pytest.fixture(scope="module")
def certs() -> Pki:
    now = dt.datetime.now(dt.UTC)
    ca_key, ca = pki.create_ca(TRUST, now, dt.timedelta(days=1))
    hub_key = pki.generate_key()
    hub = pki.issue_hub_certificate(
        ca_key, ca, hub_key, TRUST, ["127.0.0.1"], now, dt.timedelta(days=1)
    )
    node_key = pki.generate_key()
    identity = Identity(Kind.NODE, "node-a", "site-a")
    node = pki.issue_for_key(ca_key, ca, node_key, identity, TRUST, now, dt.timedelta(days=1))
    creds = NodeCredentials(identity, TRUST, pki.private_key_bytes(node_key), node, [ca])
    return Pki(pki.private_key_bytes(hub_key), pki.pem(hub), pki.pem(ca), creds, node_key)


def registered(
    heartbeat_interval_s: float = QUIET_HEARTBEATS_S, **fields: object
) -> link_pb2.HubMessage:
    return link_pb2.HubMessage(
        registered=link_pb2.Registered(
            node_id="node-a", group="site-a", heartbeat_interval_s=heartbeat_interval_s, **fields
        )
    )


@dataclass(eq=False)
class ScriptedHub(link_pb2_grpc.LinkServicer):
    """Answers each Connect with the next scripted first answer (Registered by default),
    then writes what the test pushes (None ends the stream). Records what the agent sends,
    with what `witness` saw at the moment each message arrived."""

    witness: Callable[[], Awaitable[list[str]]]  # the stop ids latched on disk
    answers: list[link_pb2.HubMessage] = field(default_factory=list)
    registers: list[link_pb2.Register] = field(default_factory=list)
    arrived_unix: list[float] = field(default_factory=list)  # when each registration came
    answered_unix: list[float] = field(default_factory=list)  # when each answer left
    heard: list[tuple[link_pb2.AgentMessage, list[str]]] = field(default_factory=list)
    streams: list[asyncio.Queue[link_pb2.HubMessage | None]] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def Connect(self, request_iterator: object, context: grpc.aio.ServicerContext) -> None:
        first = await context.read()
        self.arrived_unix.append(time.time())
        self.registers.append(first.register)
        self._changed.set()
        answer = self.answers.pop(0) if self.answers else registered()
        self.answered_unix.append(time.time())
        await context.write(answer)
        if answer.WhichOneof("body") != "registered":
            return
        pushed: asyncio.Queue[link_pb2.HubMessage | None] = asyncio.Queue()
        self.streams.append(pushed)
        reader = asyncio.create_task(self._read(context))
        try:
            while (message := await pushed.get()) is not None:
                await context.write(message)
        finally:
            reader.cancel()

    async def _read(self, context: grpc.aio.ServicerContext) -> None:
        while (message := await context.read()) is not grpc.aio.EOF:
            self.heard.append((message, await self.witness()))
            self._changed.set()

    def push(self, message: link_pb2.HubMessage | None) -> None:
        self.streams[-1].put_nowait(message)

    def said(self, kind: str) -> list[link_pb2.AgentMessage]:
        return [m for m, _ in self.heard if m.WhichOneof("body") == kind]

    async def until(self, what: str, check: Callable[[], bool]) -> None:
        """Wait (bounded, real time) until `check()` holds after something arrived."""
        try:
            async with asyncio.timeout(WAIT_S):
                while not check():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"not within {WAIT_S:g}s: {what}") from None


class Disk:
    """The real agent.db, whose latch writes a test may hold in flight (a slow flash disk)
    to see what the agent does meanwhile."""

    def __init__(self, db: AgentStateDB) -> None:
        self.db = db
        self.writing = asyncio.Event()  # a latch write has started
        self.may_finish = asyncio.Event()  # cleared: latch writes wait until it is set
        self.may_finish.set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)

    async def latch(self, stop: LatchedStop) -> None:
        self.writing.set()
        await self.may_finish.wait()
        await self.db.latch(stop)


@dataclass
class Agent:
    disk: Disk
    config: AgentConfig
    local: LocalParts
    node: NodeParts

    @property
    def safety(self) -> Safety:
        return self.local.safety

    @property
    def link(self) -> HubLink:
        return self.node.link

    async def latched(self) -> list[str]:
        return sorted(s.stop_id for s in await self.disk.db.stops())


@pytest.fixture
async def agent(certs: Pki, tmp_path: Path) -> AsyncIterator[Agent]:
    """An enrolled node (its certificate in its state directory), built but not running."""
    paths = credentials.CredentialPaths.under(tmp_path)
    credentials.save(paths, certs.node_key, pki.pem(certs.node.cert), certs.ca)
    config = AgentConfig(
        agent=AgentSection(hub=f"127.0.0.1:{free_port()}", state_dir=tmp_path),
        link=LinkSection(reconnect_initial_s=0.05, reconnect_max_s=0.1),
        safety=SafetySection(node_switch_file=tmp_path / "autonomy.yaml"),
    )
    db = AgentStateDB(tmp_path / "agent.db")
    journal = JournalStore(tmp_path / "journal.db", SystemClock().wall)
    async with contextlib.AsyncExitStack() as opened:
        await db.open()
        opened.push_async_callback(db.close)
        await journal.open()
        opened.push_async_callback(journal.close)
        disk = Disk(db)
        local, node = await build(config, cast(AgentStateDB, disk), journal)
        # Bound by the assembly, never started here.
        opened.push_async_callback(node.peer_server.stop, None)
        yield Agent(disk, config, local, node)


@contextlib.asynccontextmanager
async def hub_serving(certs: Pki, agent: Agent, hub: ScriptedHub) -> AsyncIterator[None]:
    server = grpc.aio.server()
    link_pb2_grpc.add_LinkServicer_to_server(hub, server)
    creds = grpc.ssl_server_credentials(
        [(certs.hub_key, certs.hub_cert)], root_certificates=certs.ca, require_client_auth=True
    )
    server.add_secure_port(agent.config.agent.hub, creds)
    await server.start()
    try:
        yield
    finally:
        await server.stop(0)


def scripted(agent: Agent, *answers: link_pb2.HubMessage) -> ScriptedHub:
    return ScriptedHub(agent.latched, list(answers))


def command(stop_id: str) -> link_pb2.EstopCommand:
    return link_pb2.EstopCommand(stop_id=stop_id, scope="fleet", reason="drill", operator="alice")


async def test_registration_names_the_hub_stops_the_node_holds_and_its_switch_revision(
    certs: Pki, agent: Agent
) -> None:
    await agent.safety.latch_from_hub(command("stop-1"))
    await agent.safety.engage_local("operator on site", "carol")
    await agent.safety.set_fleet_switch(link_pb2.FleetSwitch(enabled=True, revision=3))
    hub = scripted(agent)
    link = agent.link
    async with hub_serving(certs, agent, hub), running(link.run()):
        await hub.until("a registration", lambda: bool(hub.registers))
    (register,) = hub.registers
    assert list(register.latched_stop_ids) == ["stop-1"]  # a local stop is not the hub's
    assert register.fleet_switch_revision == 3


async def test_inv_estop_01_stops_in_the_registration_answer_are_on_disk_before_acknowledged(
    certs: Pki, agent: Agent
) -> None:
    await agent.safety.latch_from_hub(command("stop-1"))
    answer = registered(
        stops=[command("stop-2")],
        releases=[link_pb2.EstopRelease(stop_id="stop-1", reason="fixed", operator="bob")],
        fleet_switch=link_pb2.FleetSwitch(enabled=True, source="hub", revision=5),
    )
    hub = scripted(agent, answer)
    link = agent.link
    async with hub_serving(certs, agent, hub), running(link.run()):
        await hub.until("the first heartbeat", lambda: bool(hub.said("heartbeat")))
        assert agent.safety.contact().link_up
    kinds = [m.WhichOneof("body") for m, _ in hub.heard]
    assert kinds[:4] == ["estop_ack", "estop_ack", "fleet_switch_ack", "heartbeat"]
    (ack, on_disk), (released, after_release) = hub.heard[0], hub.heard[1]
    assert (ack.estop_ack.stop_id, ack.estop_ack.released) == ("stop-2", False)
    assert "stop-2" in on_disk
    assert (released.estop_ack.stop_id, released.estop_ack.released) == ("stop-1", True)
    assert "stop-1" not in after_release
    assert hub.heard[2][0].fleet_switch_ack.revision == 5
    assert agent.safety.decision().reason is Reason.ESTOP


async def test_inv_estop_01_a_stop_on_the_stream_is_acknowledged_only_once_it_is_on_disk(
    certs: Pki, agent: Agent
) -> None:
    hub = scripted(agent, registered(heartbeat_interval_s=0.02))
    link = agent.link
    async with hub_serving(certs, agent, hub), running(link.run()):
        await hub.until("registered", lambda: bool(hub.streams))
        agent.disk.may_finish.clear()
        hub.push(link_pb2.HubMessage(estop=command("stop-3")))
        async with asyncio.timeout(WAIT_S):
            await agent.disk.writing.wait()
        # The agent's messages leave in order: two heartbeats sent after the write began
        # would follow an acknowledgement queued before it.
        beats = len(hub.said("heartbeat"))
        await hub.until("two more heartbeats", lambda: len(hub.said("heartbeat")) >= beats + 2)
        assert hub.said("estop_ack") == []
        agent.disk.may_finish.set()
        await hub.until("the stop's acknowledgement", lambda: bool(hub.said("estop_ack")))
        assert agent.safety.decision().reason is Reason.ESTOP
        hub.push(link_pb2.HubMessage(estop_release=link_pb2.EstopRelease(stop_id="stop-3")))
        await hub.until("the release's acknowledgement", lambda: len(hub.said("estop_ack")) == 2)
    acks = [
        (m.estop_ack.stop_id, m.estop_ack.released, seen)
        for m, seen in hub.heard
        if m.WhichOneof("body") == "estop_ack"
    ]
    assert acks == [("stop-3", False, ["stop-3"]), ("stop-3", True, [])]
    assert await agent.latched() == []


async def test_heartbeats_carry_the_nodes_safety_facts(certs: Pki, agent: Agent) -> None:
    local = await agent.safety.engage_local("operator on site", "carol")
    switch = link_pb2.FleetSwitch(enabled=True, source="hub", revision=9)
    hub = scripted(agent, registered(heartbeat_interval_s=0.05, fleet_switch=switch))
    link = agent.link
    async with hub_serving(certs, agent, hub), running(link.run()):
        await hub.until("three heartbeats", lambda: len(hub.said("heartbeat")) >= 3)
    beats = [m.heartbeat for m in hub.said("heartbeat")]
    assert [b.seq for b in beats[:3]] == [1, 2, 3]
    assert list(beats[0].local_stop_ids) == [local.stop_id]
    assert beats[0].fleet_switch_revision == 9
    assert beats[0].node_switch_enabled  # no switch file: the configured default
    assert beats[0].autonomy_effective
    assert link.status.heartbeats_sent >= 3


async def test_when_the_hub_ends_the_stream_the_link_goes_down_and_registers_again(
    certs: Pki, agent: Agent
) -> None:
    hub = scripted(agent)
    link = agent.link
    async with hub_serving(certs, agent, hub), running(link.run()):
        await hub.until("registered", lambda: bool(hub.streams))
        hub.push(link_pb2.HubMessage(estop=command("stop-4")))
        await hub.until("the acknowledgement", lambda: bool(hub.said("estop_ack")))
        hub.push(None)  # the hub ends the stream
        await hub.until("a second registration", lambda: len(hub.registers) == 2)
        await hub.until("registered again", lambda: len(hub.streams) == 2)
    assert list(hub.registers[1].latched_stop_ids) == ["stop-4"]
    assert link.status.connects == 2


async def test_a_backoff_answer_is_waited_out_before_the_next_attempt(
    certs: Pki, agent: Agent
) -> None:
    busy = link_pb2.HubMessage(backoff=link_pb2.Backoff(retry_after_s=0.3, reason="busy"))
    still = link_pb2.HubMessage(backoff=link_pb2.Backoff(retry_after_s=60, reason="still busy"))
    hub = scripted(agent, busy, still)
    link = agent.link
    async with hub_serving(certs, agent, hub), running(link.run()):
        await hub.until("a second attempt", lambda: len(hub.registers) == 2)
        await eventually(
            "the agent waits out the second backoff",
            lambda: "60.0s: still busy" in link.status.last_error,
        )
        assert link.status.state is HubState.BACKOFF
        assert link.status.next_attempt_unix >= hub.answered_unix[1] + 60
    # The reconnect never comes sooner than the hub asked (never less than the floor).
    assert hub.arrived_unix[1] >= hub.answered_unix[0] + 0.3
    # The hub answered, so for INV-BOOT-01 it was reachable from then on.
    contact = agent.safety.contact()
    assert contact.since_answer_s < contact.since_start_s


async def test_a_lease_nudge_asks_the_lease_keeper_to_renew_now(certs: Pki, agent: Agent) -> None:
    nudged = agent.node.keeper.nudged  # what wakes the keeper's renewal loop early
    hub = scripted(agent)
    async with hub_serving(certs, agent, hub), running(agent.link.run()):
        await hub.until("registered", lambda: bool(hub.streams))
        assert not nudged.is_set()
        hub.push(link_pb2.HubMessage(lease_nudge=link_pb2.LeaseNudge(reason="switchover")))
        async with asyncio.timeout(WAIT_S):
            await nudged.wait()

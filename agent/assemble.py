"""The agent's object graph, built in one place, in two phases.

Every component gets all its collaborators through its constructor, so a missing one is a
TypeError at start, never a feature that silently does nothing.

* `build_local`: what runs from the start, enrolled or not: the link status, safety (the
  latch, the switches, permits), the hub's revoked serials, and what the local API reports.
* `build_node`: what needs the node's certificate, built once it has one (read at start,
  or after enrolling): the lease keeper, the journal (its Peer server is bound first, so
  the journal knows the address it reports), renewal and the hub link. The result is
  published to `LocalParts.enrolled`, the one place the local API and permits read it from.
* `build_link`: the hub link over the local parts, given the handler table and heartbeat
  parts; build_node's last step, and all a bench that simulates many nodes (only their
  safety and link, bench/_agents.py) adds to `build_local`.

Where two parts need each other a small object built before both carries what they share:
`LinkCredentials` (renewal moves the link onto each new certificate; the link asks for a
re-enrollment when the hub refuses its certificate), `ServedCertificate` (the Peer server's
port is bound with it before the journal that reports the port exists), `Enrolled` (the
permit decision asks who leads; the lease keeper exists only once the node is enrolled).
"""

import functools
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from agent.config import AgentConfig
from agent.enrolled import Enrolled, EnrolledParts
from agent.journal.api import JournalParts
from agent.journal.peer import PeerService, ServedCertificate, bind_peer_server
from agent.journal.replica import ReplicaLoop
from agent.journal.replication import Replication
from agent.journal.store import JournalStore
from agent.leases.keeper import LeaseKeeper
from agent.link.hub_link import HubLink, LinkCredentials
from agent.link.hub_messages import Handlers, HeartbeatPart
from agent.link.status import LinkStatus
from agent.link.telemetry import Telemetry
from agent.local.api import NodeFacts
from agent.pki import credentials
from agent.pki.enroll import join_token, reenroll
from agent.pki.renewal import Renewer
from agent.pki.revocations import RevokedSerials
from agent.safety.permits import PermitLimits, PermitTable
from agent.safety.runner import Safety
from agent.state_db import AgentStateDB
from edgecommon import tokens
from edgecommon.autonomy_file import SwitchFile
from edgecommon.clock import Clock
from edgecommon.pb import replication_pb2_grpc


@dataclass(frozen=True)
class LocalParts:
    """What the agent runs from its start, enrolled or not."""

    status: LinkStatus
    safety: Safety
    revoked: RevokedSerials
    enrolled: Enrolled
    facts: NodeFacts
    join_token: str  # the token to enroll with; "" when the node was enrolled before


@dataclass(frozen=True)
class NodeParts:
    """What runs once the node has its certificate."""

    link: HubLink
    keeper: LeaseKeeper
    renewer: Renewer
    replication: Replication
    replica: ReplicaLoop
    peer: PeerService
    peer_server: grpc.aio.Server  # bound, not started

    def enrolled(self) -> EnrolledParts:
        return EnrolledParts(
            self.renewer, self.keeper, JournalParts(self.replication, self.replica)
        )


async def build_local(
    config: AgentConfig, clock: Clock, db: AgentStateDB, journal: JournalStore
) -> LocalParts:
    """Phase one, from the node's state directory (`db` and `journal` open)."""
    state_dir = config.agent.state_dir
    paths = credentials.CredentialPaths.under(state_dir)
    stored = credentials.load(paths) if paths.enrolled() else None
    token = ""
    if stored is None:
        token = join_token(config)
        tokens.parse_token(token)  # a bad token stops the start, before anything serves
    enrolled = Enrolled(stored)
    safety = Safety(
        db,
        SwitchFile(config.safety.node_switch_file, config.safety.switch_default),
        clock,
        config.safety,
        PermitTable(
            PermitLimits(config.local.max_permits_per_caller, config.local.max_permits_total)
        ),
        config.link.startup_sync_timeout_s,
        enrolled.leadership,
    )
    await safety.load()
    revoked = RevokedSerials(db)  # before the Peer service serves anyone
    await revoked.load()
    status = LinkStatus(clock, config.agent.hub)
    facts = NodeFacts(status, state_dir, clock.wall(), safety, enrolled)
    facts.board.attach("safety", safety)
    facts.board.attach("journal", journal)
    return LocalParts(status, safety, revoked, enrolled, facts, token)


def hub_handlers(
    safety: Safety, keeper: LeaseKeeper, replication: Replication, revoked: RevokedSerials
) -> Handlers:
    """The agent's table of hub message kinds: every subsystem's handlers, merged."""
    return Handlers(
        (
            safety.hub_handlers(),
            keeper.hub_handlers(),
            replication.hub_handlers(),
            revoked.hub_handlers(),
        )
    )


def build_link(
    config: AgentConfig,
    rng: random.Random,
    local: LocalParts,
    link_credentials: LinkCredentials,
    handlers: Handlers,
    heartbeat: Sequence[HeartbeatPart],
    on_credential_problem: Callable[[], Awaitable[bool]],
) -> HubLink:
    """The hub link over the local parts (it keeps their link status and tells safety when
    the hub comes and goes), with the table of hub message handlers, what is added to each
    heartbeat, and what to do when the hub refuses the node's certificate. build_node gives
    it a whole node's; a bench that simulates many nodes, only the local parts'."""
    return HubLink(
        config,
        link_credentials,
        local.status,
        Telemetry.start(config.agent.state_dir),
        local.safety,
        handlers,
        heartbeat,
        on_credential_problem,
        rng,
    )


def build_node(
    config: AgentConfig,
    clock: Clock,
    rng: random.Random,
    local: LocalParts,
    journal: JournalStore,
    creds: credentials.NodeCredentials,
) -> NodeParts:
    """Phase two, once the node has `creds` (`journal` open). Binds the Peer server's
    port (an OSError if it cannot); nothing is started."""
    state_dir = config.agent.state_dir
    c = config.replication
    keeper = LeaseKeeper(config, creds, clock, local.safety.stepped_down)
    served = ServedCertificate(creds)
    peer_server, port = bind_peer_server(c.listen, served)
    address = c.advertise_address or f"{c.listen.rpartition(':')[0]}:{port}"
    replication = Replication(journal, c, creds.identity, keeper, clock, local.revoked, address)
    peer = PeerService(replication, served, clock)
    replication_pb2_grpc.add_PeerServicer_to_server(peer, peer_server)
    forensics = Path(c.forensics_dir) if c.forensics_dir else state_dir / "forensics"
    replica = ReplicaLoop(replication, creds, forensics)
    link_credentials = LinkCredentials(creds, local.status, config.renewal.handover_timeout_s)

    async def adopt(new: credentials.NodeCredentials) -> None:
        """Every part that dials or serves with the node's certificate takes the new one."""
        keeper.adopt(new)
        served.adopt(new)
        replica.adopt(new)
        await link_credentials.move_to(new)

    paths = credentials.CredentialPaths.under(state_dir)
    renewer = Renewer(config, paths, creds, clock, rng, [adopt])
    link = build_link(
        config,
        rng,
        local,
        link_credentials,
        hub_handlers(local.safety, keeper, replication, local.revoked),
        (local.safety.add_to_heartbeat, replication.add_to_heartbeat),
        functools.partial(reenroll, config, paths, renewer, local.status),
    )
    # The local status shows these from now on (agent.link.status.AGENT_SECTIONS).
    for name, component in (
        ("link", link),
        ("leadership", keeper),
        ("replication", replication),
        ("renewal", renewer),
        ("peer", peer),
        ("replica", replica),
    ):
        local.facts.board.attach(name, component)
    return NodeParts(link, keeper, renewer, replication, replica, peer, peer_server)

"""The hub's object graph, built in one place, in dependency order.

Every component gets all its collaborators through its constructor, so a missing one is a
TypeError at start, never a feature that silently does nothing. Two pairs need each other
and are built apart on purpose:

* the election asks the journal's quorum who may take over, and the quorum asks who
  leads: the lease table (hub.leases.manager.LeaseTable) is its own object, built before both;
* the journal's quorum screens every heartbeat, and needs the registry that takes them:
  the Link servicer hands each heartbeat the registry took to the quorum.

What the serving loop (hub.server) needs is returned as one frozen `HubParts`.

One grpc.aio server listens twice: `listen` requires a client certificate from the
fleet CA (agents and operators); `enroll_listen` asks for none, because an enrolling
agent has none yet. Identity is checked per call, so only Enroll, health and
reflection are useful on the enrollment port.
"""

import functools
import logging
import random
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from edgecommon import grpcopts
from edgecommon.audit_record import RBAC_RELOAD
from edgecommon.boundary import RequestBoundary
from edgecommon.clock import Clock
from edgecommon.errors import EdgeError
from edgecommon.pb import (
    audit_pb2,
    audit_pb2_grpc,
    certs_pb2,
    certs_pb2_grpc,
    fleet_pb2,
    fleet_pb2_grpc,
    link_pb2,
    link_pb2_grpc,
    rbac_pb2,
    rbac_pb2_grpc,
    replication_pb2,
    replication_pb2_grpc,
)
from edgecommon.statistics import StatisticsBoard
from hub.audit.emitter import AuditEmitter
from hub.audit.event import NewEvent
from hub.audit.service import AuditService
from hub.config import HubConfig
from hub.fleet.link_service import LinkService
from hub.fleet.registry import Registry
from hub.fleet.service import FleetService
from hub.journal.leader_channels import LeaderChannels
from hub.journal.replication import ReplicationManager
from hub.journal.service import ReplicationService
from hub.leases.manager import LeaseManager, LeaseTable
from hub.pki import credentials as hub_credentials
from hub.pki.auth import PeerVerifier
from hub.pki.authority import CertAuthority
from hub.pki.enrollment import Enrollment
from hub.pki.service import CertsService
from hub.pki.trust import TrustStore
from hub.rbac.gate import Gate, GateInterceptor
from hub.rbac.service import RbacService
from hub.rbac.source import RbacSource
from hub.stops.autonomy import FleetSwitch
from hub.stops.estop import EstopManager
from hub.stops.http_api import read_token
from hub.store.sqlite import SqliteStore

log = logging.getLogger("edge-hub")
SERVICE_NAMES = (
    link_pb2.DESCRIPTOR.services_by_name["Link"].full_name,
    fleet_pb2.DESCRIPTOR.services_by_name["Fleet"].full_name,
    rbac_pb2.DESCRIPTOR.services_by_name["Rbac"].full_name,
    audit_pb2.DESCRIPTOR.services_by_name["Audit"].full_name,
    certs_pb2.DESCRIPTOR.services_by_name["Certs"].full_name,
    replication_pb2.DESCRIPTOR.services_by_name["Replication"].full_name,
)
# The hub's statistics sections in `edgectl fleet status` (fleet.read on the fleet). The RBAC
# source's and the audit log's stay behind their own permissions: `edgectl rbac status`
# (rbac.read) and `edgectl audit status` (audit.read) show them.
HUB_SECTIONS = (
    "registry",
    "link",
    "estops",
    "autonomy",
    "leases",
    "replication",
    "leader_channels",
    "gate",
    "boundary",
)


@dataclass(frozen=True)
class HubParts:
    store: SqliteStore
    registry: Registry
    server: grpc.aio.Server
    health: health.aio.HealthServicer
    link: LinkService
    estops: EstopManager
    fleet_switch: FleetSwitch
    http_token: bytes | None
    leases: LeaseManager
    replication: ReplicationManager
    rbac: RbacSource
    gate: Gate
    audit: AuditEmitter
    leader_channels: LeaderChannels


@dataclass(frozen=True)
class FleetState:
    """The managers of the fleet's live state, loaded from the store."""

    registry: Registry
    estops: EstopManager
    fleet_switch: FleetSwitch
    leases: LeaseManager
    replication: ReplicationManager


async def fleet_state(config: HubConfig, clock: Clock, store: SqliteStore) -> FleetState:
    registry = Registry(store, clock, config.link)
    await registry.load()
    estops = EstopManager(store, registry, clock)
    await estops.load()
    fleet_switch = FleetSwitch(store, registry, clock, config.autonomy)
    await fleet_switch.load()
    table = LeaseTable(store, clock)
    await table.load()
    replication = ReplicationManager(store, registry, table, clock, config.replication)
    await replication.load()
    leases = LeaseManager(store, registry, estops, table, replication, clock, config.lease)
    return FleetState(registry, estops, fleet_switch, leases, replication)


async def build(
    config: HubConfig, clock: Clock, rng: random.Random, store: SqliteStore, audit: AuditEmitter
) -> HubParts:
    """Every part of the hub, loaded from the store, its server bound but not started."""
    creds = hub_credentials.load_or_create(config, clock.wall())
    fleet = await fleet_state(config, clock, store)
    registry = fleet.registry
    http_token = read_token(Path(config.http.token_file)) if config.http.token_file else None
    trust = TrustStore(creds)
    await trust.load(store)
    verifier = PeerVerifier(trust, creds.trust_domain, clock)
    rbac = RbacSource(
        store,
        Path(config.rbac.dir) if config.rbac.dir else None,
        clock,
        functools.partial(audit_reload, audit, str(config.rbac.dir)),
    )
    await rbac.load()
    enrollment = Enrollment(store, trust, config, clock)
    gate = Gate(
        rbac,
        registry,
        audit,
        rng,
        clock,
        enforce=config.rbac.enforcement,
        denial_interval_s=config.audit.unauthenticated_interval_s,
    )
    if not config.rbac.enforcement:
        log.warning(
            "RBAC ENFORCEMENT IS OFF ([rbac].enforcement = false / AUTONOMY_RBAC_ENFORCEMENT=0): "
            "every operator request is let through and audited as bypassed. Restore it as soon "
            "as the break-fix is over."
        )
    authority = CertAuthority(store, trust, registry, config, clock)
    await authority.load()
    link = LinkService(
        enrollment,
        registry,
        verifier,
        config.link,
        clock,
        rng,
        fleet.estops,
        fleet.fleet_switch,
        fleet.leases,
        fleet.replication.observe,
        authority.revocations,
    )
    boundary = RequestBoundary(log, clock)
    # Operator appends reach each group's leader over one pooled channel
    # (hub.journal.leader_channels).
    leader_channels = LeaderChannels(trust, clock, config.certs.max_connection_age_s)
    # What `edgectl fleet status` shows of the hub itself, section by section, in this order.
    board = StatisticsBoard(
        HUB_SECTIONS,
        {
            "registry": registry,
            "link": link,
            "estops": fleet.estops,
            "autonomy": fleet.fleet_switch,
            "leases": fleet.leases,
            "replication": fleet.replication,
            "leader_channels": leader_channels,
            "gate": gate,
            "boundary": boundary,
        },
    )

    server = grpc.aio.server(
        options=grpcopts.server_options(
            grpcopts.KeepalivePolicy(
                max_connection_age_ms=int(config.certs.max_connection_age_s * 1000)
            )
        ),
        # The boundary comes first: nothing reaches the gate (and its audit log) that does
        # not decode or holds a field the audit log cannot record.
        interceptors=[
            boundary,
            GateInterceptor(gate, verifier, enrollment.check_token),
        ],
    )
    link_pb2_grpc.add_LinkServicer_to_server(link, server)
    fleet_pb2_grpc.add_FleetServicer_to_server(
        FleetService(
            enrollment,
            registry,
            verifier,
            clock,
            fleet.estops,
            fleet.fleet_switch,
            fleet.leases,
            board,
        ),
        server,
    )
    rbac_pb2_grpc.add_RbacServicer_to_server(RbacService(gate, verifier, registry.groups), server)
    audit_pb2_grpc.add_AuditServicer_to_server(AuditService(audit, gate, verifier, clock), server)
    replication_pb2_grpc.add_ReplicationServicer_to_server(
        ReplicationService(fleet.replication, verifier, leader_channels), server
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    certs_pb2_grpc.add_CertsServicer_to_server(CertsService(authority, verifier), server)
    mtls = trust.server_credentials(client_auth=True)
    tls = trust.server_credentials(client_auth=False)
    for address, server_creds in ((config.hub.listen, mtls), (config.hub.enroll_listen, tls)):
        try:
            bound = server.add_secure_port(address, server_creds)
        except RuntimeError:  # grpc's word for an address in use or not on this host
            bound = 0
        if bound == 0:
            raise OSError(f"cannot listen on {address}: the address is in use or not local")
    return HubParts(
        store=store,
        registry=registry,
        server=server,
        health=health_servicer,
        link=link,
        estops=fleet.estops,
        fleet_switch=fleet.fleet_switch,
        http_token=http_token,
        leases=fleet.leases,
        replication=fleet.replication,
        rbac=rbac,
        gate=gate,
        audit=audit,
        leader_channels=leader_channels,
    )


async def audit_reload(audit: AuditEmitter, directory: str, ok: bool, detail: str) -> None:
    """Record an RBAC reload (the RBAC source calls this after each one)."""
    event = NewEvent(
        operator="hub",
        action=RBAC_RELOAD,
        target=directory,
        scope="fleet",
        outcome="success" if ok else "failure",
        request_id="",
        detail=detail,
    )
    try:
        await audit.emit([event])
    except EdgeError as exc:
        log.critical(
            "AUDIT EVENT NOT RECORDED (%s): RBAC reload %s: %s", exc, event.outcome, detail
        )

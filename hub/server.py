"""The hub process: store, credentials, registry and the gRPC server, wired explicitly.

One grpc.aio server listens twice: `listen` requires a client certificate from the
fleet CA (agents and operators); `enroll_listen` asks for none, because an enrolling
agent has none yet. Identity is checked per call, so only Enroll, health and
reflection are useful on the enrollment port.
"""

import asyncio
import functools
import logging
import os
import random
from dataclasses import dataclass
from pathlib import Path

import grpc
from aiohttp import web
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from edgecommon import grpcopts
from edgecommon.audit_record import RBAC_RELOAD, STATE_REINITIALIZE
from edgecommon.boundary import RequestBoundary
from edgecommon.clock import Clock
from edgecommon.daemon import (
    ShutdownRequested,
    announce_ready,
    announce_stopping,
    raise_when_set,
    unless_stopped,
)
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
from edgecommon.sqlite_file import Reinitialized, prepare_async
from edgecommon.statistics import StatisticsBoard
from hub import credentials as hub_credentials
from hub.audit.emitter import AuditEmitter
from hub.audit.event import NewEvent
from hub.audit.file_log import FileAuditLog
from hub.audit.pg_log import PgAuditLog
from hub.audit_service import AuditService
from hub.auth import PeerVerifier
from hub.autonomy import FleetSwitch
from hub.cert_authority import CertAuthority
from hub.certs_service import CertsService
from hub.config import HubConfig
from hub.enrollment import Enrollment
from hub.estop import EstopManager
from hub.fleet_service import FleetService
from hub.gate import Gate, GateInterceptor
from hub.http_api import HttpAuth, read_token, start_http
from hub.leader_channels import LeaderChannels
from hub.leases import LeaseManager
from hub.link_service import LinkService
from hub.rbac.source import RbacSource
from hub.rbac_service import RbacService
from hub.registry import Registry
from hub.replication import ReplicationManager
from hub.replication_service import ReplicationService
from hub.state_files import state_layout
from hub.store.sqlite import SqliteStore
from hub.trust import TrustStore

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
    "gate",
    "boundary",
)
GRACE_S = 5.0  # for RPCs in flight when the hub stops; then they are cancelled
# From the first SIGTERM to exit, at most: the grace, the HTTP API's, the last flushes.
# Below `edgectl dev down`'s 10 s and systemd's TimeoutStopSec, so the hub itself says
# what hung rather than being killed without a word.
SHUTDOWN_BOUND_S = 9.0


@dataclass
class HubParts:
    store: SqliteStore
    registry: Registry
    server: grpc.aio.Server
    health: health.HealthServicer
    link: LinkService
    estops: EstopManager
    fleet_switch: FleetSwitch
    http_token: bytes | None
    leases: LeaseManager
    rbac: RbacSource
    gate: Gate
    audit: AuditEmitter
    leader_channels: LeaderChannels
    replication: ReplicationManager | None = None


async def build(
    config: HubConfig, clock: Clock, rng: random.Random, store: SqliteStore, audit: AuditEmitter
) -> HubParts:
    creds = hub_credentials.load_or_create(config, clock.wall())
    registry = Registry(store, clock, config.link)
    await registry.load()
    estops = EstopManager(store, registry, clock)
    await estops.load()
    fleet_switch = FleetSwitch(store, registry, clock, config.autonomy)
    await fleet_switch.load()
    leases = LeaseManager(store, registry, estops, clock, config.lease)
    await leases.load()
    replication = ReplicationManager(store, registry, leases, clock, config.replication)
    await replication.load()
    leases.journal = replication
    registry.on_heartbeat = replication.observe
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
    link = LinkService(
        enrollment, registry, verifier, config.link, clock, rng, estops, fleet_switch, leases
    )
    boundary = RequestBoundary(log, clock)
    # What `edgectl fleet status` shows of the hub itself, section by section, in this order.
    board = StatisticsBoard(
        HUB_SECTIONS,
        {
            "registry": registry,
            "link": link,
            "estops": estops,
            "autonomy": fleet_switch,
            "leases": leases,
            "replication": replication,
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
        FleetService(enrollment, registry, verifier, clock, estops, fleet_switch, leases, board),
        server,
    )
    rbac_pb2_grpc.add_RbacServicer_to_server(RbacService(gate, verifier, registry.groups), server)
    audit_pb2_grpc.add_AuditServicer_to_server(AuditService(audit, gate, verifier, clock), server)
    leader_channels = LeaderChannels(trust, clock, config.certs.max_connection_age_s)
    replication_pb2_grpc.add_ReplicationServicer_to_server(
        ReplicationService(replication, verifier, leader_channels), server
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    authority = CertAuthority(store, trust, registry, config, clock)
    await authority.load()
    link.revocations = authority.revocations
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
        store,
        registry,
        server,
        health_servicer,
        link,
        estops,
        fleet_switch,
        http_token,
        leases,
        rbac,
        gate,
        audit,
        leader_channels,
        replication,
    )


async def open_audit(config: HubConfig, clock: Clock) -> AuditEmitter:
    """The file log always (the fallback); PostgreSQL first when configured. A database
    that is down at start is reported, not fatal: events go to the file log meanwhile."""
    file_log = FileAuditLog(config.audit_dir, clock, int(config.audit.rotate_mb * 2**20))
    primary = PgAuditLog(config.audit.pg_url, clock) if config.audit.pg_url else None
    emitter = AuditEmitter(primary, file_log, log, clock)
    await emitter.open()
    return emitter


async def audit_reload(audit: AuditEmitter, directory: str, ok: bool, detail: str) -> None:
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


async def serve(
    config: HubConfig,
    clock: Clock,
    rng: random.Random,
    stop: asyncio.Event,
    reinitialize: bool = False,
) -> None:
    """Check the state files, open the store and the audit log, serve until `stop`, close
    both whatever happens (an open aiosqlite connection would keep the process from
    exiting)."""
    config.hub.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Refuses a damaged or lost database before anything is opened (or reinitializes it).
    try:
        reinitialized = await unless_stopped(
            stop, prepare_async(state_layout(config), reinitialize, clock.wall)
        )
    except ShutdownRequested:
        log.info("stopped while checking the state files")
        return
    store = SqliteStore(config.db_path)
    try:
        await store.open()
        audit = await open_audit(config, clock)
        try:
            await audit_reinitialized(audit, reinitialized)
            await _serve(config, clock, rng, stop, await build(config, clock, rng, store, audit))
        finally:
            await audit.close()
    finally:
        await store.close()


async def audit_reinitialized(audit: AuditEmitter, done: list[Reinitialized]) -> None:
    """--reinitialize threw state away: that is an event, written before the hub serves."""
    for item in done:
        event = NewEvent(
            operator="hub",
            action=STATE_REINITIALIZE,
            target=str(item.path),
            scope="fleet",
            outcome="success",
            request_id="",
            reason="edge-hub --reinitialize",
            detail=f"{item.describe()} (run as uid {os.getuid()})",
        )
        try:
            await audit.emit([event])
        except EdgeError as exc:
            log.critical("AUDIT EVENT NOT RECORDED (%s): %s", exc, item.describe())


async def _serve(
    config: HubConfig, clock: Clock, rng: random.Random, stop: asyncio.Event, parts: HubParts
) -> None:
    http: web.AppRunner | None = None
    try:
        await parts.server.start()
        if parts.http_token is not None and config.http.listen:
            http = await start_http(
                config.http.listen,
                HttpAuth(parts.http_token, config.http.token_operator, parts.gate),
                parts.fleet_switch,
                parts.estops,
            )
            log.info("HTTP status API on %s", config.http.listen)
        elif config.http.listen:
            log.info("HTTP status API off: set [http].token_file to enable it")
        for name in ("", *SERVICE_NAMES):
            await parts.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "hub ready: mTLS on %s, enrollment on %s, %d nodes known",
            config.hub.listen,
            config.hub.enroll_listen,
            parts.registry.statistics().nodes,
        )
        try:
            async with asyncio.TaskGroup() as tg:
                registry_task = tg.create_task(parts.registry.run(), name="registry")
                tg.create_task(parts.estops.run(), name="estop-acks")
                tg.create_task(parts.fleet_switch.run(), name="fleet-switch")
                tg.create_task(parts.rbac.run(), name="rbac-files")
                tg.create_task(parts.gate.run(), name="denial-counts")
                if parts.replication is not None:
                    tg.create_task(parts.replication.run(), name="replication")
                announce_ready("serving", tg, lambda: not registry_task.done())
                tg.create_task(raise_when_set(stop), name="shutdown")
        except* ShutdownRequested:
            announce_stopping()
            await parts.health.enter_graceful_shutdown()
            parts.registry.close_all("hub shutting down")
            await parts.server.stop(GRACE_S)
    finally:
        if http is not None:
            await http.cleanup()
        await parts.server.stop(None)
        await parts.leader_channels.close()  # no call uses them once the server stopped
        await parts.registry.flush()
        await parts.estops.flush()
        await parts.gate.flush()
        log.info("hub stopped")

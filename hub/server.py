"""The hub process: store, credentials, registry and the gRPC server, wired explicitly.

One grpc.aio server listens twice: `listen` requires a client certificate from the
fleet CA (agents and operators); `enroll_listen` asks for none, because an enrolling
agent has none yet. Identity is checked per call, so only Enroll, health and
reflection are useful on the enrollment port.
"""

import asyncio
import logging
import random
from dataclasses import dataclass
from pathlib import Path

import grpc
from aiohttp import web
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from edgecommon import grpcopts, pki
from edgecommon.clock import Clock
from edgecommon.daemon import (
    ShutdownRequested,
    announce_ready,
    announce_stopping,
    raise_when_set,
)
from edgecommon.pb import (
    fleet_pb2,
    fleet_pb2_grpc,
    link_pb2,
    link_pb2_grpc,
    replication_pb2,
    replication_pb2_grpc,
)
from hub import credentials as hub_credentials
from hub.auth import PeerVerifier
from hub.autonomy import FleetSwitch
from hub.config import HubConfig
from hub.enrollment import Enrollment
from hub.estop import EstopManager
from hub.fleet_service import FleetService
from hub.http_api import read_token, start_http
from hub.leases import LeaseManager
from hub.link_service import LinkService
from hub.registry import Registry
from hub.replication import ReplicationManager
from hub.replication_service import ReplicationService
from hub.store.sqlite import SqliteStore

log = logging.getLogger("edge-hub")
SERVICE_NAMES = (
    link_pb2.DESCRIPTOR.services_by_name["Link"].full_name,
    fleet_pb2.DESCRIPTOR.services_by_name["Fleet"].full_name,
    replication_pb2.DESCRIPTOR.services_by_name["Replication"].full_name,
)
GRACE_S = 5.0


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
    replication: ReplicationManager | None = None


async def build(config: HubConfig, clock: Clock, rng: random.Random) -> HubParts:
    config.hub.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    creds = hub_credentials.load_or_create(config, clock.wall())
    store = SqliteStore(config.db_path)
    await store.open()
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
    http_token = read_token(Path(config.http.token_file)) if config.http.token_file else None
    verifier = PeerVerifier(creds.ca_cert, creds.trust_domain, clock)
    enrollment = Enrollment(store, creds, config, clock)
    link = LinkService(
        enrollment, registry, verifier, config.link, clock, rng, estops, fleet_switch, leases
    )

    server = grpc.aio.server(options=grpcopts.server_options())
    link_pb2_grpc.add_LinkServicer_to_server(link, server)
    fleet_pb2_grpc.add_FleetServicer_to_server(
        FleetService(enrollment, registry, verifier, clock, estops, fleet_switch, leases),
        server,
    )
    replication_pb2_grpc.add_ReplicationServicer_to_server(
        ReplicationService(replication, verifier), server
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    key_cert = [(creds.server_key_pem, pki.pem(creds.server_cert))]
    mtls = grpc.ssl_server_credentials(
        key_cert, root_certificates=creds.ca_bundle_pem, require_client_auth=True
    )
    tls = grpc.ssl_server_credentials(key_cert, require_client_auth=False)
    for address, server_creds in ((config.hub.listen, mtls), (config.hub.enroll_listen, tls)):
        if server.add_secure_port(address, server_creds) == 0:
            raise OSError(f"cannot listen on {address}")
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
        replication,
    )


async def serve(config: HubConfig, clock: Clock, rng: random.Random, stop: asyncio.Event) -> None:
    parts = await build(config, clock, rng)
    http: web.AppRunner | None = None
    try:
        await parts.server.start()
        if parts.http_token is not None and config.http.listen:
            http = await start_http(
                config.http.listen, parts.http_token, parts.fleet_switch, parts.estops
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
            parts.registry.statistics()["nodes"],
        )
        try:
            async with asyncio.TaskGroup() as tg:
                registry_task = tg.create_task(parts.registry.run(), name="registry")
                tg.create_task(parts.estops.run(), name="estop-acks")
                tg.create_task(parts.fleet_switch.run(), name="fleet-switch")
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
        await parts.registry.flush()
        await parts.estops.flush()
        await parts.store.close()
        log.info("hub stopped")

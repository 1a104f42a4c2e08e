"""The hub process: check the state files, open the store and the audit log, build the
hub (hub.assemble), serve until told to stop, stop in order.
"""

import asyncio
import logging
import os
import random

from aiohttp import web
from grpc_health.v1 import health_pb2

from edgecommon.audit_record import STATE_REINITIALIZE
from edgecommon.clock import Clock
from edgecommon.daemon import (
    ShutdownRequested,
    announce_ready,
    announce_stopping,
    raise_when_set,
    unless_stopped,
)
from edgecommon.errors import EdgeError
from edgecommon.sqlite_file import Reinitialized, prepare_async
from hub.assemble import SERVICE_NAMES, HubParts, build
from hub.audit.emitter import AuditEmitter
from hub.audit.event import NewEvent
from hub.audit.file_log import FileAuditLog
from hub.audit.pg_log import PgAuditLog
from hub.config import HubConfig
from hub.state_files import state_layout
from hub.stops.http_api import HttpAuth, start_http
from hub.store.sqlite import SqliteStore

log = logging.getLogger("edge-hub")
GRACE_S = 5.0  # for RPCs in flight when the hub stops; then they are cancelled
# From the first SIGTERM to exit, at most: the grace, the HTTP API's, the last flushes.
# Below `edgectl dev down`'s 10 s and systemd's TimeoutStopSec, so the hub itself says
# what hung rather than being killed without a word.
SHUTDOWN_BOUND_S = 9.0


async def open_audit(config: HubConfig, clock: Clock) -> AuditEmitter:
    """The file log always (the fallback); PostgreSQL first when configured. A database
    that is down at start is reported, not fatal: events go to the file log meanwhile."""
    file_log = FileAuditLog(config.audit_dir, clock, int(config.audit.rotate_mb * 2**20))
    primary = PgAuditLog(config.audit.pg_url, clock) if config.audit.pg_url else None
    emitter = AuditEmitter(primary, file_log, log, clock)
    await emitter.open()
    return emitter


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

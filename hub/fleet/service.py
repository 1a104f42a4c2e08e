"""The Fleet service: what operators ask of the hub. Every call needs an operator credential."""

import logging

import grpc

from edgecommon.clock import Clock
from edgecommon.errors import InvalidArgument, NotFound
from edgecommon.identity import Kind
from edgecommon.pb import fleet_pb2, fleet_pb2_grpc
from edgecommon.rpc import handle_errors
from edgecommon.statistics import StatisticsBoard
from edgecommon.version import PRODUCT_VERSION
from hub.fleet.registry import NodeView, Registry
from hub.leases.manager import LeaseManager
from hub.pki.auth import PeerVerifier
from hub.pki.enrollment import Enrollment, token_subject
from hub.stops.autonomy import FleetSwitch
from hub.stops.estop import EstopManager


def node_message(view: NodeView) -> fleet_pb2.Node:
    r = view.record
    node = fleet_pb2.Node(
        node_id=r.node_id,
        group=r.group,
        labels=r.labels,
        agent_version=r.agent_version,
        cert_serial=r.cert_serial,
        cert_expires_unix=r.cert_expires_unix,
        first_seen_unix=r.first_seen_unix,
        last_seen_unix=r.last_seen_unix,
        state=r.state,
        state_since_unix=r.state_since_unix,
        state_reason=r.state_reason,
        hostname=r.hostname,
    )
    if view.heartbeat is not None and view.connected:
        hb = view.heartbeat
        node.metrics.CopyFrom(
            fleet_pb2.NodeMetrics(
                uptime_s=hb.uptime_s,
                cpu_percent=hb.cpu_percent,
                memory_percent=hb.memory_percent,
                disk_percent=hb.disk_percent,
                rss_bytes=hb.rss_bytes,
                heartbeat_seq=hb.seq,
            )
        )
    return node


log = logging.getLogger("edge-hub.fleet")


class FleetService(fleet_pb2_grpc.FleetServicer):
    def __init__(
        self,
        enrollment: Enrollment,
        registry: Registry,
        verifier: PeerVerifier,
        clock: Clock,
        estops: EstopManager,
        fleet_switch: FleetSwitch,
        leases: LeaseManager,
        board: StatisticsBoard,
    ) -> None:
        self.leases = leases
        self.board = board
        self.estops = estops
        self.fleet_switch = fleet_switch
        self.enrollment = enrollment
        self.registry = registry
        self.verifier = verifier
        self.clock = clock

    @handle_errors
    async def CreateJoinToken(
        self, request: fleet_pb2.CreateJoinTokenRequest, context: grpc.aio.ServicerContext
    ) -> fleet_pb2.CreateJoinTokenResponse:
        _, operator = self.verifier.require(context, Kind.OPERATOR)
        subject = token_subject(request.node_id, request.group, request.operator)
        issued = await self.enrollment.create_token(subject, request.ttl_s, operator.name)
        return fleet_pb2.CreateJoinTokenResponse(
            token=issued.token,
            token_id=issued.record.token_id,
            expires_unix=issued.record.expires_unix,
            kind=issued.record.kind,
            subject_id=issued.record.subject_id,
            group=issued.record.group,
        )

    @handle_errors
    async def FleetStatus(
        self, request: fleet_pb2.FleetStatusRequest, context: grpc.aio.ServicerContext
    ) -> fleet_pb2.FleetStatusResponse:
        self.verifier.require(context, Kind.OPERATOR)
        views = self.registry.views(request.group)
        if request.group and not views:
            raise NotFound(f"group {request.group} has no enrolled nodes")
        online = sum(1 for v in views if v.record.state == "online")
        return fleet_pb2.FleetStatusResponse(
            nodes=[node_message(v) for v in views],
            online=online,
            offline=len(views) - online,
            hub_time_unix=self.clock.wall(),
            # The hub's own figures are fleet-wide (every group's leases, for one): shown
            # only to a fleet-wide request, which RBAC allowed on the whole fleet.
            statistics_json="" if request.group else self.board.json(),
        )

    @handle_errors
    async def GetNode(
        self, request: fleet_pb2.GetNodeRequest, context: grpc.aio.ServicerContext
    ) -> fleet_pb2.Node:
        self.verifier.require(context, Kind.OPERATOR)
        view = self.registry.view(request.node_id)
        if view is None:
            raise NotFound(
                f"node {request.node_id!r} is not enrolled; 'edgectl fleet status' lists nodes"
            )
        node = node_message(view)
        errors = await self.enrollment.store.list_renewal_errors()
        node.cert_renewal_error = errors.get(request.node_id, ("", 0.0))[0]
        node.cert_revoked = view.record.cert_serial in self.verifier.trust.revoked
        return node

    @handle_errors
    async def WhoAmI(
        self, request: fleet_pb2.WhoAmIRequest, context: grpc.aio.ServicerContext
    ) -> fleet_pb2.WhoAmIResponse:
        _, operator = self.verifier.require(context, Kind.OPERATOR)
        return fleet_pb2.WhoAmIResponse(
            operator=operator.name,
            hub_version=PRODUCT_VERSION,
            trust_domain=self.verifier.trust_domain,
        )

    @handle_errors
    async def EngageEstop(
        self, request: fleet_pb2.EngageEstopRequest, context: grpc.aio.ServicerContext
    ) -> fleet_pb2.EstopReport:
        _, operator = self.verifier.require(context, Kind.OPERATOR)
        stop = await self.estops.engage(request.scope, request.reason, operator.name)
        return self.estops.report(stop.stop_id)

    @handle_errors
    async def ReleaseEstop(
        self, request: fleet_pb2.ReleaseEstopRequest, context: grpc.aio.ServicerContext
    ) -> fleet_pb2.EstopReport:
        _, operator = self.verifier.require(context, Kind.OPERATOR)
        released = await self.estops.release(request.scope, request.reason, operator.name)
        report = fleet_pb2.EstopReport(hub_time_unix=self.clock.wall())
        for stop in released:
            report.stops.extend(self.estops.report(stop.stop_id).stops)
        return report

    @handle_errors
    async def EstopStatus(
        self, request: fleet_pb2.EstopStatusRequest, context: grpc.aio.ServicerContext
    ) -> fleet_pb2.EstopReport:
        self.verifier.require(context, Kind.OPERATOR)
        if not 0 <= request.wait_s <= 300:
            raise InvalidArgument("wait must be between 0 and 300 seconds")
        if request.wait_s:
            await self.estops.wait_acknowledged(request.stop_id, request.wait_s)
        return self.estops.report(request.stop_id)

    @handle_errors
    async def AutonomyStatus(
        self, request: fleet_pb2.AutonomyStatusRequest, context: grpc.aio.ServicerContext
    ) -> fleet_pb2.AutonomyReport:
        self.verifier.require(context, Kind.OPERATOR)
        return self.fleet_switch.report(request.node_id, self.estops.covers)

    @handle_errors
    async def SetAutonomy(
        self, request: fleet_pb2.SetAutonomyRequest, context: grpc.aio.ServicerContext
    ) -> fleet_pb2.AutonomyReport:
        _, operator = self.verifier.require(context, Kind.OPERATOR)
        await self.fleet_switch.set(
            request.enabled, request.reason, operator.name, min(request.wait_s, 60.0)
        )
        return self.fleet_switch.report(stopped=self.estops.covers)

    @handle_errors
    async def LeaderStatus(
        self, request: fleet_pb2.GroupLeaderRequest, context: grpc.aio.ServicerContext
    ) -> fleet_pb2.LeaderReport:
        self.verifier.require(context, Kind.OPERATOR)
        return self.leases.report(request.group)

    @handle_errors
    async def ResignLeader(
        self, request: fleet_pb2.ResignLeaderRequest, context: grpc.aio.ServicerContext
    ) -> fleet_pb2.ResignReport:
        _, operator = self.verifier.require(context, Kind.OPERATOR)
        if not request.group:
            raise InvalidArgument("--group is required")
        timeout = request.timeout_s or 30.0
        if not 0 < timeout <= 300:
            raise InvalidArgument("--timeout must be between 0 and 300 seconds")
        report = await self.leases.resign(request.group, request.to, timeout, request.dry_run)
        if not request.dry_run:
            log.warning(
                "switchover of %s requested by %s: %s", request.group, operator.name, report.detail
            )
        return report

    @handle_errors
    async def PauseGroup(
        self, request: fleet_pb2.PauseGroupRequest, context: grpc.aio.ServicerContext
    ) -> fleet_pb2.LeaderReport:
        self.verifier.require(context, Kind.OPERATOR)
        if not request.group:
            raise InvalidArgument("--group is required")
        await self.leases.pause(request.group, request.paused)
        return self.leases.report(request.group)

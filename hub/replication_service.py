"""The Replication service: the journal's quorum and divergence for operators."""

import logging

import grpc

from edgecommon.identity import Kind
from edgecommon.pb import replication_pb2, replication_pb2_grpc
from edgecommon.rpc import handle_errors
from hub.auth import PeerVerifier
from hub.replication import ReplicationManager

log = logging.getLogger("edge-hub.replication")


class ReplicationService(replication_pb2_grpc.ReplicationServicer):
    def __init__(self, manager: ReplicationManager, verifier: PeerVerifier) -> None:
        self.manager = manager
        self.verifier = verifier

    @handle_errors
    async def QuorumStatus(
        self, request: replication_pb2.QuorumRequest, context: grpc.aio.ServicerContext
    ) -> replication_pb2.QuorumReport:
        self.verifier.require(context, Kind.OPERATOR)
        return self.manager.report(request.group)

    @handle_errors
    async def RestoreQuorum(
        self, request: replication_pb2.QuorumRequest, context: grpc.aio.ServicerContext
    ) -> replication_pb2.QuorumReport:
        _, operator = self.verifier.require(context, Kind.OPERATOR)
        report = await self.manager.restore(request.group, request.dry_run)
        if not request.dry_run:
            log.warning(
                "quorum restore of %s by %s: %s", request.group, operator.name, report.restore
            )
        return report

    @handle_errors
    async def Divergence(
        self, request: replication_pb2.QuorumRequest, context: grpc.aio.ServicerContext
    ) -> replication_pb2.DivergenceReport:
        self.verifier.require(context, Kind.OPERATOR)
        return self.manager.divergence(request.group)

    @handle_errors
    async def JournalLeader(
        self, request: replication_pb2.QuorumRequest, context: grpc.aio.ServicerContext
    ) -> replication_pb2.JournalLeaderInfo:
        self.verifier.require(context, Kind.OPERATOR)
        return self.manager.leader_info(request.group)

"""The Replication service: the journal's quorum and divergence for operators, and their
appends, forwarded to the group's leader on the hub's pooled channel to it
(hub/journal/leader_channels.py)."""

import logging

import grpc

from edgecommon.errors import Conflict
from edgecommon.identity import Kind
from edgecommon.pb import replication_pb2, replication_pb2_grpc
from edgecommon.peerwire import ON_BEHALF_OF
from edgecommon.rpc import handle_errors, raise_from_rpc
from hub.journal.leader_channels import LeaderChannels
from hub.journal.replication import ReplicationManager
from hub.pki.auth import PeerVerifier

log = logging.getLogger("edge-hub.replication")
APPEND_TIMEOUT_S = 10.0


class ReplicationService(replication_pb2_grpc.ReplicationServicer):
    def __init__(
        self,
        manager: ReplicationManager,
        verifier: PeerVerifier,
        leaders: LeaderChannels,
    ) -> None:
        self.manager = manager
        self.verifier = verifier
        self.leaders = leaders

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

    @handle_errors
    async def JournalAppend(
        self, request: replication_pb2.JournalAppendRequest, context: grpc.aio.ServicerContext
    ) -> replication_pb2.AppendResult:
        _, operator = self.verifier.require(context, Kind.OPERATOR)
        where = self.manager.leader_info(request.group)
        if not where.leader or not where.peer_address:
            raise Conflict(
                f"group {request.group} has no journal leader right now"
                + (f" ({where.leader} has not reported its peer address)" if where.leader else "")
            )
        timeout = context.time_remaining() or APPEND_TIMEOUT_S
        try:
            async with self.leaders.peer(request.group, where.leader, where.peer_address) as peer:
                result: replication_pb2.AppendResult = await peer.Append(
                    replication_pb2.AppendRequest(key=request.key, value=request.value),
                    timeout=min(timeout, APPEND_TIMEOUT_S),
                    metadata=((ON_BEHALF_OF, operator.name),),
                )
        except grpc.aio.AioRpcError as err:
            raise_from_rpc(err, f"leader {where.leader} at {where.peer_address}")
        log.info("journal entry %d of %s appended for %s", result.index, request.group, operator)
        return result

"""The agent's local API on a Unix socket: what edgectl and workloads on the node ask.

Access is the socket's file permissions (mode [agent].socket_mode, group of the
directory); there is no TLS on a local socket. A held permit lives until it is released,
revoked, or its watcher goes away (a workload that died does not keep its permit).
"""

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc

from agent.credentials import NodeCredentials
from agent.journal_api import JournalLocalService, JournalParts
from agent.renewal import Renewer
from agent.safety import Safety
from agent.status import LinkStatus
from edgecommon import grpcopts, pki
from edgecommon.boundary import RequestBoundary
from edgecommon.errors import Conflict, EdgeError
from edgecommon.pb import agent_pb2, agent_pb2_grpc, replication_pb2_grpc
from edgecommon.reasons import check_reason
from edgecommon.rpc import handle_errors
from edgecommon.version import GRPC_VERSION, PRODUCT_VERSION, PYTHON_VERSION


@dataclass
class NodeFacts:
    """What the local API reports; credentials appear once enrollment is done."""

    status: LinkStatus
    state_dir: Path
    started_unix: float
    safety: Safety
    credentials: NodeCredentials | None = None
    renewer: Renewer | None = None

    def readiness(self) -> tuple[bool, str]:
        if self.credentials is None:
            return False, "not enrolled yet"
        if self.status.credential_problem:
            return False, self.status.credential_problem
        return True, ""


class AgentLocalService(agent_pb2_grpc.AgentLocalServicer):
    def __init__(self, facts: NodeFacts) -> None:
        self.facts = facts
        self.safety = facts.safety

    @handle_errors
    async def Status(
        self, request: agent_pb2.StatusRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.AgentStatus:
        facts, status = self.facts, self.facts.status
        answer = agent_pb2.AgentStatus(
            pid=os.getpid(),
            agent_version=PRODUCT_VERSION,
            python_version=PYTHON_VERSION,
            grpc_version=GRPC_VERSION,
            hub_address=status.hub_address,
            hub_state=status.state.value,
            hub_state_since_unix=status.since_unix,
            last_error=status.last_error,
            started_unix=facts.started_unix,
            next_attempt_unix=status.next_attempt_unix,
            heartbeats_sent=status.heartbeats_sent,
            state_dir=str(facts.state_dir),
            safety=self.safety.state(),
        )
        if facts.credentials is not None:
            answer.node_id = facts.credentials.identity.name
            answer.group = facts.credentials.identity.group
            answer.cert_expires_unix = facts.credentials.cert.not_valid_after_utc.timestamp()
            answer.cert_serial = pki.serial_hex(facts.credentials.cert)
        if facts.renewer is not None:
            answer.certificate.CopyFrom(facts.renewer.status.message(facts.credentials))
            answer.certificate.handovers = status.handovers
            answer.certificate.handover_failures = status.handover_failures
        elif facts.credentials is not None:
            answer.certificate.certificate_pem = facts.credentials.cert_pem
        answer.ready, answer.not_ready_reason = facts.readiness()
        return answer

    @handle_errors
    async def RotateCertificate(
        self, request: agent_pb2.RotateCertificateRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.CertificateState:
        renewer = self.facts.renewer
        if renewer is None:
            raise Conflict("this node is not enrolled yet; nothing to rotate")
        try:
            creds = await renewer.rotate_now()
        except EdgeError as exc:
            # Said as a failed renewal: a hub that is unreachable from the agent must not
            # read as an unreachable agent to edgectl.
            raise Conflict(f"renewal failed: {exc}") from None
        answer = renewer.status.message(creds)
        answer.handovers = self.facts.status.handovers
        answer.handover_failures = self.facts.status.handover_failures
        answer.detail = (
            f"renewed with a new key: certificate {pki.serial_hex(creds.cert)}, "
            f"{self.facts.status.handovers} stream handover(s), "
            f"{self.facts.status.handover_failures} failed"
        )
        return answer

    @handle_errors
    async def RequestPermit(
        self, request: agent_pb2.PermitRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.PermitDecision:
        decision, held = self.safety.request(
            request.action, request.units, request.holder, request.dry_run, request.leader_only
        )
        lead = self.safety.leadership
        epoch = lead.epoch if request.leader_only and decision.granted and lead else 0
        return agent_pb2.PermitDecision(
            granted=decision.granted,
            reason=decision.reason.value,
            detail=decision.detail,
            permit_id=held.permit_id if held else "",
            epoch=epoch,
        )

    @handle_errors
    async def LeaderStatus(
        self, request: agent_pb2.LeaderStatusRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.Leadership:
        lead = self.safety.leadership
        if lead is None:
            return agent_pb2.Leadership(reason="not enrolled yet")
        return lead.view()

    async def WatchLeader(
        self, request: agent_pb2.LeaderStatusRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[agent_pb2.Leadership]:
        lead = self.safety.leadership
        if lead is None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "not enrolled yet")
            return
        last = None
        while True:
            view = lead.view()
            key = (view.is_leader, view.epoch, view.leader)
            if key != last:
                last = key
                yield view
            lead.changed.clear()
            await lead.changed.wait()

    async def WatchPermit(
        self, request: agent_pb2.WatchPermitRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[agent_pb2.PermitEvent]:
        permit = self.safety.permits.get(request.permit_id)
        if permit is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"permit {request.permit_id!r} is not held (released, revoked or unknown)",
            )
            return
        try:
            await permit.revoked.wait()
        except asyncio.CancelledError:
            # The workload went away without releasing: its permit goes with it.
            self.safety.permits.release(permit.permit_id)
            raise
        why = permit.revoke_reason
        yield agent_pb2.PermitEvent(
            permit_id=permit.permit_id,
            revoked=True,
            reason=why.reason.value if why else "",
            detail=why.detail if why else "",
        )

    @handle_errors
    async def ReleasePermit(
        self, request: agent_pb2.ReleasePermitRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.ReleasePermitResponse:
        return agent_pb2.ReleasePermitResponse(
            released=self.safety.permits.release(request.permit_id)
        )

    @handle_errors
    async def GetEstop(
        self, request: agent_pb2.GetEstopRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.EstopState:
        return self.safety.state()

    @handle_errors
    async def EngageLocalStop(
        self, request: agent_pb2.LocalStopRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.EstopState:
        await self.safety.engage_local(check_reason(request.reason), request.operator)
        return self.safety.state()

    @handle_errors
    async def ReleaseLocalStop(
        self, request: agent_pb2.LocalStopRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.EstopState:
        await self.safety.release_local(check_reason(request.reason))
        return self.safety.state()


async def start_local_server(
    path: Path, mode: int, facts: NodeFacts, journal: JournalParts | None = None
) -> grpc.aio.Server:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)  # a socket left by a previous run
    server = grpc.aio.server(
        interceptors=[RequestBoundary(logging.getLogger("edge-agent.local"))],
        options=[
            ("grpc.max_receive_message_length", grpcopts.MAX_LOCAL_MESSAGE_BYTES),
            ("grpc.max_send_message_length", grpcopts.MAX_LOCAL_MESSAGE_BYTES),
        ],
    )
    agent_pb2_grpc.add_AgentLocalServicer_to_server(AgentLocalService(facts), server)
    replication_pb2_grpc.add_JournalLocalServicer_to_server(
        JournalLocalService(journal or JournalParts()), server
    )
    server.add_insecure_port(f"unix:{path}")
    await server.start()
    path.chmod(mode)
    return server

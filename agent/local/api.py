"""The agent's local API on a Unix socket: what edgectl and workloads on the node ask.

There is no TLS on a local socket. Two fences decide who gets in: the socket's file
permissions (mode [agent].socket_mode, group of its directory) decide who may connect;
then every RPC passes the local gate (agent/local/gate.py), which knows each caller from
the kernel (agent/local/relay.py) and allows what its role allows (agent/local/auth.py).

A held permit belongs to the local user that asked for it: only that user or a node
operator may watch or release it. It lives until it is released, revoked, its watcher
goes away, or the connection that asked for it closes (a workload that died does not
keep its permit, watched or not).
"""

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from agent.config import LocalSection
from agent.enrolled import Enrolled
from agent.journal.api import JournalLocalService
from agent.link.status import LinkStatus, statistics_board
from agent.local.auth import AccessPolicy, LocalCaller, Permission, Role, check, owns, roles_of
from agent.local.gate import LocalGate, caller_of, resolve_policy
from agent.local.relay import CallerRegistry, LocalRelay
from agent.safety.permits import HeldPermit, PermitOwner, PermitTable
from agent.safety.runner import Safety
from edgecommon import grpcopts, pki
from edgecommon.boundary import RequestBoundary
from edgecommon.errors import Conflict, EdgeError, PermissionDenied
from edgecommon.pb import agent_pb2, agent_pb2_grpc, replication_pb2_grpc
from edgecommon.reasons import check_reason
from edgecommon.rpc import handle_errors
from edgecommon.statistics import StatisticsBoard
from edgecommon.version import GRPC_VERSION, PRODUCT_VERSION, PYTHON_VERSION

log = logging.getLogger("edge-agent.local")
# The services served on the local socket; every method of each is in local_auth.LOCAL_RPCS.
LOCAL_SERVICE_NAMES = ("autonomyops.edge.v1.AgentLocal", "autonomyops.edge.v1.JournalLocal")


@dataclass(frozen=True)
class NodeFacts:
    """What the local API reports; what exists only once the node is enrolled (its
    credentials, renewal, the lease, the journal) is read through `enrolled`."""

    status: LinkStatus
    state_dir: Path
    started_unix: float
    safety: Safety
    enrolled: Enrolled
    # Every component's statistics() (agent.link.status.AGENT_SECTIONS), attached as each starts.
    board: StatisticsBoard = field(default_factory=statistics_board)

    def readiness(self) -> tuple[bool, str]:
        if self.enrolled.credentials() is None:
            return False, "not enrolled yet"
        if self.status.credential_problem:
            return False, self.status.credential_problem
        return True, ""


def _operator(claimed: str, caller: LocalCaller) -> str:
    """Who a local stop is recorded as: the caller the kernel names, and what edgectl
    claimed (AUTONOMY_OPERATOR) when that differs."""
    if not claimed or claimed == caller.user:
        return caller.user
    return f"{claimed} (local user {caller.user})"


class AgentLocalService(agent_pb2_grpc.AgentLocalServicer):
    def __init__(self, facts: NodeFacts, callers: CallerRegistry, policy: AccessPolicy) -> None:
        self.facts = facts
        self.safety = facts.safety
        self.callers = callers
        self.policy = policy

    def _own_permit(self, permit_id: str, context: grpc.aio.ServicerContext) -> HeldPermit | None:
        """The permit if the caller may touch it (its own, or a node operator); None if no
        such permit is held; PermissionDenied for another user's permit."""
        permit = self.safety.permits.get(permit_id)
        if permit is None:
            return None
        caller = caller_of(self.callers, context)
        owner = permit.owner
        if owns(caller, owner.uid if owner else None):
            return permit
        decision = check(caller, Permission.PERMIT_ANY, self.policy)
        if not decision.allowed:
            whose = f"{owner.user} (uid {owner.uid})" if owner else "the agent itself"
            raise PermissionDenied(f"permit {permit_id} belongs to {whose}: {decision.detail}")
        return permit

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
        creds, enrolled = facts.enrolled.credentials(), facts.enrolled.parts()
        if creds is not None:
            answer.node_id = creds.identity.name
            answer.group = creds.identity.group
            answer.cert_expires_unix = creds.cert.not_valid_after_utc.timestamp()
            answer.cert_serial = pki.serial_hex(creds.cert)
        if enrolled is not None:
            answer.certificate.CopyFrom(enrolled.renewer.status.message(creds))
            answer.certificate.handovers = status.handovers
            answer.certificate.handover_failures = status.handover_failures
        elif creds is not None:
            answer.certificate.certificate_pem = creds.cert_pem
        answer.ready, answer.not_ready_reason = facts.readiness()
        answer.statistics_json = facts.board.json()
        return answer

    @handle_errors
    async def RotateCertificate(
        self, request: agent_pb2.RotateCertificateRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.CertificateState:
        enrolled = self.facts.enrolled.parts()
        if enrolled is None:
            raise Conflict("this node is not enrolled yet; nothing to rotate")
        renewer = enrolled.renewer
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
        caller = caller_of(self.callers, context)
        decision, held = self.safety.request(
            request.action,
            request.units,
            request.holder,
            request.dry_run,
            request.leader_only,
            PermitOwner(caller.uid, caller.user, caller.connection),
        )
        lead = self.facts.enrolled.leadership()
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
        lead = self.facts.enrolled.leadership()
        if lead is None:
            return agent_pb2.Leadership(reason="not enrolled yet")
        return lead.view()

    async def WatchLeader(
        self, request: agent_pb2.LeaderStatusRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[agent_pb2.Leadership]:
        lead = self.facts.enrolled.leadership()
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
        try:
            permit = self._own_permit(request.permit_id, context)
        except PermissionDenied as exc:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
            return
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
        permit = self._own_permit(request.permit_id, context)
        released = permit is not None and self.safety.permits.release(permit.permit_id)
        return agent_pb2.ReleasePermitResponse(released=released)

    @handle_errors
    async def GetEstop(
        self, request: agent_pb2.GetEstopRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.EstopState:
        return self.safety.state()

    @handle_errors
    async def EngageLocalStop(
        self, request: agent_pb2.LocalStopRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.EstopState:
        operator = _operator(request.operator, caller_of(self.callers, context))
        await self.safety.engage_local(check_reason(request.reason), operator)
        return self.safety.state()

    @handle_errors
    async def ReleaseLocalStop(
        self, request: agent_pb2.LocalStopRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.EstopState:
        operator = _operator(request.operator, caller_of(self.callers, context))
        await self.safety.release_local(f"{check_reason(request.reason)} (by {operator})")
        return self.safety.state()


class LocalServer:
    """The gRPC server on the private socket and the relay in front of it."""

    def __init__(self, relay: LocalRelay, server: grpc.aio.Server, gate: LocalGate) -> None:
        self.relay = relay
        self.server = server
        self.gate = gate

    async def stop(self, grace_s: float) -> None:
        """No new connections; calls in flight get `grace_s` to finish; then every
        relayed connection ends."""
        await self.relay.stop_accepting()
        await self.server.stop(grace_s)
        await self.relay.close()


async def start_local_server(
    path: Path,
    mode: int,
    facts: NodeFacts,
    access: LocalSection,
) -> LocalServer:
    policy, problems = resolve_policy(access)
    for problem in problems:
        log.warning("local access: %s", problem)
    path.parent.mkdir(parents=True, exist_ok=True)
    callers = CallerRegistry()
    gate = LocalGate(callers, policy)
    boundary = RequestBoundary(log)
    permits = facts.safety.permits
    relay = LocalRelay(
        path,
        mode,
        callers,
        max_per_caller=access.max_connections_per_caller,
        exempt=lambda caller: Role.OPERATOR in roles_of(caller, policy),
        on_closed=lambda caller: _release_connection(permits, caller),
    )
    relay.prepare()
    server = grpc.aio.server(
        # The boundary first (as on the hub): what does not decode or holds a field nothing
        # may store is refused before the gate looks at it.
        interceptors=[boundary, gate],
        options=[
            ("grpc.max_receive_message_length", grpcopts.MAX_LOCAL_MESSAGE_BYTES),
            ("grpc.max_send_message_length", grpcopts.MAX_LOCAL_MESSAGE_BYTES),
        ],
    )
    agent_pb2_grpc.add_AgentLocalServicer_to_server(
        AgentLocalService(facts, callers, policy), server
    )
    replication_pb2_grpc.add_JournalLocalServicer_to_server(
        JournalLocalService(facts.enrolled.journal), server
    )
    server.add_insecure_port(relay.grpc_target)
    await server.start()
    await relay.start()
    facts.board.attach("local_gate", gate)
    facts.board.attach("local_relay", relay)
    facts.board.attach("local_boundary", boundary)
    log.info(
        "local access: node operators are root, %s and groups %s; workloads groups %s; "
        "journal writers groups %s",
        policy.agent_user,
        policy.operators.describe(),
        policy.workloads.describe(),
        policy.journal_writers.describe(),
    )
    return LocalServer(relay, server, gate)


def _release_connection(permits: PermitTable, caller: LocalCaller) -> None:
    released = permits.release_connection(caller.connection)
    if released:
        log.info(
            "released %d permit(s) of %s: its connection closed without releasing them",
            len(released),
            caller,
        )

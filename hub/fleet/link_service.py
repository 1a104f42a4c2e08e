"""The Link service: enrollment and the agents' long-lived streams.

It only moves messages: what managers send (hub.fleet.registry.Registry.send) is drained from
the session's outbox onto the stream, and what agents send is handed to whoever it is for.
Each stream's reader is a task of the stream's own task group, so it ends with the stream.
"""

import asyncio
import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from edgecommon import pki
from edgecommon.clock import Clock
from edgecommon.errors import EdgeError, InvalidArgument
from edgecommon.identity import Kind
from edgecommon.pb import link_pb2, link_pb2_grpc
from edgecommon.rpc import handle_errors, status_of
from hub.config import LinkSection
from hub.fleet.admission import TokenBucket
from hub.fleet.registry import Registry, Session
from hub.leases.manager import LeaseManager
from hub.pki.auth import PeerVerifier
from hub.pki.enrollment import Enrollment
from hub.stops.autonomy import FleetSwitch
from hub.stops.estop import EstopManager

HeartbeatObserver = Callable[[Session, link_pb2.Heartbeat], None]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LinkStatistics:
    backoffs_sent: int  # registrations told to back off (admission rate) since the hub started
    admission_tokens: float  # registrations the bucket would admit at once right now


class LinkService(link_pb2_grpc.LinkServicer):
    def __init__(
        self,
        enrollment: Enrollment,
        registry: Registry,
        verifier: PeerVerifier,
        config: LinkSection,
        clock: Clock,
        rng: random.Random,
        estops: EstopManager,
        fleet_switch: FleetSwitch,
        leases: LeaseManager,
        observe_heartbeat: HeartbeatObserver,
        revocations: Callable[[], link_pb2.Revocations],
    ) -> None:
        self.leases = leases
        self.enrollment = enrollment
        self.estops = estops
        self.fleet_switch = fleet_switch
        self.registry = registry
        self.verifier = verifier
        self.config = config
        self.clock = clock
        self.rng = rng
        self.bucket = TokenBucket.full(
            config.max_registrations_per_s, config.registration_burst, clock.monotonic()
        )
        self.backoffs_sent = 0
        # Told of every heartbeat taken on a node's current session (the journal's quorum
        # screens the positions in it: hub.journal.replication).
        self.observe_heartbeat = observe_heartbeat
        # The revoked-serial list for Registered (hub.pki.authority).
        self.revocations = revocations

    def statistics(self) -> LinkStatistics:
        tokens = self.bucket.level(self.clock.monotonic())
        return LinkStatistics(self.backoffs_sent, round(tokens, 3))

    @handle_errors
    async def Enroll(
        self, request: link_pb2.EnrollRequest, context: grpc.aio.ServicerContext
    ) -> link_pb2.EnrollResponse:
        if not request.token:
            raise InvalidArgument("enroll needs a join token")
        enrolled = await self.enrollment.enroll(
            request.token, request.csr_pem, request.agent_version
        )
        if enrolled.identity.kind is Kind.NODE:
            node = await self.enrollment.store.get_node(enrolled.identity.name)
            if node is not None:
                self.registry.enrolled(node)
        return link_pb2.EnrollResponse(
            certificate_pem=pki.pem(enrolled.certificate),
            ca_bundle_pem=self.enrollment.credentials.ca_bundle_pem,
            subject_id=enrolled.identity.name,
            group=enrolled.identity.group,
            kind=enrolled.identity.kind.value,
        )

    @handle_errors
    async def RenewLease(
        self, request: link_pb2.RenewLeaseRequest, context: grpc.aio.ServicerContext
    ) -> link_pb2.LeaseAnswer:
        _, identity = self.verifier.require(context, Kind.NODE)
        # The caller's deadline as grpc propagates it, counted from arrival: never earlier
        # than the caller's own, so a renewal decided after it was surely given up.
        remaining = context.time_remaining()
        believed_for = request.believed_for_s if request.HasField("believed_for_s") else None
        if believed_for is not None and not (math.isfinite(believed_for) and believed_for >= 0):
            raise InvalidArgument(
                f"believed_for_s must be a finite number of seconds >= 0, not {believed_for!r}"
            )
        return await self.leases.renew(
            identity.name,
            identity.group,
            request.epoch,
            believed_for=believed_for,
            previous_late=request.previous_late,
            deadline=math.inf if remaining is None else self.clock.monotonic() + remaining,
        )

    @handle_errors
    async def ReleaseLease(
        self, request: link_pb2.ReleaseLeaseRequest, context: grpc.aio.ServicerContext
    ) -> link_pb2.LeaseAnswer:
        _, identity = self.verifier.require(context, Kind.NODE)
        return await self.leases.release(identity.name, identity.group, request.epoch)

    async def Connect(self, request_iterator: object, context: grpc.aio.ServicerContext) -> None:
        try:
            cert, identity = self.verifier.require(context, Kind.NODE)
            first = await self._first_message(context)
        except EdgeError as exc:
            await context.abort(status_of(exc), str(exc))
            return
        admission = self.bucket.take(self.clock.monotonic(), self.rng)
        if not admission.admitted:
            self.backoffs_sent += 1
            await context.write(
                link_pb2.HubMessage(
                    backoff=link_pb2.Backoff(
                        retry_after_s=admission.retry_after_s,
                        reason="hub is admitting registrations at its configured rate",
                    )
                )
            )
            return
        session = self.registry.attach(identity, cert, first.register)
        # Stops (and the switch) go in the very first answer: an agent that was away is
        # stopped before it does anything else.
        stops, releases = self.estops.for_node(
            identity.name, identity.group, list(first.register.latched_stop_ids)
        )
        for stop_id in first.register.latched_stop_ids:
            self.estops.acknowledged(identity.name, link_pb2.EstopAck(stop_id=stop_id))
        registered = link_pb2.Registered(
            node_id=identity.name,
            group=identity.group,
            heartbeat_interval_s=self.config.heartbeat_interval_s,
            hub_time_unix=self.clock.wall(),
            stops=stops,
            releases=releases,
            fleet_switch=self.fleet_switch.message(),
            revocations=self.revocations(),
        )
        try:
            await self._carry(context, session, registered)
            if session.refused:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, session.refused)
        finally:
            self.registry.detach(session, "stream closed")

    async def _carry(
        self,
        context: grpc.aio.ServicerContext,
        session: Session,
        registered: link_pb2.Registered,
    ) -> None:
        """Write the registration, then what is sent to the node, until its session ends;
        the reader runs beside the writer and ends with it."""
        failed: Exception | None = None
        async with asyncio.TaskGroup() as tg:
            reader = tg.create_task(self._read(context, session), name=f"read {session.node_id}")
            try:
                await context.write(link_pb2.HubMessage(registered=registered))
                while (message := await session.outbox.get()) is not None:
                    await context.write(message)
            except Exception as exc:
                # Raised after the group, as it is: grpc ignores a write that failed because
                # the agent went away, and knows it by the exception's type, which an
                # exception group would hide (it would log a servicer error instead).
                failed = exc
            reader.cancel()
        if failed is not None:
            raise failed

    async def _first_message(self, context: grpc.aio.ServicerContext) -> link_pb2.AgentMessage:
        try:
            async with asyncio.timeout(self.config.register_timeout_s):
                first = await context.read()
        except TimeoutError:
            raise InvalidArgument(
                f"no register message within {self.config.register_timeout_s:g}s"
            ) from None
        if first is grpc.aio.EOF or first.WhichOneof("body") != "register":
            raise InvalidArgument("the first message on a Connect stream must be register")
        return first

    async def _read(self, context: grpc.aio.ServicerContext, session: Session) -> None:
        try:
            while (message := await context.read()) is not grpc.aio.EOF:
                body = message.WhichOneof("body")
                if body == "heartbeat":
                    if self.registry.heartbeat(session, message.heartbeat):
                        self.observe_heartbeat(session, message.heartbeat)
                elif body == "estop_ack":
                    self.estops.acknowledged(session.node_id, message.estop_ack)
                elif body == "fleet_switch_ack":
                    self.fleet_switch.acknowledged(
                        session.node_id, message.fleet_switch_ack.revision
                    )
            session.close("agent closed the stream")
        except asyncio.CancelledError:
            raise
        except EdgeError as exc:  # a message that does not decode or that nothing may hold
            session.refused = str(exc)
            session.close(f"refused a message: {exc}")
        except Exception as exc:  # a broken stream ends the session, whatever broke it
            session.close(f"stream failed: {exc.__class__.__name__}")

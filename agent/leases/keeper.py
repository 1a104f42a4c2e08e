"""The agent's side of the group lease: renew on a cadence, believe only as long as safe.

Every member asks the hub on a short cadence (RenewLease, a unary call with a short
deadline — never stream liveness). A granted or renewed lease is believed until
`send_time + ttl - margin` by this agent's monotonic clock: the hub counts its
`ttl` from when it received the call, which is later, so this node stops leading before
the hub could grant the lease to anyone else (INV-LEASE-01). Told to step down
(switchover), the agent stops leading at once, revokes leader-only permits, and then
confirms with ReleaseLease.

What a renewal means is the same here and at the hub: an answer counts only if it arrives
within the call's deadline. Each request says how much longer this node still believes
(`believed_for_s`) and whether the previous answer missed its deadline (`previous_late`);
the hub then neither renews nor grants on it ("late": the belief stands as it is, and the
hub keeps the lease no longer than that), so the hub never names a leader that stopped
acting because its answers came too late. Calls are sequential, so an answer given up on
is never taken up later.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import grpc

from agent.config import AgentConfig
from agent.link.hub_messages import Handler, Reply
from agent.pki.credentials import NodeCredentials, channel_credentials
from edgecommon import grpcopts
from edgecommon.cadence import wait_for_event
from edgecommon.clock import Clock
from edgecommon.pb import agent_pb2, link_pb2, link_pb2_grpc

log = logging.getLogger("edge-agent.lease")


@dataclass(frozen=True)
class Timing:
    ttl_s: float = 10.0
    renew_interval_s: float = 2.0
    renew_deadline_s: float = 1.0
    margin_s: float = 0.5


class LeadershipState(StrEnum):
    LEADER = "leader"  # this node holds the lease and believes it
    REPLICA = "replica"  # another member leads
    LEADERLESS = "leaderless"  # no leader known (or the hub not reached)


@dataclass(frozen=True)
class LeadershipStatistics:
    state: LeadershipState
    group: str
    leader: str  # this node when it leads
    epoch: int  # of this node's lease, 0 when it does not lead
    time_left_s: float  # how long this node still believes its lease
    reason: str  # the hub's last word, or why the last renewal failed
    renewals: int  # renewals the hub answered since the agent started
    failures: int  # renewals that got no answer (hub unreachable, or too late)
    late: int  # of those, answers that did not come within the deadline
    terms: int  # times this node became leader
    step_downs: int  # switchovers that asked this node to step down


class LeaseKeeper:
    def __init__(
        self,
        config: AgentConfig,
        creds: NodeCredentials,
        clock: Clock,
        on_step_down: Callable[[str], None],
    ) -> None:
        self.config = config
        self.creds = creds
        self.clock = clock
        self.on_step_down = on_step_down
        self.timing = Timing()
        self.epoch = 0
        self.leading_until = 0.0
        self.leader = ""
        self.reason = "not asked yet"
        self.changed = asyncio.Event()
        self.nudged = asyncio.Event()
        self._was_leader = False
        self._late = False  # the previous renewal got no answer within its deadline
        self._reconnect = False  # the previous call could not reach the hub
        # Counted for statistics(), since the agent started.
        self._answers = self._failures = self._late_count = self._terms = self._step_downs = 0

    @property
    def group(self) -> str:
        return self.creds.identity.group

    def is_leader(self) -> bool:
        return self.epoch > 0 and self.clock.monotonic() < self.leading_until

    def view(self) -> agent_pb2.Leadership:
        leading = self.is_leader()
        return agent_pb2.Leadership(
            is_leader=leading,
            epoch=self.epoch if leading else 0,
            leader=self.creds.identity.name if leading else self.leader,
            time_left_s=max(0.0, self.leading_until - self.clock.monotonic()) if leading else 0.0,
            group=self.group,
            reason=self.reason,
        )

    def statistics(self) -> LeadershipStatistics:
        leading, now = self.is_leader(), self.clock.monotonic()
        if leading:
            state = LeadershipState.LEADER
        else:
            state = LeadershipState.REPLICA if self.leader else LeadershipState.LEADERLESS
        return LeadershipStatistics(
            state=state,
            group=self.group,
            leader=self.creds.identity.name if leading else self.leader,
            epoch=self.epoch if leading else 0,
            time_left_s=round(max(0.0, self.leading_until - now), 3) if leading else 0.0,
            reason=self.reason,
            renewals=self._answers,
            failures=self._failures,
            late=self._late_count,
            terms=self._terms,
            step_downs=self._step_downs,
        )

    def nudge(self) -> None:
        self.nudged.set()

    def hub_handlers(self) -> dict[str, Handler]:
        return {"lease_nudge": self._on_nudge}

    async def _on_nudge(self, nudge: link_pb2.LeaseNudge, reply: Reply) -> None:
        self.nudge()

    def adopt(self, creds: NodeCredentials) -> None:
        """A renewed certificate: the next renewal goes on a new channel with it."""
        self.creds = creds

    def _notice(self) -> None:
        """Tell watchers, and step down (once) when leadership just ended."""
        leading = self.is_leader()
        if self._was_leader and not leading:
            log.warning(
                "no longer leading group %s (epoch %d): %s", self.group, self.epoch, self.reason
            )
            self.on_step_down(self.reason)
        elif leading and not self._was_leader:
            self._terms += 1
            log.warning("leading group %s at epoch %d", self.group, self.epoch)
        self._was_leader = leading
        self.changed.set()

    def _channel(self) -> grpc.aio.Channel:
        return grpc.aio.secure_channel(
            self.config.agent.hub,
            channel_credentials(self.creds),
            options=grpcopts.client_options(private_connection=True),
        )

    async def run(self) -> None:
        creds, channel = self.creds, self._channel()
        try:
            while True:
                if self.creds is not creds or self._reconnect:
                    # A renewed certificate, or a call that could not reach the hub: the next
                    # call goes on a new channel; no call is in flight on the old one, so
                    # closing it fails nothing. A channel whose connection failed sits out
                    # grpc's reconnect backoff (up to seconds), failing every call at once
                    # even after the link healed, and a switchover waiting for this node
                    # would wait for a later renewal. One connection attempt per renewal
                    # while the hub is unreachable, at the renewal cadence.
                    old, (creds, channel) = channel, (self.creds, self._channel())
                    self._reconnect = False
                    await old.close()
                # A nudge from here on asks for another renewal, even one that arrives while
                # this renewal is in flight (the hub nudges a switchover target whenever the
                # old leader confirms, whatever this node is doing).
                self.nudged.clear()
                sent = self.clock.monotonic()
                await self._renew(link_pb2_grpc.LinkStub(channel), sent)
                self._notice()
                await self._wait(sent + self.timing.renew_interval_s)
        finally:
            await channel.close()

    def _request(self, sent: float) -> link_pb2.RenewLeaseRequest:
        leading = self.is_leader()
        return link_pb2.RenewLeaseRequest(
            epoch=self.epoch if leading else 0,
            believed_for_s=max(0.0, self.leading_until - sent) if leading else 0.0,
            previous_late=self._late,
        )

    async def _renew(self, stub: link_pb2_grpc.LinkStub, sent: float) -> None:
        deadline = self.timing.renew_deadline_s
        try:
            answer = await stub.RenewLease(self._request(sent), timeout=deadline)
        except grpc.aio.AioRpcError as err:
            code = err.code()
            # Given up: whatever the hub answered is never taken up. It knows from the
            # deadline, and from `previous_late` on the next request.
            self._late = code is grpc.StatusCode.DEADLINE_EXCEEDED
            self._reconnect = code is grpc.StatusCode.UNAVAILABLE
            self._failures += 1
            if self._late:
                self._late_count += 1
            self.reason = (
                f"renewal got no answer within its {deadline:g}s deadline"
                if self._late
                else f"renewal failed: {code.name}"
            )
            return
        self._late = False
        self._answers += 1
        self.timing = Timing(
            answer.ttl_s or self.timing.ttl_s,
            answer.renew_interval_s or self.timing.renew_interval_s,
            answer.renew_deadline_s or self.timing.renew_deadline_s,
            answer.margin_s or self.timing.margin_s,
        )
        self.leader, self.reason = answer.leader, answer.reason
        if answer.verdict in ("renewed", "granted"):
            self.epoch = answer.epoch
            self.leading_until = sent + self.timing.ttl_s - self.timing.margin_s
        elif answer.verdict == "late":
            # Not counted: nothing extended, and what this node already believes stands
            # (the hub keeps the lease exactly that long).
            pass
        elif answer.verdict == "step_down":
            self._step_downs += 1
            epoch = self.epoch
            self.leading_until = 0.0
            self._notice()
            with contextlib.suppress(grpc.aio.AioRpcError):
                await stub.ReleaseLease(
                    link_pb2.ReleaseLeaseRequest(epoch=epoch), timeout=self.timing.renew_deadline_s
                )
        else:
            self.leading_until = 0.0

    async def _wait(self, next_renewal: float) -> None:
        """Sleep until the next renewal, waking early for a nudge or when belief runs out."""
        now = self.clock.monotonic()
        wake = next_renewal
        if self.is_leader():
            wake = min(wake, self.leading_until)
        if wake <= now:
            return
        await wait_for_event(self.nudged, wake - now)
        self._notice()

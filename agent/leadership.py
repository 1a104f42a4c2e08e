"""The agent's side of the group lease: renew on a cadence, believe only as long as safe.

Every member asks the hub on a short cadence (RenewLease, a unary call with a short
deadline — never stream liveness). A granted or renewed lease is believed until
`send_time + ttl - margin` by this agent's monotonic clock: the hub counts its
`ttl` from when it received the call, which is later, so this node stops leading before
the hub could grant the lease to anyone else (INV-LEASE-01). Told to step down
(switchover), the agent stops leading at once, revokes leader-only permits, and then
confirms with ReleaseLease.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from agent.config import AgentConfig
from agent.credentials import NodeCredentials, channel_credentials
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

    def nudge(self) -> None:
        self.nudged.set()

    def _notice(self) -> None:
        """Tell watchers, and step down (once) when leadership just ended."""
        leading = self.is_leader()
        if self._was_leader and not leading:
            log.warning(
                "no longer leading group %s (epoch %d): %s", self.group, self.epoch, self.reason
            )
            self.on_step_down(self.reason)
        elif leading and not self._was_leader:
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
                if self.creds is not creds:
                    # A renewed certificate: the next call goes on a new channel; no call
                    # is in flight on the old one, so closing it fails nothing.
                    old, (creds, channel) = channel, (self.creds, self._channel())
                    await old.close()
                sent = self.clock.monotonic()
                await self._renew(link_pb2_grpc.LinkStub(channel), sent)
                self._notice()
                await self._wait(sent + self.timing.renew_interval_s)
        finally:
            await channel.close()

    async def _renew(self, stub: link_pb2_grpc.LinkStub, sent: float) -> None:
        believed = self.epoch if self.is_leader() else 0
        try:
            answer = await stub.RenewLease(
                link_pb2.RenewLeaseRequest(epoch=believed), timeout=self.timing.renew_deadline_s
            )
        except grpc.aio.AioRpcError as err:
            self.reason = f"renewal failed: {err.code().name}"
            return
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
        elif answer.verdict == "step_down":
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
        self.nudged.clear()
        await wait_for_event(self.nudged, wake - now)
        self._notice()

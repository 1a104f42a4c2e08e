"""The permit client for workloads on a node.

    from agent.permit_client import PermitClient, PermitDenied

    client = PermitClient()                      # /run/edge-agent/agent.sock
    async with client.permit("move_arm") as held:
        await move_arm()                         # cancelled at once if the permit is revoked

`permit()` asks the agent; a denial raises PermitDenied with the machine-readable
reason (`estop`, `autonomy_disabled`). While the block runs, the permit is watched: when
the agent revokes it (an emergency stop, autonomy switched off) the block's task is
cancelled and PermitRevoked is raised from the `async with` — unless the workload passed
cancel_on_revoke=False, in which case it checks `held.revoked` itself. Leaving the block
releases the permit. A permit lives no longer than the connection that asked for it: if
the workload process dies, the agent drops its permits (watched or not).

The workload's user must be in the agent socket's group (`edge-workloads` with the
systemd setup) and in a group of [local].workload_groups; the agent knows it by its uid
and refuses other users' permits (docs/operators.md, "Local access on a node").
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import grpc

from edgecommon.pb import agent_pb2, agent_pb2_grpc

DEFAULT_SOCKET = Path("/run/edge-agent/agent.sock")


class PermitDenied(Exception):
    def __init__(self, action: str, reason: str, detail: str) -> None:
        super().__init__(f"permit for {action} denied ({reason}): {detail}")
        self.action, self.reason, self.detail = action, reason, detail


class PermitRevoked(Exception):
    def __init__(self, action: str, reason: str, detail: str) -> None:
        super().__init__(f"permit for {action} revoked ({reason}): {detail}")
        self.action, self.reason, self.detail = action, reason, detail


@dataclass
class HeldPermit:
    permit_id: str
    action: str
    epoch: int = 0
    revoked: asyncio.Event = field(default_factory=asyncio.Event)
    reason: str = ""
    detail: str = ""


class PermitClient:
    def __init__(self, socket: Path = DEFAULT_SOCKET, holder: str = "", timeout_s: float = 2.0):
        self.socket = socket
        self.holder = holder
        self.timeout_s = timeout_s
        # grpc-core reads the target as a URI: a '%' in the path must be escaped.
        self._target = "unix:" + quote(str(socket), safe="/")

    async def check(self, action: str, units: int = 1) -> agent_pb2.PermitDecision:
        """Would a permit be granted now? Holds nothing."""
        async with grpc.aio.insecure_channel(self._target) as channel:
            return await agent_pb2_grpc.AgentLocalStub(channel).RequestPermit(
                agent_pb2.PermitRequest(
                    action=action, units=units, dry_run=True, holder=self.holder
                ),
                timeout=self.timeout_s,
            )

    @contextlib.asynccontextmanager
    async def permit(
        self,
        action: str,
        units: int = 1,
        *,
        cancel_on_revoke: bool = True,
        leader_only: bool = False,
    ) -> AsyncIterator[HeldPermit]:
        """Hold a permit for the block. leader_only: only the group's leader is granted one
        (`not_leader` elsewhere); `held.epoch` is then the fencing epoch to pass along."""
        async with grpc.aio.insecure_channel(self._target) as channel:
            stub = agent_pb2_grpc.AgentLocalStub(channel)
            decision = await stub.RequestPermit(
                agent_pb2.PermitRequest(
                    action=action, units=units, holder=self.holder, leader_only=leader_only
                ),
                timeout=self.timeout_s,
            )
            if not decision.granted:
                raise PermitDenied(action, decision.reason, decision.detail)
            held = HeldPermit(decision.permit_id, action, epoch=decision.epoch)
            body = asyncio.current_task()
            watcher = asyncio.create_task(
                self._watch(stub, held, body if cancel_on_revoke else None)
            )
            try:
                yield held
            except asyncio.CancelledError:
                if held.revoked.is_set() and cancel_on_revoke:
                    body.uncancel()  # type: ignore[union-attr]
                    raise PermitRevoked(action, held.reason, held.detail) from None
                raise
            finally:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                    await watcher
                if not held.revoked.is_set():
                    with contextlib.suppress(grpc.aio.AioRpcError):
                        await stub.ReleasePermit(
                            agent_pb2.ReleasePermitRequest(permit_id=held.permit_id),
                            timeout=self.timeout_s,
                        )
            if held.revoked.is_set() and cancel_on_revoke:
                raise PermitRevoked(action, held.reason, held.detail)

    @staticmethod
    async def _watch(
        stub: agent_pb2_grpc.AgentLocalStub, held: HeldPermit, body: asyncio.Task | None
    ) -> None:
        try:
            async for event in stub.WatchPermit(
                agent_pb2.WatchPermitRequest(permit_id=held.permit_id)
            ):
                if event.revoked:
                    held.reason, held.detail = event.reason, event.detail
                    break
            else:
                held.reason, held.detail = "agent_gone", "the watch stream ended"
        except grpc.aio.AioRpcError as err:
            held.reason, held.detail = "agent_gone", err.details() or err.code().name
        held.revoked.set()
        if body is not None:
            body.cancel()

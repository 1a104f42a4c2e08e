"""The journal's local API on the agent's Unix socket (JournalLocal): append, read,
replica status and recovery. It answers "not enrolled yet" until the node has an identity."""

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import grpc

from agent.journal.replica import ReplicaLoop
from agent.journal.replication import Replication, append_result, entry_pb
from edgecommon.boundary import BadRequest
from edgecommon.errors import Conflict, EdgeError, InvalidArgument
from edgecommon.pb import replication_pb2, replication_pb2_grpc
from edgecommon.rpc import handle_errors, status_of

MAX_READ = 1000


@dataclass(frozen=True)
class JournalParts:
    """The journal as the node runs it once it is enrolled."""

    replication: Replication
    replica: ReplicaLoop


class JournalLocalService(replication_pb2_grpc.JournalLocalServicer):
    def __init__(self, journal: Callable[[], JournalParts | None]) -> None:
        self.journal = journal  # None until the node is enrolled (agent.enrolled)

    def _parts(self) -> JournalParts:
        parts = self.journal()
        if parts is None:
            raise Conflict("the journal is not open yet: this node is not enrolled")
        return parts

    def _rep(self) -> Replication:
        return self._parts().replication

    @handle_errors
    async def Append(
        self, request: replication_pb2.AppendRequest, context: grpc.aio.ServicerContext
    ) -> replication_pb2.AppendResult:
        rep = self._rep()
        return append_result(await rep.append(request.key, request.value), rep.me.name)

    async def AppendStream(
        self,
        request_iterator: AsyncIterator[replication_pb2.AppendRequest],
        context: grpc.aio.ServicerContext,
    ) -> None:
        # Results are written, not yielded: a `yield` inside the task group below would leave
        # the group suspended when the caller goes away mid-write, and the generator would
        # be closed later by the garbage collector, with its tasks still running.
        try:
            rep = self._rep()
        except EdgeError as exc:
            await context.abort(status_of(exc), str(exc))
            return
        results: asyncio.Queue[replication_pb2.AppendResult | None] = asyncio.Queue()

        async def one(request: replication_pb2.AppendRequest) -> None:
            try:
                outcome = await rep.append(request.key, request.value)
                result = append_result(outcome, rep.me.name)
            except EdgeError as exc:
                result = replication_pb2.AppendResult(error=str(exc))
            result.request_id = request.request_id
            results.put_nowait(result)

        async def take() -> None:
            refused: BadRequest | None = None
            async with asyncio.TaskGroup() as tg:
                try:
                    async for request in request_iterator:
                        tg.create_task(one(request))
                except BadRequest as exc:
                    # Appends already taken finish and are answered; then the stream
                    # ends with the refusal (the request boundary answers it).
                    refused = exc
            results.put_nowait(None)
            if refused is not None:
                raise refused

        async with asyncio.TaskGroup() as tg:
            tg.create_task(take())
            while (result := await results.get()) is not None:
                await context.write(result)

    @handle_errors
    async def Read(
        self, request: replication_pb2.ReadRequest, context: grpc.aio.ServicerContext
    ) -> replication_pb2.ReadResponse:
        rep = self._rep()
        limit = request.limit or 100
        if limit > MAX_READ:
            raise InvalidArgument(f"--limit must be at most {MAX_READ}")
        entries = await rep.store.read(max(1, request.from_index), limit, request.key)
        return replication_pb2.ReadResponse(
            entries=[entry_pb(e) for e in entries],
            last_index=rep.store.last.index,
            commit_index=rep.commit_index,
        )

    @handle_errors
    async def ReplicaStatus(
        self, request: replication_pb2.ReplicaStatusRequest, context: grpc.aio.ServicerContext
    ) -> replication_pb2.ReplicaReport:
        return await self._rep().status()

    @handle_errors
    async def Recover(
        self, request: replication_pb2.RecoverRequest, context: grpc.aio.ServicerContext
    ) -> replication_pb2.RecoverReport:
        done = await self._parts().replica.recover(request.strategy, request.dry_run)
        return replication_pb2.RecoverReport(
            strategy=done.strategy,
            diverged_at=done.diverged_at,
            removed=done.removed,
            forensics_file=done.forensics_file,
            last_index=done.last_index,
            detail=done.detail,
            dry_run=done.dry_run,
        )

"""JournalLocal.AppendStream when a message in the stream is refused by the request boundary."""

import asyncio
from collections.abc import AsyncIterator

import pytest

from agent.journal.api import JournalLocalService, JournalParts
from edgecommon.boundary import BadRequest
from edgecommon.errors import Conflict
from edgecommon.pb import replication_pb2


class SlowReplication:
    """Appends that finish only once `release` is set, and then are refused (a replica)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def append(self, key: str, value: bytes) -> None:
        await self.release.wait()
        raise Conflict(f"{key}: not the leader")


class Context:
    def __init__(self) -> None:
        self.written: list[replication_pb2.AppendResult] = []

    async def write(self, message: replication_pb2.AppendResult) -> None:
        self.written.append(message)


async def test_appends_taken_before_a_refused_message_are_all_answered() -> None:
    rep = SlowReplication()
    parts = JournalParts(rep, replica=None)  # type: ignore[arg-type]
    context = Context()

    async def requests() -> AsyncIterator[replication_pb2.AppendRequest]:
        for i in (1, 2):
            yield replication_pb2.AppendRequest(key=f"k{i}", request_id=i)
        await asyncio.sleep(0)  # both appends are now waiting
        rep.release.set()  # they may finish, but only after the refusal below
        raise BadRequest("AppendRequest: field key contains a control character", "field key")

    with pytest.raises(ExceptionGroup) as raised:
        await JournalLocalService(lambda: parts).AppendStream(requests(), context)  # type: ignore[arg-type]
    assert raised.group_contains(BadRequest)
    assert sorted(r.request_id for r in context.written) == [1, 2]
    assert all("not the leader" in r.error for r in context.written)

"""What the two audit backends share: the interface, the prune report, group commit and
running blocking I/O to the end even when the caller is cancelled."""

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from edgecommon.errors import Conflict, InvalidArgument
from hub.audit.chain import Anchor, VerifyReport
from hub.audit.event import AuditEvent, AuditFilter, NewEvent, validate_new_event

T = TypeVar("T")


@dataclass(frozen=True)
class PruneReport:
    removed: int
    anchor: Anchor | None  # None when nothing was old enough to remove
    event: AuditEvent  # the audit.prune event, appended before anything was removed


class AuditLog(Protocol):
    name: str

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def append(self, events: Sequence[NewEvent]) -> list[AuditEvent]: ...

    async def query(self, f: AuditFilter) -> list[AuditEvent]: ...

    def export(self, f: AuditFilter) -> AsyncIterator[AuditEvent]: ...

    async def verify(self) -> VerifyReport: ...

    async def prune(self, cutoff: float, event: NewEvent) -> PruneReport: ...

    def statistics(self) -> dict[str, Any]: ...


def checked_events(events: Sequence[NewEvent]) -> list[NewEvent]:
    batch = list(events)
    for event in batch:
        validate_new_event(event)
    return batch


def check_cutoff(cutoff: float, now: float) -> None:
    if isinstance(cutoff, bool) or not isinstance(cutoff, int | float) or not math.isfinite(cutoff):
        raise InvalidArgument(f"prune cutoff must be unix seconds, got {cutoff!r}")
    if cutoff > now:
        raise InvalidArgument(
            f"prune cutoff {cutoff} is in the future (now {now:.0f}); give an age, e.g. 90d"
        )


def refuse_unverified_prune(name: str, report: VerifyReport) -> None:
    """A prune must not turn tampering into a clean anchor."""
    if not report.ok:
        raise Conflict(
            f"audit log {name}: prune refused, the events it would remove do not verify "
            f"({report.problems[0]}); run audit verify and keep a copy of the log first"
        )


async def to_the_end(fut: Awaitable[T]) -> T:
    """Await `fut`; if the caller is cancelled meanwhile, let it finish before re-raising,
    so no write is left running behind a released lock."""
    task = asyncio.ensure_future(fut)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await task
        raise


class GroupCommit:
    """Concurrent appends share one durable write: while a write is in flight, new
    batches queue up and the next write takes all of them. A batch whose caller was
    cancelled before its write started is dropped; once started, a write finishes."""

    def __init__(self, write: Callable[[list[NewEvent]], Awaitable[list[AuditEvent]]]) -> None:
        self._write = write
        self._queue: list[tuple[list[NewEvent], asyncio.Future[list[AuditEvent]]]] = []
        self._drain: asyncio.Task[None] | None = None
        self.batches = 0

    async def submit(self, events: list[NewEvent]) -> list[AuditEvent]:
        if not events:
            return []
        waiter: asyncio.Future[list[AuditEvent]] = asyncio.get_running_loop().create_future()
        self._queue.append((events, waiter))
        if self._drain is None or self._drain.done():
            self._drain = asyncio.create_task(self._run(), name="audit-group-commit")
        return await waiter

    async def _run(self) -> None:
        while self._queue:
            batch = [(events, w) for events, w in self._queue if not w.done()]
            self._queue = []
            if not batch:
                continue
            try:
                stored = await self._write([e for events, _ in batch for e in events])
            except asyncio.CancelledError:
                for _, waiter in batch + self._queue:
                    waiter.cancel()
                self._queue = []
                raise
            except Exception as exc:
                for _, waiter in batch:
                    if not waiter.done():
                        waiter.set_exception(exc)
                continue
            self.batches += 1
            start = 0
            for events, waiter in batch:
                if not waiter.done():
                    waiter.set_result(stored[start : start + len(events)])
                start += len(events)

    async def close(self) -> None:
        if self._drain is not None:
            await asyncio.shield(self._drain)

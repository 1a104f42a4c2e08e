"""Batched durable writes: group commit for writes a caller waits for, write-behind for
changes nobody waits for.

**GroupCommit.** Callers `submit(items)` and get, once the items are durable, one result
per item. While one batch is being written, new submissions queue; the next write takes
all of them in one transaction, so many writers cost about one fsync per batch instead of
one each (an fsync on edge flash takes 1-20 ms). Batches are written one at a time, in
the order they were submitted, and items in submission order within a batch.

Who writes. No task runs in the background: the writer of a batch is a submitter, the
first one when nothing is being written, then, batch after batch, the oldest submitter
still waiting, to whom the previous writer hands the turn. The write itself runs in a
task that its writer always waits for (`to_the_end`) and takes its batch as it starts
(one turn of the event loop later, so a burst of submitters is one batch). Nothing
outlives its callers, so no task needs an owner.

The rules, the same for every user (agent journal, hub audit logs, certificate records):

* A submitter cancelled while it waits for a write to take its items withdraws them:
  nothing of them is written. (A submitter that finds nothing being written starts the
  write of its items at once.)
* Once a write has taken them, items are written whatever becomes of their submitters:
  the write runs to its end and is not rolled back. A submitter cancelled meanwhile is
  told CancelledError though its items may be stored: not acknowledged is not the same
  as not stored, and nothing acknowledged is ever lost. The writer, cancelled during its
  write, first waits for it, settles its batch and hands the turn on, so no waiter is
  left hanging and no item half applied.
* A write that fails fails every waiter of its batch with its error; the next batch is
  written as if nothing happened. `write` must be all or nothing (one transaction) and
  return one result per item, in order.
* A write cancelled from outside (only the event loop's teardown does that) fails its
  batch with the owner's `stopped()` error.
* `drain()` returns once nothing is queued or being written: owners call it when they
  close. It refuses nothing meanwhile; once the owner has closed, its `write` refuses
  (with the owner's "not open" error), and so every later batch fails with that error.

**WriteBehind.** Changes kept in memory at once and written later, in batches, by the
owner's loop (on a cadence, early when something urgent changed, and at shutdown):
`note(key)` marks a key changed; `flush()` writes every key noted so far with one call,
reading each key's value as it is at flush time. A write that fails notes its keys again
(nothing is lost; the next flush retries) and raises.
"""

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from edgecommon.cancellation import to_the_end

Item = TypeVar("Item")
Result = TypeVar("Result")
Key = TypeVar("Key", bound=Hashable)


class _Turn:
    """Handed to the oldest waiting submitter: it writes the next batch."""


TURN = _Turn()


@dataclass(eq=False)
class _Ticket(Generic[Item, Result]):
    items: list[Item]
    # Resolved with the items' results, the batch's error, or TURN; cancelled when its
    # submitter is cancelled while it waits (its items are then withdrawn).
    outcome: "asyncio.Future[list[Result] | _Turn]"

    @property
    def waiting(self) -> bool:
        return not self.outcome.done()


class GroupCommit(Generic[Item, Result]):
    """Concurrent submissions share one durable write per batch (rules: module docstring)."""

    def __init__(
        self,
        write: Callable[[list[Item]], Awaitable[list[Result]]],
        stopped: Callable[[], Exception],
    ) -> None:
        self._write = write
        self._stopped = stopped
        self._queue: deque[_Ticket[Item, Result]] = deque()
        self._writing = False  # a submitter is writing, or has been handed the turn
        self._idle = asyncio.Event()
        self._idle.set()
        self.batches = 0  # batches written

    async def submit(self, items: Sequence[Item]) -> list[Result]:
        """Write `items` (in one transaction with whatever else is pending); their
        results, in order, once durable."""
        if not items:
            return []
        ticket: _Ticket[Item, Result] = _Ticket(
            list(items), asyncio.get_running_loop().create_future()
        )
        self._queue.append(ticket)
        if self._writing:
            outcome = await self._wait(ticket)
            if not isinstance(outcome, _Turn):
                return outcome
        else:
            self._writing = True
            self._idle.clear()
        return await self._write_batch(ticket)

    async def drain(self) -> None:
        """Return once nothing is queued or being written."""
        await self._idle.wait()

    async def _wait(self, ticket: _Ticket[Item, Result]) -> "list[Result] | _Turn":
        try:
            return await ticket.outcome
        except asyncio.CancelledError:
            # Cancelled in the same turn of the loop as it was handed the turn: the turn
            # goes to the next in line (an error set meanwhile counts as retrieved).
            if _holds_turn(ticket.outcome):
                self._pass_turn()
            raise

    async def _write_batch(self, own: _Ticket[Item, Result]) -> list[Result]:
        batch: list[_Ticket[Item, Result]] = []
        write = asyncio.ensure_future(self._take_and_write(own, batch))
        cancelled: asyncio.CancelledError | None = None
        try:
            await to_the_end(write)
        except asyncio.CancelledError as exc:
            cancelled = exc
        except Exception:
            pass  # the write's error: told below to every waiter of the batch, this one too
        # The write has ended (to_the_end waits for it), whatever this writer was told.
        mine = self._settle(batch, own, write)
        self._pass_turn()
        if cancelled is not None and _being_cancelled():
            raise cancelled
        if isinstance(mine, BaseException):
            raise mine
        return mine

    async def _take_and_write(
        self, own: _Ticket[Item, Result], batch: list[_Ticket[Item, Result]]
    ) -> list[Result]:
        """Take the batch as the write starts (the turn of the loop after `own` started
        it, so that a burst of submitters is one batch) and write it. The queue holds,
        oldest first: withdrawn tickets, `own` (the oldest waiting: why it holds the
        turn), then the others waiting."""
        batch.extend(t for t in self._queue if t is own or t.waiting)
        self._queue.clear()
        return await self._write([item for t in batch for item in t.items])

    def _settle(
        self,
        batch: list[_Ticket[Item, Result]],
        own: _Ticket[Item, Result],
        write: "asyncio.Future[list[Result]]",
    ) -> list[Result] | BaseException:
        """Tell every waiter of the batch its outcome; return the writer's own."""
        error = self._stopped() if write.cancelled() else write.exception()
        if own not in batch:  # cancelled before it started: nothing was taken
            batch = [own]
        results = write.result() if error is None else []
        expected = sum(len(t.items) for t in batch)
        if error is None and len(results) != expected:
            error = RuntimeError(f"a batch write returned {len(results)} results for {expected}")
        if error is None:
            self.batches += 1
        mine: list[Result] | BaseException = error or []
        start = 0
        for ticket in batch:
            end = start + len(ticket.items)
            outcome = error or results[start:end]
            if ticket is own:
                mine = outcome
            elif ticket.waiting:
                if isinstance(outcome, BaseException):
                    ticket.outcome.set_exception(outcome)
                else:
                    ticket.outcome.set_result(outcome)
            start = end
        return mine

    def _pass_turn(self) -> None:
        """Hand the turn to the oldest submitter still waiting, or go idle."""
        while self._queue:
            ticket = self._queue[0]
            if ticket.waiting:
                ticket.outcome.set_result(TURN)
                return
            self._queue.popleft()  # withdrawn, or a turn its holder gave up
        self._writing = False
        self._idle.set()


def _holds_turn(outcome: "asyncio.Future[list[Result] | _Turn]") -> bool:
    if not outcome.done() or outcome.cancelled() or outcome.exception() is not None:
        return False
    return isinstance(outcome.result(), _Turn)


def _being_cancelled() -> bool:
    """Whether the running task was asked to cancel (and not only its write)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class WriteBehind(Generic[Key]):
    """Keys changed in memory, written in batches by the owner's loop (module docstring)."""

    def __init__(self, write: Callable[[list[Key]], Awaitable[None]]) -> None:
        self._write = write
        self._noted: dict[Key, None] = {}  # insertion-ordered set

    def note(self, key: Key) -> None:
        self._noted[key] = None

    def __len__(self) -> int:
        return len(self._noted)

    async def flush(self) -> None:
        """Write every key noted so far (read as they are now); on failure, note them
        again and raise."""
        if not self._noted:
            return
        batch, self._noted = self._noted, {}
        try:
            await self._write(list(batch))
        except BaseException:
            self._noted = {**batch, **self._noted}
            raise

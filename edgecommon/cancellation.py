"""Cancellation that a retry loop cannot swallow.

asyncio cancels a task once: one CancelledError, thrown at whatever the task awaits.
Whoever catches it decides, and on Python 3.11 two library paths decide wrongly when
the cancellation arrives in the same turn of the loop as the thing awaited finishes:

* asyncio.wait_for returns the result (edgecommon.cadence says more; we do not use it);
* asyncio.TaskGroup, when a child fails at that moment (a stream the other side just
  ended), raises the child's error in an ExceptionGroup and drops the CancelledError.

A loop that handles that error and goes round again (reconnect, retry) then runs on
after shutdown has cancelled it, and nothing cancels it twice: the agent that logged
"SIGTERM received" and kept reconnecting until SIGKILL.

`guarded(work)` runs `work` as a task of its own and waits for it with asyncio.wait,
whose own waiter is what the caller's cancellation cancels. So the caller always sees
its cancellation, whatever the work ended with meanwhile: the work is cancelled in
turn, waited for (it cleans up: closes its channel), and CancelledError is raised.

`to_the_end(work)` is the other answer, for writes: the caller still sees its
cancellation, but only once the work has run to its end, uncancelled. A write is never
interrupted halfway (a PostgreSQL transaction would roll back; a thread would go on
writing behind a lock its caller has released), and whoever counts on its outcome (the
waiters of a group commit) still learns it.
"""

import asyncio
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


async def guarded(work: Coroutine[Any, Any, T]) -> T:
    """Await `work`; if the caller is cancelled meanwhile, the caller raises
    CancelledError, never whatever `work` raised or returned at that moment."""
    task = asyncio.ensure_future(work)
    try:
        await asyncio.wait((task,))
    except asyncio.CancelledError:
        task.cancel()
        task.add_done_callback(_retrieve)  # its outcome is not ours to report
        await asyncio.wait((task,))
        raise
    return task.result()


async def to_the_end(work: Awaitable[T]) -> T:
    """Await `work` in a task of its own; if the caller is cancelled meanwhile (once or
    again and again), the work still runs to its end before CancelledError is raised."""
    task = asyncio.ensure_future(work)
    cancelled: asyncio.CancelledError | None = None
    while not task.done():
        try:
            await asyncio.wait((task,))
        except asyncio.CancelledError as exc:
            cancelled = exc
    if cancelled is not None:
        _retrieve(task)  # its outcome is for whoever holds the task, not for this caller
        raise cancelled
    return task.result()


def _retrieve(task: "asyncio.Future[Any]") -> None:
    if not task.cancelled():
        task.exception()

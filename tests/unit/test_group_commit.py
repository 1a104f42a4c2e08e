"""Group commit and write-behind (edgecommon.group_commit) against an in-memory disk whose
writes the test holds, fails or lets through: batching, order, errors, cancellation,
draining, and the same rules over random histories of submitters, cancellations and
failing writes."""

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecommon.group_commit import GroupCommit, WriteBehind

BOUND_S = 5.0  # every wait in these tests is bounded; none is a measurement


class Refused(Exception):
    pass


class Stopped(Exception):
    pass


class Disk:
    """Rows written in transactions: a write commits all its items or none. A write waits
    while `flowing` is clear, and fails if a failure is queued for it."""

    def __init__(self) -> None:
        self.rows: list[str] = []
        self.taken: list[list[str]] = []  # every write's items, in the order writes began
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.failures: list[Exception] = []
        self.writing = 0
        self.most_at_once = 0

    def release_one(self) -> None:
        """Let the writes waiting now go on; a write that starts later waits."""
        self.flowing.set()
        self.flowing.clear()

    async def write(self, items: list[str]) -> list[int]:
        self.taken.append(list(items))
        self.writing += 1
        self.most_at_once = max(self.most_at_once, self.writing)
        try:
            await self.flowing.wait()
            await asyncio.sleep(0)
            if self.failures:
                raise self.failures.pop(0)
            start = len(self.rows)
            self.rows.extend(items)
            return list(range(start, start + len(items)))
        finally:
            self.writing -= 1


def commit_on(disk: Disk) -> GroupCommit[str, int]:
    return GroupCommit(disk.write, lambda: Stopped("shutting down"))


async def turns(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def started(coro: Coroutine[Any, Any, Any]) -> "asyncio.Task[Any]":
    return asyncio.ensure_future(coro)


async def settled(tasks: list["asyncio.Task[Any]"]) -> list[Any]:
    async with asyncio.timeout(BOUND_S):
        return await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_burst_of_submitters_is_one_batch_in_submission_order() -> None:
    disk = Disk()
    commit = commit_on(disk)
    results = await settled([started(commit.submit([f"a{i}", f"b{i}"])) for i in range(20)])
    assert disk.taken == [[f"{x}{i}" for i in range(20) for x in "ab"]]
    assert results == [[2 * i, 2 * i + 1] for i in range(20)]
    assert commit.batches == 1


async def test_submitters_arriving_during_a_write_share_the_next_one() -> None:
    disk = Disk()
    commit = commit_on(disk)
    disk.flowing.clear()
    first = started(commit.submit(["first"]))
    await turns()
    later = [started(commit.submit([f"later{i}"])) for i in range(5)]
    await turns()
    assert disk.taken == [["first"]]  # nothing else starts while a write is in flight
    disk.flowing.set()
    assert await settled([first, *later]) == [[0], [1], [2], [3], [4], [5]]
    assert disk.taken == [["first"], [f"later{i}" for i in range(5)]]
    assert disk.most_at_once == 1


async def test_an_empty_submission_writes_nothing() -> None:
    disk = Disk()
    assert await commit_on(disk).submit([]) == []
    assert disk.taken == []


async def test_a_failed_write_fails_its_whole_batch_and_the_next_batch_is_written() -> None:
    disk = Disk()
    commit = commit_on(disk)
    disk.flowing.clear()
    disk.failures.append(Refused("disk full"))
    doomed = [started(commit.submit([f"d{i}"])) for i in range(3)]
    await turns()
    after = started(commit.submit(["after"]))
    await turns()
    disk.flowing.set()
    results = await settled([*doomed, after])
    assert all(isinstance(r, Refused) and str(r) == "disk full" for r in results[:3])
    assert results[3] == [0]
    assert disk.rows == ["after"]
    assert commit.batches == 1


async def test_a_submitter_cancelled_while_its_items_are_written_leaves_them_written() -> None:
    disk = Disk()
    commit = commit_on(disk)
    disk.flowing.clear()
    first = started(commit.submit(["w"]))
    await turns()
    writer = started(commit.submit(["x"]))
    follower = started(commit.submit(["y"]))
    await turns()
    disk.release_one()
    await turns(10)
    assert disk.taken == [["w"], ["x", "y"]]  # the second write is in flight, held
    follower.cancel()
    with pytest.raises(asyncio.CancelledError):
        await follower  # told at once: it does not wait for the write
    disk.flowing.set()
    assert await settled([first, writer]) == [[0], [1]]
    assert disk.rows == ["w", "x", "y"]  # not acknowledged, yet stored: never half applied


async def test_a_submitter_cancelled_before_its_items_are_taken_withdraws_them() -> None:
    disk = Disk()
    commit = commit_on(disk)
    disk.flowing.clear()
    writer = started(commit.submit(["w"]))
    await turns()
    gone_first = started(commit.submit(["gone-first"]))
    stays = started(commit.submit(["stays"]))
    gone = started(commit.submit(["gone"]))
    stays_too = started(commit.submit(["stays-too"]))
    await turns()
    gone_first.cancel()
    gone.cancel()
    await turns()
    disk.flowing.set()
    results = await settled([writer, gone_first, stays, gone, stays_too])
    assert results[0] == [0]
    assert isinstance(results[1], asyncio.CancelledError)
    assert results[2:] == [[1], results[3], [2]]
    assert isinstance(results[3], asyncio.CancelledError)
    assert disk.rows == ["w", "stays", "stays-too"]


async def test_a_writer_cancelled_mid_write_finishes_it_and_hands_the_turn_on() -> None:
    disk = Disk()
    commit = commit_on(disk)
    disk.flowing.clear()
    writer = started(commit.submit(["w"]))
    await turns()
    follower = started(commit.submit(["f"]))
    await turns()
    writer.cancel()
    await turns()
    assert not writer.done()  # it waits for its write to end before it raises
    disk.flowing.set()
    results = await settled([writer, follower])
    assert isinstance(results[0], asyncio.CancelledError)
    assert results[1] == [1]
    assert disk.rows == ["w", "f"]


async def test_a_turn_handed_to_a_submitter_cancelled_at_that_moment_goes_to_the_next() -> None:
    disk = Disk()
    commit = commit_on(disk)
    handed: asyncio.Task[list[int]] | None = None

    async def write_then_cancel_the_next() -> list[int]:
        written = await commit.submit(["w"])
        # The turn has just been handed to `handed`, which has not run since.
        assert handed is not None
        handed.cancel()
        return written

    disk.flowing.clear()
    writer = started(write_then_cancel_the_next())
    await turns()
    handed = started(commit.submit(["h"]))
    after = started(commit.submit(["a"]))
    await turns()
    disk.flowing.set()
    results = await settled([writer, handed, after])
    assert results[0] == [0]
    assert isinstance(results[1], asyncio.CancelledError)
    assert results[2] == [1]
    assert disk.rows == ["w", "a"]
    await asyncio.wait_for(commit.drain(), BOUND_S)


async def test_drain_waits_for_the_write_in_flight_and_everything_queued() -> None:
    disk = Disk()
    commit = commit_on(disk)
    disk.flowing.clear()
    tasks = [started(commit.submit([f"i{i}"])) for i in range(3)]
    await turns()
    tasks += [started(commit.submit([f"j{i}"])) for i in range(3)]
    await turns()
    drained = started(commit.drain())
    await turns()
    assert not drained.done()
    disk.flowing.set()
    await asyncio.wait_for(drained, BOUND_S)
    assert all(t.done() for t in tasks)
    assert disk.rows == ["i0", "i1", "i2", "j0", "j1", "j2"]
    await asyncio.wait_for(commit.drain(), BOUND_S)  # idle: returns at once


async def test_a_write_cancelled_from_outside_fails_its_batch_with_the_stopped_error() -> None:
    disk = Disk()
    write_tasks: list[asyncio.Task[Any]] = []

    async def write(items: list[str]) -> list[int]:
        write_tasks.append(asyncio.current_task())  # type: ignore[arg-type]
        return await disk.write(items)

    commit: GroupCommit[str, int] = GroupCommit(write, lambda: Stopped("shutting down"))
    disk.flowing.clear()
    writer = started(commit.submit(["w"]))
    await turns()
    follower = started(commit.submit(["f"]))
    await turns()
    write_tasks[0].cancel()  # what the event loop's teardown does
    (stopped,) = await settled([writer])
    assert isinstance(stopped, Stopped)
    disk.flowing.set()
    assert await settled([follower]) == [[0]]  # the next batch is written
    assert disk.rows == ["f"]


async def test_a_write_that_returns_the_wrong_number_of_results_fails_its_batch() -> None:
    async def write(items: list[str]) -> list[int]:
        return [0]

    commit: GroupCommit[str, int] = GroupCommit(write, lambda: Stopped("shutting down"))
    with pytest.raises(RuntimeError, match="returned 1 results for 2"):
        await commit.submit(["a", "b"])


# -- the rules over random histories ------------------------------------------------------

STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("submit"), st.integers(1, 3)),
        st.tuples(st.just("turns"), st.integers(1, 4)),
        st.tuples(st.just("hold"), st.just(0)),
        st.tuples(st.just("flow"), st.just(0)),
        st.tuples(st.just("fail"), st.just(0)),
        st.tuples(st.just("cancel"), st.integers(0, 30)),
    ),
    max_size=40,
)


async def replay(steps: list[tuple[str, int]]) -> None:
    disk = Disk()
    commit = commit_on(disk)
    submitted: list[list[str]] = []
    tasks: list[asyncio.Task[list[int]]] = []
    cancelled: set[int] = set()
    for kind, n in steps:
        if kind == "submit":
            items = [f"s{len(submitted)}.{k}" for k in range(n)]
            submitted.append(items)
            tasks.append(started(commit.submit(items)))
        elif kind == "turns":
            await turns(n)
        elif kind == "hold":
            disk.flowing.clear()
        elif kind == "flow":
            disk.flowing.set()
        elif kind == "fail":
            disk.failures.append(Refused(f"failure {len(disk.failures)}"))
        elif kind == "cancel" and tasks:
            i = n % len(tasks)
            if not tasks[i].done():
                tasks[i].cancel()
                cancelled.add(i)
    disk.flowing.set()
    results = await settled(tasks)
    await asyncio.wait_for(commit.drain(), BOUND_S)

    assert disk.most_at_once <= 1
    order = [item for items in submitted for item in items]
    assert len(set(disk.rows)) == len(disk.rows)
    assert disk.rows == [item for item in order if item in set(disk.rows)]  # submission order
    assert commit.batches == sum(1 for t in disk.taken if t[0] in disk.rows)
    for i, (items, result) in enumerate(zip(submitted, results, strict=True)):
        stored = [item in disk.rows for item in items]
        assert all(stored) or not any(stored), "half applied"
        if isinstance(result, list):  # acknowledged: durable, at the positions it was told
            assert result == [disk.rows.index(item) for item in items]
        elif isinstance(result, Refused):
            assert not any(stored)
        else:
            assert isinstance(result, asyncio.CancelledError)
            assert i in cancelled
        if i not in cancelled:
            assert isinstance(result, list | Refused)


@settings(max_examples=300, deadline=None)
@given(STEPS)
def test_random_histories_keep_every_rule(steps: list[tuple[str, int]]) -> None:
    asyncio.run(replay(steps))


# -- write-behind -------------------------------------------------------------------------


def recorder(
    written: list[list[str]], fail: Callable[[], bool] = lambda: False
) -> Callable[[list[str]], Coroutine[Any, Any, None]]:
    async def write(keys: list[str]) -> None:
        await asyncio.sleep(0)
        if fail():
            raise Refused("store down")
        written.append(keys)

    return write


async def test_write_behind_writes_each_noted_key_once_in_the_order_first_noted() -> None:
    written: list[list[str]] = []
    behind: WriteBehind[str] = WriteBehind(recorder(written))
    for key in ("b", "a", "b", "c", "a"):
        behind.note(key)
    assert len(behind) == 3
    await behind.flush()
    await behind.flush()  # nothing noted since: nothing written
    assert written == [["b", "a", "c"]]
    assert len(behind) == 0


async def test_write_behind_notes_again_what_a_failed_write_took() -> None:
    written: list[list[str]] = []
    failing = [True]
    behind: WriteBehind[str] = WriteBehind(recorder(written, lambda: failing[0]))
    behind.note("a")
    behind.note("b")
    flushing = started(behind.flush())
    await asyncio.sleep(0)
    behind.note("c")  # noted while the failing write is in flight
    behind.note("a")
    with pytest.raises(Refused):
        await flushing
    failing[0] = False
    await behind.flush()
    assert written == [["a", "b", "c"]]

"""Cancellation reaches the loops that must end at shutdown, even when it arrives in the
same turn of the event loop as the thing they wait for (edgecommon.cancellation,
edgecommon.cadence), and shutdown is bounded when it does not (edgecommon.daemon)."""

import asyncio
import contextlib
import subprocess
import sys
import textwrap
import time

import pytest

from edgecommon.cadence import wait_for_event
from edgecommon.cancellation import guarded, to_the_end


class StreamEnded(Exception):
    pass


async def test_wait_for_event_hands_on_a_cancellation_that_arrives_with_the_event() -> None:
    event = asyncio.Event()
    woke: list[bool] = []

    async def loop() -> None:
        while True:  # the shape of the hub's registry and estop loops
            woke.append(await wait_for_event(event, 60))
            event.clear()

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)
    event.set()
    await asyncio.sleep(0)  # the event's waiter has finished; the loop has not run yet
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(5):
            await task
    assert task.cancelled()


async def test_wait_for_event_times_out_and_wakes() -> None:
    event = asyncio.Event()
    assert not await wait_for_event(event, 0.01)
    event.set()
    assert await wait_for_event(event, 60)


async def _stream() -> None:
    """A stream the hub ends after a moment; its reader fails the moment the stream is
    torn down, as a gRPC read does when the other side ends the call as we are being
    cancelled."""

    async def reader() -> None:
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            raise StreamEnded("the hub ended the stream") from None
        raise StreamEnded("the hub ended the stream")

    async with asyncio.TaskGroup() as tg:
        tg.create_task(reader())
        tg.create_task(asyncio.sleep(3600))


async def _reconnect_loop(guard: bool) -> int:
    """The shape of HubLink.run: serve a stream, and on StreamEnded back off and retry."""
    rounds = 0
    while rounds < 4:
        try:
            await (guarded(_stream()) if guard else _stream())
        except* StreamEnded:
            rounds += 1
        await asyncio.sleep(0.001)
    return rounds


async def _cancel_as_the_stream_fails(guard: bool) -> "asyncio.Task[int]":
    task = asyncio.create_task(_reconnect_loop(guard))
    for _ in range(5):
        await asyncio.sleep(0)  # the loop is inside its TaskGroup now
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        async with asyncio.timeout(5):
            await task
    return task


async def test_guarded_hands_on_a_cancellation_that_arrives_as_the_work_fails() -> None:
    task = await _cancel_as_the_stream_fails(guard=True)
    assert task.cancelled(), "the loop went round again after being cancelled"


async def test_without_guarded_this_python_loses_that_cancellation() -> None:
    """The hazard `guarded` exists for (asyncio.TaskGroup on 3.11): if this ever passes
    the other way, the comment in edgecommon/cancellation.py wants updating."""
    task = await _cancel_as_the_stream_fails(guard=False)
    if task.cancelled():
        pytest.skip("this Python's TaskGroup hands on the cancellation by itself")
    assert task.result() == 4, "the loop went round four times after being cancelled"


async def test_guarded_returns_the_result_and_raises_the_error_of_the_work() -> None:
    async def value() -> int:
        await asyncio.sleep(0)
        return 7

    async def failing() -> int:
        await asyncio.sleep(0)
        raise StreamEnded("x")

    assert await guarded(value()) == 7
    with pytest.raises(StreamEnded):
        await guarded(failing())


async def test_guarded_waits_for_the_work_to_clean_up_before_raising() -> None:
    cleaned: list[str] = []
    started = asyncio.Event()

    async def work() -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(0.01)  # closing a channel
            cleaned.append("closed")

    task = asyncio.create_task(guarded(work()))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == ["closed"]


STUCK_DAEMON = textwrap.dedent(
    """
    import asyncio, logging, sys
    from edgecommon.daemon import exit_after, setup_logging

    async def swallow_forever() -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                pass  # the bug the backstop is for

    async def main() -> None:
        task = asyncio.create_task(swallow_forever(), name="stubborn")
        await asyncio.sleep(0)
        task.cancel()
        exit_after(0.3, asyncio.get_running_loop(), logging.getLogger("edge-test"))
        await task

    setup_logging("info")
    asyncio.run(main())
    """
)


def test_shutdown_backstop_exits_and_names_the_task_still_running() -> None:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", STUCK_DAEMON], capture_output=True, text=True, timeout=20
    )
    assert done.returncode == 1
    assert time.monotonic() - started < 10
    [line] = done.stderr.strip().splitlines()
    assert "CRITICAL edge-test: shutdown did not finish within 0.3s" in line
    assert "stubborn at <string>:" in line


async def test_to_the_end_runs_the_work_to_its_end_however_often_the_caller_is_cancelled() -> None:
    release, ended = asyncio.Event(), []

    async def write() -> str:
        await release.wait()
        ended.append(True)
        return "written"

    waiting = asyncio.create_task(to_the_end(write()))
    await asyncio.sleep(0)
    for _ in range(3):
        waiting.cancel()
        await asyncio.sleep(0)
    assert not waiting.done()  # still waiting for the work, not for itself
    release.set()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(5):
            await waiting
    assert ended == [True]


async def test_to_the_end_returns_the_result_and_raises_the_error_of_the_work() -> None:
    async def value() -> int:
        return 7

    async def failing() -> None:
        raise StreamEnded("boom")

    assert await to_the_end(value()) == 7
    with pytest.raises(StreamEnded, match="boom"):
        await to_the_end(failing())

"""wait_until: a condition, an event that says it may have changed, a deadline on the
injected clock. The fake clock (not driving the loop here) ends an hour-long wait at the
next wake-up once it has passed the deadline."""

import asyncio

import pytest

from edgecommon.cadence import wait_until
from tests.fakes import FakeClock

BOUND_S = 5.0  # bounds the test, never measured


async def test_a_condition_that_holds_returns_at_once_even_past_the_deadline() -> None:
    clock = FakeClock()
    assert await wait_until(lambda: True, asyncio.Event(), clock.monotonic() - 1, clock)


async def test_a_deadline_already_passed_returns_false_without_waiting() -> None:
    clock = FakeClock()
    async with asyncio.timeout(BOUND_S):
        assert not await wait_until(lambda: False, asyncio.Event(), clock.monotonic(), clock)


async def test_it_returns_once_the_condition_holds_and_the_event_says_so() -> None:
    clock, wake, done = FakeClock(), asyncio.Event(), [False]
    waiting = asyncio.create_task(
        wait_until(lambda: done[0], wake, clock.monotonic() + 3600, clock)
    )
    await asyncio.sleep(0)
    wake.set()  # a wake-up without the condition: it waits on
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert not waiting.done()
    done[0] = True
    wake.set()
    async with asyncio.timeout(BOUND_S):
        assert await waiting


async def test_an_hour_long_wait_ends_when_the_fake_clock_passes_its_deadline() -> None:
    clock, wake = FakeClock(), asyncio.Event()
    waiting = asyncio.create_task(wait_until(lambda: False, wake, clock.monotonic() + 3600, clock))
    await asyncio.sleep(0)
    clock.now += 3600
    wake.set()
    async with asyncio.timeout(BOUND_S):
        assert not await waiting


async def test_recheck_notices_a_condition_that_changes_without_the_event() -> None:
    clock, done = FakeClock(), [False]
    waiting = asyncio.create_task(
        wait_until(
            lambda: done[0], asyncio.Event(), clock.monotonic() + 3600, clock, recheck_s=0.01
        )
    )
    await asyncio.sleep(0)
    done[0] = True
    async with asyncio.timeout(BOUND_S):
        assert await waiting


async def test_only_a_wake_up_after_the_wait_began_counts() -> None:
    clock, wake = FakeClock(), asyncio.Event()
    wake.set()  # set before the wait: stale
    waiting = asyncio.create_task(wait_until(lambda: False, wake, clock.monotonic() + 3600, clock))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not waiting.done()
    assert not wake.is_set()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting


async def test_a_cancellation_that_arrives_with_the_wake_up_is_handed_on() -> None:
    clock, wake = FakeClock(), asyncio.Event()
    waiting = asyncio.create_task(wait_until(lambda: False, wake, clock.monotonic() + 3600, clock))
    await asyncio.sleep(0)
    wake.set()
    await asyncio.sleep(0)  # the event's waiter has finished; wait_until has not run yet
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(BOUND_S):
            await waiting
    assert waiting.cancelled()

"""Waiting without losing a cancellation: loops on a fixed cadence that wake early on an
event (`wait_for_event`), and waits for a condition up to a deadline (`wait_until`)."""

import asyncio
import math
from collections.abc import Callable

from edgecommon.clock import Clock


async def wait_for_event(event: asyncio.Event, timeout_s: float) -> bool:
    """Wait until `event` is set or `timeout_s` passes; True if it was set.

    Never with asyncio.wait_for: on Python 3.11 it returns the awaited result when that
    arrives in the same turn of the loop as a cancellation, and the cancellation is lost;
    a loop built on it then runs on after shutdown has cancelled it (the hub's registry
    loop did, when agents disconnected as the hub was stopped). asyncio.timeout hands
    the cancellation on.
    """
    try:
        async with asyncio.timeout(timeout_s):
            await event.wait()
    except TimeoutError:
        return False
    return True


async def wait_until(
    holds: Callable[[], bool],
    wake: asyncio.Event,
    deadline: float,
    clock: Clock,
    recheck_s: float = math.inf,
) -> bool:
    """Wait until `holds()` or until `deadline` (on `clock.monotonic()`); True if it holds.

    `holds()` is checked at once, then each time `wake` is set (it is cleared before each
    wait, so only a set that comes later counts) and every `recheck_s` for conditions that
    also change without setting `wake` (a node that disconnects acknowledges nothing).
    The deadline is the injected clock's: a test with a fake clock moves the clock past
    it and sets `wake`, and the wait ends without waiting out real time.
    """
    while not holds():
        left = deadline - clock.monotonic()
        if left <= 0:
            return False
        wake.clear()
        await wait_for_event(wake, min(left, recheck_s))
    return True
